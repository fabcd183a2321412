//! No secret value in any log line: the agent's log writer masks every value it knows to be secret, not
//! only in the "cycle failed" line. Here a real engine message quotes one: a healthcheck whose output
//! echoes an environment value the agent passed through from its own environment fails the health gate,
//! and the gate's reason (with that output) is logged on lines of its own ("commit quarantined …").

use crate::util::*;

#[test]
fn a_secret_echoed_by_a_healthcheck_is_masked_in_every_log_line() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let secret = format!("logsecret-{}-{nanos}", std::process::id());
    let repo = GitRepo::new();
    repo.write(
        "compose.yaml",
        &format!(
            "services:\n  app:\n    image: {IMAGE}\n    command: {IDLE}\n    environment: [API_TOKEN]\n    healthcheck:\n      test: [\"CMD-SHELL\", \"echo token=$$API_TOKEN; exit 1\"]\n      interval: 1s\n      timeout: 5s\n      retries: 1\n"
        ),
    );
    repo.commit_push("a healthcheck that prints a secret and fails");
    let mut opts = AgentOptions::new(&repo.url());
    opts.env = vec![("API_TOKEN".into(), secret.clone())];
    opts.rollout = "rollout:\n  stable: 0s\n  timeout: 40s\n".into();
    // The agent's first cycle (at start) applies the commit and its gate fails.
    let agent = Agent::start_with("log-redaction", opts);
    wait_until(TIMEOUT, "the health gate fails", || {
        agent.log_text().contains("cycle failed")
    });
    // The engine really echoed the value: the container's health log holds it.
    let health = inspect(&agent.container("app"), "{{json .State.Health}}").unwrap_or_default();
    assert!(health.contains(&format!("token={secret}")), "{health}");

    let log = agent.log_text();
    assert!(
        !log.contains(&secret),
        "the secret value is in the agent's log:\n{log}"
    );
    let masked: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("token=***") && !l.contains("cycle failed"))
        .collect();
    assert!(
        !masked.is_empty(),
        "a line besides \"cycle failed\" quotes the healthcheck output, masked:\n{log}"
    );

    // Nor in the quarantine reason that status shows (text and JSON), nor in any file berth wrote.
    let st = agent.status_json();
    assert!(
        !st["quarantined"].is_null(),
        "the commit is quarantined: {st:#}"
    );
    let raw = serde_json::to_string(&st).unwrap();
    assert!(!raw.contains(&secret), "status JSON: {st:#}");
    assert!(
        raw.contains("token="),
        "the reason still says what failed: {st:#}"
    );
    let text = stdout(&agent.cli(&["status"]));
    assert!(!text.contains(&secret), "berth status: {text}");
    let holding = files_holding(&agent.state_dir, &secret);
    assert!(holding.is_empty(), "files holding the value: {holding:?}");
}
