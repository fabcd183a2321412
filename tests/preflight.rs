//! Preflight against the real engine, with `berth apply DIR --agent-id ID`: a service naming an outside
//! container that does not exist (`volumes_from: [container:NAME]`), or whose namespace it would join
//! while that container is stopped (`network_mode: container:NAME`), fails the apply before the first
//! engine write — the running service it would have recreated keeps its container — and the same
//! apply succeeds once the container exists and runs.

use crate::util::*;

/// `web` (its command marked with `version`, so a new version recreates it) and, when given, a
/// service `other` with the extra keys `other` (indented under the service).
fn stack(version: u32, other: Option<&str>) -> String {
    let mut s = format!(
        r#"services:
  web:
    image: {IMAGE}
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait # v{version}"]
"#
    );
    if let Some(keys) = other {
        s.push_str(&format!(
            "  other:\n    image: {IMAGE}\n    command: {IDLE}\n{keys}"
        ));
    }
    s
}

/// Apply `v1`, then `v2` (which changes `web` and adds `other` naming `outside`): the apply exits 1
/// with `expected` in its errors, `web` keeps its container and `other` is not made. Returns the id
/// of `web`.
fn refused_before_any_write(s: &Stack, other_keys: &str, expected: &str) -> String {
    let o = s.apply();
    assert!(o.status.success(), "first apply: {}", show(&o));
    let web = s.container("web");
    let web_id = container_id(&web).expect("web exists");
    assert!(is_running(&web));

    s.write(&stack(2, Some(other_keys)));
    let o = s.apply();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(stderr(&o).contains(expected), "{}", show(&o));
    assert_eq!(
        container_id(&web).as_deref(),
        Some(web_id.as_str()),
        "web must keep its container: {}",
        show(&o)
    );
    assert!(is_running(&web), "web must still run");
    assert_eq!(container_id(&s.container("other")), None);
    web_id
}

#[test]
fn volumes_from_a_missing_container_is_refused_before_anything_changes() {
    let s = Stack::new("preflight-volumes-from", &stack(1, None));
    let outside = format!("{}-legacy-data", s.id);
    let keys = format!("    volumes_from: [\"container:{outside}:ro\"]\n");
    let expected = format!(
        "stack {}, service other: volumes_from container {outside} does not exist",
        s.id
    );
    let web_id = refused_before_any_write(&s, &keys, &expected);

    let _outside = ForeignContainer::run(&outside, &[]);
    let o = s.apply();
    assert!(o.status.success(), "{}", show(&o));
    let other = s.container("other");
    assert!(is_running(&other), "{}", show(&o));
    assert_eq!(
        inspect(&other, "{{json .HostConfig.VolumesFrom}}").as_deref(),
        Some(format!("[\"{outside}:ro\"]").as_str())
    );
    assert_ne!(
        container_id(&s.container("web")),
        Some(web_id),
        "web is recreated"
    );
}

#[test]
fn joining_a_stopped_containers_network_is_refused_until_it_runs() {
    let s = Stack::new("preflight-network-mode", &stack(1, None));
    let outside = format!("{}-legacy-net", s.id);
    let _outside = ForeignContainer::run(&outside, &[]);
    docker_ok(&["stop", "-t", "0", &outside]);
    let keys = format!("    network_mode: \"container:{outside}\"\n");
    let expected = format!(
        "stack {}, service other: network_mode container {outside} is not running (exited)",
        s.id
    );
    refused_before_any_write(&s, &keys, &expected);

    docker_ok(&["start", &outside]);
    let o = s.apply();
    assert!(o.status.success(), "{}", show(&o));
    let other = s.container("other");
    assert!(is_running(&other), "{}", show(&o));
    // The engine keeps the name as given, or puts the id in its place.
    let outside_id = container_id(&outside).expect("outside exists");
    let mode = inspect(&other, "{{.HostConfig.NetworkMode}}").unwrap_or_default();
    assert!(
        [
            format!("container:{outside}"),
            format!("container:{outside_id}")
        ]
        .contains(&mode),
        "{mode}"
    );
}
