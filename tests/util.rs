//! The shared harness of the integration tests (in the style of ripgrep's `tests/util.rs`): temp Git
//! repositories made with the `git` CLI, the real `berth` binary run as an agent or as a client, and
//! helpers that ask the real Docker engine (through the `docker` CLI) what is running.
//!
//! Every test uses its own agent id, so tests run in parallel on one engine; every guard here removes,
//! when dropped (also when the test failed), only what it made: the agent's own containers, networks and
//! volumes (found by the label `io.berth.agent=<id>`), and containers a test created by name.

#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The image every test container runs (scripts/lib.sh `ensure_test_image` builds it).
pub const IMAGE: &str = "berth-test/busybox:latest";

/// A compose `command:` that idles and stops at once on SIGTERM (a plain `sleep` as PID 1 ignores it, so
/// every stop would wait for the engine's 10 s grace period).
pub const IDLE: &str = r#"["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]"#;

/// Generous deadline for anything that waits on the engine or the agent.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The owner label key.
pub const AGENT_LABEL: &str = "io.berth.agent";

/// The `berth` binary Cargo built for these tests.
pub fn berth_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth"))
}

/// Longest any single `berth` command may take before a test calls it hung (a `reconcile --wait` of a
/// big apply included).
pub const CLI_DEADLINE: Duration = Duration::from_secs(180);

/// Run `berth ARGS` to completion (killed, failing the test, after [`CLI_DEADLINE`]).
pub fn berth(args: &[&str]) -> Output {
    run_with_deadline(Command::new(berth_bin()).args(args), CLI_DEADLINE)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// `exit code, stdout, stderr` for assertion messages.
pub fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    )
}

/// Run a command that must exit by itself within `deadline`; it is killed (and the test fails) otherwise.
/// Its output is read while it runs, so a chatty command cannot block on a full pipe.
pub fn run_with_deadline(cmd: &mut Command, deadline: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|r| Box::new(r) as _));
    let err = drain(child.stderr.take().map(|r| Box::new(r) as _));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    match status {
        Some(status) => Output {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "{cmd:?} still running after {deadline:?}\n--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
    }
}

/// Poll `cond` every 50 ms until it holds; panic naming `what` after `timeout`.
/// Every regular file under `dir`, recursively (symlinks not followed), with its bytes; unreadable
/// entries are skipped. What leak tests search.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if md.is_dir() {
                stack.push(p);
            } else if md.is_file() {
                if let Ok(bytes) = std::fs::read(&p) {
                    out.push((p, bytes));
                }
            }
        }
    }
    out
}

/// The files under `dir` whose bytes hold `needle`.
pub fn files_holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|(_, b)| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .map(|(p, _)| p)
        .collect()
}

pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if cond() {
            return;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Like [`wait_until`], for a value.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let mut out = None;
    wait_until(timeout, what, || {
        out = f();
        out.is_some()
    });
    out.unwrap()
}

pub fn is_full_sha(s: &str) -> bool {
    s.len() == 40
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// A unique, valid agent id (and root stack name) for one test: `t-<name>-<pid>`, lowercase, ≤ 63 chars.
pub fn agent_id(name: &str) -> String {
    let pid = std::process::id();
    let clean: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let max = 63 - format!("t--{pid}").len();
    let clean = &clean[..clean.len().min(max)];
    format!("t-{}-{pid}", clean.trim_end_matches('-'))
}

fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir")
}

// ---------------------------------------------------------------------------------------------------
// Git

/// A bare "remote" repository and a work clone, both made with the `git` CLI.
pub struct GitRepo {
    _dir: tempfile::TempDir,
    pub bare: PathBuf,
    pub work: PathBuf,
}

fn git_in(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .output()
        .expect("run git");
    assert!(
        o.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        show(&o)
    );
    stdout(&o).trim().to_string()
}

impl GitRepo {
    pub fn new() -> GitRepo {
        let dir = tempdir("berth-git-");
        let bare = dir.path().join("remote.git");
        let work = dir.path().join("work");
        let repo = GitRepo {
            _dir: dir,
            bare,
            work,
        };
        repo.init_bare();
        std::fs::create_dir_all(&repo.work).unwrap();
        git_in(&repo.work, &["-c", "init.defaultBranch=main", "init", "-q"]);
        git_in(&repo.work, &["config", "user.name", "Berth Test"]);
        git_in(&repo.work, &["config", "user.email", "test@berth.invalid"]);
        git_in(&repo.work, &["config", "commit.gpgsign", "false"]);
        git_in(&repo.work, &["remote", "add", "origin", &repo.url()]);
        repo
    }

    fn init_bare(&self) {
        std::fs::create_dir_all(&self.bare).unwrap();
        git_in(
            &self.bare,
            &["-c", "init.defaultBranch=main", "init", "-q", "--bare"],
        );
    }

    /// `file://` URL of the bare repository.
    pub fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// Write a file of the work tree (parents created).
    pub fn write(&self, path: &str, text: &str) -> &Self {
        let p = self.work.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        self
    }

    /// Remove a file or directory of the work tree.
    pub fn remove(&self, path: &str) -> &Self {
        let p = self.work.join(path);
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
        } else {
            std::fs::remove_file(&p).unwrap();
        }
        self
    }

    /// Commit everything in the work tree; the full 40-hex id of the new commit.
    pub fn commit(&self, msg: &str) -> String {
        git_in(&self.work, &["add", "-A"]);
        git_in(&self.work, &["commit", "-q", "--allow-empty", "-m", msg]);
        git_in(&self.work, &["rev-parse", "HEAD"])
    }

    /// Push `main` to the bare repository.
    pub fn push(&self) {
        git_in(
            &self.work,
            &["push", "-q", "origin", "HEAD:refs/heads/main"],
        );
    }

    /// Commit and push; the full id of the new commit.
    pub fn commit_push(&self, msg: &str) -> String {
        let c = self.commit(msg);
        self.push();
        c
    }

    /// Delete the remote (`rm -rf` of the bare repository).
    pub fn delete_remote(&self) {
        std::fs::remove_dir_all(&self.bare).unwrap();
    }

    /// A fresh bare repository at the same path, with the work clone's `main` pushed into it.
    pub fn recreate_remote(&self) {
        self.init_bare();
        self.push();
    }
}

// ---------------------------------------------------------------------------------------------------
// Docker

/// Run `docker ARGS` to completion.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run docker")
}

/// Run `docker ARGS`, panic unless it succeeds; its trimmed stdout.
pub fn docker_ok(args: &[&str]) -> String {
    let o = docker(args);
    assert!(o.status.success(), "docker {args:?}: {}", show(&o));
    stdout(&o).trim().to_string()
}

pub fn inspect(name: &str, format: &str) -> Option<String> {
    let o = docker(&["container", "inspect", "--format", format, name]);
    o.status.success().then(|| stdout(&o).trim().to_string())
}

/// Full id of the container named `name`, if there is one.
pub fn container_id(name: &str) -> Option<String> {
    inspect(name, "{{.Id}}")
}

/// `running`, `exited`, `created`, … of the container named `name`.
pub fn container_state(name: &str) -> Option<String> {
    inspect(name, "{{.State.Status}}")
}

pub fn is_running(name: &str) -> bool {
    container_state(name).as_deref() == Some("running")
}

pub fn container_labels(name: &str) -> BTreeMap<String, String> {
    let json =
        inspect(name, "{{json .Config.Labels}}").unwrap_or_else(|| panic!("no container {name}"));
    serde_json::from_str::<Option<BTreeMap<String, String>>>(&json)
        .unwrap()
        .unwrap_or_default()
}

/// `KEY=VALUE` entries of the container's environment.
pub fn container_env(name: &str) -> Vec<String> {
    let json =
        inspect(name, "{{json .Config.Env}}").unwrap_or_else(|| panic!("no container {name}"));
    serde_json::from_str::<Option<Vec<String>>>(&json)
        .unwrap()
        .unwrap_or_default()
}

/// One container as `docker ps -a` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub id: String,
    pub name: String,
    pub state: String,
}

/// Every container (running or not) whose label `io.berth.agent` is `agent_id`, sorted by name.
pub fn owned_containers(agent_id: &str) -> Vec<Listed> {
    let filter = format!("label={AGENT_LABEL}={agent_id}");
    let out = docker_ok(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &filter,
        "--format",
        "{{.ID}}\t{{.Names}}\t{{.State}}",
    ]);
    let mut v: Vec<Listed> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split('\t');
            Listed {
                id: f.next().unwrap_or_default().to_string(),
                name: f.next().unwrap_or_default().to_string(),
                state: f.next().unwrap_or_default().to_string(),
            }
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// `docker exec NAME sh -c SCRIPT`, panics on failure; trimmed stdout.
pub fn exec(name: &str, script: &str) -> String {
    docker_ok(&["exec", name, "sh", "-c", script])
}

/// `(name, value of label KEY)` of every container owned by `agent_id`, in one `docker ps` call.
pub fn owned_label(agent_id: &str, key: &str) -> Vec<(String, String)> {
    let filter = format!("label={AGENT_LABEL}={agent_id}");
    let format = format!("{{{{.Names}}}}\t{{{{.Label \"{key}\"}}}}");
    let out = docker_ok(&["ps", "-a", "--filter", &filter, "--format", &format]);
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (n, v) = l.split_once('\t').unwrap_or((l, ""));
            (n.to_string(), v.to_string())
        })
        .collect()
}

pub fn volume_exists(name: &str) -> bool {
    docker(&["volume", "inspect", name]).status.success()
}

/// Remove every container, network and volume labelled `io.berth.agent=<agent_id>`: what berth made for
/// this id and nothing else.
pub fn remove_owned(agent_id: &str) {
    let filter = format!("label={AGENT_LABEL}={agent_id}");
    let ids = |args: &[&str]| -> Vec<String> {
        let o = docker(args);
        stdout(&o)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    };
    let containers = ids(&["ps", "-aq", "--no-trunc", "--filter", &filter]);
    if !containers.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(containers.iter().map(String::as_str));
        docker(&args);
    }
    let networks = ids(&["network", "ls", "-q", "--filter", &filter]);
    for n in &networks {
        docker(&["network", "rm", n]);
    }
    let volumes = ids(&["volume", "ls", "-q", "--filter", &filter]);
    if !volumes.is_empty() {
        let mut args = vec!["volume", "rm", "-f"];
        args.extend(volumes.iter().map(String::as_str));
        docker(&args);
    }
}

/// Removes what berth made for an agent id when dropped (for `berth apply --agent-id`, no process).
pub struct OwnedGuard(pub String);

impl Drop for OwnedGuard {
    fn drop(&mut self) {
        remove_owned(&self.0);
    }
}

/// A container the test made itself (with `docker run`); removed by name when dropped.
pub struct ForeignContainer {
    pub name: String,
}

impl ForeignContainer {
    /// `docker run -d --name NAME [--label L]… IMAGE sleep`: a container berth does not own.
    pub fn run(name: &str, labels: &[&str]) -> ForeignContainer {
        let mut args = vec!["run", "-d", "--name", name];
        for l in labels {
            args.extend(["--label", l]);
        }
        args.extend([IMAGE, "sleep", "3600"]);
        let guard = ForeignContainer {
            name: name.to_string(),
        };
        docker_ok(&args);
        guard
    }
}

impl Drop for ForeignContainer {
    fn drop(&mut self) {
        docker(&["rm", "-f", &self.name]);
    }
}

/// A volume the test made itself; removed when dropped.
pub struct VolumeGuard(pub String);

impl Drop for VolumeGuard {
    fn drop(&mut self) {
        docker(&["volume", "rm", "-f", &self.0]);
    }
}

// ---------------------------------------------------------------------------------------------------
// The agent

/// One `berth agent` process with its own id, config, state dir and socket. Dropping it stops the process
/// (SIGTERM, then SIGKILL), prints its log if the test is failing, and removes what it owns on the engine.
pub struct Agent {
    pub id: String,
    dir: tempfile::TempDir,
    sock_dir: tempfile::TempDir,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    starts: u32,
    /// More environment for the agent process ([`AgentOptions::env`]).
    env: Vec<(String, String)>,
}

/// What goes into an agent's config besides its paths.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub url: String,
    pub path: String,
    pub interval: String,
    /// The followed ref as a `source:` line: `branch: main` (the default) or `tag: v1`.
    pub reference: String,
    /// More YAML lines under `source:` (indented by the caller with two spaces).
    pub extra_source: String,
    /// The `rollout:` block (top level). Tests default to no stable window (running at the gate's first
    /// look passes) so every apply does not wait the production 10 s; tests of the health gate set their
    /// own.
    pub rollout: String,
    /// More environment variables for the agent process.
    pub env: Vec<(String, String)>,
    /// More top-level YAML lines of the config (e.g. `facts:`).
    pub extra: String,
}

impl AgentOptions {
    pub fn new(url: &str) -> AgentOptions {
        AgentOptions {
            url: url.to_string(),
            path: ".".into(),
            interval: "1h".into(),
            reference: "branch: main".into(),
            extra_source: String::new(),
            rollout: "rollout:\n  stable: 0s\n  timeout: 60s\n".into(),
            env: Vec::new(),
            extra: String::new(),
        }
    }
}

impl Agent {
    /// Start an agent following `repo` (root directory, interval 1h: cycles are driven by
    /// `berth reconcile --wait`) and wait until its socket answers.
    pub fn start(name: &str, repo: &GitRepo) -> Agent {
        Agent::start_with(name, AgentOptions::new(&repo.url()))
    }

    pub fn start_with(name: &str, opts: AgentOptions) -> Agent {
        let mut a = Agent::new(name, opts);
        a.spawn();
        a
    }

    /// Write the config but do not start the process.
    pub fn new(name: &str, opts: AgentOptions) -> Agent {
        let id = agent_id(name);
        let dir = tempdir("berth-agent-");
        // Unix socket paths must stay under 108 bytes.
        let sock_dir = tempfile::Builder::new()
            .prefix("b")
            .tempdir_in("/tmp")
            .expect("socket dir");
        let socket = sock_dir.path().join("s");
        let state_dir = dir.path().join("state");
        let config = dir.path().join("config.yaml");
        let log = dir.path().join("agent.log");
        let text = format!(
            "agent_id: {id}\nsource:\n  url: {url}\n  {reference}\n  path: {path}\n  interval: {interval}\n{extra}state_dir: {state}\nsocket: {socket}\nlog:\n  level: debug\n{rollout}{top}",
            url = opts.url,
            reference = opts.reference,
            path = opts.path,
            interval = opts.interval,
            extra = opts.extra_source,
            rollout = opts.rollout,
            top = opts.extra,
            state = state_dir.display(),
            socket = socket.display(),
        );
        std::fs::write(&config, text).unwrap();
        Agent {
            id,
            dir,
            sock_dir,
            config,
            socket,
            state_dir,
            log,
            child: None,
            starts: 0,
            env: opts.env,
        }
    }

    /// The root stack's name (the agent id, since the followed path is `.`).
    pub fn stack(&self) -> &str {
        &self.id
    }

    /// `<stack>-<service>-1`.
    pub fn container(&self, service: &str) -> String {
        format!("{}-{service}-1", self.id)
    }

    /// Spawn `berth agent --config` (log appended to [`Agent::log`]) and wait until the socket answers.
    pub fn spawn(&mut self) {
        self.spawn_env(&[]);
    }

    /// [`Agent::spawn`] with these variables added to the agent's environment.
    pub fn spawn_env(&mut self, env: &[(&str, &str)]) {
        assert!(self.child.is_none(), "agent already running");
        self.starts += 1;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        writeln!(log, "===== berth agent start #{} =====", self.starts).unwrap();
        let child = Command::new(berth_bin())
            .arg("agent")
            .arg("--config")
            .arg(&self.config)
            .env_remove("BERTH_LOG")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .envs(env.iter().copied())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn berth agent");
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "berth agent exited ({status}) before its socket answered; log:\n{}",
                    self.log_text()
                );
            }
            let o = self.cli(&["status", "--json"]);
            if o.status.success() {
                break;
            }
            if start.elapsed() > TIMEOUT {
                panic!(
                    "berth agent socket {} did not answer within {TIMEOUT:?}; last: {}\nlog:\n{}",
                    self.socket.display(),
                    show(&o),
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("agent running").id()
    }

    /// SIGKILL the process (no chance to clean up) and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, wait up to 10 s, then SIGKILL. The exit status, when it stopped by itself.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Run a client command against this agent's socket: `berth CMD --socket S ARGS…`.
    pub fn cli(&self, args: &[&str]) -> Output {
        let socket = self.socket.to_string_lossy().to_string();
        let mut all: Vec<&str> = vec![args[0], "--socket", &socket];
        all.extend(&args[1..]);
        berth(&all)
    }

    fn cli_json(&self, args: &[&str]) -> Value {
        let o = self.cli(args);
        assert!(o.status.success(), "berth {args:?}: {}", show(&o));
        serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("berth {args:?} printed no JSON ({e}): {}", show(&o)))
    }

    /// `berth status --json`.
    pub fn status_json(&self) -> Value {
        self.cli_json(&["status", "--json"])
    }

    /// `berth history --json`.
    pub fn history_json(&self) -> Vec<Value> {
        match self.cli_json(&["history", "--json", "--limit", "1000"]) {
            Value::Array(a) => a,
            other => panic!("history is not a JSON array: {other}"),
        }
    }

    /// `berth reconcile --wait`, whatever its exit code.
    pub fn reconcile_wait(&self) -> Output {
        self.cli(&["reconcile", "--wait"])
    }

    /// `berth reconcile --wait`, which must succeed.
    pub fn reconcile_ok(&self) -> Output {
        let o = self.reconcile_wait();
        assert!(o.status.success(), "berth reconcile --wait: {}", show(&o));
        o
    }

    /// Containers this agent owns (by label), sorted by name.
    pub fn owned(&self) -> Vec<Listed> {
        owned_containers(&self.id)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "===== log of berth agent {} ({}) =====\n{}\n===== end of log =====",
                self.id,
                self.log.display(),
                self.log_text()
            );
            eprintln!(
                "===== containers of {} =====\n{:#?}",
                self.id,
                owned_containers(&self.id)
            );
        }
        remove_owned(&self.id);
        let _ = (&self.dir, &self.sock_dir);
    }
}

/// Status JSON accessors.
pub fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// `(name, id, state)` of every container in `berth status --json`.
pub fn status_containers(status: &Value) -> Vec<(String, String, String)> {
    status["containers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or_default().to_string(),
                        c["id"].as_str().unwrap_or_default().to_string(),
                        c["state"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------------
// A compose stack in a temp directory (`berth apply DIR` / `berth render DIR`, no Git, no agent process)

/// A temp directory `<tmp>/<id>/` holding `compose.yaml`, where `<id>` is a unique agent id
/// ([`agent_id`]): the stack, the agent id it is applied with, and so its containers' names
/// (`<id>-<service>-<n>`) and owner label all carry that id. berth runs with an empty `DOCKER_CONFIG`, so
/// this machine's Docker config plays no part. Everything the id owns on the engine is removed when the
/// stack is dropped (also when the test failed, after printing what it owned).
///
/// Declare it after whatever its containers use (a registry, an image made for the test), so it is dropped
/// first: containers go before what they need.
pub struct Stack {
    _tmp: tempfile::TempDir,
    docker_config: tempfile::TempDir,
    /// The stack directory (`.../<id>`).
    pub path: PathBuf,
    /// Agent id and stack name.
    pub id: String,
}

impl Stack {
    /// A stack named after `agent_id(name)` with `compose` as its `compose.yaml`.
    pub fn new(name: &str, compose: &str) -> Stack {
        let tmp = tempdir("berth-stack-");
        let id = agent_id(name);
        let path = tmp.path().join(&id);
        std::fs::create_dir_all(&path).unwrap();
        let s = Stack {
            _tmp: tmp,
            docker_config: tempdir("berth-dc-"),
            path,
            id,
        };
        s.write(compose);
        s
    }

    /// Replace `compose.yaml`.
    pub fn write(&self, compose: &str) {
        self.write_file("compose.yaml", compose);
    }

    /// Write another file of the stack directory (parents created); its absolute path.
    pub fn write_file(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    /// The stack directory as a command-line argument.
    pub fn arg(&self) -> &str {
        self.path.to_str().expect("temp paths are UTF-8")
    }

    /// The empty `DOCKER_CONFIG` directory berth runs with.
    pub fn docker_config(&self) -> &Path {
        self.docker_config.path()
    }

    /// `<stack>-<service>-1`.
    pub fn container(&self, service: &str) -> String {
        format!("{}-{service}-1", self.id)
    }

    /// Containers the id owns (by label), sorted by name.
    pub fn owned(&self) -> Vec<Listed> {
        owned_containers(&self.id)
    }

    /// `berth apply DIR --agent-id ID` with the empty `DOCKER_CONFIG`, no `BERTH_LOG` or
    /// `BERTH_DEPENDENCY_TIMEOUT` from the test's environment, then `env`; not yet started.
    pub fn apply_cmd(&self, env: &[(&str, &str)]) -> Command {
        let mut c = Command::new(berth_bin());
        c.arg("apply")
            .arg(&self.path)
            .arg("--agent-id")
            .arg(&self.id)
            .env("DOCKER_CONFIG", self.docker_config.path())
            .env_remove("BERTH_DEPENDENCY_TIMEOUT")
            .env_remove("BERTH_LOG");
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    /// Run `berth apply` to completion (killed, failing the test, after [`CLI_DEADLINE`]).
    pub fn apply(&self) -> Output {
        self.apply_env(&[])
    }

    /// [`Stack::apply`] with more environment variables.
    pub fn apply_env(&self, env: &[(&str, &str)]) -> Output {
        run_with_deadline(&mut self.apply_cmd(env), CLI_DEADLINE)
    }

    /// [`Stack::apply`] with `DOCKER_CONFIG=docker_config` instead of the empty one (registry
    /// credentials).
    pub fn apply_with_docker_config(&self, docker_config: &Path) -> Output {
        run_with_deadline(
            self.apply_cmd(&[]).env("DOCKER_CONFIG", docker_config),
            CLI_DEADLINE,
        )
    }

    /// `berth render ARGS DIR` (e.g. `&["--json"]`), with the same environment as [`Stack::apply`].
    pub fn render(&self, args: &[&str]) -> Output {
        run_with_deadline(
            Command::new(berth_bin())
                .arg("render")
                .args(args)
                .arg(&self.path)
                .env("DOCKER_CONFIG", self.docker_config.path())
                .env_remove("BERTH_LOG"),
            CLI_DEADLINE,
        )
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "===== containers of {} =====\n{:#?}",
                self.id,
                owned_containers(&self.id)
            );
        }
        remove_owned(&self.id);
    }
}
