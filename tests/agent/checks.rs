//! What the agent tests look at after a cycle: container ids of services, and a status that says a commit
//! is applied.

use crate::util::*;

/// The container id of each service's first replica (`None` where there is none), in order.
pub(super) fn ids(agent: &Agent, services: &[&str]) -> Vec<Option<String>> {
    services
        .iter()
        .map(|s| container_id(&agent.container(s)))
        .collect()
}

/// Status says `commit` is applied, outcome applied, no error; the status.
pub(super) fn assert_applied(agent: &Agent, commit: &str) -> serde_json::Value {
    let st = agent.status_json();
    assert_eq!(
        str_field(&st, "applied_commit"),
        Some(commit),
        "applied_commit: {st:#}"
    );
    assert_eq!(str_field(&st, "outcome"), Some("applied"), "{st:#}");
    assert!(st["last_error"].is_null(), "last_error: {st:#}");
    st
}

/// Exactly one container for each of `s1`…`sN`, all running, no leftovers; their names.
pub(super) fn assert_one_running_per_service(agent: &Agent, n: usize) -> Vec<String> {
    let owned = agent.owned();
    let names: Vec<String> = owned.iter().map(|c| c.name.clone()).collect();
    let mut want: Vec<String> = (1..=n).map(|i| agent.container(&format!("s{i}"))).collect();
    want.sort();
    assert_eq!(
        names, want,
        "exactly one container per service, no leftovers: {owned:#?}"
    );
    assert!(
        owned.iter().all(|c| c.state == "running"),
        "all running: {owned:#?}"
    );
    names
}
