//! Real-world Compose keys run as Compose v2 runs them: legacy `links`, `external_links` and
//! `volumes_from`, `label_file`, Swarm-only
//! `deploy` keys (accepted, ignored, warned about) and `deploy.restart_policy.condition`.

use super::*;
use crate::model::{Condition, Dependency};

fn render_text(text: &str) -> (Result<DesiredState, RenderError>, Vec<Problem>) {
    render_compose_text(text)
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
fn links_become_endpoint_links_on_every_network_and_a_restarting_dependency() {
    let (d, warnings) = ok(r#"
services:
  db: {image: busybox, container_name: the-db}
  cache: {image: busybox, scale: 2, networks: [back, default]}
  web:
    image: busybox
    scale: 2
    networks: [back, default]
    links: [db, "cache:kv"]
networks:
  back:
"#);
    assert!(warnings.is_empty(), "{warnings:?}");
    let web2 = container(&d, "edge-web-2");
    // Compose v2 (`getLinks`): per link, per container of the linked service (newest first), the
    // alias, `<service>-<n>` and `<stack>-<service>-<n>`, where n is the linking container's number.
    let want = vec![
        "the-db:db",
        "the-db:db-2",
        "the-db:edge-db-2",
        "edge-cache-2:kv",
        "edge-cache-2:cache-2",
        "edge-cache-2:edge-cache-2",
        "edge-cache-1:kv",
        "edge-cache-1:cache-2",
        "edge-cache-1:edge-cache-2",
    ];
    assert_eq!(web2.networks.len(), 2);
    for n in &web2.networks {
        assert_eq!(n.links, want, "{}", n.name);
    }
    assert_eq!(
        container(&d, "edge-web-1").networks[0].links[1],
        "the-db:db-1"
    );
    let started = |s: &str| Dependency {
        service: s.into(),
        condition: Condition::ServiceStarted,
        restart: true,
    };
    assert_eq!(web2.depends_on, vec![started("cache"), started("db")]);
    // Services without links have none.
    assert!(container(&d, "the-db")
        .networks
        .iter()
        .all(|n| n.links.is_empty()));
}

#[test]
fn depends_on_wins_over_the_dependency_a_link_implies() {
    let (d, _) = ok(r#"
services:
  db: {image: busybox}
  web:
    image: busybox
    links: [db]
    depends_on: {db: {condition: service_healthy}}
"#);
    let web = container(&d, "edge-web-1");
    assert_eq!(web.depends_on[0].condition, Condition::ServiceHealthy);
    assert_eq!(web.networks[0].links[0], "edge-db-1:db");
}

#[test]
fn links_to_undefined_services_themselves_or_malformed_are_refused() {
    let p = problems(
        r#"
services:
  web:
    image: busybox
    links: [nope, web, "a:b:c", ":x"]
"#,
    );
    assert_eq!(p.len(), 4, "{p:?}");
    assert!(p[0].contains("links[0]") && p[0].contains("\"nope\" is not defined"));
    assert!(p[1].contains("cannot link to itself"));
    assert!(p[2].contains("links[2]: is not like service or service:alias"));
    assert!(p[3].contains("links[3]"));
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

#[test]
fn volumes_from_names_the_first_container_of_a_service_or_an_outside_container() {
    let (d, _) = ok(r#"
services:
  app:
    image: busybox
    scale: 2
  named: {image: busybox, container_name: the-source}
  cron:
    image: busybox
    volumes_from:
      - app
      - named:ro
      - container:legacy-data:rw
    depends_on:
      named: {condition: service_healthy}
"#);
    let cron = container(&d, "edge-cron-1");
    assert_eq!(
        cron.volumes_from,
        vec!["edge-app-1", "the-source:ro", "legacy-data:rw"]
    );
    // The services named start first; an explicit depends_on condition wins.
    let deps: Vec<(&str, Condition)> = cron
        .depends_on
        .iter()
        .map(|d| (d.service.as_str(), d.condition))
        .collect();
    assert_eq!(
        deps,
        vec![
            ("app", Condition::ServiceStarted),
            ("named", Condition::ServiceHealthy)
        ]
    );
    let app = container(&d, "edge-app-1");
    assert!(app.volumes_from.is_empty());
    assert!(!app.canonical_json().contains("volumes_from"));
}

#[test]
fn volumes_from_entries_compose_refuses_are_problems() {
    let p = problems(
        r#"
services:
  app:
    image: busybox
    volumes_from:
      - nowhere
      - app
      - other:rx
      - "container:"
      - a:b:c
  other: {image: busybox}
"#,
    );
    let all = p.join("\n");
    for want in [
        "compose.yaml:6: stack edge, service app: services.app.volumes_from[0]: service \"nowhere\" is not defined in this stack",
        "services.app.volumes_from[1]: a service cannot mount its own volumes",
        "services.app.volumes_from[2]: the mode must be `ro` or `rw`",
        "services.app.volumes_from[3]: names no container after `container:`",
        "services.app.volumes_from[4]: is not `service[:ro|:rw]` or `container:name[:ro|:rw]`",
    ] {
        assert!(all.contains(want), "missing {want:?} in\n{all}");
    }
}

#[test]
fn external_links_follow_the_service_links_on_every_endpoint_without_a_dependency() {
    let (d, _) = ok(r#"
services:
  db: {image: busybox}
  web:
    image: busybox
    networks: [back, default]
    links: [db]
    external_links:
      - legacy-redis:redis
      - shared-ldap
networks:
  back:
"#);
    let web = container(&d, "edge-web-1");
    let want = vec![
        "edge-db-1:db",
        "edge-db-1:db-1",
        "edge-db-1:edge-db-1",
        "legacy-redis:redis",
        "shared-ldap:shared-ldap",
    ];
    for n in &web.networks {
        assert_eq!(n.links, want, "network {}", n.name);
    }
    let deps: Vec<&str> = web.depends_on.iter().map(|d| d.service.as_str()).collect();
    assert_eq!(deps, vec!["db"]);
    let p = problems(
        "services:\n  web:\n    image: busybox\n    external_links: [\"a:b:c\", \":x\"]\n",
    );
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].contains("services.web.external_links[0]: is not like container or container:alias")
    );
}

#[test]
fn generic_resources_are_ignored_with_a_warning_and_limit_devices_are_unknown() {
    let (d, warnings) = ok(r#"
services:
  app:
    image: busybox
    deploy:
      resources:
        reservations:
          memory: 64M
          generic_resources:
            - discrete_resource_spec: {kind: gpu, value: 2}
"#);
    assert_eq!(
        container(&d, "edge-app-1").memory_reservation,
        Some(64 * 1024 * 1024)
    );
    let w: Vec<String> = warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains(
            "services.app.deploy.resources.reservations.generic_resources: is a Swarm setting"
        ),
        "{w:?}"
    );
    let p = problems(
        "services:\n  app:\n    image: busybox\n    deploy:\n      resources:\n        limits:\n          devices: []\n",
    );
    assert!(
        p.iter()
            .any(|p| p.contains("limits.devices: unknown key `devices`")),
        "{p:?}"
    );
}

#[test]
fn label_files_are_read_like_dotenv_files_and_labels_win() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  app:\n    image: busybox\n    label_file: [./a.labels, ./b.labels]\n    labels:\n      com.example.over: from-labels\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("a.labels"),
        "# traefik\ntraefik.enable=true\ntraefik.http.routers.a.rule=\"Host(`a.example.com`)\"\nexport com.example.x=1\ncom.example.quoted='single $HOME'\ncom.example.var=${CONF_UNSET_LABEL:-dflt}\ncom.example.over=from-file\na.tls.domains[0].main=${DOMAIN}\nBASE=b\ncom.example.self=${BASE}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("b.labels"), "com.example.x=2\n").unwrap();
    std::fs::write(dir.path().join(".env"), "DOMAIN=example.com\n").unwrap();
    let d = render_warned(&DirTree::new(dir.path()), &test_options(&[]))
        .0
        .unwrap();
    let labels = &container(&d, "edge-app-1").labels;
    // Compose reads label files without the project's variables: `${DOMAIN}` (set in .env) is empty.
    let want: BTreeMap<String, String> = [
        ("a.tls.domains[0].main", ""),
        ("com.example.self", "b"),
        ("BASE", "b"),
        ("com.example.over", "from-labels"),
        ("com.example.quoted", "single $HOME"),
        ("com.example.var", "dflt"),
        ("com.example.x", "2"),
        ("traefik.enable", "true"),
        ("traefik.http.routers.a.rule", "Host(`a.example.com`)"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(labels, &want);

    std::fs::write(dir.path().join("b.labels"), "io.berth.agent=evil\n").unwrap();
    let e = render_warned(&DirTree::new(dir.path()), &test_options(&[]))
        .0
        .unwrap_err();
    assert!(
        e.to_string().contains("label io.berth.agent is reserved"),
        "{e}"
    );
}
