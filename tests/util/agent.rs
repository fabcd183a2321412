//! The agent process: one `berth agent` per test with its own id, config, state dir and socket
//! ([`Agent`], configured by [`AgentOptions`]), its client commands, and accessors of its status JSON.

use super::engine::{owned_containers, Listed};
use super::files::tempdir;
use super::git::GitRepo;
use super::guards::remove_owned;
use super::process::{berth, berth_bin, show};
use super::{agent_id, TIMEOUT};
use serde_json::Value;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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

pub fn is_full_sha(s: &str) -> bool {
    s.len() == 40
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}
