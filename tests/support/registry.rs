//! A private registry for the integration tests: one Debian `docker-registry` (distribution 2.x)
//! process on 127.0.0.1:<free port> with htpasswd (bcrypt) auth and filesystem storage in a temp dir,
//! logged into with `docker login` under a temporary `DOCKER_CONFIG` (the machine's own is never read or
//! written); images are pushed into it without leaving a local tag, so berth must pull.
//!
//! Used by `tests/registry.rs`, which includes this file with `#[path]`; it uses `tests/util.rs`.
//! Needs `docker-registry` (package docker-registry) and `htpasswd` (package apache2-utils).

use crate::util::*;
use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const USER: &str = "berth";
pub const PASSWORD: &str = "reg-pw-6c1f0e";

/// A tool the registry tests need, or a panic saying which Debian package provides it.
fn tool(name: &str, package: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/bin", "/usr/sbin", "/usr/local/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the registry tests need `{name}` (Debian package {package}): scripts/test.sh installs it, \
                 or run `apt-get install {package}`"
            )
        })
}

/// A port that was free a moment ago (the registry start retries if another process takes it first).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Status code of `GET /v2/` on `127.0.0.1:port`, or `None` when nothing answers (yet).
fn probe(port: u16) -> Option<u16> {
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(1)))
        .timeout_global(Some(Duration::from_secs(3)))
        .build()
        .into();
    let response = http
        .get(format!("http://127.0.0.1:{port}/v2/"))
        .call()
        .ok()?;
    Some(response.status().as_u16())
}

/// The id of local image `reference`, if the engine has it.
pub fn image_id(reference: &str) -> Option<String> {
    let o = docker(&["image", "inspect", "--format", "{{.Id}}", reference]);
    o.status.success().then(|| stdout(&o).trim().to_string())
}

/// One `docker-registry serve` process with htpasswd auth, its storage, and a `DOCKER_CONFIG` that
/// `docker login` filled with the right credentials. Dropping it kills the process and removes the local
/// tags of its images and the variant images made for it.
pub struct Registry {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// `127.0.0.1:<port>`
    pub host: String,
    /// A `DOCKER_CONFIG` directory: `config.json` as `docker login` wrote it.
    pub login_config: PathBuf,
    log: PathBuf,
    made: Mutex<Vec<String>>,
}

impl Registry {
    pub fn start() -> Registry {
        let bin = tool("docker-registry", "docker-registry");
        let htpasswd = tool("htpasswd", "apache2-utils");
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir()
            .unwrap();
        let o = Command::new(&htpasswd)
            .args(["-Bbn", USER, PASSWORD])
            .stdin(Stdio::null())
            .output()
            .expect("run htpasswd");
        assert!(o.status.success(), "htpasswd: {}", show(&o));
        std::fs::write(dir.path().join("htpasswd"), &o.stdout).unwrap();
        let log = dir.path().join("registry.log");
        let mut last_error = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: berth-test-{port}\nauth:\n  htpasswd:\n    realm: berth-test\n    path: {pw}\n",
                    root = dir.path().join("data").display(),
                    pw = dir.path().join("htpasswd").display(),
                ),
            )
            .unwrap();
            let out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap();
            let mut child = Command::new(&bin)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .expect("spawn docker-registry");
            match wait_ready(&mut child, port) {
                Ok(()) => {
                    let host = format!("127.0.0.1:{port}");
                    // Tags left by a run that was killed before its cleanup, when it had this port.
                    remove_local_tags(&host);
                    let login_config = dir.path().join("docker-login");
                    let reg = Registry {
                        child: Some(child),
                        dir,
                        port,
                        host,
                        login_config,
                        log,
                        made: Mutex::new(Vec::new()),
                    };
                    reg.login();
                    return reg;
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_error = e;
                }
            }
        }
        panic!(
            "docker-registry did not start: {last_error}\nits log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// `docker login` into a fresh `DOCKER_CONFIG` (never the machine's own).
    fn login(&self) {
        std::fs::create_dir_all(&self.login_config).unwrap();
        let mut child = Command::new("docker")
            .args(["login", "-u", USER, "--password-stdin", &self.host])
            .env("DOCKER_CONFIG", &self.login_config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run docker login");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(PASSWORD.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "docker login {}: {}",
            self.host,
            show(&o)
        );
        let json = std::fs::read_to_string(self.login_config.join("config.json")).unwrap();
        assert!(
            json.contains(&self.host),
            "docker login wrote no auth for {}: {json}",
            self.host
        );
    }

    /// A new registry holding [`IMAGE`] as `name` (not tagged locally); its reference.
    pub fn with_image(name: &str) -> (Registry, String) {
        let reg = Registry::start();
        let image = reg.reference(name);
        reg.push_as(IMAGE, &image);
        (reg, image)
    }

    /// `127.0.0.1:<port>/<name>`.
    pub fn reference(&self, name: &str) -> String {
        format!("{}/{name}", self.host)
    }

    fn docker_logged_in(&self, args: &[&str]) -> Output {
        run_with_deadline(
            Command::new("docker")
                .args(args)
                .env("DOCKER_CONFIG", &self.login_config),
            TIMEOUT,
        )
    }

    /// Push local image `source` (a reference or an id) as `reference` of this registry. The local tag
    /// `reference` is left as it was before (absent, or naming the image it named): the engine's copy is
    /// only ever changed by berth's pulls.
    pub fn push_as(&self, source: &str, reference: &str) {
        let previous = image_id(reference);
        docker_ok(&["tag", source, reference]);
        let o = self.docker_logged_in(&["push", reference]);
        assert!(
            o.status.success(),
            "docker push {reference}: {}\nregistry log:\n{}",
            show(&o),
            self.log_text()
        );
        match &previous {
            Some(id) => {
                docker_ok(&["tag", id, reference]);
            }
            None => {
                docker_ok(&["rmi", reference]);
            }
        }
        assert_eq!(
            image_id(reference),
            previous,
            "local tag {reference} restored"
        );
    }

    /// A new image, different from [`IMAGE`] (a file `/variant` holding `marker`); its id.
    pub fn variant(&self, marker: &str) -> String {
        let name = format!(
            "berth-variant-{}-{}-{marker}",
            std::process::id(),
            self.port
        );
        self.made.lock().unwrap().push(format!("container:{name}"));
        docker_ok(&[
            "run",
            "--name",
            &name,
            IMAGE,
            "sh",
            "-c",
            &format!("echo {marker} > /variant"),
        ]);
        let id = docker_ok(&["commit", &name]);
        docker(&["rm", "-f", &name]);
        self.made.lock().unwrap().push(id.clone());
        assert_ne!(
            Some(id.clone()),
            image_id(IMAGE),
            "the variant must be another image"
        );
        id
    }

    /// Kill the registry process (it is gone: a pull fails as it does offline).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Requests for manifests of repository `name` the registry logged so far (`GET` or `HEAD`): each
    /// pull asks for one.
    pub fn manifest_requests(&self, name: &str) -> usize {
        let needle = format!("/v2/{name}/manifests/");
        self.log_text()
            .lines()
            .filter(|l| l.contains(&needle) && (l.contains("\"GET ") || l.contains("\"HEAD ")))
            .count()
    }
}

fn wait_ready(child: &mut Child, port: u16) -> Result<(), String> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!("docker-registry exited ({status}) on port {port}"));
        }
        match probe(port) {
            Some(401) => return Ok(()),
            Some(code) => return Err(format!("GET /v2/ on port {port} answered {code}, not 401")),
            None => {}
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err(format!(
                "GET /v2/ on port {port} did not answer within 30 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Remove every local reference `<host>/…`, tags and digests (what berth pulled from a registry on
/// `host`, what a push left). Images with other names stay; only the names go.
fn remove_local_tags(host: &str) {
    let prefix = format!("{host}/");
    for field in ["{{.Repository}}:{{.Tag}}", "{{.Repository}}@{{.Digest}}"] {
        let o = docker(&["images", "--digests", "--format", field]);
        for r in stdout(&o)
            .lines()
            .filter(|l| l.starts_with(&prefix) && !l.ends_with("<none>"))
        {
            if !docker(&["rmi", r]).status.success() {
                docker(&["rmi", "-f", r]);
            }
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log_text();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "===== log of docker-registry {} (last 60 lines) =====\n{}\n===== end of log =====",
                self.host,
                lines[lines.len().saturating_sub(60)..].join("\n")
            );
        }
        // While the port is still ours, so no other registry can be using the same host name.
        remove_local_tags(&self.host);
        self.stop();
        for m in self.made.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            match m.strip_prefix("container:") {
                Some(name) => docker(&["rm", "-f", name]),
                None => docker(&["rmi", "-f", m]),
            };
        }
    }
}
