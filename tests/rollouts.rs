//! Safe rollouts against the real engine and a real agent: the health gate rolls a broken commit back and
//! quarantines it, preflight refuses what would clash before anything changes, the empty-render guard,
//! the poison-commit guard, crash recovery without network, and suspend/resume.

use crate::util::*;
use serde_json::Value;
use std::time::{Duration, Instant};

fn idle(name: &str, extra: &str) -> String {
    format!("  {name}:\n    image: {IMAGE}\n    command: {IDLE}\n{extra}")
}

fn compose(services: &[String]) -> String {
    format!("services:\n{}", services.concat())
}

fn env(rev: &str) -> String {
    format!("    environment:\n      REV: \"{rev}\"\n")
}

/// A gate that is quick but real: 2 s of stability within 30 s.
fn gated(repo: &GitRepo, interval: &str) -> AgentOptions {
    let mut o = AgentOptions::new(&repo.url());
    o.interval = interval.into();
    o.rollout = "rollout:\n  stable: 2s\n  timeout: 30s\n".into();
    o
}

fn history_entry(agent: &Agent, commit: &str) -> Value {
    agent
        .history_json()
        .into_iter()
        .find(|h| h["commit"] == commit)
        .unwrap_or_else(|| panic!("no history entry for {commit}: {:#?}", agent.history_json()))
}

/// `(name, id)` of every owned container, running or not.
fn owned_ids(agent: &Agent) -> Vec<(String, String)> {
    agent.owned().into_iter().map(|c| (c.name, c.id)).collect()
}

/// Watch for `window`: the owned containers must stay exactly `want` (no container created or removed).
fn no_container_changes_for(agent: &Agent, want: &[(String, String)], window: Duration) {
    let start = Instant::now();
    while start.elapsed() < window {
        let now = owned_ids(agent);
        assert_eq!(
            now, want,
            "a container changed during the quarantine window"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn rolled_back_then_quarantined(name: &str, breaking: &str, reasons: &[&str]) {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose(&[idle("app", &env("1"))]));
    let good = repo.commit_push("good");
    // The interval is short: the agent keeps cycling by itself while the commit is quarantined.
    let agent = Agent::start_with(name, gated(&repo, "2s"));
    wait_until(TIMEOUT, "the good commit applied", || {
        str_field(&agent.status_json(), "applied_commit") == Some(good.as_str())
    });
    let good_id = container_id(&agent.container("app")).expect("app");

    repo.write("compose.yaml", &compose(&[breaking.to_string()]));
    let bad = repo.commit_push("bad");
    // The agent finds it by itself (interval 2 s), rolls it out, and the gate fails.
    let entry = wait_for(TIMEOUT, "the bad commit rolled back", || {
        agent
            .history_json()
            .into_iter()
            .find(|h| h["commit"] == bad.as_str() && h["outcome"] != "superseded")
    });
    assert_eq!(entry["outcome"], "rolled_back", "{entry:#}");
    let error = entry["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("service app, replica 1") && reasons.iter().any(|r| error.contains(r)),
        "the error names the service and the reason ({reasons:?}): {error}"
    );
    // The box runs the last good spec again; status says why (once that cycle has finished).
    let st = wait_for(
        TIMEOUT,
        "status to show the quarantine and the error",
        || {
            let st = agent.status_json();
            (st["quarantined"]["commit"] == bad.as_str() && !st["error_class"].is_null())
                .then_some(st)
        },
    );
    assert_eq!(
        str_field(&st, "applied_commit"),
        Some(good.as_str()),
        "{st:#}"
    );
    assert!(
        matches!(str_field(&st, "error_class"), Some("rollout" | "input")),
        "the rollback cycle's class, or a later cycle's refusal of the quarantined commit: {st:#}"
    );
    let app = agent.container("app");
    wait_until(TIMEOUT, "the good spec running again", || {
        is_running(&app) && container_env(&app).contains(&"REV=1".to_string())
    });
    assert_ne!(
        container_id(&app),
        Some(good_id),
        "rolled back by a recreate"
    );
    // Quarantine: the agent keeps cycling (interval 2 s) but creates nothing for 15 s.
    let before = owned_ids(&agent);
    no_container_changes_for(&agent, &before, Duration::from_secs(15));
    assert!(agent.status_json()["cycles"].as_u64().unwrap_or(0) >= 4);

    // The next good commit is applied.
    repo.write("compose.yaml", &compose(&[idle("app", &env("3"))]));
    let next = repo.commit_push("fixed");
    agent.reconcile_ok();
    let st = agent.status_json();
    assert_eq!(
        str_field(&st, "applied_commit"),
        Some(next.as_str()),
        "{st:#}"
    );
    assert!(st["quarantined"].is_null(), "the remote moved on: {st:#}");
    assert_eq!(history_entry(&agent, &next)["outcome"], "applied");
}

#[test]
fn a_service_that_keeps_exiting_is_rolled_back_and_quarantined() {
    let breaking = format!(
        "  app:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"exit 3\"]\n    restart: always\n{}",
        env("2")
    );
    // Caught between restarts, or as it exits.
    rolled_back_then_quarantined("gate-exit", &breaking, &["restarted", "exited with code 3"]);
}

#[test]
fn a_failing_healthcheck_is_rolled_back_with_its_output() {
    let breaking = idle(
        "app",
        &format!(
            "{}    healthcheck:\n      test: [\"CMD-SHELL\", \"echo db-down-marker; exit 1\"]\n      interval: 1s\n      retries: 1\n",
            env("2")
        ),
    );
    rolled_back_then_quarantined("gate-health", &breaking, &["unhealthy: db-down-marker"]);
}

#[test]
fn rollout_on_failure_keep_leaves_the_new_revision_failed() {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose(&[idle("app", &env("1"))]));
    repo.commit_push("good");
    let mut opts = gated(&repo, "1h");
    opts.rollout = "rollout:\n  stable: 1s\n  timeout: 20s\n  on_failure: keep\n".into();
    let agent = Agent::start_with("gate-keep", opts);
    agent.reconcile_ok();
    repo.write(
        "compose.yaml",
        &compose(&[format!(
            "  app:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"exit 4\"]\n    restart: \"no\"\n"
        )]),
    );
    let bad = repo.commit_push("bad");
    let o = agent.reconcile_wait();
    assert!(!o.status.success(), "{}", show(&o));
    let entry = history_entry(&agent, &bad);
    assert_eq!(entry["outcome"], "failed", "{entry:#}");
    assert!(
        entry["error"]
            .as_str()
            .is_some_and(|e| e.contains("exited with code 4")),
        "{entry:#}"
    );
    let st = agent.status_json();
    assert_eq!(
        str_field(&st, "applied_commit"),
        Some(bad.as_str()),
        "{st:#}"
    );
    assert_ne!(
        st["last_good_seq"], st["applied_seq"],
        "the last good pointer only moves to a revision that passed: {st:#}"
    );
}

#[test]
fn a_missing_external_network_fails_before_anything_is_created() {
    let repo = GitRepo::new();
    let missing = format!("berth-absent-{}", std::process::id());
    repo.write(
        "compose.yaml",
        &format!(
            "{}networks:\n  outside:\n    external: true\n    name: {missing}\n",
            compose(&[idle("app", "    networks: [outside]\n"), idle("other", ""),])
        ),
    );
    let commit = repo.commit_push("external");
    let agent = Agent::start("preflight-external", &repo);
    let o = agent.reconcile_wait();
    assert!(!o.status.success(), "{}", show(&o));
    let entry = history_entry(&agent, &commit);
    assert_eq!(entry["outcome"], "failed", "{entry:#}");
    let error = entry["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("external network {missing} does not exist")),
        "{error}"
    );
    assert!(
        error.contains(&format!("stack {}", agent.stack())),
        "{error}"
    );
    assert!(
        agent.owned().is_empty(),
        "nothing created: {:#?}",
        agent.owned()
    );
    let nets = docker_ok(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("label=io.berth.agent={}", agent.id),
    ]);
    assert!(nets.trim().is_empty(), "no network created: {nets}");
}

#[test]
fn a_network_name_taken_by_a_foreign_network_fails_without_a_duplicate() {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose(&[idle("app", "")]));
    let commit = repo.commit_push("one");
    // Not berth's, under the name berth would create for the stack's default network (the stack is named
    // after the agent id); made before the agent's first cycle.
    let name = format!("{}_default", agent_id("preflight-taken"));
    docker_ok(&["network", "create", &name]);
    struct Net(String);
    impl Drop for Net {
        fn drop(&mut self) {
            let _ = docker(&["network", "rm", &self.0]);
        }
    }
    let _net = Net(name.clone());
    let agent = Agent::start("preflight-taken", &repo);
    let o = agent.reconcile_wait();
    assert!(!o.status.success(), "{}", show(&o));
    let entry = history_entry(&agent, &commit);
    assert_eq!(entry["outcome"], "failed", "{entry:#}");
    let error = entry["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("network {name} exists and is not berth's")),
        "{error}"
    );
    assert!(agent.owned().is_empty(), "nothing created");
    let same_name = docker_ok(&["network", "ls", "-q", "--filter", &format!("name=^{name}$")]);
    assert_eq!(
        same_name.lines().count(),
        1,
        "no duplicate network: {same_name}"
    );
}

#[test]
fn a_commit_that_removes_every_compose_file_is_refused_unless_allowed() {
    for allowed in [false, true] {
        let repo = GitRepo::new();
        repo.write("compose.yaml", &compose(&[idle("app", "")]));
        repo.write("README.md", "fleet\n");
        repo.commit_push("one");
        let mut opts = AgentOptions::new(&repo.url());
        if allowed {
            opts.rollout.push_str("allow_empty: true\n");
        }
        let agent = Agent::start_with(&format!("empty-{allowed}"), opts);
        agent.reconcile_ok();
        assert_eq!(agent.owned().len(), 1);
        repo.remove("compose.yaml");
        let empty = repo.commit_push("delete everything");
        let o = agent.reconcile_wait();
        let entry = history_entry(&agent, &empty);
        if allowed {
            assert!(o.status.success(), "{}", show(&o));
            assert_eq!(entry["outcome"], "applied", "{entry:#}");
            assert!(agent.owned().is_empty(), "{:#?}", agent.owned());
        } else {
            assert!(!o.status.success(), "{}", show(&o));
            assert_eq!(entry["outcome"], "failed", "{entry:#}");
            assert!(
                entry["error"].as_str().is_some_and(
                    |e| e.contains("renders no containers") && e.contains("allow_empty: true")
                ),
                "{entry:#}"
            );
            assert_eq!(agent.owned().len(), 1, "the running container stays");
            assert!(is_running(&agent.container("app")));
        }
    }
}

/// A compose file whose `app` waits on `db` becoming healthy, which it does only once `/tmp/ready` exists
/// in it: an apply that stays in the middle for as long as the test wants.
fn stalled(rev: &str) -> String {
    compose(&[
        idle(
            "db",
            &format!(
                "{}    healthcheck:\n      test: [\"CMD\", \"test\", \"-f\", \"/tmp/ready\"]\n      interval: 1s\n      retries: 1000\n",
                env(rev)
            ),
        ),
        idle(
            "app",
            &format!(
                "{}    depends_on:\n      db:\n        condition: service_healthy\n",
                env(rev)
            ),
        ),
    ])
}

/// An agent that applied commit one (app REV=1), then was killed with SIGKILL inside the apply of commit two
/// (its db created, app waiting on db's health): `(repo, agent, one, two)`.
fn killed_mid_apply(name: &str) -> (GitRepo, Agent, String, String) {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose(&[idle("app", &env("1"))]));
    let one = repo.commit_push("one");
    let mut agent = Agent::start(name, &repo);
    agent.reconcile_ok();
    repo.write("compose.yaml", &stalled("2"));
    let two = repo.commit_push("two");
    let o = agent.cli(&["reconcile"]);
    assert!(o.status.success(), "{}", show(&o));
    let db = agent.container("db");
    wait_until(TIMEOUT, "the apply to wait on db", || {
        container_id(&db).is_some()
            && container_labels(&db)
                .get("io.berth.revision")
                .map(String::as_str)
                == Some(&two)
    });
    agent.kill9();
    (repo, agent, one, two)
}

#[test]
fn kill_9_mid_apply_then_restart_without_network_resumes_the_new_commit() {
    let (repo, mut agent, _, two) = killed_mid_apply("resume-offline");
    // Offline from now on; and the dependency becomes healthy.
    repo.delete_remote();
    exec(&agent.container("db"), "touch /tmp/ready");
    agent.spawn();
    wait_until(TIMEOUT, "the resumed commit applied", || {
        str_field(&agent.status_json(), "applied_commit") == Some(two.as_str())
    });
    assert!(is_running(&agent.container("app")));
    assert!(container_env(&agent.container("app")).contains(&"REV=2".to_string()));
    assert_eq!(history_entry(&agent, &two)["outcome"], "applied");
}

#[test]
fn an_agent_killed_twice_applying_a_commit_quarantines_it() {
    let (_repo, mut agent, one, two) = killed_mid_apply("poison");
    // The restarted agent resumes the same commit and gets stuck again.
    agent.spawn();
    wait_until(TIMEOUT, "the second start to resume the apply", || {
        agent.log_text().contains("resuming the apply")
    });
    agent.kill9();
    agent.spawn();
    let entry = wait_for(TIMEOUT, "the commit recorded as poisoned", || {
        agent
            .history_json()
            .into_iter()
            .find(|h| h["commit"] == two.as_str())
    });
    assert_eq!(entry["outcome"], "failed", "{entry:#}");
    assert!(
        entry["error"]
            .as_str()
            .is_some_and(|e| e.contains("the agent stopped while applying this commit")),
        "{entry:#}"
    );
    let st = agent.status_json();
    assert_eq!(st["quarantined"]["commit"], two.as_str(), "{st:#}");
    assert_eq!(
        str_field(&st, "applied_commit"),
        Some(one.as_str()),
        "{st:#}"
    );
    // A reconcile does not apply it again: quarantined until the remote moves.
    let o = agent.reconcile_wait();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("quarantined"), "{}", show(&o));
    assert!(container_env(&agent.container("app")).contains(&"REV=1".to_string()));
}

#[test]
fn suspend_stops_drift_repair_until_resume() {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose(&[idle("app", "")]));
    repo.commit_push("one");
    let agent = Agent::start("suspend", &repo);
    agent.reconcile_ok();
    let app = agent.container("app");
    let o = agent.cli(&["suspend"]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(agent.status_json()["suspended"], true);
    docker_ok(&["rm", "-f", &app]);
    // The drift watcher would repair this within a second; suspended, nothing happens.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        container_id(&app).is_none(),
        "removed by hand stays removed"
    );
    let o = agent.reconcile_wait();
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        container_id(&app).is_none(),
        "a reconcile does nothing while suspended"
    );
    assert!(stdout(&agent.cli(&["status"])).contains("suspended: yes"));
    let o = agent.cli(&["resume"]);
    assert!(o.status.success(), "{}", show(&o));
    wait_until(TIMEOUT, "resume restores the container", || {
        is_running(&app)
    });
    assert_eq!(agent.status_json()["suspended"], false);
}

/// Overflowing numbers in a pushed commit: the agent stays up, status names the file and line of each,
/// and no container changes.
#[test]
fn overflowing_values_in_a_pushed_commit_change_nothing_and_name_their_line() {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose(&[idle("app", &env("1"))]));
    let good = repo.commit_push("good");
    let agent = Agent::start("overflow", &repo);
    agent.reconcile_ok();
    let before = owned_ids(&agent);
    let bad = format!(
        "services:\n  app:\n    image: {IMAGE}\n    command: {IDLE}\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n      interval: 99999999999999999999s\n    shm_size: 99999999999999999999g\n    stop_grace_period: 18446744073709551616s\n    secrets:\n      - source: token\n        uid: \"4294967296\"\nsecrets:\n  token:\n    environment: HOME\n"
    );
    repo.write("compose.yaml", &bad);
    let commit = repo.commit_push("overflow");
    let o = agent.reconcile_wait();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let st = agent.status_json();
    assert_eq!(
        str_field(&st, "applied_commit"),
        Some(good.as_str()),
        "{st:#}"
    );
    assert_eq!(str_field(&st, "error_class"), Some("input"), "{st:#}");
    let error = str_field(&st, "last_error").unwrap_or_default().to_string();
    for line in [
        "compose.yaml:7",
        "compose.yaml:8",
        "compose.yaml:9",
        "compose.yaml:12",
    ] {
        assert!(error.contains(line), "{line} named: {error}");
    }
    assert!(
        !error.contains("99999999999999999999"),
        "values are not quoted: {error}"
    );
    assert_eq!(history_entry(&agent, &commit)["outcome"], "failed");
    assert_eq!(owned_ids(&agent), before, "no container changed");
    assert!(is_running(&agent.container("app")));
}

/// A newer commit arriving while a rollout waits on its gate supersedes it: the loop stops waiting and
/// goes on with the newer commit. Status shows the rollout while it runs.
#[test]
fn a_newer_commit_supersedes_a_rollout_waiting_on_its_gate() {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose(&[idle("app", &env("1"))]));
    repo.commit_push("one");
    let mut opts = AgentOptions::new(&repo.url());
    opts.rollout = "rollout:\n  stable: 20s\n  timeout: 60s\n".into();
    let agent = Agent::start_with("supersede", opts);
    wait_until(TIMEOUT, "the first commit applied", || {
        !agent.status_json()["applied_commit"].is_null()
    });
    repo.write("compose.yaml", &compose(&[idle("app", &env("2"))]));
    let two = repo.commit_push("two");
    let o = agent.cli(&["reconcile"]);
    assert!(o.status.success(), "{}", show(&o));
    wait_until(TIMEOUT, "status to show the rollout of two", || {
        agent.status_json()["rollout"]["commit"] == two.as_str()
    });
    let text = stdout(&agent.cli(&["status"]));
    assert!(
        text.contains(&format!("rolling out {}", &two[..12])),
        "{text}"
    );
    repo.write("compose.yaml", &compose(&[idle("app", &env("3"))]));
    let three = repo.commit_push("three");
    let o = agent.reconcile_wait();
    assert!(o.status.success(), "{}", show(&o));
    // Two's gate was cut short (it needed 20 s of stability): recorded as superseded, never as good.
    assert_eq!(history_entry(&agent, &two)["outcome"], "superseded");
    assert_eq!(history_entry(&agent, &three)["outcome"], "applied");
    let st = agent.status_json();
    assert_eq!(
        str_field(&st, "applied_commit"),
        Some(three.as_str()),
        "{st:#}"
    );
    assert_eq!(st["last_good_seq"], st["applied_seq"], "{st:#}");
    assert!(container_env(&agent.container("app")).contains(&"REV=3".to_string()));
}
