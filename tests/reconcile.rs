//! The loop's timing policy against a real agent: what a failure's class does to the next cycle, and the
//! deadline every cycle runs under. Each test observes the agent's debug log ("checking the remote" is
//! logged once per ask of the Git server) and `berth status --json`.

use crate::util::*;
use std::time::Duration;

fn compose() -> String {
    format!("services:\n  app:\n    image: {IMAGE}\n    command: {IDLE}\n")
}

fn remote_checks(agent: &Agent) -> usize {
    agent.log_text().matches("checking the remote").count()
}

fn cycles(agent: &Agent) -> u64 {
    agent.status_json()["cycles"].as_u64().unwrap_or(0)
}

/// A commit that does not render is an input error: the box waits for the next commit (the interval)
/// instead of asking the Git server again with a short backoff.
#[test]
fn a_render_failure_does_not_poll_the_remote_faster_than_the_interval() {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose());
    repo.commit_push("good");
    let agent = Agent::start("render-no-poll", &repo);
    agent.reconcile_ok();
    repo.write("compose.yaml", "services:\n  app:\n    image: [broken\n");
    repo.commit_push("bad");
    let o = agent.reconcile_wait();
    assert!(!o.status.success(), "a bad commit fails: {}", show(&o));
    let st = agent.status_json();
    assert_eq!(str_field(&st, "error_class"), Some("input"), "{st:#}");
    let checks = remote_checks(&agent);
    let cycles_before = cycles(&agent);
    // The old loop retried a failed cycle after 2 s, fetching again; the window covers two such retries.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        remote_checks(&agent),
        checks,
        "the remote was asked again before the interval:\n{}",
        agent.log_text()
    );
    assert_eq!(cycles(&agent), cycles_before, "no cycle ran by itself");
    assert!(
        is_running(&agent.container("app")),
        "the good revision keeps running"
    );
}

/// An engine that cannot be reached is transient: retried with a growing backoff, and the retries
/// converge the fetched commit without asking the Git server each time.
#[test]
fn an_unreachable_engine_is_retried_with_backoff_without_asking_the_git_server() {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose());
    repo.commit_push("one");
    // A socket that takes connections and closes them unanswered: an engine that is down.
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("no-engine.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming().take(200) {
            drop(s);
        }
    });
    let mut opts = AgentOptions::new(&repo.url());
    opts.extra_source = format!("docker:\n  host: unix://{}\n", sock.display());
    let agent = Agent::start_with("engine-down", opts);
    wait_until(
        TIMEOUT,
        "three failed cycles (the first and two retries)",
        || cycles(&agent) >= 3,
    );
    let st = agent.status_json();
    assert_eq!(str_field(&st, "outcome"), Some("failed"), "{st:#}");
    assert_eq!(str_field(&st, "error_class"), Some("transient"), "{st:#}");
    assert_eq!(
        remote_checks(&agent),
        1,
        "retries after an engine failure must not ask the Git server:\n{}",
        agent.log_text()
    );
}

/// A cycle stuck on a remote that never answers is abandoned at `cycle_timeout`, logged and counted,
/// and the agent goes on answering.
#[test]
fn a_cycle_past_cycle_timeout_is_abandoned_and_counted() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept and hold every connection without a byte of answer.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
            if held.len() > 64 {
                break;
            }
        }
    });
    let mut opts = AgentOptions::new(&format!("http://127.0.0.1:{port}/fleet.git"));
    opts.extra_source = "  timeout: 5m\ncycle_timeout: 2s\n".into();
    opts.rollout = "rollout:\n  stable: 0s\n  timeout: 1s\n".into();
    let agent = Agent::start_with("cycle-timeout", opts);
    let st = wait_for(TIMEOUT, "an abandoned cycle", || {
        let st = agent.status_json();
        (st["cycles_abandoned"].as_u64().unwrap_or(0) >= 1).then_some(st)
    });
    assert_eq!(str_field(&st, "error_class"), Some("transient"), "{st:#}");
    assert!(
        str_field(&st, "last_error").is_some_and(|e| e.contains("abandoned")),
        "{st:#}"
    );
    assert!(
        agent.log_text().contains("cycle abandoned"),
        "{}",
        agent.log_text()
    );
}
