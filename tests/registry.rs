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
//! The registry itself is `tests/support/registry.rs`. Needs `/usr/bin/docker-registry` (package
//! docker-registry) and `htpasswd` (package apache2-utils).

use crate::util::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

#[path = "support/registry.rs"]
mod support;
/// Also used by tests/leaks.rs.
pub use support::Registry;
use support::{image_id, PASSWORD, USER};

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
