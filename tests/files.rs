//! Secrets and configs copied into containers (a tar archive with GNU headers), and values from a compose
//! file or the agent config that are out of range: clear errors, never a panic, nothing created.

use crate::util::*;
use std::path::PathBuf;

/// A plain directory named after the (unique) agent id holding `compose.yaml` and `.env`.
struct Stack {
    _tmp: tempfile::TempDir,
    path: PathBuf,
    name: String,
}

impl Stack {
    fn new(name: &str, compose: &str, env: &str) -> Stack {
        let tmp = tempfile::Builder::new()
            .prefix("berth-files-")
            .tempdir()
            .unwrap();
        let name = agent_id(name);
        let path = tmp.path().join(&name);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("compose.yaml"), compose).unwrap();
        std::fs::write(path.join(".env"), env).unwrap();
        Stack {
            _tmp: tmp,
            path,
            name,
        }
    }

    fn arg(&self) -> &str {
        self.path.to_str().unwrap()
    }

    fn apply(&self) -> std::process::Output {
        berth(&["apply", self.arg(), "--agent-id", &self.name])
    }
}

/// A service with the secret `token` (its value in the stack's .env) owned by `uid`/`gid`.
fn with_secret(uid: &str, gid: &str) -> String {
    format!(
        "services:\n  app:\n    image: {IMAGE}\n    command: {IDLE}\n    secrets:\n      - source: token\n        uid: \"{uid}\"\n        gid: \"{gid}\"\n        mode: 0440\nsecrets:\n  token:\n    environment: FILES_TOKEN\n"
    )
}

#[test]
fn secret_with_a_uid_over_2_pow_21_is_written_with_that_owner() {
    let stack = Stack::new(
        "files-big-uid",
        &with_secret("3000000", "3000001"),
        "FILES_TOKEN=tok-value-1\n",
    );
    let _guard = OwnedGuard(stack.name.clone());
    let o = stack.apply();
    assert!(o.status.success(), "{}", show(&o));
    let name = format!("{}-app-1", stack.name);
    assert!(is_running(&name), "{}", show(&o));
    assert_eq!(
        exec(&name, "stat -c '%u:%g %a' /run/secrets/token"),
        "3000000:3000001 440"
    );
    assert_eq!(exec(&name, "cat /run/secrets/token"), "tok-value-1");
}

#[test]
fn non_numeric_uid_is_a_clear_error_and_no_container_is_created() {
    let stack = Stack::new(
        "files-bad-uid",
        &with_secret("www-data", "0"),
        "FILES_TOKEN=tok-value-2\n",
    );
    let _guard = OwnedGuard(stack.name.clone());
    let o = stack.apply();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = stderr(&o);
    // Refused by render, at its file and line, before anything on the engine is touched.
    assert!(
        err.contains("compose.yaml:7")
            && err.contains("service app")
            && err.contains("secrets[0].uid: must be a whole number"),
        "{}",
        show(&o)
    );
    assert!(!show(&o).contains("tok-value-2"), "{}", show(&o));
    assert!(owned_containers(&stack.name).is_empty(), "{}", show(&o));
}

/// Each out-of-range duration is reported at its own line; `berth render` exits 1, not 101 (a panic).
#[test]
fn render_of_overflowing_durations_exits_1_naming_file_and_line() {
    let compose = format!(
        "services:\n  app:\n    image: {IMAGE}\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n      interval: 99999999999999999999s\n      timeout: \"99999999999999999999\"\n    stop_grace_period: 99999999999999999999s\n    pull_policy: every_99999999999999999999h\n"
    );
    let stack = Stack::new("files-durations", &compose, "");
    let o = berth(&["render", stack.arg()]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = stderr(&o);
    for line in [6, 7, 8, 9] {
        assert!(
            err.contains(&format!("compose.yaml:{line}")),
            "line {line}: {err}"
        );
    }
    assert!(err.contains("10 years"), "{err}");
    assert!(stdout(&o).trim().is_empty(), "{}", show(&o));
}

/// An overflowing `source.interval` is a config error (exit 78) naming the key.
#[test]
fn overflowing_interval_in_the_agent_config_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "agent_id: files-config\nsource:\n  url: file:///nonexistent\n  interval: 99999999999999999999s\n",
    )
    .unwrap();
    let o = berth(&["status", "--config", config.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(78), "{}", show(&o));
    let err = stderr(&o);
    assert!(
        err.contains("source.interval") && err.contains("10 years"),
        "{err}"
    );
}
