//! Real-world Compose keys run as Compose v2 runs them: Swarm-only `deploy` keys (accepted, ignored,
//! warned about) and `deploy.restart_policy.condition`.

use super::*;

fn render_text(text: &str) -> (Result<DesiredState, RenderError>, Vec<Problem>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), text).unwrap();
    let opts = RenderOptions {
        path: PathBuf::from("."),
        checkout_dir: PathBuf::from("/var/lib/berth/repo"),
        root_stack_name: "edge".into(),
        env: BTreeMap::new(),
    };
    render_warned(&DirTree::new(dir.path()), &opts)
}

fn ok(text: &str) -> (DesiredState, Vec<Problem>) {
    let (r, w) = render_text(text);
    (r.unwrap_or_else(|e| panic!("render failed:\n{e}")), w)
}

fn problems(text: &str) -> Vec<String> {
    match render_text(text).0 {
        Ok(d) => panic!("expected problems, rendered {d:?}"),
        Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
    }
}

fn container<'a>(d: &'a DesiredState, name: &str) -> &'a crate::model::ContainerSpec {
    d.containers().find(|c| c.name == name).unwrap()
}

#[test]
fn swarm_only_deploy_keys_are_ignored_with_a_located_warning() {
    let text = r#"
services:
  web:
    image: busybox
    deploy:
      mode: global
      replicas: 2
      placement:
        constraints: [node.role == manager]
      update_config: {parallelism: 1}
      rollback_config: {parallelism: 1}
      endpoint_mode: vip
      labels: {traefik.enable: "true"}
  plain:
    image: busybox
"#;
    let (d, warnings) = ok(text);
    let (plain, _) =
        ok("services:\n  web: {image: busybox, scale: 2}\n  plain: {image: busybox}\n");
    // Nothing of them reaches the spec: the same containers as without them.
    assert_eq!(
        container(&d, "edge-web-2").spec_hash(),
        container(&plain, "edge-web-2").spec_hash()
    );
    assert!(container(&d, "edge-web-1").labels.is_empty());
    let shown: Vec<String> = warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(shown.len(), 6, "{shown:?}");
    assert!(shown.iter().all(|w| w.contains("compose.yaml:")
        && w.contains("service web")
        && w.contains("as Compose does")));
    assert!(shown
        .iter()
        .any(|w| w.contains(":8: ") && w.contains("deploy.placement")));
    assert!(shown
        .iter()
        .any(|w| w.contains(":6: ") && w.contains("deploy.mode: is a Swarm mode")));
}

#[test]
fn a_job_or_global_mode_alone_runs_one_container() {
    let (d, w) = ok("services:\n  j: {image: busybox, deploy: {mode: replicated-job}}\n  g: {image: busybox, deploy: {mode: global}}\n");
    assert_eq!(d.containers().count(), 2);
    assert_eq!(w.len(), 2);
}

#[test]
fn restart_policy_conditions_map_as_compose_maps_them() {
    for (condition, want) in [
        ("none", "no"),
        ("no", "no"),
        ("any", "always"),
        ("always", "always"),
        ("unless-stopped", "unless-stopped"),
        ("on-failure", "on-failure:2"),
    ] {
        let (d, w) = ok(&format!(
            "services:\n  a: {{image: busybox, deploy: {{restart_policy: {{condition: {condition}, max_attempts: 2}}}}}}\n"
        ));
        assert_eq!(container(&d, "edge-a-1").restart, want, "{condition}");
        assert!(w.is_empty());
    }
    let p = problems(
        "services:\n  a: {image: busybox, deploy: {restart_policy: {condition: sometimes}}}\n",
    );
    assert!(p[0].contains("must be none, on-failure, any or unless-stopped"));
}
