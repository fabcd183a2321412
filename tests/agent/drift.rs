//! The drift scenario the drift-watcher tests run, one hand-made change each.

use super::fixtures::{compose, service};
use crate::util::*;

/// 5b. The drift watcher (engine events) corrects a hand-made change to `web` without any trigger (the
/// interval is 1h): `web` runs again, twice in a row, and `api` is not touched.
pub(super) fn drift_is_corrected_without_a_trigger(name: &str, action: &[&str]) {
    let repo = GitRepo::new();
    repo.write(
        "compose.yaml",
        &compose(&[service("web", ""), service("api", "")]),
    );
    repo.commit_push("two");
    let agent = Agent::start(name, &repo);
    agent.reconcile_ok();
    let web = agent.container("web");
    let api_id = container_id(&agent.container("api"));
    let cycles = agent.status_json()["cycles"].as_u64().unwrap_or(0);

    for round in 1..=2 {
        // The watcher may repair the change before this test looks, so "it took effect and was
        // corrected" is a new start of the container (or a new container), not a stopped one seen.
        let started = || inspect(&web, "{{.Id}} {{.State.StartedAt}}");
        let before = started();
        let mut args = action.to_vec();
        args.push(&web);
        docker_ok(&args);
        wait_until(
            TIMEOUT,
            &format!("round {round}: the drift watcher to correct `docker {action:?}` of {web}"),
            || is_running(&web) && started() != before,
        );
    }
    assert_eq!(
        container_id(&agent.container("api")),
        api_id,
        "api untouched"
    );
    assert_eq!(agent.owned().len(), 2, "{:#?}", agent.owned());
    let st = agent.status_json();
    assert!(
        st["cycles"].as_u64().unwrap_or(0) > cycles,
        "corrected by a cycle of the agent: {st:#}"
    );
}
