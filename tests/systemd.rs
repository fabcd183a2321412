//! `systemd/berth.service`: it passes `systemd-analyze verify`, carries the directives the agent relies on,
//! agrees with the agent's default paths and the example config, and the binary speaks the unit's protocol
//! (READY=1 after the first cycle, WATCHDOG=1 pings, STOPPING=1, exit 78 on a bad config).
//!
//! Self-contained (std + tempfile): it does not use the shared harness in `util.rs`.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const INSTALLED_BIN: &str = "/usr/local/bin/berth";

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn unit_text() -> String {
    let path = repo_file("systemd/berth.service");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `(section, key, value)` for every assignment, in order (a key may repeat).
fn directives(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        assert!(
            !line.ends_with('\\'),
            "line {}: keep directives on one line (this parser does not join continuations)",
            n + 1
        );
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not key=value: {raw}", n + 1));
        out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
    }
    out
}

/// Every value of `section.key`, in order.
fn values(d: &[(String, String, String)], section: &str, key: &str) -> Vec<String> {
    d.iter()
        .filter(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v.clone())
        .collect()
}

/// The effective single value of `section.key` (the last one wins, as in systemd).
fn value(d: &[(String, String, String)], section: &str, key: &str) -> String {
    values(d, section, key)
        .pop()
        .unwrap_or_else(|| panic!("berth.service: [{section}] {key}= missing"))
}

/// The unit as installed, but with ExecStart= naming the freshly built binary (verify checks it exists).
fn unit_for_verify() -> String {
    let bin = env!("CARGO_BIN_EXE_berth");
    assert!(
        !bin.contains(char::is_whitespace),
        "binary path {bin:?} has whitespace"
    );
    let mut found = false;
    let text: Vec<String> = unit_text()
        .lines()
        .map(|l| match l.strip_prefix("ExecStart=") {
            Some(rest) => {
                let rest = rest.strip_prefix(INSTALLED_BIN).unwrap_or_else(|| {
                    panic!("ExecStart= does not start with {INSTALLED_BIN}: {l}")
                });
                found = true;
                format!("ExecStart={bin}{rest}")
            }
            None => l.to_string(),
        })
        .collect();
    assert!(found, "berth.service has no ExecStart=");
    text.join("\n") + "\n"
}

/// A systemd time span as used in this unit: `90s`, `2min`, `1h 30min`, `15min`, a bare number of seconds.
fn timespan(text: &str) -> Duration {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if let Ok(secs) = rest.parse::<u64>() {
        return Duration::from_secs(secs);
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits]
            .parse()
            .unwrap_or_else(|_| panic!("time span {text:?}: expected a number at {rest:?}"));
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == ' ')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "ms" | "msec" => {
                total += Duration::from_millis(n);
                0
            }
            "" | "s" | "sec" => n,
            "m" | "min" => n * 60,
            "h" | "hr" => n * 3600,
            other => panic!("time span {text:?}: unit {other:?} not understood by this test"),
        };
        total += Duration::from_secs(secs);
        rest = rest[unit_len..].trim_start();
    }
    total
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("berth.service");
    std::fs::write(&unit, unit_for_verify()).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run systemd-analyze ({e}): install systemd (scripts/test.sh does)")
        });
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{}",
        show(&out)
    );
    // verify exits 0 even for an unknown or misspelt key ("Unknown key ..., ignoring"): any message fails.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify complained:\n{}",
        show(&out)
    );
}

#[test]
fn unit_has_the_directives_the_agent_relies_on() {
    let d = directives(&unit_text());
    let has_words = |section: &str, key: &str, words: &[&str]| {
        let all = values(&d, section, key).join(" ");
        let got: Vec<&str> = all.split_whitespace().collect();
        for w in words {
            assert!(got.contains(w), "[{section}] {key}= lacks {w}: {all:?}");
        }
    };

    assert_eq!(value(&d, "Service", "Type"), "notify");
    assert_eq!(
        value(&d, "Service", "ExecStart"),
        format!(
            "{INSTALLED_BIN} agent --config {}",
            berth::config::DEFAULT_CONFIG
        )
    );
    let watchdog = value(&d, "Service", "WatchdogSec");
    let wd = timespan(&watchdog);
    assert!(
        wd >= Duration::from_secs(30) && wd <= Duration::from_secs(600),
        "WatchdogSec={watchdog}: pings come every half period; keep it between 30s and 10min"
    );
    assert_eq!(value(&d, "Service", "Restart"), "on-failure");
    has_words("Service", "RestartPreventExitStatus", &["78"]);
    assert_eq!(berth::cli::exit::CONFIG, 78);
    has_words(
        "Unit",
        "After",
        &["docker.service", "network-online.target"],
    );
    has_words(
        "Unit",
        "Wants",
        &["docker.service", "network-online.target"],
    );
    assert!(
        values(&d, "Unit", "Requires").is_empty() && values(&d, "Unit", "BindsTo").is_empty(),
        "a Docker restart must not stop the agent: use Wants=, not Requires=/BindsTo="
    );

    assert_eq!(value(&d, "Service", "StateDirectory"), "berth");
    assert_eq!(value(&d, "Service", "RuntimeDirectory"), "berth");
    assert_eq!(value(&d, "Service", "ProtectSystem"), "strict");
    for key in ["ProtectHome", "PrivateTmp", "NoNewPrivileges"] {
        assert_eq!(value(&d, "Service", key), "yes", "{key}=");
    }
    has_words(
        "Service",
        "RestrictAddressFamilies",
        &["AF_UNIX", "AF_INET", "AF_INET6"],
    );
    let mem = value(&d, "Service", "MemoryMax");
    assert!(mem.ends_with('M'), "MemoryMax={mem}: give a size in M");

    // Options that would break the agent: a private /var/lib (bind-mount sources must be real host
    // paths), no network, no hostname (the default agent_id), or Docker's socket hidden.
    for key in [
        "DynamicUser",
        "PrivateNetwork",
        "TemporaryFileSystem",
        "InaccessiblePaths",
        "BindPaths",
        "BindReadOnlyPaths",
        "IPAddressDeny",
    ] {
        assert!(
            values(&d, "Service", key).is_empty(),
            "{key}= would hide the state dir, the network or Docker's socket from the agent"
        );
    }
    for v in values(&d, "Service", "ProcSubset") {
        assert_ne!(
            v, "pid",
            "ProcSubset=pid hides /proc/sys/kernel/hostname (default agent_id)"
        );
    }
    for v in values(&d, "Service", "UMask") {
        let mask = u32::from_str_radix(&v, 8).unwrap();
        assert_eq!(
            mask & 0o004,
            0,
            "UMask={v}: checked-out files must stay world-readable for non-root containers"
        );
    }
    has_words("Install", "WantedBy", &["multi-user.target"]);
}

#[test]
fn unit_paths_match_agent_defaults_and_example_config() {
    let d = directives(&unit_text());
    // ProtectSystem=strict: only StateDirectory= and RuntimeDirectory= are writable.
    let state = PathBuf::from("/var/lib").join(value(&d, "Service", "StateDirectory"));
    let runtime = PathBuf::from("/run").join(value(&d, "Service", "RuntimeDirectory"));
    assert_eq!(Path::new(berth::config::DEFAULT_STATE_DIR), state);
    assert_eq!(
        Path::new(berth::config::DEFAULT_SOCKET).parent(),
        Some(runtime.as_path())
    );

    // The README installs config-examples/config.yaml as /etc/berth/config.yaml. Its optional keys are
    // commented out: enable them (but not tag/commit, which exclude branch) so they are checked too.
    let example = repo_file("config-examples/config.yaml");
    let text = std::fs::read_to_string(&example).unwrap();
    berth::config::parse(&text).unwrap_or_else(|e| panic!("{}: {e:?}", example.display()));
    let optional = [
        "ssh_key:",
        "known_hosts:",
        "token_file:",
        "username:",
        "auth_file:",
    ];
    let mut enabled = 0;
    let text: String = text
        .lines()
        .map(|l| {
            let body = l.trim_start();
            match body.strip_prefix("# ") {
                Some(key) if optional.iter().any(|k| key.starts_with(k)) => {
                    enabled += 1;
                    format!("{}{key}\n", &l[..l.len() - body.len()])
                }
                _ => format!("{l}\n"),
            }
        })
        .collect();
    assert_eq!(
        enabled,
        optional.len(),
        "every optional key appears commented out once"
    );
    let s = berth::config::parse(&text).unwrap_or_else(|e| {
        panic!(
            "{} with its optional keys enabled: {e:?}",
            example.display()
        )
    });
    assert!(
        s.state_dir.starts_with(&state),
        "example state_dir {} is not writable under the unit (only {} is)",
        s.state_dir.display(),
        state.display()
    );
    assert!(
        s.socket.starts_with(&runtime),
        "example socket {} is not writable under the unit (only {} is)",
        s.socket.display(),
        runtime.display()
    );
    for secret in [
        &s.source.ssh_key,
        &s.source.known_hosts,
        &s.source.token_file,
        &s.docker_auth_file,
    ]
    .into_iter()
    .flatten()
    {
        assert!(
            !secret.starts_with("/home")
                && !secret.starts_with("/root")
                && !secret.starts_with("/tmp"),
            "{} is hidden by ProtectHome=/PrivateTmp=",
            secret.display()
        );
    }
}

/// A datagram socket standing in for systemd's `$NOTIFY_SOCKET`.
struct Notify {
    sock: UnixDatagram,
    path: PathBuf,
}

impl Notify {
    fn new(dir: &Path) -> Notify {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        Notify { sock, path }
    }

    /// Messages until one contains `want` or the deadline passes; returns everything received.
    fn until(&self, want: &str, timeout: Duration) -> (bool, Vec<String>) {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (false, seen);
            }
            self.sock
                .set_read_timeout(Some(left.min(Duration::from_millis(200))))
                .unwrap();
            match self.sock.recv(&mut buf) {
                Ok(n) => {
                    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                    let hit = msg.lines().any(|l| l == want);
                    seen.push(msg);
                    if hit {
                        return (true, seen);
                    }
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("notify socket: {e}"),
            }
        }
    }
}

/// Kills the agent if a test fails while it runs.
struct Agent(Option<Child>);

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill {sig} {pid}");
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_config_exits_78_and_never_reports_ready() {
    let dir = tempfile::tempdir().unwrap();
    let notify = Notify::new(dir.path());
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "agent_id: sd-bad\nsource:\n  url: /nowhere\n  brnach: main\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["agent", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify.path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("brnach"),
        "{}",
        show(&out)
    );
    let (ready, seen) = notify.until("READY=1", Duration::from_millis(300));
    assert!(!ready, "a bad config must not report READY=1: {seen:?}");
}

/// Under systemd: READY=1 after the first cycle even when that cycle fails (an unreachable remote at boot
/// must not hold the unit in "activating" until TimeoutStartSec=), WATCHDOG=1 at half of WATCHDOG_USEC
/// while idle, and STOPPING=1 plus exit 0 on SIGTERM. Needs the Docker engine; owns nothing on it.
#[test]
fn agent_notifies_ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let notify = Notify::new(dir.path());
    let agent_id = format!("sd-notify-{}", std::process::id());
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "agent_id: {agent_id}\nsource:\n  url: {}\n  interval: 1h\n  timeout: 5s\nstate_dir: {}\nsocket: {}\n",
            dir.path().join("no-such-repo.git").display(),
            dir.path().join("state").display(),
            dir.path().join("berth.sock").display(),
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["agent", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "1000000")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("agent.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut agent = Agent(Some(child));
    let log = || std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default();

    // The first cycle: connect to Docker, fail to fetch, converge nothing. Give up early if the agent dies.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let (ready, got) = notify.until("READY=1", Duration::from_millis(500));
        seen.extend(got);
        if ready {
            break;
        }
        let exited = agent.0.as_mut().unwrap().try_wait().unwrap();
        if exited.is_some() || Instant::now() > deadline {
            panic!(
                "no READY=1 (exited: {exited:?}); got {seen:?}\n--- agent log\n{}",
                log()
            );
        }
    }

    // Pings every 500ms while idle (interval 1h): expect at least three within 3s.
    let started = Instant::now();
    let mut pings = 0;
    while pings < 3 && started.elapsed() < Duration::from_secs(3) {
        let (hit, _) = notify.until("WATCHDOG=1", Duration::from_secs(3) - started.elapsed());
        if hit {
            pings += 1;
        }
    }
    assert!(
        pings >= 3,
        "only {pings} WATCHDOG=1 in 3s with WATCHDOG_USEC=1s\n--- agent log\n{}",
        log()
    );

    signal(pid, "-TERM");
    let (stopping, seen) = notify.until("STOPPING=1", Duration::from_secs(30));
    assert!(
        stopping,
        "no STOPPING=1 after SIGTERM: {seen:?}\n--- agent log\n{}",
        log()
    );
    let st = wait_exit(agent.0.as_mut().unwrap(), Duration::from_secs(30)).unwrap_or_else(|| {
        panic!(
            "agent still running 30s after SIGTERM\n--- agent log\n{}",
            log()
        )
    });
    agent.0 = None;
    assert_eq!(
        st.code(),
        Some(0),
        "exit after SIGTERM\n--- agent log\n{}",
        log()
    );
}
