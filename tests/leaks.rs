//! Leak nothing: the status socket is 0660 with its group from the moment it appears, binds that would
//! show a container the clone's `.git` are refused, render errors never quote values, and, after a
//! whole agent cycle with a Git token, a registry password, secret values in the agent's environment
//! (and an age key with a SOPS-encrypted secret), none of them is found in anything berth wrote.

use crate::http_server::git_http_backend;
use crate::registry::Registry;
use crate::util::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

// ---------------------------------------------------------------------------------------------------
// What berth wrote, searched

/// Places searched for secrets: a name for the report and the bytes found there.
#[derive(Default)]
struct Searched {
    places: Vec<(String, Vec<u8>)>,
}

impl Searched {
    fn add(&mut self, name: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        self.places.push((name.into(), bytes.into()));
    }

    /// Every regular file under `dir`, recursively.
    fn add_tree(&mut self, dir: &Path) {
        for (p, bytes) in crate::util::files_under(dir) {
            self.add(p.display().to_string(), bytes);
        }
    }

    /// `(place, secret name)` for every secret found somewhere. Prints what was searched.
    fn find(&self, secrets: &[(&str, &str)]) -> Vec<(String, String)> {
        eprintln!("searched {} places:", self.places.len());
        for (name, bytes) in &self.places {
            eprintln!("  {name} ({} bytes)", bytes.len());
        }
        eprintln!(
            "for: {}",
            secrets
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut hits = Vec::new();
        for (place, bytes) in &self.places {
            for (name, value) in secrets {
                assert!(!value.is_empty());
                if bytes.windows(value.len()).any(|w| w == value.as_bytes()) {
                    hits.push((place.clone(), name.to_string()));
                }
            }
        }
        hits
    }
}

// ---------------------------------------------------------------------------------------------------
// The status socket

#[test]
fn the_socket_appears_0660_with_its_group_at_every_start() {
    use inotify::{Inotify, WatchMask};
    let repo = GitRepo::new();
    repo.write("README", "nothing to run\n");
    repo.commit_push("empty");
    let mut agent = Agent::new("leaks-socket", AgentOptions::new(&repo.url()));
    // A gid no group needs to have: root may give the socket any group.
    append(&agent.config, "socket_group: \"4243\"\n");
    // A state_dir others may read (made by hand, or by an older release) is tightened.
    std::fs::create_dir_all(&agent.state_dir).unwrap();
    std::fs::set_permissions(&agent.state_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = agent.socket.parent().unwrap().to_path_buf();
    let mut inotify = Inotify::init().unwrap();
    inotify
        .watches()
        .add(&dir, WatchMask::CREATE | WatchMask::MOVED_TO)
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let socket = agent.socket.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(events) = inotify.read_events_blocking(&mut buf) {
            for e in events {
                if e.name == socket.file_name() {
                    // The moment it appears: before the agent can do anything else to it.
                    let seen =
                        std::fs::symlink_metadata(&socket).map(|m| (m.mode() & 0o7777, m.gid()));
                    if tx.send(seen).is_err() {
                        return;
                    }
                }
            }
        }
    });
    for start in 0..3 {
        agent.spawn();
        let (mode, gid) = rx
            .recv_timeout(TIMEOUT)
            .expect("the socket appeared")
            .expect("stat of the socket the moment it appeared");
        assert_eq!(
            (mode, gid),
            (0o660, 4243),
            "start {start}: mode {mode:o}, group {gid}"
        );
        agent.stop();
    }
    assert_eq!(mode(&agent.state_dir), 0o700, "state_dir is root's only");
    assert!(
        agent.log_text().contains("tightened to 0700"),
        "{}",
        agent.log_text()
    );
}

// ---------------------------------------------------------------------------------------------------
// Binds that would show the clone's .git

#[test]
fn binds_showing_the_git_directory_are_refused_and_nothing_is_touched() {
    let repo = GitRepo::new();
    let web = format!("services:\n  web:\n    image: {IMAGE}\n    command: [sleep, '3600']\n");
    repo.write("compose.yaml", &web);
    repo.commit_push("web");
    let agent = Agent::start("leaks-gitdir", &repo);
    agent.reconcile_ok();
    let web_id = container_id(&agent.container("web")).expect("web runs");

    // Line 6: the checkout itself (which holds .git); line 10: state_dir, by its absolute path.
    let bad = format!(
        "{web}  spy:\n    image: {IMAGE}\n    command: [sleep, '3600']\n    volumes:\n      - .:/repo:ro\n  spy2:\n    image: {IMAGE}\n    volumes:\n      - {}:/state:ro\n",
        agent.state_dir.display()
    );
    assert_eq!(bad.lines().nth(8), Some("      - .:/repo:ro"));
    assert!(bad.lines().nth(12).unwrap().ends_with(":/state:ro"));
    repo.write("compose.yaml", &bad);
    repo.commit_push("spies");
    let o = agent.reconcile_wait();
    assert!(!o.status.success(), "{}", show(&o));
    let st = agent.status_json();
    let error = str_field(&st, "last_error").unwrap_or_default().to_string();
    for part in [
        "compose.yaml:9",
        "service spy:",
        "compose.yaml:13",
        "service spy2:",
        ".git",
    ] {
        assert!(error.contains(part), "{part:?} not in: {error}");
    }
    assert_eq!(
        container_id(&agent.container("web")).as_deref(),
        Some(web_id.as_str()),
        "web untouched"
    );
    assert!(is_running(&agent.container("web")));
    assert_eq!(container_id(&agent.container("spy")), None);
    assert_eq!(container_id(&agent.container("spy2")), None);
}

// ---------------------------------------------------------------------------------------------------
// Render errors

#[test]
fn render_errors_never_quote_values() {
    let repo = GitRepo::new();
    repo.write(
        "compose.yaml",
        &format!("services:\n  app:\n    image: {IMAGE}\n    command: [sleep, '3600']\n"),
    );
    repo.commit_push("good");
    let mut agent = Agent::new("leaks-render", AgentOptions::new(&repo.url()));
    agent.spawn_env(&[("AGENT_MARK", "SECRET-MARK-agent-env")]);
    agent.reconcile_ok();

    let bad: [(&str, &str, &str); 4] = [
        (
            "a YAML tag on an environment value",
            "services:\n  app:\n    image: IMAGE\n    environment:\n      PASSWORD: !!int SECRET-MARK-yaml-tag\n",
            "",
        ),
        (
            "bad environment, secrets, configs and .env values",
            "services:\n  app:\n    image: IMAGE\n    environment:\n      PASSWORD: [SECRET-MARK-env-list]\n      FROM_AGENT: ${AGENT_MARK}\n    ports: ['${DB_PASS}']\n    mem_limit: ${AGENT_MARK}\n    secrets: [db]\n    configs: [cfg]\nsecrets:\n  db:\n    environment: AGENT_MARK\n    bogus: SECRET-MARK-secret-key\nconfigs:\n  cfg:\n    content: SECRET-MARK-config-content\n    unknown_key: SECRET-MARK-config-key\n",
            "DB_PASS=SECRET-MARK-dotenv-port\n",
        ),
        (
            "a .env line that does not parse",
            "services:\n  app:\n    image: IMAGE\n    environment:\n      A: ${DB_PASS}\n",
            "DB_PASS=SECRET-MARK-dotenv-ok\nBROKEN=\"SECRET-MARK-dotenv-quote\n",
        ),
        (
            "an environment list entry and a secret value where a mapping belongs",
            "services:\n  app:\n    image: IMAGE\n    environment:\n      - PASSWORD=SECRET-MARK-env-entry\n      - 7=SECRET-MARK-env-bad-name\n    healthcheck: SECRET-MARK-healthcheck\nsecrets:\n  db: SECRET-MARK-secret-scalar\n",
            "",
        ),
    ];
    for (what, compose, dotenv) in bad {
        repo.write("compose.yaml", &compose.replace("IMAGE", IMAGE));
        if dotenv.is_empty() {
            if repo.work.join(".env").exists() {
                repo.remove(".env");
            }
        } else {
            repo.write(".env", dotenv);
        }
        repo.commit_push(what);
        let o = agent.reconcile_wait();
        assert!(!o.status.success(), "{what}: {}", show(&o));
        let st = agent.status_json();
        let error = str_field(&st, "last_error").unwrap_or_default().to_string();
        assert!(
            error.contains("compose.yaml") || error.contains(".env"),
            "{what}: the error names the file: {error}"
        );
        eprintln!("{what}: {error}");
        let mut searched = Searched::default();
        searched.add("status JSON", st.to_string());
        searched.add(
            "history JSON",
            Value::Array(agent.history_json()).to_string(),
        );
        searched.add("berth reconcile --wait output", show(&o));
        searched.add("agent log", agent.log_text());
        searched.add_tree(&agent.state_dir.join("store"));
        let hits = searched.find(&[("a marked value", "SECRET-MARK")]);
        assert_eq!(hits, Vec::<(String, String)>::new(), "{what}");
    }
}

// ---------------------------------------------------------------------------------------------------
// The whole agent

/// `docker inspect` of `name`, as JSON text.
fn inspect_json(name: &str) -> String {
    docker_ok(&["container", "inspect", name])
}

#[test]
fn nothing_secret_is_found_in_anything_berth_wrote() {
    let secrets_dir = tempfile::tempdir().unwrap();
    let token = "tok-LEAKTEST-5e1b9c7a";
    let env_secret = "envval-LEAKTEST-93c2d1";
    let secret_source = "secretsrc-LEAKTEST-41f7e0";
    let sops_value = "sopsval-LEAKTEST-c3a9e2";

    // Git over HTTP with a token.
    let repo = GitRepo::new();
    let (git_server, _denied) = git_http_backend(repo.bare.parent().unwrap(), "deploy", token);
    let url = format!("http://127.0.0.1:{}/remote.git", git_server.port);
    let token_file = secrets_dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();

    // A private registry with a password.
    let registry = Registry::start();
    let auth_file = registry.login_config.join("config.json");
    let auth_json: Value =
        serde_json::from_str(&std::fs::read_to_string(&auth_file).unwrap()).unwrap();
    let registry_auth = auth_json["auths"][&registry.host]["auth"]
        .as_str()
        .expect("docker login wrote an auth")
        .to_string();
    let decoded = String::from_utf8(STANDARD.decode(&registry_auth).unwrap()).unwrap();
    let registry_password = decoded.split_once(':').unwrap().1.to_string();
    let image = registry.reference(&format!("leaks-{}:1", std::process::id()));
    registry.push_as(IMAGE, &image);

    // With SOPS: a real age key, and a secret file encrypted for it.
    let (age_key_file, age_key) = {
        let key_file = secrets_dir.path().join("age.key");
        let o = Command::new("age-keygen")
            .arg("-o")
            .arg(&key_file)
            .output()
            .unwrap();
        assert!(o.status.success(), "age-keygen: {}", show(&o));
        let text = std::fs::read_to_string(&key_file).unwrap();
        let key = text
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-"))
            .expect("age-keygen wrote a key")
            .to_string();
        let o = Command::new("age-keygen")
            .arg("-y")
            .arg(&key_file)
            .output()
            .unwrap();
        let recipient = stdout(&o).trim().to_string();
        let plain = secrets_dir.path().join("sops-value.txt");
        std::fs::write(&plain, sops_value).unwrap();
        let o = Command::new("sops")
            .args(["encrypt", "--age", &recipient])
            .arg(&plain)
            .output()
            .unwrap();
        assert!(o.status.success(), "sops encrypt: {}", show(&o));
        repo.write("sops-value.txt", &stdout(&o));
        (key_file, key)
    };
    repo.write(
        "compose.yaml",
        &format!(
            "services:\n  app:\n    image: {image}\n    command: [sleep, '3600']\n    environment:\n      APP_PASSWORD: ${{APP_SECRET}}\n    secrets: [token, sops_value]\nsecrets:\n  token:\n    environment: APP_SECRET_SOURCE\n  sops_value:\n    file: ./sops-value.txt\n"
        ),
    );
    repo.commit_push("app");

    let mut opts = AgentOptions::new(&url);
    opts.extra_source = format!(
        "  token_file: {}\n  username: deploy\n",
        token_file.display()
    );
    let mut agent = Agent::new("leaks-all", opts);
    append(
        &agent.config,
        &format!("docker:\n  auth_file: {}\n", auth_file.display()),
    );
    let mut secrets: Vec<(&str, &str)> = vec![
        ("the Git token", token),
        ("the registry password", &registry_password),
        ("the registry auth (base64 user:password)", &registry_auth),
        ("an environment value", env_secret),
        ("a secret's source value", secret_source),
    ];
    append(
        &agent.config,
        &format!("secrets:\n  age_key_file: {}\n", age_key_file.display()),
    );
    secrets.push(("the age key", &age_key));
    secrets.push(("a SOPS-decrypted value", sops_value));
    agent.spawn_env(&[
        ("APP_SECRET", env_secret),
        ("APP_SECRET_SOURCE", secret_source),
    ]);
    agent.reconcile_ok();
    let app = agent.container("app");
    assert!(is_running(&app));
    // The secrets did their work: the container has them where the compose file put them.
    assert!(container_env(&app).contains(&format!("APP_PASSWORD={env_secret}")));
    assert_eq!(exec(&app, "cat /run/secrets/token").trim(), secret_source);
    assert_eq!(exec(&app, "cat /run/secrets/sops_value").trim(), sops_value);
    // A second cycle (nothing to fetch) writes its own records too.
    agent.reconcile_ok();

    let mut searched = Searched::default();
    searched.add("status JSON", agent.status_json().to_string());
    searched.add(
        "history JSON",
        Value::Array(agent.history_json()).to_string(),
    );
    let human = agent.cli(&["status"]);
    searched.add("berth status", show(&human));
    searched.add_tree(&agent.state_dir);
    searched.add_tree(agent.socket.parent().unwrap());
    let labels = container_labels(&app);
    searched.add(
        format!("labels of container {app}"),
        serde_json::to_string(&labels).unwrap(),
    );
    let network = format!("{}_default", agent.stack());
    let network_labels = docker_ok(&[
        "network",
        "inspect",
        "--format",
        "{{json .Labels}}",
        &network,
    ]);
    searched.add(format!("labels of network {network}"), network_labels);
    let mut hits = searched.find(&secrets);
    // Where berth does not control the engine's copy (the container's environment and files are the
    // compose file's choice), only the credentials berth holds must be absent.
    let mut engine = Searched::default();
    engine.add(format!("docker inspect {app}"), inspect_json(&app));
    let held: Vec<(&str, &str)> = secrets
        .iter()
        .filter(|(name, _)| {
            !matches!(
                *name,
                "an environment value" | "a secret's source value" | "a SOPS-decrypted value"
            )
        })
        .copied()
        .collect();
    hits.extend(engine.find(&held));
    // The log last: everything above ran through the agent.
    let mut log = Searched::default();
    log.add("agent log", agent.log_text());
    hits.extend(log.find(&secrets));
    assert_eq!(mode(&agent.state_dir), 0o700);
    assert_eq!(
        hits,
        Vec::<(String, String)>::new(),
        "secrets found in what berth wrote"
    );
}

/// Credentials written in `source.url` (what the README warns against) work, and are found nowhere berth
/// wrote: the clone's config keeps the URL without them, status and log show it redacted.
#[test]
fn credentials_in_the_url_are_found_nowhere() {
    let password = "urlpw-LEAKTEST-0b7c55";
    let repo = GitRepo::new();
    let (git_server, _denied) = git_http_backend(repo.bare.parent().unwrap(), "deploy", password);
    let port = git_server.port;
    repo.write(
        "compose.yaml",
        &format!("services:\n  app:\n    image: {IMAGE}\n    command: [sleep, '3600']\n"),
    );
    repo.commit_push("app");
    let url = format!("http://deploy:{password}@127.0.0.1:{port}/remote.git");
    let agent = Agent::start_with("leaks-url", AgentOptions::new(&url));
    agent.reconcile_ok();
    assert!(is_running(&agent.container("app")));
    let origin = Command::new("git")
        .arg("-C")
        .arg(agent.state_dir.join("repo"))
        .args(["remote", "get-url", "origin"])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&origin).trim(),
        format!("http://127.0.0.1:{port}/remote.git")
    );
    let mut searched = Searched::default();
    searched.add("status JSON", agent.status_json().to_string());
    searched.add(
        "history JSON",
        Value::Array(agent.history_json()).to_string(),
    );
    searched.add_tree(&agent.state_dir);
    searched.add("agent log", agent.log_text());
    let hits = searched.find(&[
        ("the URL's password", password),
        ("the URL's user info", "deploy:urlpw"),
    ]);
    assert_eq!(hits, Vec::<(String, String)>::new());
}
