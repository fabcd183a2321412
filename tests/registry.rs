//! Pulls from a private registry with credentials: Debian's `docker-registry` (distribution 2.x) on
//! 127.0.0.1:<free port> with htpasswd (bcrypt) auth and filesystem storage in a temp dir, one per test.
//! Images are pushed into it with `docker login` + `docker push` under a temporary `DOCKER_CONFIG` (this
//! machine's own Docker config is never read or written), and the local tag is removed so berth must pull.
//! dockerd allows plain HTTP to 127.0.0.0/8 registries by default.
//!
//! Covered: credentials from a Docker `config.json` (`$DOCKER_CONFIG` for `berth apply`,
//! `docker.auth_file` for the agent), wrong credentials (clear error, running containers untouched, no
//! secret printed), `pull_policy` always / missing / never with a tag moved in the registry, a failed
//! `always` pull with a local copy (offline: warning, nothing stopped), credentials rotated in
//! `docker.auth_file` without restarting the agent, and no pull progress when stderr is not a terminal.
//!
//! Needs `/usr/bin/docker-registry` (package docker-registry) and `htpasswd` (package apache2-utils).

use crate::util::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const USER: &str = "berth";
const PASSWORD: &str = "reg-pw-6c1f0e";

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

fn image_id(reference: &str) -> Option<String> {
    let o = docker(&["image", "inspect", "--format", "{{.Id}}", reference]);
    o.status.success().then(|| stdout(&o).trim().to_string())
}

/// Image id a container was made from.
fn container_image(name: &str) -> String {
    docker_ok(&["container", "inspect", "--format", "{{.Image}}", name])
}

/// The image reference a container was made with (`Config.Image`).
fn config_image(name: &str) -> String {
    docker_ok(&[
        "container",
        "inspect",
        "--format",
        "{{.Config.Image}}",
        name,
    ])
}

fn started_at(name: &str) -> String {
    docker_ok(&[
        "container",
        "inspect",
        "--format",
        "{{.State.StartedAt}}",
        name,
    ])
}

/// A `DOCKER_CONFIG` directory whose `config.json` holds `user:password` for `host`.
fn docker_config_with(dir: &Path, host: &str, user: &str, password: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let auth = STANDARD.encode(format!("{user}:{password}"));
    std::fs::write(
        dir.join("config.json"),
        format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#),
    )
    .unwrap();
    dir.to_path_buf()
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

/// An agent `id` following a new repository whose stack runs `image`, with `docker.auth_file: AUTH`;
/// started, no cycle run yet. The repository goes with it.
fn agent_with_auth_file(id: &str, image: &str, auth: &Path) -> (GitRepo, Agent) {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &app(image, None));
    repo.commit_push("app from the private registry");
    let mut agent = Agent::new(id, AgentOptions::new(&repo.url()));
    let mut config = std::fs::OpenOptions::new()
        .append(true)
        .open(&agent.config)
        .unwrap();
    writeln!(config, "docker:\n  auth_file: {}", auth.display()).unwrap();
    drop(config);
    agent.spawn();
    (repo, agent)
}

/// What the `pull_policy` tests start from: stack `id` runs `berth/app:1` of a new registry (v1, the
/// image [`IMAGE`]) with `pull_policy`; then the registry's tag is moved to another image, v2, which is
/// not on the engine.
struct MovedTag {
    reg: Registry,
    image: String,
    s: Stack,
    /// The app container, its id when it was made for v1.
    name: String,
    first: String,
    v1: String,
    v2: String,
}

impl MovedTag {
    fn new(id: &str, pull_policy: Option<&str>) -> MovedTag {
        let (reg, image) = Registry::with_image("berth/app:1");
        let v1 = image_id(IMAGE).unwrap();
        let s = Stack::new(id, &app(&image, pull_policy));
        let name = s.container("app");

        let o = s.apply_with_docker_config(&reg.login_config);
        assert!(o.status.success(), "berth apply: {}", show(&o));
        let first = container_id(&name).expect("app created");
        assert_eq!(container_image(&name), v1);

        let v2 = reg.variant("v2");
        reg.push_as(&v2, &image);
        MovedTag {
            reg,
            image,
            s,
            name,
            first,
            v1,
            v2,
        }
    }

    /// `berth apply` with the registry's credentials.
    fn apply(&self) -> Output {
        self.s.apply_with_docker_config(&self.reg.login_config)
    }

    /// The first [`MovedTag::apply`] after the move, which succeeds.
    fn apply_after_the_move(&self) -> Output {
        let o = self.apply();
        assert!(
            o.status.success(),
            "berth apply after the tag moved: {}",
            show(&o)
        );
        o
    }
}

fn app(image: &str, pull_policy: Option<&str>) -> String {
    let policy = pull_policy
        .map(|p| format!("    pull_policy: {p}\n"))
        .unwrap_or_default();
    format!("services:\n  app:\n    image: {image}\n    command: {IDLE}\n{policy}")
}

#[test]
fn pulls_with_credentials_from_docker_config() {
    let (reg, image) = Registry::with_image("berth/app:1");
    assert_eq!(
        image_id(&image),
        None,
        "the image must not be on the engine before berth pulls it"
    );
    let s = Stack::new("reg-config-json", &app(&image, None));

    let o = s.apply_with_docker_config(&reg.login_config);
    assert!(o.status.success(), "berth apply: {}", show(&o));
    let name = s.container("app");
    assert!(is_running(&name), "{name} must run: {}", show(&o));
    assert_eq!(config_image(&name), image);
    assert_eq!(image_id(&image), image_id(IMAGE), "pulled the pushed image");
    assert!(
        reg.manifest_requests("berth/app") > 0,
        "no pull reached the registry"
    );
}

#[test]
fn wrong_credentials_fail_clearly_and_leave_running_containers() {
    let (reg, image) = Registry::with_image("berth/app:1");
    let s = Stack::new("reg-wrong-creds", &app(IMAGE, None));
    let name = s.container("app");
    let wrong_pw = "not-the-pw-91d3";
    let wrong = docker_config_with(&reg.dir.path().join("wrong"), &reg.host, USER, wrong_pw);

    let o = s.apply_with_docker_config(&wrong);
    assert!(
        o.status.success(),
        "berth apply of a local image: {}",
        show(&o)
    );
    let id = container_id(&name).expect("app created");
    let started = started_at(&name);
    assert!(is_running(&name));

    s.write(&app(&image, None));
    let o = s.apply_with_docker_config(&wrong);
    assert_eq!(
        o.status.code(),
        Some(1),
        "wrong credentials must fail: {}",
        show(&o)
    );
    let err = stderr(&o);
    assert!(
        err.contains(&image),
        "the error must name the image: {}",
        show(&o)
    );
    let lower = err.to_lowercase();
    assert!(
        lower.contains("unauthorized") || lower.contains("auth"),
        "the error must say the registry refused the credentials: {}",
        show(&o)
    );
    assert!(
        !format!("{}{}", stdout(&o), err).contains(wrong_pw),
        "the password must never be printed: {}",
        show(&o)
    );
    assert_eq!(
        container_id(&name).as_deref(),
        Some(id.as_str()),
        "the running container must stay"
    );
    assert!(is_running(&name), "the running container must keep running");
    assert_eq!(
        started_at(&name),
        started,
        "the running container must not be restarted"
    );
    assert_eq!(image_id(&image), None, "nothing was pulled");

    // No credentials at all: the same.
    let none = reg.dir.path().join("none");
    std::fs::create_dir_all(&none).unwrap();
    let o = s.apply_with_docker_config(&none);
    assert_eq!(
        o.status.code(),
        Some(1),
        "no credentials must fail: {}",
        show(&o)
    );
    assert!(stderr(&o).contains(&image), "{}", show(&o));
    assert_eq!(container_id(&name).as_deref(), Some(id.as_str()));
    assert!(is_running(&name));

    // And the right ones converge.
    let o = s.apply_with_docker_config(&reg.login_config);
    assert!(
        o.status.success(),
        "berth apply with the right credentials: {}",
        show(&o)
    );
    assert_ne!(
        container_id(&name).as_deref(),
        Some(id.as_str()),
        "recreated for the new image"
    );
    assert!(is_running(&name));
}

#[test]
fn agent_pulls_with_docker_auth_file() {
    let (reg, image) = Registry::with_image("berth/agent-app:1");
    let auth = reg.dir.path().join("agent-auth.json");
    std::fs::copy(reg.login_config.join("config.json"), &auth).unwrap();

    let (_repo, agent) = agent_with_auth_file("reg-agent-auth-file", &image, &auth);
    let o = agent.reconcile_wait();
    assert!(
        o.status.success(),
        "berth reconcile --wait: {}\nagent log:\n{}",
        show(&o),
        agent.log_text()
    );
    let name = agent.container("app");
    wait_until(TIMEOUT, &format!("{name} running"), || is_running(&name));
    assert_eq!(config_image(&name), image);
    assert_eq!(image_id(&image), image_id(IMAGE));
    assert!(
        !agent.log_text().contains(PASSWORD),
        "the password must never be logged"
    );
}

#[test]
fn pull_policy_always_follows_a_moved_tag() {
    let t = MovedTag::new("reg-pull-always", Some("always"));
    let (image, name) = (&t.image, &t.name);
    assert_eq!(
        image_id(image).as_deref(),
        Some(t.v1.as_str()),
        "locally the tag still names v1"
    );

    let o = t.apply_after_the_move();
    let second = container_id(name).expect("app exists");
    assert_ne!(
        second,
        t.first,
        "the container must be recreated for the moved tag: {}",
        show(&o)
    );
    assert_eq!(
        container_image(name),
        t.v2,
        "the new container runs the new image"
    );
    assert_eq!(image_id(image).as_deref(), Some(t.v2.as_str()));
    assert!(is_running(name));
    assert_eq!(exec(name, "cat /variant"), "v2");

    // Pulling again the same image changes nothing.
    let o = t.apply();
    assert!(o.status.success(), "third berth apply: {}", show(&o));
    assert!(stdout(&o).contains("up to date"), "{}", show(&o));
    assert_eq!(container_id(name).as_deref(), Some(second.as_str()));
}

#[test]
fn pull_policy_missing_does_not_pull_a_present_image() {
    let t = MovedTag::new("reg-pull-missing", None);
    let (image, name) = (&t.image, &t.name);
    let requests = t.reg.manifest_requests("berth/app");
    assert!(
        requests > 0,
        "the registry's access log shows pushes and pulls"
    );

    let o = t.apply_after_the_move();
    assert!(stdout(&o).contains("up to date"), "{}", show(&o));
    assert_eq!(
        container_id(name).as_deref(),
        Some(t.first.as_str()),
        "container unchanged"
    );
    assert_eq!(container_image(name), t.v1);
    assert_eq!(
        image_id(image).as_deref(),
        Some(t.v1.as_str()),
        "the tag was not pulled"
    );
    assert_eq!(
        t.reg.manifest_requests("berth/app"),
        requests,
        "the registry was asked"
    );
}

#[test]
fn pull_policy_never_with_a_missing_image_fails_naming_it() {
    let (reg, image) = Registry::with_image("berth/app:1");
    let s = Stack::new("reg-pull-never", &app(&image, Some("never")));
    assert!(
        reg.log_text().contains("\"PUT /v2/berth/app/manifests/1 "),
        "the registry's access log shows the push"
    );
    let requests = reg.manifest_requests("berth/app");

    let o = s.apply_with_docker_config(&reg.login_config);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&image),
        "the error must name the image: {}",
        show(&o)
    );
    assert!(
        err.contains("never"),
        "the error must name the policy: {}",
        show(&o)
    );
    assert_eq!(container_id(&s.container("app")), None, "nothing created");
    assert_eq!(image_id(&image), None, "pull_policy never must not pull");
    assert_eq!(
        reg.manifest_requests("berth/app"),
        requests,
        "the registry was asked"
    );
}

#[test]
fn no_pull_progress_when_stderr_is_not_a_terminal() {
    let reg = Registry::start();
    let image = reg.reference("berth/app:1");
    // Two layers, so a pull has progress to show.
    let v2 = reg.variant("progress");
    reg.push_as(&v2, &image);
    let s = Stack::new("reg-progress", &app(&image, None));

    let o = s.apply_with_docker_config(&reg.login_config);
    assert!(o.status.success(), "berth apply: {}", show(&o));
    assert_eq!(
        image_id(&image).as_deref(),
        Some(v2.as_str()),
        "berth pulled"
    );
    assert!(
        stdout(&o).contains(&format!("create container {}", s.container("app"))),
        "the result is printed: {}",
        show(&o)
    );
    let err = stderr(&o);
    assert!(
        err.trim().is_empty(),
        "stderr is not a terminal: no progress lines, only the result on stdout: {}",
        show(&o)
    );
    let out = stdout(&o).to_lowercase();
    for word in [
        "pulling",
        "download",
        "extracting",
        "pull complete",
        "waiting",
    ] {
        assert!(
            !out.contains(word),
            "progress on stdout ({word}): {}",
            show(&o)
        );
    }
}

#[test]
fn pull_policy_always_offline_keeps_the_running_container() {
    let (mut reg, image) = Registry::with_image("berth/app:1");
    let s = Stack::new("reg-always-offline", &app(&image, Some("always")));
    let name = s.container("app");
    let o = s.apply_with_docker_config(&reg.login_config);
    assert!(o.status.success(), "berth apply: {}", show(&o));
    let id = container_id(&name).expect("app created");
    let started = started_at(&name);

    // The registry is gone (an edge box offline): the local copy is used, nothing is stopped.
    reg.stop();
    let o = s.apply_with_docker_config(&reg.login_config);
    assert!(
        o.status.success(),
        "a failed pull with a local copy is not a failure: {}",
        show(&o)
    );
    let err = stderr(&o);
    assert!(
        err.contains("warning") && err.contains(&image),
        "the failed pull must be reported as a warning naming the image: {}",
        show(&o)
    );
    assert_eq!(container_id(&name).as_deref(), Some(id.as_str()));
    assert_eq!(started_at(&name), started, "not restarted");
    assert!(is_running(&name));
}

/// config-examples/config.yaml documents `docker.auth_file` as "read when an image is pulled": credentials
/// rotated on the box (a new file written in place) are used by the next cycle, without restarting the
/// agent.
///
/// Fails at 88ba8dd: `Agent::start` (agent/src/reconcile.rs) loads the file once into the runtime, so the
/// agent keeps pulling with the credentials it started with until it is restarted.
#[test]
fn agent_reads_a_rotated_auth_file_at_the_next_pull() {
    let (reg, image) = Registry::with_image("berth/rotated:1");
    let creds = reg.dir.path().join("rotating");
    let auth = docker_config_with(&creds, &reg.host, USER, "an-old-pw-5e2a").join("config.json");

    let (_repo, agent) = agent_with_auth_file("reg-agent-rotated", &image, &auth);
    let o = agent.reconcile_wait();
    assert_eq!(
        o.status.code(),
        Some(1),
        "stale credentials must fail the cycle: {}",
        show(&o)
    );
    let name = agent.container("app");
    assert_eq!(container_id(&name), None);

    // The credentials are rotated on the box.
    docker_config_with(&creds, &reg.host, USER, PASSWORD);
    let o = agent.reconcile_wait();
    assert!(
        o.status.success(),
        "the next cycle must pull with the rotated credentials (no restart): {}\nagent log:\n{}",
        show(&o),
        agent.log_text()
    );
    wait_until(TIMEOUT, &format!("{name} running"), || is_running(&name));
}
