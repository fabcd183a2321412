//! Conformance with Docker Compose v2, the reference implementation.
//!
//! berth promises that an operator can drop an existing compose file in unchanged and get the containers
//! Docker Compose would make. This module measures that promise:
//!
//! - `conformance_corpus_matches_compose`: every fixture of `tests/fixtures/conformance/` (a directory with a
//!   compose file under any name Compose reads; images it needs are built first) is brought up once with
//!   `docker compose up -d` and once with `berth apply`, one tool after the other (so host ports, fixed
//!   addresses and container names never clash), and the two sets of containers, networks and volumes
//!   are compared through `docker inspect`, field by field, after normalising only what legitimately differs
//!   per tool (each normalisation says why where it is done). The table is printed; the test fails on a
//!   difference that is not listed under `### Known differences from Docker Compose` in README.md, and on a
//!   listed difference that no longer occurs.
//! - `reapply_never_recreates`: every fixture berth applied is applied a second time: berth must say
//!   `up to date` and keep every container id.
//! - `bad_files_are_refused_with_key_file_and_line`: every case of `tests/fixtures/bad/` must make
//!   `berth render` exit 1 with each string of the case's `expect` file in stderr, and `berth apply` of it
//!   must change nothing on the engine.
//!
//! The corpus runs once per test binary (both of the first two tests read the same results), a few fixtures
//! at a time. Set `BERTH_CONFORMANCE_FIXTURES=ports,volumes` to run only some fixtures (the stale check then
//! only judges README rows of those fixtures). Fixture placeholders (`__PROJECT__`, `__P0__`, …) are
//! described in `tests/fixtures/conformance/README.md`.

use crate::util::{berth_bin, docker, show, stderr, stdout, AGENT_LABEL, IMAGE};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Fixtures run at the same time: the work is mostly waiting on the engine, but the machine has 2 cores
/// and other tests run next to this one. (62 fixtures took 265 s with 3 workers; 64 took 232 s with 4,
/// at a load average of 15.)
const WORKERS: usize = 4;
/// Deadline of one `docker compose up` / `berth apply` / `down`.
const TOOL_DEADLINE: Duration = Duration::from_secs(180);
/// Deadline of one short engine command (inspect, ls, exec).
const DOCKER_DEADLINE: Duration = Duration::from_secs(60);
/// How long to wait for a tool's containers to settle (none still `created` or `restarting`), and for
/// berth's to reach the states Compose's reached (one-shot containers may still run right after
/// `berth apply`).
const SETTLE_DEADLINE: Duration = Duration::from_secs(20);

const KNOWN_HEADING: &str = "### Known differences from Docker Compose";

/// Idle command for containers the harness makes itself (stops at once on SIGTERM).
const IDLE_SH: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures_root() -> PathBuf {
    manifest_dir().join("tests/fixtures/conformance")
}

fn bad_root() -> PathBuf {
    manifest_dir().join("tests/fixtures/bad")
}

// ---------------------------------------------------------------------------------------------------
// Processes

/// Run a command to completion within `deadline` (killed otherwise). stdout and stderr are drained by
/// threads, so a command that prints a lot (a `docker inspect` of many containers) cannot block on a full
/// pipe.
fn run(cmd: &mut Command, deadline: Duration) -> Result<Output, String> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => return Err(format!("waiting for {what}: {e}")),
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let o = Output {
                status: std::process::ExitStatus::default(),
                stdout: t_out.join().unwrap_or_default(),
                stderr: t_err.join().unwrap_or_default(),
            };
            return Err(format!(
                "{what} still running after {deadline:?}; killed\n--- stdout\n{}\n--- stderr\n{}",
                stdout(&o),
                stderr(&o)
            ));
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    Ok(Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    })
}

fn docker_cmd(args: &[&str]) -> Command {
    let mut c = Command::new("docker");
    c.args(args);
    c
}

/// `docker ARGS` that must succeed; its stdout.
fn docker_out(args: &[&str]) -> Result<String, String> {
    let o = run(&mut docker_cmd(args), DOCKER_DEADLINE)?;
    if !o.status.success() {
        return Err(format!("docker {args:?}: {}", show(&o)));
    }
    Ok(stdout(&o))
}

fn lines(s: &str) -> Vec<String> {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// The environment both tools run with: the test process's, minus anything that would change how either
/// tool reads a project (`COMPOSE_*`, `DOCKER_DEFAULT_PLATFORM`) or that fixtures interpolate (`CONF_*`),
/// plus the fixtures' shell variables.
fn tool_env(cmd: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().to_string();
        if k.starts_with("COMPOSE_") || k.starts_with("CONF_") || k == "DOCKER_DEFAULT_PLATFORM" {
            cmd.env_remove(&k);
        }
    }
    cmd.env("CONF_FROM_SHELL", "from-shell")
        .env("CONF_OVERRIDDEN", "from-shell")
        .env("CONF_SECRET_ENV", "secret-from-env")
        .env("CONF_CONFIG_ENV", "config-from-env")
}

/// The reference: `docker compose` (v2). When `docker compose version` fails, `scripts/compose-v2.sh`
/// installs it; a fallback to Compose v1 (`docker-compose`) is refused, since v1 names and labels differ.
pub(crate) fn compose_cmd() -> Result<Vec<String>, String> {
    static CMD: OnceLock<Result<Vec<String>, String>> = OnceLock::new();
    CMD.get_or_init(|| {
        let v2 = || {
            run(&mut docker_cmd(&["compose", "version", "--short"]), DOCKER_DEADLINE)
                .map(|o| o.status.success())
                .unwrap_or(false)
        };
        if v2() {
            return Ok(vec!["docker".into(), "compose".into()]);
        }
        let script = manifest_dir().join("scripts/compose-v2.sh");
        let o = run(
            Command::new("sh").arg(&script).arg("--print"),
            Duration::from_secs(900),
        )?;
        let printed = stdout(&o).trim().to_string();
        if o.status.success() && printed == "docker compose" && v2() {
            Ok(vec!["docker".into(), "compose".into()])
        } else {
            Err(format!(
                "Docker Compose v2 is not available (scripts/compose-v2.sh printed {printed:?}): {}",
                show(&o)
            ))
        }
    })
    .clone()
}

pub(crate) fn compose(cmdline: &[String], args: &[&str]) -> Command {
    let mut c = Command::new(&cmdline[0]);
    c.args(&cmdline[1..]).args(args);
    tool_env(&mut c);
    c
}

fn berth_apply(dir: &Path, agent: &str) -> Result<Output, String> {
    let mut c = Command::new(berth_bin());
    c.arg("apply").arg(dir).arg("--agent-id").arg(agent);
    tool_env(&mut c);
    run(&mut c, TOOL_DEADLINE)
}

// ---------------------------------------------------------------------------------------------------
// Fixtures, placeholders and run-unique resources

struct Fixture {
    name: String,
    dir: PathBuf,
}

/// The compose file names Compose looks for, in its order.
const COMPOSE_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// The compose file of a fixture directory (under any of the names Compose reads).
fn compose_file(dir: &Path) -> Option<PathBuf> {
    COMPOSE_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
}

/// Every fixture directory (holding a compose file), sorted; filtered by `BERTH_CONFORMANCE_FIXTURES`.
fn fixtures() -> Vec<Fixture> {
    let only: Option<BTreeSet<String>> = std::env::var("BERTH_CONFORMANCE_FIXTURES")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect());
    let mut v: Vec<Fixture> = std::fs::read_dir(fixtures_root())
        .expect("tests/fixtures/conformance")
        .filter_map(|e| e.ok())
        .filter(|e| compose_file(&e.path()).is_some())
        .map(|e| Fixture {
            name: e.file_name().to_string_lossy().to_string(),
            dir: e.path(),
        })
        .filter(|f| only.as_ref().is_none_or(|o| o.contains(&f.name)))
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Host ports and subnets handed out to fixtures: free when checked, never handed out twice in one run,
/// and starting from a point derived from the pid so that two runs at the same time pick different ones.
struct Alloc {
    next_port: u32,
    next_octet: u32,
    /// IPv4 networks (address, prefix length) in use on the engine or handed out.
    used: Vec<(u32, u32)>,
}

fn alloc() -> &'static Mutex<Alloc> {
    static A: OnceLock<Mutex<Alloc>> = OnceLock::new();
    A.get_or_init(|| {
        let pid = std::process::id();
        let mut used = Vec::new();
        if let Ok(ids) = docker_out(&["network", "ls", "-q"]) {
            let ids = lines(&ids);
            if !ids.is_empty() {
                let mut args = vec![
                    "network",
                    "inspect",
                    "--format",
                    "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
                ];
                args.extend(ids.iter().map(String::as_str));
                // Networks may vanish between ls and inspect (other tests): take what answered.
                let o = run(&mut docker_cmd(&args), DOCKER_DEADLINE).ok();
                for s in o.map(|o| stdout(&o)).unwrap_or_default().split_whitespace() {
                    if let Some(n) = parse_cidr4(s) {
                        used.push(n);
                    }
                }
            }
        }
        Mutex::new(Alloc {
            next_port: 40000 + (pid.wrapping_mul(7919) % 900) * 10,
            next_octet: pid % 250,
            used,
        })
    })
}

fn parse_cidr4(s: &str) -> Option<(u32, u32)> {
    let (addr, len) = s.split_once('/')?;
    let ip: std::net::Ipv4Addr = addr.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    (len <= 32).then_some((u32::from(ip), len))
}

fn overlaps(a: (u32, u32), b: (u32, u32)) -> bool {
    let len = a.1.min(b.1);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    (a.0 & mask) == (b.0 & mask)
}

fn port_free(p: u16) -> bool {
    std::net::TcpListener::bind(("0.0.0.0", p)).is_ok()
        && std::net::UdpSocket::bind(("0.0.0.0", p)).is_ok()
}

/// Ten consecutive free host ports.
fn alloc_ports() -> u16 {
    let mut a = alloc().lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let base = a.next_port;
        a.next_port = if base + 20 > 49990 { 40000 } else { base + 10 };
        if (0..10).all(|i| port_free((base + i) as u16)) {
            return base as u16;
        }
    }
    panic!("no 10 free consecutive host ports in 40000-49999");
}

/// A third octet `k` such that 10.211.k.0/24, 10.212.k.0/24 and 10.213.k.0/24 are all free.
fn alloc_octet() -> u32 {
    let mut a = alloc().lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..250 {
        let k = a.next_octet;
        a.next_octet = (k + 1) % 250;
        let nets: Vec<(u32, u32)> = (1..=3)
            .map(|n| {
                (
                    u32::from(std::net::Ipv4Addr::new(10, 210 + n, k as u8, 0)),
                    24,
                )
            })
            .collect();
        if nets
            .iter()
            .all(|n| a.used.iter().all(|u| !overlaps(*n, *u)))
        {
            a.used.extend(nets);
            return k;
        }
    }
    panic!("no free 10.21x.k.0/24 subnets");
}

/// Everything one fixture run substitutes and creates.
struct RunNames {
    /// Compose project name.
    cproj: String,
    /// berth stack name and agent id.
    bstack: String,
    /// Placeholder → value, shared by both tools.
    common: Vec<(String, String)>,
    /// Allocated IPv4 /24 prefixes (`10.21n.k`) and the IPv6 /64 prefix: a subnet outside them was
    /// picked by the engine.
    net_prefixes: Vec<String>,
    /// `(id, name)` of the containers the harness made first (`network_mode: container:<name>`).
    ext_ids: Vec<(String, String)>,
}

impl RunNames {
    fn new(fixture: &str) -> RunNames {
        let pid = std::process::id();
        let port = alloc_ports();
        let k = alloc_octet();
        let mut common = vec![("__EXT__".to_string(), format!("cfx-{fixture}-{pid}"))];
        for i in 0..10u16 {
            common.push((format!("__P{i}__"), (port + i).to_string()));
        }
        let mut net_prefixes = Vec::new();
        for n in 1..=3u32 {
            let p = format!("10.{}.{k}", 210 + n);
            common.push((format!("__NET{n}__"), p.clone()));
            net_prefixes.push(format!("{p}."));
        }
        let v6 = format!("fd42:c0f:{:x}:{k:x}", pid & 0xffff);
        common.push(("__NET6__".into(), v6.clone()));
        common.push(("__BLOCKDEV__".into(), block_device()));
        net_prefixes.push(format!("{v6}:"));
        RunNames {
            cproj: format!("cfc-{fixture}-{pid}"),
            bstack: format!("cfb-{fixture}-{pid}"),
            common,
            net_prefixes,
            ext_ids: Vec::new(),
        }
    }

    fn subst(&self, project: &str) -> Vec<(String, String)> {
        let mut v = vec![("__PROJECT__".to_string(), project.to_string())];
        v.extend(self.common.iter().cloned());
        v
    }
}

/// A block device of the test machine, for `blkio_config` device rates: the first of the usual disk
/// names that exists as a block device.
fn block_device() -> String {
    use std::os::unix::fs::FileTypeExt as _;
    [
        "/dev/vda",
        "/dev/sda",
        "/dev/nvme0n1",
        "/dev/xvda",
        "/dev/loop0",
    ]
    .into_iter()
    .find(|d| {
        std::fs::metadata(d)
            .map(|m| m.file_type().is_block_device())
            .unwrap_or(false)
    })
    .unwrap_or("/dev/sda")
    .to_string()
}

fn apply_subst(text: &str, subst: &[(String, String)]) -> String {
    let mut s = text.to_string();
    for (k, v) in subst {
        s = s.replace(k.as_str(), v);
    }
    s
}

/// Copy a fixture directory, replacing placeholders in every file.
fn copy_fixture(src: &Path, dst: &Path, subst: &[(String, String)]) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let to = dst.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_fixture(&e.path(), &to, subst)?;
        } else {
            let bytes = std::fs::read(e.path())?;
            match String::from_utf8(bytes) {
                Ok(t) => std::fs::write(&to, apply_subst(&t, subst))?,
                Err(b) => std::fs::write(&to, b.into_bytes())?,
            }
        }
    }
    Ok(())
}

/// The fixture's `x-conformance:` instructions (and whether it has a top-level `name:`).
#[derive(Default, Debug)]
struct Extra {
    networks: Vec<String>,
    volumes: Vec<String>,
    containers: Vec<String>,
    /// Images built first: tag → Dockerfile (built without a context, `FROM` the test image), for images
    /// whose `VOLUME`, `HEALTHCHECK`, `ENTRYPOINT`, `USER`… matter.
    images: Vec<(String, String)>,
    probes: Vec<String>,
    has_name: bool,
}

fn read_extra(compose_yaml: &Path) -> Result<Extra, String> {
    let text = std::fs::read_to_string(compose_yaml).map_err(|e| e.to_string())?;
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", compose_yaml.display()))?;
    let strings = |v: Option<&serde_yaml::Value>| -> Vec<String> {
        v.and_then(|v| v.as_sequence())
            .map(|s| {
                s.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let x = doc.get("x-conformance");
    let create = x.and_then(|x| x.get("create"));
    Ok(Extra {
        networks: strings(create.and_then(|c| c.get("networks"))),
        volumes: strings(create.and_then(|c| c.get("volumes"))),
        containers: strings(create.and_then(|c| c.get("containers"))),
        images: create
            .and_then(|c| c.get("images"))
            .and_then(|i| i.as_mapping())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default(),
        probes: strings(x.and_then(|x| x.get("probe"))),
        has_name: doc.get("name").is_some(),
    })
}

/// Removes, when dropped (also when the fixture failed), everything one fixture run made: the Compose
/// project (`down -v`, then anything still labelled with the project), berth's objects for the agent id
/// (containers with their anonymous volumes), and the objects the harness made first.
struct Cleanup {
    compose: Option<(Vec<String>, String, PathBuf)>,
    agent: String,
    extra: Extra,
}

impl Cleanup {
    fn compose_down(&self) -> Result<(), String> {
        let Some((cmdline, proj, dir)) = &self.compose else {
            return Ok(());
        };
        let dir_s = dir.to_string_lossy().to_string();
        let o = run(
            &mut compose(
                cmdline,
                &[
                    "-p",
                    proj,
                    "--project-directory",
                    &dir_s,
                    "down",
                    "-v",
                    "--remove-orphans",
                    "--timeout",
                    "10",
                ],
            ),
            TOOL_DEADLINE,
        )?;
        let label = format!("com.docker.compose.project={proj}");
        let swept = remove_labelled(&label);
        if !o.status.success() {
            // Docker 20.10 sometimes still counts an endpoint of a container it has just removed
            // ("network … has active endpoints"). That is the engine's lag, not Compose's or berth's:
            // the down counts as done when the project's objects are all gone shortly after.
            let gone = || {
                remove_labelled(&label).is_ok()
                    && docker_out(&["network", "ls", "-q", "--filter", &format!("label={label}")])
                        .map(|o| o.trim().is_empty())
                        .unwrap_or(false)
            };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            let stderr = String::from_utf8_lossy(&o.stderr);
            while stderr.contains("active endpoints") && std::time::Instant::now() < deadline {
                if gone() {
                    return Ok(());
                }
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
            return Err(format!("docker compose down: {}", show(&o)));
        }
        swept
    }
}

/// Remove containers (with their anonymous volumes), networks and volumes carrying `label`.
fn remove_labelled(label: &str) -> Result<(), String> {
    let filter = format!("label={label}");
    let containers = lines(&docker_out(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &filter,
    ])?);
    if !containers.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(containers.iter().map(String::as_str));
        docker_out(&args)?;
    }
    for n in lines(&docker_out(&["network", "ls", "-q", "--filter", &filter])?) {
        let _ = docker(&["network", "rm", &n]);
    }
    let volumes = lines(&docker_out(&["volume", "ls", "-q", "--filter", &filter])?);
    if !volumes.is_empty() {
        let mut args = vec!["volume", "rm", "-f"];
        args.extend(volumes.iter().map(String::as_str));
        let _ = docker(&args);
    }
    Ok(())
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.compose_down();
        let _ = remove_labelled(&format!("{AGENT_LABEL}={}", self.agent));
        for c in &self.extra.containers {
            docker(&["rm", "-f", "-v", c]);
        }
        for n in &self.extra.networks {
            docker(&["network", "rm", n]);
        }
        for v in &self.extra.volumes {
            docker(&["volume", "rm", "-f", v]);
        }
        for (tag, _) in &self.extra.images {
            docker(&["image", "rm", "-f", tag]);
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Snapshots: what one tool made, as normalised fields

/// Replacements that turn one tool's values into comparable ones, applied in order.
struct Norm {
    pairs: Vec<(String, String)>,
    net_prefixes: Vec<String>,
}

impl Norm {
    fn s(&self, s: &str) -> String {
        let mut out = s.to_string();
        for (from, to) in &self.pairs {
            if !from.is_empty() {
                out = out.replace(from.as_str(), to);
            }
        }
        hide_hex64(&out)
    }

    fn v(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.s(s)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.v(x)).collect()),
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, x)| (self.s(k), self.v(x))).collect())
            }
            other => other.clone(),
        }
    }
}

/// Any 64-hex-digit run left after the known container ids were replaced is an id the engine generated
/// at random (anonymous volume names and their paths): it differs on every run, of either tool.
fn hide_hex64(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        let run = b[i..]
            .iter()
            .take_while(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
            .count();
        if run == 64 {
            out.push_str("<random-id>");
            i += 64;
        } else if run > 0 {
            out.push_str(&s[i..i + run]);
            i += run;
        } else {
            let ch = s[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Empty collections and absent values are the same to the engine (it stores whatever the client sent:
/// `null`, `[]` or `{}` for "none"), so they compare equal.
fn canon(v: Value) -> Value {
    match v {
        Value::Array(a) if a.is_empty() => Value::Null,
        Value::Object(m) if m.is_empty() => Value::Null,
        other => other,
    }
}

/// An unordered list (capabilities, security options, extra hosts, …), sorted.
fn set(v: &Value) -> Value {
    match v.as_array() {
        Some(a) => {
            let mut s: Vec<String> = a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| x.to_string())
                })
                .collect();
            s.sort();
            s.dedup();
            json!(s)
        }
        None => v.clone(),
    }
}

fn own_label(k: &str) -> bool {
    k.starts_with("com.docker.compose.") || k.starts_with("io.berth.")
}

/// Labels minus the tools' own.
fn user_labels(v: &Value) -> Value {
    let m: Map<String, Value> = v
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !own_label(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    Value::Object(m)
}

/// One tool's objects: key (`<service>-<n>`, `network <name>`, `volume <name>`) → field → value (compact
/// JSON of the normalised value).
#[derive(Default, Clone, Debug)]
struct Snapshot {
    objects: BTreeMap<String, BTreeMap<String, String>>,
    /// Container key → full id.
    ids: BTreeMap<String, String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tool {
    Compose,
    Berth,
}

impl Tool {
    fn filter(self, owner: &str) -> String {
        match self {
            Tool::Compose => format!("label=com.docker.compose.project={owner}"),
            Tool::Berth => format!("label={AGENT_LABEL}={owner}"),
        }
    }

    /// The container's service and replica number, from the tool's own labels.
    fn key(self, labels: &Value, name: &str) -> String {
        let (s, n) = match self {
            Tool::Compose => (
                "com.docker.compose.service",
                "com.docker.compose.container-number",
            ),
            Tool::Berth => ("io.berth.service", "io.berth.replica"),
        };
        match (labels[s].as_str(), labels[n].as_str()) {
            (Some(s), Some(n)) => format!("{s}-{n}"),
            _ => format!("unlabelled {name}"),
        }
    }
}

fn inspect_all(kind: &str, ids: &[String]) -> Result<Vec<Value>, String> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = vec![kind, "inspect"];
    args.extend(ids.iter().map(String::as_str));
    let out = docker_out(&args)?;
    serde_json::from_str(&out).map_err(|e| format!("docker {kind} inspect: {e}"))
}

fn container_state(c: &Value) -> String {
    let st = &c["State"];
    match st["Status"].as_str().unwrap_or("?") {
        "exited" => format!("exited({})", st["ExitCode"]),
        other => other.to_string(),
    }
}

/// Containers of a tool: raw inspect documents.
fn list_containers(tool: Tool, owner: &str) -> Result<Vec<Value>, String> {
    let ids = lines(&docker_out(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &tool.filter(owner),
    ])?);
    inspect_all("container", &ids)
}

/// Take the snapshot of what `tool` made for `owner`; `dir` is the tool's copy of the fixture, `project`
/// its project / stack name.
fn snapshot(
    tool: Tool,
    owner: &str,
    dir: &Path,
    project: &str,
    names: &RunNames,
    probes: &[String],
) -> Result<Snapshot, String> {
    let containers = list_containers(tool, owner)?;
    let filter = tool.filter(owner);
    let nets = inspect_all(
        "network",
        &lines(&docker_out(&["network", "ls", "-q", "--filter", &filter])?),
    )?;
    let vols = inspect_all(
        "volume",
        &lines(&docker_out(&["volume", "ls", "-q", "--filter", &filter])?),
    )?;

    // The temp directory differs per tool (it holds the project name, so it goes first); the project /
    // stack name is part of every object name; container ids (in `container:<id>` modes, hostnames,
    // aliases) differ per run: each becomes the container's service-replica key.
    let mut pairs = vec![
        (dir.to_string_lossy().to_string(), "<DIR>".to_string()),
        (project.to_string(), "<PROJECT>".to_string()),
    ];
    let mut keyed = Vec::new();
    for c in &containers {
        let name = c["Name"]
            .as_str()
            .unwrap_or("")
            .trim_start_matches('/')
            .to_string();
        let key = tool.key(&c["Config"]["Labels"], &name);
        let id = c["Id"].as_str().unwrap_or("").to_string();
        keyed.push((key, id, c));
    }
    for (key, id, _) in &keyed {
        pairs.push((id.clone(), format!("<id:{key}>")));
    }
    // The harness's own containers are the same for both tools; named, so a value shows which one.
    for (id, name) in &names.ext_ids {
        pairs.push((id.clone(), format!("<id:{name}>")));
    }
    for (key, id, _) in &keyed {
        if id.len() >= 12 {
            pairs.push((id[..12].to_string(), format!("<id:{key}>")));
        }
    }
    let norm = Norm {
        pairs,
        net_prefixes: names.net_prefixes.clone(),
    };

    let mut snap = Snapshot::default();
    for (key, id, c) in keyed {
        let mut fields = container_fields(c, &norm);
        if c["State"]["Status"] == "running" {
            for p in probes {
                let o = run(
                    &mut docker_cmd(&["exec", &id, "sh", "-c", p]),
                    DOCKER_DEADLINE,
                )?;
                let v = json!({
                    "exit": o.status.code(),
                    "stdout": stdout(&o).trim_end(),
                    "stderr": stderr(&o).trim_end(),
                });
                fields.insert(format!("probe `{p}`"), norm.v(&v).to_string());
            }
        }
        snap.ids.insert(key.clone(), id);
        if snap.objects.insert(key.clone(), fields).is_some() {
            return Err(format!("two containers of {owner} have the key {key}"));
        }
    }
    for n in &nets {
        let name = norm.s(n["Name"].as_str().unwrap_or(""));
        snap.objects
            .insert(format!("network {name}"), network_fields(n, &norm));
    }
    for v in &vols {
        let name = norm.s(v["Name"].as_str().unwrap_or(""));
        snap.objects
            .insert(format!("volume {name}"), volume_fields(v, &norm));
    }
    Ok(snap)
}

struct Fields<'a> {
    map: BTreeMap<String, String>,
    norm: &'a Norm,
}

impl Fields<'_> {
    fn put(&mut self, name: &str, v: Value) {
        let v = self.norm.v(&canon(v));
        self.map.insert(name.to_string(), v.to_string());
    }
}

fn container_fields(c: &Value, norm: &Norm) -> BTreeMap<String, String> {
    let cfg = &c["Config"];
    let hc = &c["HostConfig"];
    let mut f = Fields {
        map: BTreeMap::new(),
        norm,
    };
    f.put(
        "name",
        json!(c["Name"].as_str().unwrap_or("").trim_start_matches('/')),
    );
    f.put("state", json!(container_state(c)));
    f.put("image", cfg["Image"].clone());
    f.put("command", cfg["Cmd"].clone());
    f.put("entrypoint", cfg["Entrypoint"].clone());
    f.put("env", set(&cfg["Env"]));
    f.put("user", cfg["User"].clone());
    f.put("working_dir", cfg["WorkingDir"].clone());
    f.put("hostname", cfg["Hostname"].clone());
    f.put("domainname", cfg["Domainname"].clone());
    f.put("tty", cfg["Tty"].clone());
    f.put("stdin_open", cfg["OpenStdin"].clone());
    f.put("stop_signal", cfg["StopSignal"].clone());
    f.put("stop_timeout", cfg["StopTimeout"].clone());
    f.put("mac_address", cfg["MacAddress"].clone());
    f.put("labels", user_labels(&cfg["Labels"]));
    // The engine leaves out zero durations and counts; a missing one and 0 both mean "engine default".
    let hcheck = &cfg["Healthcheck"];
    f.put(
        "healthcheck",
        if hcheck.is_null() {
            Value::Null
        } else {
            let n = |k: &str| hcheck[k].as_i64().unwrap_or(0);
            json!({
                "test": hcheck["Test"],
                "interval": n("Interval"),
                "timeout": n("Timeout"),
                "start_period": n("StartPeriod"),
                "start_interval": n("StartInterval"),
                "retries": n("Retries"),
            })
        },
    );
    // A port without a protocol is TCP to the engine (`nat.Port.Proto()`), so `3000` and `3000/tcp` are
    // one exposed port (Compose sends both when a port is in `expose` and in `ports`; the engine keeps
    // both keys). A range key (`4000-4001/udp`) is left as it is: the engine does not expand it.
    let exposed: Vec<String> = cfg["ExposedPorts"]
        .as_object()
        .map(|m| {
            m.keys()
                .map(|k| {
                    if k.contains('/') {
                        k.clone()
                    } else {
                        format!("{k}/tcp")
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    f.put("exposed_ports", set(&json!(exposed)));
    f.put("port_bindings", port_bindings(&hc["PortBindings"]));
    // The engine treats an empty restart policy name as "no" (it is what `docker run` sends by default).
    let rp = &hc["RestartPolicy"];
    let rp_name = match rp["Name"].as_str().unwrap_or("") {
        "" => "no",
        other => other,
    };
    f.put(
        "restart",
        json!({"name": rp_name, "max_retries": rp["MaximumRetryCount"]}),
    );
    f.put("cap_add", capabilities(&hc["CapAdd"]));
    f.put("cap_drop", capabilities(&hc["CapDrop"]));
    let devices: Vec<String> = hc["Devices"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    format!(
                        "{}:{}:{}",
                        d["PathOnHost"].as_str().unwrap_or(""),
                        d["PathInContainer"].as_str().unwrap_or(""),
                        d["CgroupPermissions"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    f.put("devices", set(&json!(devices)));
    for (name, k) in [
        ("memory", "Memory"),
        ("memory_reservation", "MemoryReservation"),
        ("memory_swap", "MemorySwap"),
        ("nano_cpus", "NanoCpus"),
        ("cpu_shares", "CpuShares"),
        ("cpu_period", "CpuPeriod"),
        ("cpu_quota", "CpuQuota"),
        ("cpuset_cpus", "CpusetCpus"),
        ("pids_limit", "PidsLimit"),
        ("oom_kill_disable", "OomKillDisable"),
        ("oom_score_adj", "OomScoreAdj"),
        ("shm_size", "ShmSize"),
        ("device_cgroup_rules", "DeviceCgroupRules"),
        ("sysctls", "Sysctls"),
        ("tmpfs", "Tmpfs"),
        ("pid_mode", "PidMode"),
        ("ipc_mode", "IpcMode"),
        ("userns_mode", "UsernsMode"),
        ("dns", "Dns"),
        ("dns_search", "DnsSearch"),
        ("dns_options", "DnsOptions"),
        ("init", "Init"),
        ("privileged", "Privileged"),
        ("read_only", "ReadonlyRootfs"),
        ("runtime", "Runtime"),
        ("network_mode", "NetworkMode"),
        ("memory_swappiness", "MemorySwappiness"),
        ("cpu_count", "CpuCount"),
        ("cpu_percent", "CpuPercent"),
        ("cpu_rt_period", "CpuRealtimePeriod"),
        ("cpu_rt_runtime", "CpuRealtimeRuntime"),
        ("cgroup_parent", "CgroupParent"),
        ("cgroupns_mode", "CgroupnsMode"),
        ("uts_mode", "UTSMode"),
        ("isolation", "Isolation"),
        ("blkio_weight", "BlkioWeight"),
        ("blkio_weight_device", "BlkioWeightDevice"),
        ("blkio_device_read_bps", "BlkioDeviceReadBps"),
        ("blkio_device_write_bps", "BlkioDeviceWriteBps"),
        ("blkio_device_read_iops", "BlkioDeviceReadIOps"),
        ("blkio_device_write_iops", "BlkioDeviceWriteIOps"),
    ] {
        f.put(name, hc[k].clone());
    }
    let mut ulimits: Vec<Value> = hc["Ulimits"].as_array().cloned().unwrap_or_default();
    ulimits.sort_by_key(|u| u["Name"].as_str().unwrap_or("").to_string());
    f.put("ulimits", json!(ulimits));
    f.put(
        "log_config",
        json!({"type": hc["LogConfig"]["Type"], "config": canon(hc["LogConfig"]["Config"].clone())}),
    );
    f.put("security_opt", set(&hc["SecurityOpt"]));
    f.put("group_add", set(&hc["GroupAdd"]));
    f.put("extra_hosts", set(&hc["ExtraHosts"]));
    f.put("mounts", mounts(c));
    f.put("networks", attachments(c));
    f.map
}

/// Capability names as a set. The engine stores the names as the client sent them but reads them
/// case-insensitively with an optional `CAP_` prefix (`NormalizeLegacyCapabilities`): `net_admin`,
/// `NET_ADMIN` and `CAP_NET_ADMIN` are one capability.
fn capabilities(v: &Value) -> Value {
    let Some(a) = v.as_array() else {
        return v.clone();
    };
    let names: Vec<Value> = a
        .iter()
        .map(|c| {
            let c = c.as_str().unwrap_or("").to_ascii_uppercase();
            json!(if c == "ALL" || c.starts_with("CAP_") {
                c
            } else {
                format!("CAP_{c}")
            })
        })
        .collect();
    set(&json!(names))
}

/// `HostConfig.PortBindings`: container port → sorted `host_ip:host_port` (an empty host ip and a missing
/// one both mean every interface).
fn port_bindings(v: &Value) -> Value {
    let Some(m) = v.as_object() else {
        return Value::Null;
    };
    let mut out = Map::new();
    for (port, bindings) in m {
        let mut b: Vec<String> = bindings
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        format!(
                            "{}:{}",
                            x["HostIp"].as_str().unwrap_or(""),
                            x["HostPort"].as_str().unwrap_or("")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        b.sort();
        out.insert(port.clone(), json!(b));
    }
    Value::Object(out)
}

/// The mounts the container has (`.Mounts`, whatever API created them: `Binds` or `Mounts`), with the
/// options that only the create request shows (volume nocopy, tmpfs size and mode), sorted by destination.
/// `Mode` is left out: it echoes the `Binds` string (`ro`, `rw`, `z`) and is empty for the `Mounts` API,
/// while `RW` and `Propagation` carry its meaning for both.
fn mounts(c: &Value) -> Value {
    let hc = &c["HostConfig"];
    let requested: BTreeMap<String, &Value> = hc["Mounts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| (m["Target"].as_str().unwrap_or("").to_string(), m))
                .collect()
        })
        .unwrap_or_default();
    let bind_opts: BTreeMap<String, Vec<String>> = hc["Binds"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|b| b.as_str())
                .filter_map(|b| {
                    let parts: Vec<&str> = b.split(':').collect();
                    (parts.len() >= 2).then(|| {
                        (
                            parts[1].to_string(),
                            parts
                                .get(2)
                                .map(|o| o.split(',').map(String::from).collect())
                                .unwrap_or_default(),
                        )
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out: Vec<Value> = Vec::new();
    let mut seen = BTreeSet::new();
    for m in c["Mounts"].as_array().cloned().unwrap_or_default() {
        let dst = m["Destination"].as_str().unwrap_or("").to_string();
        let req = requested.get(&dst);
        let nocopy = req.is_some_and(|r| r["VolumeOptions"]["NoCopy"] == json!(true))
            || bind_opts
                .get(&dst)
                .is_some_and(|o| o.iter().any(|x| x == "nocopy"));
        let mut o = json!({
            "type": m["Type"],
            "source": m["Source"],
            "destination": dst,
            "rw": m["RW"],
            "propagation": m["Propagation"],
            "nocopy": nocopy,
        });
        if m["Type"] == "volume" {
            o["name"] = m["Name"].clone();
            o["driver"] = m["Driver"].clone();
        }
        if let Some(t) = req.map(|r| &r["TmpfsOptions"]).filter(|t| !t.is_null()) {
            o["tmpfs"] = t.clone();
        }
        seen.insert(dst);
        out.push(o);
    }
    // tmpfs mounts of the `Mounts` API are not listed in `.Mounts` by every engine version.
    for (dst, r) in &requested {
        if r["Type"] == "tmpfs" && !seen.contains(dst) {
            out.push(json!({
                "type": "tmpfs",
                "destination": dst,
                "rw": r["ReadOnly"] != json!(true),
                "tmpfs": canon(r["TmpfsOptions"].clone()),
            }));
        }
    }
    out.sort_by_key(|m| m["destination"].as_str().unwrap_or("").to_string());
    json!(out)
}

/// Network attachments: network → aliases (as a set, minus the container's id and short id, which the
/// engine adds by itself), the configured (not the assigned) IPv4/IPv6 addresses, links, driver options.
fn attachments(c: &Value) -> Value {
    let id = c["Id"].as_str().unwrap_or("");
    let short = &id[..id.len().min(12)];
    let mut out = Map::new();
    if let Some(m) = c["NetworkSettings"]["Networks"].as_object() {
        for (name, ep) in m {
            let aliases: Vec<Value> = ep["Aliases"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|x| x.as_str() != Some(id) && x.as_str() != Some(short))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            let ipam = &ep["IPAMConfig"];
            out.insert(
                name.clone(),
                json!({
                    "aliases": canon(set(&json!(aliases))),
                    "ipv4_address": ipam["IPv4Address"].as_str().unwrap_or(""),
                    "ipv6_address": ipam["IPv6Address"].as_str().unwrap_or(""),
                    "links": canon(ep["Links"].clone()),
                    "driver_opts": canon(ep["DriverOpts"].clone()),
                }),
            );
        }
    }
    Value::Object(out)
}

fn network_fields(n: &Value, norm: &Norm) -> BTreeMap<String, String> {
    let mut f = Fields {
        map: BTreeMap::new(),
        norm,
    };
    f.put("name", n["Name"].clone());
    f.put("driver", n["Driver"].clone());
    f.put("options", n["Options"].clone());
    f.put("internal", n["Internal"].clone());
    f.put("attachable", n["Attachable"].clone());
    f.put("enable_ipv6", n["EnableIPv6"].clone());
    f.put("labels", user_labels(&n["Labels"]));
    // A subnet the fixture configured is one of the prefixes the harness handed out; any other was picked
    // by the engine from its default pools (the next free one, so it differs between the tools).
    let config: Vec<Value> = n["IPAM"]["Config"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut c| {
            let subnet = c["Subnet"].as_str().unwrap_or("");
            if !norm
                .net_prefixes
                .iter()
                .any(|p| subnet.starts_with(p.as_str()))
            {
                c["Subnet"] = json!("<engine-assigned>");
                if c.get("Gateway").is_some() {
                    c["Gateway"] = json!("<engine-assigned>");
                }
            }
            canon(c)
        })
        .collect();
    f.put(
        "ipam",
        json!({
            "driver": n["IPAM"]["Driver"],
            "options": canon(n["IPAM"]["Options"].clone()),
            "config": canon(json!(config)),
        }),
    );
    f.map
}

fn volume_fields(v: &Value, norm: &Norm) -> BTreeMap<String, String> {
    let mut f = Fields {
        map: BTreeMap::new(),
        norm,
    };
    f.put("name", v["Name"].clone());
    f.put("driver", v["Driver"].clone());
    f.put("options", v["Options"].clone());
    f.put("labels", user_labels(&v["Labels"]));
    f.map
}

// ---------------------------------------------------------------------------------------------------
// Running one fixture

#[derive(Debug, Clone)]
struct Reapply {
    ok: bool,
    detail: String,
}

#[derive(Debug, Clone)]
struct BerthRun {
    /// `Err(message)` when `berth apply` failed (exit code, stdout, stderr).
    apply: Result<(), String>,
    snapshot: Option<Snapshot>,
    reapply: Option<Reapply>,
}

#[derive(Debug, Clone)]
struct FixtureResult {
    name: String,
    /// Problems of the harness or of the fixture itself (Compose refused it, a cleanup failed): never a
    /// conformance measurement, always a test failure.
    errors: Vec<String>,
    compose: Option<Snapshot>,
    berth: Option<BerthRun>,
    seconds: f64,
}

/// `(name, id)` of every container an agent owns.
fn owned_ids(agent: &str) -> Result<BTreeSet<(String, String)>, String> {
    let out = docker_out(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &format!("label={AGENT_LABEL}={agent}"),
        "--format",
        "{{.Names}}\t{{.ID}}",
    ])?;
    Ok(lines(&out)
        .into_iter()
        .map(|l| {
            let (n, i) = l.split_once('\t').unwrap_or((&l, ""));
            (n.to_string(), i.to_string())
        })
        .collect())
}

fn create_extra(extra: &Extra) -> Result<(), String> {
    for (tag, dockerfile) in &extra.images {
        let ctx = tempfile::Builder::new()
            .prefix("berth-conformance-image-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        std::fs::write(ctx.path().join("Dockerfile"), dockerfile).map_err(|e| e.to_string())?;
        let dir = ctx.path().to_string_lossy().to_string();
        let o = run(
            docker_cmd(&["build", "-q", "-t", tag, &dir]).env("DOCKER_BUILDKIT", "0"),
            TOOL_DEADLINE,
        )?;
        if !o.status.success() {
            return Err(format!("docker build -t {tag}: {}", show(&o)));
        }
    }
    for n in &extra.networks {
        docker_out(&["network", "create", n])?;
    }
    for v in &extra.volumes {
        docker_out(&["volume", "create", v])?;
    }
    for c in &extra.containers {
        docker_out(&["run", "-d", "--name", c, IMAGE, "sh", "-c", IDLE_SH])?;
    }
    Ok(())
}

fn run_fixture(fx: &Fixture) -> FixtureResult {
    let start = Instant::now();
    let mut res = FixtureResult {
        name: fx.name.clone(),
        errors: Vec::new(),
        compose: None,
        berth: None,
        seconds: 0.0,
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_fixture_inner(fx, &mut res)
    }));
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => res.errors.push(e),
        Err(p) => res.errors.push(format!(
            "harness panicked: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    }
    res.seconds = start.elapsed().as_secs_f64();
    res
}

fn run_fixture_inner(fx: &Fixture, res: &mut FixtureResult) -> Result<(), String> {
    let mut names = RunNames::new(&fx.name);
    let cmdline = compose_cmd()?;
    let file = compose_file(&fx.dir).ok_or("no compose file")?;
    let file_name = file.file_name().map(PathBuf::from).unwrap_or_default();
    let extra = read_extra(&file)?;
    let tmp = tempfile::Builder::new()
        .prefix("berth-conformance-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let root = tmp.path().canonicalize().map_err(|e| e.to_string())?;
    // A fixture with a top-level `name:` runs from directories named differently from the project, and
    // Compose without `-p`: the name can only come from the file.
    let suffix = if extra.has_name { "-dir" } else { "" };
    let dir1 = root
        .join("compose")
        .join(format!("{}{suffix}", names.cproj));
    let dir2 = root.join("berth").join(format!("{}{suffix}", names.bstack));
    copy_fixture(&fx.dir, &dir1, &names.subst(&names.cproj)).map_err(|e| e.to_string())?;
    copy_fixture(&fx.dir, &dir2, &names.subst(&names.bstack)).map_err(|e| e.to_string())?;
    let extra = read_extra(&dir1.join(&file_name))?;
    let probes = extra.probes.clone();

    let mut cleanup = Cleanup {
        compose: Some((cmdline.clone(), names.cproj.clone(), dir1.clone())),
        agent: names.bstack.clone(),
        extra: Extra::default(),
    };
    cleanup.extra = Extra {
        networks: extra.networks.clone(),
        volumes: extra.volumes.clone(),
        containers: extra.containers.clone(),
        images: extra.images.clone(),
        ..Extra::default()
    };
    create_extra(&extra)?;
    for c in &extra.containers {
        let id = docker_out(&["container", "inspect", "--format", "{{.Id}}", c])?;
        names.ext_ids.push((id.trim().to_string(), c.clone()));
    }

    // Docker Compose.
    let dir1_s = dir1.to_string_lossy().to_string();
    let mut args: Vec<&str> = Vec::new();
    if !extra.has_name {
        args.extend(["-p", names.cproj.as_str()]);
    }
    // `up -d` waits for the depends_on conditions itself. (`--wait` is not used: it fails on a service
    // whose healthcheck sets only options, one of the forms the corpus covers.)
    args.extend(["--project-directory", &dir1_s, "up", "-d"]);
    let up = run(&mut compose(&cmdline, &args), TOOL_DEADLINE)?;
    if up.status.success() {
        settle(Tool::Compose, &names.cproj)?;
        match snapshot(
            Tool::Compose,
            &names.cproj,
            &dir1,
            &names.cproj,
            &names,
            &probes,
        ) {
            Ok(s) => res.compose = Some(s),
            Err(e) => res
                .errors
                .push(format!("snapshot of Compose's objects: {e}")),
        }
    } else {
        res.errors.push(format!(
            "the fixture is broken: `docker compose up` failed: {}",
            show(&up)
        ));
    }
    // Compose's objects go before berth's come (same host ports, addresses, container names).
    cleanup.compose_down()?;

    // berth.
    let apply = berth_apply(&dir2, &names.bstack)?;
    let mut b = BerthRun {
        apply: Ok(()),
        snapshot: None,
        reapply: None,
    };
    if !apply.status.success() {
        b.apply = Err(show(&apply));
        res.berth = Some(b);
        return Ok(());
    }
    // Wait (with a deadline) until berth's containers reach the states Compose's had: one-shot
    // containers may still be running right after `berth apply`.
    if let Some(cs) = &res.compose {
        let want: BTreeMap<String, String> = cs
            .objects
            .iter()
            .filter_map(|(k, f)| f.get("state").map(|s| (k.clone(), s.clone())))
            .collect();
        let deadline = Instant::now() + SETTLE_DEADLINE;
        loop {
            let have: BTreeMap<String, String> = list_containers(Tool::Berth, &names.bstack)?
                .iter()
                .map(|c| {
                    let name = c["Name"].as_str().unwrap_or("").to_string();
                    (
                        Tool::Berth.key(&c["Config"]["Labels"], &name),
                        json!(container_state(c)).to_string(),
                    )
                })
                .collect();
            let settled = want.iter().all(|(k, s)| have.get(k).is_none_or(|h| h == s));
            if settled || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    b.snapshot = Some(snapshot(
        Tool::Berth,
        &names.bstack,
        &dir2,
        &names.bstack,
        &names,
        &probes,
    )?);

    // Apply again: nothing may be recreated.
    let before = owned_ids(&names.bstack)?;
    let again = berth_apply(&dir2, &names.bstack)?;
    let after = owned_ids(&names.bstack)?;
    let mut problems = Vec::new();
    if !again.status.success() {
        problems.push("the second `berth apply` failed".to_string());
    }
    if !stdout(&again).contains("up to date") {
        problems.push("the second `berth apply` did not say `up to date`".to_string());
    }
    if before != after {
        let gone: Vec<_> = before.difference(&after).map(|(n, _)| n.clone()).collect();
        let new: Vec<_> = after.difference(&before).map(|(n, _)| n.clone()).collect();
        problems.push(format!(
            "containers changed: replaced or removed {gone:?}, new {new:?}"
        ));
    }
    b.reapply = Some(Reapply {
        ok: problems.is_empty(),
        detail: if problems.is_empty() {
            format!("{} container(s) kept", after.len())
        } else {
            format!("{}\n{}", problems.join("; "), show(&again))
        },
    });
    res.berth = Some(b);
    drop(cleanup);
    drop(tmp);
    Ok(())
}

/// Wait (with a deadline) until no container of `owner` is still being created or restarting. A
/// container that keeps restarting is snapshotted as it is when the deadline passes.
fn settle(tool: Tool, owner: &str) -> Result<(), String> {
    let deadline = Instant::now() + SETTLE_DEADLINE;
    loop {
        let busy = list_containers(tool, owner)?.iter().any(|c| {
            matches!(
                c["State"]["Status"].as_str(),
                Some("created" | "restarting")
            )
        });
        if !busy || Instant::now() > deadline {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The corpus, run once per test binary, a few fixtures at a time.
fn corpus() -> &'static Vec<FixtureResult> {
    static RESULTS: OnceLock<Vec<FixtureResult>> = OnceLock::new();
    RESULTS.get_or_init(|| {
        let fx = fixtures();
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<FixtureResult>> = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..WORKERS.min(fx.len()) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(f) = fx.get(i) else { break };
                    let r = run_fixture(f);
                    results.lock().unwrap_or_else(|e| e.into_inner()).push(r);
                });
            }
        });
        let mut v = results.into_inner().unwrap_or_else(|e| e.into_inner());
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    })
}

// ---------------------------------------------------------------------------------------------------
// Comparison and the known-differences table

#[derive(Debug, Clone, PartialEq, Eq)]
struct Difference {
    fixture: String,
    object: String,
    field: String,
    compose: String,
    berth: String,
}

#[derive(Debug, Default)]
struct Tally {
    compared: usize,
    equal: usize,
}

/// Compare one fixture's snapshots. A fixture berth refused counts every field Compose produced as
/// different and shows as one `apply` difference; an object only one tool made counts all its fields as
/// different and shows as one `exists` difference.
fn compare(r: &FixtureResult) -> (Tally, Vec<Difference>) {
    let mut t = Tally::default();
    let mut diffs = Vec::new();
    let Some(c) = &r.compose else {
        return (t, diffs);
    };
    let d = |object: &str, field: &str, compose: String, berth: String| Difference {
        fixture: r.name.clone(),
        object: object.to_string(),
        field: field.to_string(),
        compose,
        berth,
    };
    let b = match &r.berth {
        Some(BerthRun {
            apply: Ok(()),
            snapshot: Some(b),
            ..
        }) => b,
        other => {
            t.compared = c.objects.values().map(|f| f.len()).sum();
            let why = match other {
                Some(BerthRun { apply: Err(e), .. }) => format!(
                    "{}: {}",
                    if refused(e) { "refused" } else { "failed" },
                    first_error_line(e)
                ),
                _ => "no snapshot".to_string(),
            };
            diffs.push(d("-", "apply", "up".into(), why));
            return (t, diffs);
        }
    };
    let keys: BTreeSet<&String> = c.objects.keys().chain(b.objects.keys()).collect();
    for k in keys {
        match (c.objects.get(k), b.objects.get(k)) {
            (Some(cf), Some(bf)) => {
                let fields: BTreeSet<&String> = cf.keys().chain(bf.keys()).collect();
                for f in fields {
                    t.compared += 1;
                    let cv = cf.get(f).cloned().unwrap_or_else(|| "<absent>".into());
                    let bv = bf.get(f).cloned().unwrap_or_else(|| "<absent>".into());
                    if cv == bv {
                        t.equal += 1;
                    } else {
                        diffs.push(d(k, f, cv, bv));
                    }
                }
            }
            (Some(cf), None) => {
                t.compared += cf.len();
                diffs.push(d(k, "exists", "yes".into(), "no".into()));
            }
            (None, Some(bf)) => {
                t.compared += bf.len();
                diffs.push(d(k, "exists", "no".into(), "yes".into()));
            }
            (None, None) => {}
        }
    }
    (t, diffs)
}

/// Whether `berth apply` refused the directory (a render problem: nothing was done) rather than failed
/// on the engine.
fn refused(shown: &str) -> bool {
    shown.contains("berth: nothing changed")
}

/// The first line of berth's stderr that names a problem (for the one-line `apply` difference).
fn first_error_line(shown: &str) -> String {
    let err = shown.split("--- stderr\n").nth(1).unwrap_or(shown);
    err.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .chars()
        .take(160)
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Known {
    fixture: String,
    field: String,
    reason: String,
}

/// Rows `| fixture | field | reason |` of the table under the heading `### Known differences from Docker
/// Compose` (none when the heading is missing). The header and separator rows are skipped; backticks
/// around a cell are ignored.
fn known_differences(readme: &str) -> Vec<Known> {
    let mut rows = Vec::new();
    let mut in_section = false;
    let mut in_table = false;
    for line in readme.lines() {
        let l = line.trim();
        if l.starts_with('#') {
            if in_section {
                break;
            }
            in_section = l == KNOWN_HEADING;
            continue;
        }
        if !in_section {
            continue;
        }
        if !l.starts_with('|') {
            if in_table {
                break;
            }
            continue;
        }
        in_table = true;
        let cells: Vec<String> = l
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().trim_matches('`').trim().to_string())
            .collect();
        if cells.len() < 2 {
            continue;
        }
        let separator = cells
            .iter()
            .all(|c| !c.is_empty() && c.chars().all(|ch| matches!(ch, '-' | ':' | ' ')));
        let header =
            cells[0].eq_ignore_ascii_case("fixture") && cells[1].eq_ignore_ascii_case("field");
        if separator || header {
            continue;
        }
        rows.push(Known {
            fixture: cells[0].clone(),
            field: cells[1].clone(),
            reason: cells.get(2).cloned().unwrap_or_default(),
        });
    }
    rows
}

fn listed(k: &Known, d: &Difference) -> bool {
    (k.fixture == "*" || k.fixture == d.fixture) && k.field == d.field
}

/// Differences not listed, and listed rows that matched nothing (among the fixtures that ran).
fn judge<'a>(
    diffs: &[Difference],
    known: &'a [Known],
    ran: &BTreeSet<String>,
    all_ran: bool,
) -> (Vec<Difference>, Vec<&'a Known>) {
    let unlisted = diffs
        .iter()
        .filter(|d| !known.iter().any(|k| listed(k, d)))
        .cloned()
        .collect();
    let stale = known
        .iter()
        .filter(|k| {
            let judged = if k.fixture == "*" {
                all_ran
            } else {
                ran.contains(&k.fixture)
            };
            judged && !diffs.iter().any(|d| listed(k, d))
        })
        .collect();
    (unlisted, stale)
}

fn render_table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter(|r| i + 1 < r.len())
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 < r.len() {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}…")
    }
}

// ---------------------------------------------------------------------------------------------------
// Tests

#[test]
fn conformance_corpus_matches_compose() {
    let results = corpus();
    assert!(
        !results.is_empty(),
        "no fixture in {}",
        fixtures_root().display()
    );
    let readme = std::fs::read_to_string(manifest_dir().join("README.md")).expect("README.md");
    let known = known_differences(&readme);

    let mut table = vec![vec![
        "fixture".to_string(),
        "fields_compared".into(),
        "fields_equal".into(),
        "differences".into(),
        "seconds".into(),
    ]];
    let mut all = Vec::new();
    let (mut tc, mut te) = (0, 0);
    for r in results {
        let (t, d) = compare(r);
        let status = if !r.errors.is_empty() {
            "  (harness error)"
        } else if let Some(BerthRun { apply: Err(e), .. }) = &r.berth {
            if refused(e) {
                "  (berth refused)"
            } else {
                "  (berth apply failed)"
            }
        } else {
            ""
        };
        table.push(vec![
            r.name.clone(),
            t.compared.to_string(),
            t.equal.to_string(),
            format!("{}{status}", t.compared - t.equal),
            format!("{:.0}", r.seconds),
        ]);
        tc += t.compared;
        te += t.equal;
        all.extend(d);
    }
    table.push(vec![
        "TOTAL".into(),
        tc.to_string(),
        te.to_string(),
        (tc - te).to_string(),
        String::new(),
    ]);
    println!(
        "\n===== Compose conformance =====\n{}",
        render_table(&table)
    );

    let mut lines_out = vec![vec![
        "fixture".to_string(),
        "container".into(),
        "field".into(),
        "compose=".into(),
        "berth=".into(),
    ]];
    for d in &all {
        let mark = if known.iter().any(|k| listed(k, d)) {
            " (known)"
        } else {
            ""
        };
        lines_out.push(vec![
            d.fixture.clone(),
            d.object.clone(),
            format!("{}{mark}", d.field),
            format!("compose={}", short(&d.compose, 400)),
            format!("berth={}", short(&d.berth, 400)),
        ]);
    }
    println!("===== Differences =====\n{}", render_table(&lines_out));

    // BERTH_CONFORMANCE_DUMP=1: every compared value of both tools, for debugging the harness.
    if std::env::var_os("BERTH_CONFORMANCE_DUMP").is_some() {
        for r in results {
            let b = r.berth.as_ref().and_then(|b| b.snapshot.as_ref());
            for (tool, snap) in [("compose", r.compose.as_ref()), ("berth", b)] {
                for (k, fields) in snap.map(|s| &s.objects).into_iter().flatten() {
                    for (f, v) in fields {
                        println!("{}  {tool}  {k}  {f}  {v}", r.name);
                    }
                }
            }
        }
    }
    for r in results {
        if let Some(BerthRun { apply: Err(e), .. }) = &r.berth {
            println!("===== berth apply of fixture {} failed =====\n{e}", r.name);
        }
    }

    let ran: BTreeSet<String> = results.iter().map(|r| r.name.clone()).collect();
    let all_ran = std::env::var("BERTH_CONFORMANCE_FIXTURES")
        .map(|s| s.trim().is_empty())
        .unwrap_or(true);
    let (unlisted, stale) = judge(&all, &known, &ran, all_ran);
    let errors: Vec<String> = results
        .iter()
        .flat_map(|r| {
            r.errors
                .iter()
                .map(move |e| format!("fixture {}: {e}", r.name))
        })
        .collect();
    for e in &errors {
        println!("===== HARNESS ERROR =====\n{e}");
    }
    let mut fail = Vec::new();
    if !errors.is_empty() {
        fail.push(format!(
            "{} harness/fixture error(s) (see above)",
            errors.len()
        ));
    }
    if !unlisted.is_empty() {
        let mut fields: BTreeMap<(String, String), usize> = BTreeMap::new();
        for d in &unlisted {
            *fields
                .entry((d.fixture.clone(), d.field.clone()))
                .or_default() += 1;
        }
        fail.push(format!(
            "{} difference(s) not listed under `{KNOWN_HEADING}` in README.md; rows that would list them:\n{}",
            unlisted.len(),
            fields
                .keys()
                .map(|(f, k)| format!("| {f} | {k} | … |"))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    if !stale.is_empty() {
        fail.push(format!(
            "{} README row(s) list a difference that no longer occurs:\n{}",
            stale.len(),
            stale
                .iter()
                .map(|k| format!("| {} | {} | {} |", k.fixture, k.field, k.reason))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    assert!(fail.is_empty(), "{}", fail.join("\n\n"));
}

#[test]
fn reapply_never_recreates() {
    let results = corpus();
    let mut rows = vec![vec![
        "fixture".to_string(),
        "reapply".into(),
        "detail".into(),
    ]];
    let mut failed = Vec::new();
    for r in results {
        let (state, detail) = match &r.berth {
            None => ("not run", r.errors.join("; ")),
            Some(BerthRun { apply: Err(_), .. }) => (
                "skipped",
                "the first `berth apply` failed (see the conformance test)".into(),
            ),
            Some(BerthRun { reapply: None, .. }) => ("not run", r.errors.join("; ")),
            Some(BerthRun {
                reapply: Some(re), ..
            }) => {
                if !re.ok {
                    failed.push(format!("fixture {}: {}", r.name, re.detail));
                }
                (if re.ok { "ok" } else { "FAILED" }, first_line(&re.detail))
            }
        };
        rows.push(vec![r.name.clone(), state.into(), detail]);
    }
    println!("\n===== berth apply, twice =====\n{}", render_table(&rows));
    // A fixture whose run broke off before the second apply could be judged is a harness failure.
    let broken: Vec<String> = results
        .iter()
        .filter(|r| {
            matches!(
                &r.berth,
                None | Some(BerthRun {
                    apply: Ok(()),
                    reapply: None,
                    ..
                })
            )
        })
        .map(|r| format!("fixture {}: {}", r.name, r.errors.join("; ")))
        .collect();
    assert!(
        failed.is_empty() && broken.is_empty(),
        "a second `berth apply` of an unchanged directory must say `up to date` and keep every container:\n{}",
        failed.iter().chain(&broken).cloned().collect::<Vec<_>>().join("\n\n")
    );
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

// ---------------------------------------------------------------------------------------------------
// Bad files

const BASELINE: &str = r#"services:
  web:
    image: berth-test/busybox:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    volumes:
      - data:/data
    networks: [back]
networks:
  back: {}
volumes:
  data: {}
"#;

/// Everything an agent owns on the engine: containers (name, id, state), networks, volumes.
fn owned_state(agent: &str) -> Result<String, String> {
    let filter = format!("label={AGENT_LABEL}={agent}");
    let mut c = lines(&docker_out(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &filter,
        "--format",
        "{{.Names}} {{.ID}} {{.State}}",
    ])?);
    c.sort();
    let mut n = lines(&docker_out(&[
        "network",
        "ls",
        "--filter",
        &filter,
        "--format",
        "{{.Name}}",
    ])?);
    n.sort();
    let mut v = lines(&docker_out(&[
        "volume",
        "ls",
        "--filter",
        &filter,
        "--format",
        "{{.Name}}",
    ])?);
    v.sort();
    Ok(format!(
        "containers: {c:?}\nnetworks: {n:?}\nvolumes: {v:?}"
    ))
}

struct OwnedCleanup(String);

impl Drop for OwnedCleanup {
    fn drop(&mut self) {
        let _ = remove_labelled(&format!("{AGENT_LABEL}={}", self.0));
    }
}

#[test]
fn bad_files_are_refused_with_key_file_and_line() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(bad_root())
        .expect("tests/fixtures/bad")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "only {} bad cases", cases.len());

    let pid = std::process::id();
    let stack = format!("cfbad-{pid}");
    let tmp = tempfile::Builder::new()
        .prefix("berth-bad-")
        .tempdir()
        .unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let _cleanup = OwnedCleanup(stack.clone());

    // A running stack of the same name: applying a bad directory must leave it exactly as it is.
    let base = root.join("baseline").join(&stack);
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(base.join("compose.yaml"), BASELINE).unwrap();
    let o = berth_apply(&base, &stack).unwrap();
    assert!(
        o.status.success(),
        "berth apply of the baseline stack: {}",
        show(&o)
    );
    let before = owned_state(&stack).unwrap();
    let reference = compose_cmd().ok();

    let mut rows = vec![vec![
        "case".to_string(),
        "render".into(),
        "missing in stderr".into(),
        "apply".into(),
        "compose config".into(),
    ]];
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let expect: Vec<String> = std::fs::read_to_string(case.join("expect"))
            .unwrap_or_else(|e| panic!("{}/expect: {e}", case.display()))
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect();
        assert!(
            !expect.is_empty(),
            "{}/expect lists nothing",
            case.display()
        );
        let dir = root.join(&name).join(&stack);
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(case).unwrap() {
            let e = e.unwrap();
            if e.file_name() != "expect" {
                let to = dir.join(e.file_name());
                if e.file_type().unwrap().is_dir() {
                    copy_fixture(&e.path(), &to, &[]).unwrap();
                } else {
                    std::fs::copy(e.path(), &to).unwrap();
                }
            }
        }

        let mut c = Command::new(berth_bin());
        c.arg("render").arg(&dir);
        tool_env(&mut c);
        let r = run(&mut c, TOOL_DEADLINE).unwrap();
        let err = stderr(&r);
        let missing: Vec<&String> = expect
            .iter()
            .filter(|s| !err.contains(s.as_str()))
            .collect();
        let render_ok = r.status.code() == Some(1);

        let a = berth_apply(&dir, &stack).unwrap();
        let after = owned_state(&stack).unwrap();
        let apply_ok = !a.status.success() && after == before;

        // For information: does the reference refuse the file too?
        let compose_says = match &reference {
            Some(cmd) => {
                let d = dir.to_string_lossy().to_string();
                let p = format!("cfbad-{name}-{pid}");
                match run(
                    &mut compose(cmd, &["-p", &p, "--project-directory", &d, "config", "-q"]),
                    DOCKER_DEADLINE,
                ) {
                    Ok(o) if o.status.success() => "accepts".to_string(),
                    Ok(o) => format!("refuses: {}", short(&first_line(stderr(&o).trim()), 90)),
                    Err(e) => format!("error: {}", short(&e, 60)),
                }
            }
            None => "n/a".into(),
        };

        rows.push(vec![
            name.clone(),
            if render_ok {
                "exit 1".into()
            } else {
                format!("exit {:?} (WRONG)", r.status.code())
            },
            if missing.is_empty() {
                "-".into()
            } else {
                missing
                    .iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            },
            if apply_ok {
                "refused, nothing changed".into()
            } else if a.status.success() {
                "APPLIED".into()
            } else {
                "refused, ENGINE CHANGED".into()
            },
            compose_says,
        ]);
        if !render_ok || !missing.is_empty() {
            failures.push(format!(
                "case {name}: `berth render` must exit 1 with {expect:?} in stderr; missing {missing:?}\n{}",
                show(&r)
            ));
        }
        if !apply_ok {
            failures.push(format!(
                "case {name}: `berth apply` must fail and change nothing\nbefore:\n{before}\nafter:\n{after}\n{}",
                show(&a)
            ));
        }
        if after != before {
            // Put the baseline back so the next case is judged on its own.
            let o = berth_apply(&base, &stack).unwrap();
            assert!(o.status.success(), "re-apply of the baseline: {}", show(&o));
        }
    }
    println!("\n===== bad files =====\n{}", render_table(&rows));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---------------------------------------------------------------------------------------------------
// The harness's own logic (no engine)

#[test]
fn harness_parses_known_differences_and_judges_them() {
    let readme = "# x\n\n### Known differences from Docker Compose\n\nSome text.\n\n| fixture | field | reason |\n|---|---|---|\n| `ports` | `port_bindings` | not yet |\n| * | networks | aliases |\n\nAfter.\n\n## Next\n| a | b | c |\n";
    let k = known_differences(readme);
    assert_eq!(
        k,
        vec![
            Known {
                fixture: "ports".into(),
                field: "port_bindings".into(),
                reason: "not yet".into()
            },
            Known {
                fixture: "*".into(),
                field: "networks".into(),
                reason: "aliases".into()
            },
        ]
    );
    assert!(known_differences("# no table here\n| a | b | c |\n").is_empty());
    let d = |fx: &str, field: &str| Difference {
        fixture: fx.into(),
        object: "app-1".into(),
        field: field.into(),
        compose: "1".into(),
        berth: "2".into(),
    };
    let ran: BTreeSet<String> = ["ports", "volumes"].iter().map(|s| s.to_string()).collect();
    let diffs = vec![d("volumes", "networks"), d("volumes", "mounts")];
    let (unlisted, stale) = judge(&diffs, &k, &ran, true);
    assert_eq!(unlisted, vec![d("volumes", "mounts")]);
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].fixture, "ports");
    // A row of a fixture that did not run is not judged stale.
    let only: BTreeSet<String> = ["volumes".to_string()].into();
    let (_, stale) = judge(&diffs, &k, &only, false);
    assert!(stale.is_empty());
}

#[test]
fn harness_normalises_only_what_differs_per_tool() {
    let norm = Norm {
        pairs: vec![
            ("/tmp/x/cfc-a-1".into(), "<DIR>".into()),
            ("cfc-a-1".into(), "<PROJECT>".into()),
        ],
        net_prefixes: vec![],
    };
    assert_eq!(norm.s("/tmp/x/cfc-a-1/conf"), "<DIR>/conf");
    assert_eq!(norm.s("cfc-a-1_default"), "<PROJECT>_default");
    let hex = "0123456789abcdef".repeat(4);
    assert_eq!(
        norm.s(&format!("/var/lib/docker/volumes/{hex}/_data")),
        "/var/lib/docker/volumes/<random-id>/_data"
    );
    // 63 or 65 hex digits are not an engine id.
    let not = format!("{hex}0");
    assert_eq!(norm.s(&not), not);
    assert_eq!(canon(json!([])), Value::Null);
    assert_eq!(canon(json!({})), Value::Null);
    assert_eq!(canon(json!("")), json!(""));
    assert_eq!(set(&json!(["b", "a", "b"])), json!(["a", "b"]));
    assert!(overlaps(
        (u32::from(std::net::Ipv4Addr::new(10, 211, 3, 0)), 24),
        (u32::from(std::net::Ipv4Addr::new(10, 0, 0, 0)), 8)
    ));
    assert!(!overlaps(
        (u32::from(std::net::Ipv4Addr::new(10, 211, 3, 0)), 24),
        (u32::from(std::net::Ipv4Addr::new(10, 211, 4, 0)), 24)
    ));
}
