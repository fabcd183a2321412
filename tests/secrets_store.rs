//! Secret values (the agent's environment, a fact given as `{secret_file: PATH}`) reach the container but
//! never the store, the log, the status socket or the labels in clear; a rollback with the remote gone
//! brings them back from the sealed store.

use crate::util::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const DB_PASSWORD: &str = "s3cret-db-password-7f1c";
const FACT: &str = "s3cret-fact-value-2b9e";

fn compose(mode: &str) -> String {
    format!(
        "services:\n  web:\n    image: {IMAGE}\n    command: {IDLE}\n    environment:\n      \
         DB_URL: \"postgres://app:${{DB_PASSWORD}}@db/app\"\n      API_KEY: \"${{BERTH_FACT_API_KEY}}\"\n      \
         MODE: \"{mode}\"\n"
    )
}

/// Files under `dir` (recursively) whose bytes hold `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    crate::util::files_holding(dir, needle)
        .iter()
        .map(|p| p.display().to_string())
        .collect()
}

/// Nothing the agent keeps, logs, serves or labels holds either secret.
fn assert_no_plaintext(agent: &Agent, web: &str) {
    let served = [
        ("status", agent.cli(&["status", "--json"])),
        ("history", agent.cli(&["history", "--json"])),
        ("diff", agent.cli(&["diff", "--no-fetch"])),
        ("diff --json", agent.cli(&["diff", "--no-fetch", "--json"])),
    ];
    let labels = container_labels(web);
    // The search reads the store's files: a plain value of the desired state is there.
    assert!(
        !files_holding(&agent.state_dir.join("store"), "MODE=").is_empty(),
        "the store's files hold no desired state at all"
    );
    for secret in [DB_PASSWORD, FACT] {
        let files = files_holding(&agent.state_dir, secret);
        assert!(files.is_empty(), "{secret} in clear in {files:?}");
        assert!(
            !agent.log_text().contains(secret),
            "{secret} in the agent's log"
        );
        for (what, o) in &served {
            let text = format!("{}{}", stdout(o), stderr(o));
            assert!(!text.contains(secret), "{secret} in berth {what}: {text}");
        }
        for (k, v) in &labels {
            assert!(!v.contains(secret), "{secret} in label {k}: {v}");
        }
    }
}

#[test]
fn secrets_are_sealed_in_the_store_digested_in_labels_and_back_after_an_offline_rollback() {
    let secrets = tempfile::tempdir().unwrap();
    let fact_file = secrets.path().join("api_key");
    std::fs::write(&fact_file, format!("{FACT}\n")).unwrap();
    std::fs::set_permissions(&fact_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose("1"));
    let c1 = repo.commit_push("v1");
    let mut opts = AgentOptions::new(&repo.url());
    opts.env = vec![("DB_PASSWORD".into(), DB_PASSWORD.into())];
    opts.extra = format!(
        "facts:\n  site: lab\n  api_key: {{secret_file: {}}}\n",
        fact_file.display()
    );
    let mut agent = Agent::start_with("secrets-store", opts);
    agent.reconcile_ok();
    let web = agent.container("web");
    assert!(is_running(&web));
    let want_url = format!("DB_URL=postgres://app:{DB_PASSWORD}@db/app");
    let want_key = format!("API_KEY={FACT}");
    let env = container_env(&web);
    assert!(
        env.contains(&want_url) && env.contains(&want_key),
        "{env:?}"
    );

    // The key: made at first start, private.
    let key = agent.state_dir.join("box.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "box.key mode");
    // The spec label shows keyed digests where the values were; the plain value stays readable.
    let spec = container_labels(&web)
        .get("io.berth.spec")
        .cloned()
        .unwrap_or_default();
    assert!(
        spec.contains("<secret:") && spec.contains("MODE=1"),
        "{spec}"
    );
    let h = agent.history_json();
    assert_eq!(h[0]["facts"]["api_key"], "***", "{h:#?}");
    assert_eq!(h[0]["facts"]["site"], "lab", "{h:#?}");
    assert_no_plaintext(&agent, &web);

    repo.write("compose.yaml", &compose("2"));
    let c2 = repo.commit_push("v2");
    agent.reconcile_ok();
    assert!(container_env(&web).contains(&"MODE=2".to_string()));

    // Offline: the values come back from the sealed store, not from a render.
    repo.delete_remote();
    let o = agent.cli(&["rollback"]);
    assert!(o.status.success(), "berth rollback: {}", show(&o));
    let st = agent.status_json();
    assert_eq!(
        str_field(&st, "applied_commit"),
        Some(c1.as_str()),
        "{st:#}"
    );
    let env = container_env(&web);
    assert!(
        env.contains(&want_url) && env.contains(&want_key) && env.contains(&"MODE=1".into()),
        "{env:?}"
    );
    assert_ne!(c1, c2);
    assert_no_plaintext(&agent, &web);

    // A restart reads the sealed revision back with the same digests: nothing is recreated.
    let id = container_id(&web);
    agent.stop();
    agent.spawn();
    agent.reconcile_wait();
    assert_eq!(container_id(&web), id, "recreated after a restart");
    assert_no_plaintext(&agent, &web);
}

#[test]
fn an_unreadable_secret_fact_or_box_key_stops_the_agent_with_exit_78() {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose("1"));
    repo.commit_push("v1");
    let mut opts = AgentOptions::new(&repo.url());
    opts.extra = "facts:\n  api_key: {secret_file: /nonexistent/berth/api_key}\n".into();
    let agent = Agent::new("secrets-badfact", opts);
    let o = run_with_deadline(
        std::process::Command::new(berth_bin())
            .args(["agent", "--config"])
            .arg(&agent.config),
        CLI_DEADLINE,
    );
    assert_eq!(o.status.code(), Some(78), "{}", show(&o));
    assert!(stderr(&o).contains("api_key"), "{}", show(&o));

    let agent = Agent::new("secrets-badkey", AgentOptions::new(&repo.url()));
    std::fs::create_dir_all(&agent.state_dir).unwrap();
    let key = agent.state_dir.join("box.key");
    std::fs::write(&key, b"too short").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = run_with_deadline(
        std::process::Command::new(berth_bin())
            .args(["agent", "--config"])
            .arg(&agent.config),
        CLI_DEADLINE,
    );
    assert_eq!(o.status.code(), Some(78), "{}", show(&o));
    assert!(stderr(&o).contains("box key"), "{}", show(&o));
    assert_eq!(std::fs::read(&key).unwrap(), b"too short", "never replaced");
}

#[test]
fn apply_and_diff_of_a_directory_digest_with_the_configs_box_key() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let config = tmp.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "source:\n  url: /nonexistent/fleet.git\nstate_dir: {}\nsocket: {}\n",
            state.display(),
            tmp.path().join("s").display()
        ),
    )
    .unwrap();
    let compose = format!(
        "services:\n  web:\n    image: {IMAGE}\n    command: {IDLE}\n    environment:\n      \
         DB_URL: \"postgres://app:${{DB_PASSWORD}}@db/app\"\n"
    );
    let stack = Stack::new("secrets-apply", &compose);
    let o = run_with_deadline(
        stack
            .apply_cmd(&[("DB_PASSWORD", DB_PASSWORD)])
            .arg("--config")
            .arg(&config),
        CLI_DEADLINE,
    );
    assert!(o.status.success(), "berth apply: {}", show(&o));
    assert!(state.join("box.key").exists(), "apply made the box key");
    let web = stack.container("web");
    assert!(container_env(&web).contains(&format!("DB_URL=postgres://app:{DB_PASSWORD}@db/app")));
    let labels = container_labels(&web);
    assert!(
        labels.values().all(|v| !v.contains(DB_PASSWORD)),
        "{labels:?}"
    );
    assert!(labels["io.berth.spec"].contains("<secret:"), "{labels:?}");

    let diff = |password: &str| {
        run_with_deadline(
            std::process::Command::new(berth_bin())
                .arg("diff")
                .arg(&stack.path)
                .args(["--agent-id", &stack.id, "--config"])
                .arg(&config)
                .env("DOCKER_CONFIG", stack.docker_config())
                .env("DB_PASSWORD", password),
            CLI_DEADLINE,
        )
    };
    // Same key, same value: the hashes agree, nothing to do.
    let o = diff(DB_PASSWORD);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    // A changed value is a recreate, shown without either value.
    let rotated = "s3cret-db-password-rotated";
    let o = diff(rotated);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let text = show(&o);
    assert!(text.contains("recreate"), "{text}");
    assert!(
        !text.contains(DB_PASSWORD) && !text.contains(rotated),
        "{text}"
    );
}

#[test]
fn render_repo_marks_a_secret_fact_and_prints_it_masked() {
    let root = tempfile::tempdir().unwrap();
    let host = root.path().join("hosts/box1");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(
        host.join("compose.yaml"),
        format!(
            "services:\n  web:\n    image: {IMAGE}\n    environment:\n      KEY: \"${{BERTH_FACT_API_KEY}}\"\n      \
             SITE: \"${{BERTH_FACT_SITE}}\"\n"
        ),
    )
    .unwrap();
    let secret = tempfile::tempdir().unwrap();
    let file = secret.path().join("api_key");
    std::fs::write(&file, format!("{FACT}\n")).unwrap();
    let render = |path: &Path| {
        berth(&[
            "render",
            "--repo",
            root.path().to_str().unwrap(),
            "hosts/box1",
            "--fact",
            "site=lyon",
            "--secret-fact",
            &format!("api_key={}", path.display()),
            "--json",
        ])
    };
    let o = render(&file);
    assert!(o.status.success(), "{}", show(&o));
    let text = show(&o);
    assert!(!text.contains(FACT), "{text}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let env = &v["hosts/box1"]["stacks"]["box1"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap_or_else(|| panic!("no env in {v:#}"))
            .iter()
            .any(|e| e == "KEY=***"),
        "{env}"
    );
    assert!(
        env.as_array().unwrap().iter().any(|e| e == "SITE=lyon"),
        "{env}"
    );
    let o = render(&secret.path().join("missing"));
    assert_eq!(o.status.code(), Some(64), "{}", show(&o));
    assert!(stderr(&o).contains("api_key"), "{}", show(&o));
}

#[test]
fn a_lost_box_key_refuses_rollback_to_sealed_revisions_and_nothing_else() {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose("1"));
    repo.commit_push("v1");
    let mut opts = AgentOptions::new(&repo.url());
    opts.env = vec![("DB_PASSWORD".into(), DB_PASSWORD.into())];
    opts.extra = "facts:\n  api_key: plain-fact\n".into();
    let mut agent = Agent::start_with("secrets-lostkey", opts);
    agent.reconcile_ok();
    repo.write("compose.yaml", &compose("2"));
    let c2 = repo.commit_push("v2");
    agent.reconcile_ok();
    let web = agent.container("web");
    let old = container_id(&web);

    agent.stop();
    std::fs::remove_file(agent.state_dir.join("box.key")).unwrap();
    agent.spawn();
    assert!(agent.state_dir.join("box.key").exists(), "a new key");
    assert!(
        agent.log_text().contains("a new box key was created"),
        "{}",
        agent.log_text()
    );
    // Following Git still works: the commit is applied again under the new key's digests.
    agent.reconcile_ok();
    let st = agent.status_json();
    assert_eq!(
        str_field(&st, "applied_commit"),
        Some(c2.as_str()),
        "{st:#}"
    );
    assert_ne!(
        container_id(&web),
        old,
        "recreated: its digests changed with the key"
    );
    assert!(container_env(&web).contains(&format!("DB_URL=postgres://app:{DB_PASSWORD}@db/app")));
    assert!(
        agent.history_json().len() >= 3,
        "history still lists the sealed revisions"
    );
    // A rollback to a revision sealed with the old key is refused, clearly, and changes nothing.
    let id = container_id(&web);
    let o = agent.cli(&["rollback", "1"]);
    assert!(!o.status.success(), "{}", show(&o));
    assert!(show(&o).contains("box.key"), "{}", show(&o));
    assert_eq!(container_id(&web), id);
    assert!(container_env(&web).contains(&"MODE=2".to_string()));
}

#[test]
fn an_error_quoting_a_secret_shows_its_digest() {
    let repo = GitRepo::new();
    repo.write(
        "compose.yaml",
        "services:\n  web:\n    image: \"berth-test/absent-${DB_PASSWORD}:1\"\n    pull_policy: never\n",
    );
    repo.commit_push("v1");
    let mut opts = AgentOptions::new(&repo.url());
    opts.env = vec![("DB_PASSWORD".into(), DB_PASSWORD.into())];
    let agent = Agent::start_with("secrets-error", opts);
    let o = agent.reconcile_wait();
    let text = show(&o);
    assert!(!text.contains(DB_PASSWORD), "{text}");
    let st = agent.status_json();
    let error = st["last_error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains("<secret:"),
        "the error names the image, digested: {st:#}"
    );
    assert!(!st.to_string().contains(DB_PASSWORD), "{st:#}");
    let h = agent.cli(&["history", "--json"]);
    assert!(!show(&h).contains(DB_PASSWORD), "{}", show(&h));
    assert!(
        files_holding(&agent.state_dir.join("store"), DB_PASSWORD).is_empty(),
        "in the store"
    );
    for args in [
        &["diff", "--no-fetch"][..],
        &["diff", "--no-fetch", "--json"],
    ] {
        let o = agent.cli(args);
        assert!(
            !show(&o).contains(DB_PASSWORD),
            "berth {args:?}: {}",
            show(&o)
        );
        assert!(
            show(&o).contains("<secret:"),
            "berth {args:?}: {}",
            show(&o)
        );
    }
    assert!(!agent.log_text().contains(DB_PASSWORD), "in the log");
}
