//! Render over real directories: stacks, overrides, interpolation, problems with file and line.

use super::*;
use crate::model::MountKind;
use std::path::Path;

struct Repo(tempfile::TempDir);

impl Repo {
    fn new() -> Repo {
        Repo(tempfile::tempdir().unwrap())
    }
    fn write(&self, rel: &str, text: &str) -> &Self {
        let p = self.0.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }
    fn link(&self, rel: &str, target: &str) -> &Self {
        let p = self.0.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
        self
    }
    fn opts(&self, path: &str, env: &[(&str, &str)]) -> RenderOptions {
        RenderOptions {
            path: PathBuf::from(path),
            ..test_options(env)
        }
    }
    fn render(&self, path: &str, env: &[(&str, &str)]) -> Result<DesiredState, RenderError> {
        render(&DirTree::new(self.0.path()), &self.opts(path, env))
    }
    fn ok(&self) -> DesiredState {
        self.render(".", &[])
            .unwrap_or_else(|e| panic!("render failed:\n{e}"))
    }
    fn problems(&self) -> Vec<Problem> {
        match self.render(".", &[]) {
            Ok(d) => panic!("expected problems, rendered {d:?}"),
            Err(e) => e.problems,
        }
    }
}

fn container<'a>(d: &'a DesiredState, name: &str) -> &'a crate::model::ContainerSpec {
    d.containers().find(|c| c.name == name).unwrap_or_else(|| {
        panic!(
            "no container {name} in {:?}",
            d.containers().map(|c| &c.name).collect::<Vec<_>>()
        )
    })
}

#[test]
fn stacks_are_the_followed_dir_and_its_immediate_subdirs() {
    let r = Repo::new();
    r.write(
        "hosts/a/compose.yaml",
        "services: {app: {image: busybox}}\n",
    )
    .write(
        "hosts/a/web/docker-compose.yml",
        "services: {web: {image: busybox}}\n",
    )
    .write(
        "hosts/a/named/compose.yml",
        "name: custom\nservices: {x: {image: busybox}}\n",
    )
    .write(
        "hosts/a/deep/er/compose.yaml",
        "services: {no: {image: busybox}}\n",
    )
    .write(
        "hosts/a/.hidden/compose.yaml",
        "services: {no: {image: busybox}}\n",
    )
    .write("hosts/a/notes/readme.txt", "not a stack\n")
    .write(
        "hosts/b/compose.yaml",
        "services: {other: {image: busybox}}\n",
    );
    let d = r.render("hosts/a", &[]).unwrap();
    assert_eq!(
        d.stacks.keys().collect::<Vec<_>>(),
        vec!["custom", "edge", "web"]
    );
    assert_eq!(d.stacks["web"].dir, "hosts/a/web");
    let names: Vec<&str> = d.containers().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["custom-x-1", "edge-app-1", "web-web-1"]);
    // Each stack gets its default network, used implicitly.
    assert_eq!(d.stacks["web"].networks[0].name, "web_default");
    assert_eq!(
        container(&d, "web-web-1").networks[0].aliases,
        vec!["web".to_string(), "web-web-1".to_string()]
    );
}

#[test]
fn broken_yaml_names_file_line_and_column() {
    let r = Repo::new();
    r.write(
        "compose.yaml",
        "services:\n  app:\n    image: busybox\n   bad: [\n",
    );
    let p = r.problems();
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].file.as_deref(), Some("compose.yaml"));
    assert!(p[0].line.is_some());
    assert!(p[0].message.contains("invalid YAML"), "{}", p[0]);
}

#[test]
fn unknown_and_unsupported_keys_name_key_file_and_line_all_at_once() {
    let r = Repo::new();
    r.write(
        "svc/compose.yaml",
        "services:\n  app:\n    image: busybox\n    imgae: typo\n    build: .\n    use_api_socket: true\nmodels: {}\nfoo: 1\nx-ok: {anything: 1}\n",
    );
    let p = r.problems();
    let text: Vec<String> = p.iter().map(|p| p.to_string()).collect();
    let find = |needle: &str| {
        p.iter()
            .find(|p| p.message.contains(needle))
            .unwrap_or_else(|| panic!("no problem mentioning {needle}: {text:#?}"))
    };
    let typo = find("imgae");
    assert_eq!(typo.file.as_deref(), Some("svc/compose.yaml"));
    assert_eq!(typo.line, Some(4));
    assert_eq!(typo.stack.as_deref(), Some("svc"));
    assert_eq!(typo.service.as_deref(), Some("app"));
    assert!(typo.message.contains("unknown key"));
    assert_eq!(find("`build` is refused").line, Some(5));
    assert_eq!(find("use_api_socket").line, Some(6));
    assert!(find("use_api_socket").message.contains(
        "is refused: not in this release: it copies the operator's registry credentials"
    ));
    assert_eq!(find("`models`").line, Some(7));
    assert_eq!(find("`foo`").line, Some(8));
    assert_eq!(p.len(), 5, "{text:#?}");
    assert!(text[0].starts_with("svc/compose.yaml:"), "{}", text[0]);
}

#[test]
fn override_file_merges_and_its_problems_point_at_it() {
    let r = Repo::new();
    r.write(
        "compose.yaml",
        "services:\n  app:\n    image: busybox:1\n    environment: [A=1, B=2]\n    ports: ['80:80']\n",
    )
    .write(
        "compose.override.yaml",
        "services:\n  app:\n    image: busybox:2\n    environment: {B: '3'}\n",
    );
    let d = r.ok();
    let c = container(&d, "edge-app-1");
    assert_eq!(c.image, "busybox:2");
    assert_eq!(c.env, vec!["A=1", "B=3"]);
    assert_eq!(c.ports.len(), 1);

    r.write(
        "compose.override.yaml",
        "services:\n  app:\n    environment: {B: '3'}\n    ports: ['nope']\n",
    );
    let p = r.problems();
    assert_eq!(p[0].file.as_deref(), Some("compose.override.yaml"));
    assert_eq!(p[0].line, Some(4));
}

#[test]
fn interpolation_uses_dotenv_and_the_agent_environment_wins() {
    let r = Repo::new();
    r.write(
        "compose.yaml",
        "services:\n  app:\n    image: busybox:${TAG:-latest}\n    environment:\n      - GREETING=${GREETING}\n      - FROM_ENV\n      - LITERAL=$$HOME\n",
    )
    .write(".env", "TAG=1.36\nGREETING=hello\n");
    let d = r.render(".", &[]).unwrap();
    let c = container(&d, "edge-app-1");
    assert_eq!(c.image, "busybox:1.36");
    assert_eq!(c.env, vec!["FROM_ENV", "GREETING=hello", "LITERAL=$HOME"]);
    let d = r
        .render(".", &[("GREETING", "agent"), ("FROM_ENV", "x")])
        .unwrap();
    assert_eq!(
        container(&d, "edge-app-1").env,
        vec!["FROM_ENV=x", "GREETING=agent", "LITERAL=$HOME"]
    );
    r.write(
        "compose.yaml",
        "services:\n  app:\n    image: busybox\n    environment:\n      - KEY=${REQUIRED:?set REQUIRED in .env}\n",
    );
    let p = r.problems();
    assert_eq!(p[0].line, Some(5), "{}", p[0]);
    assert!(p[0].message.contains("set REQUIRED in .env"), "{}", p[0]);
}

#[test]
fn env_file_is_read_relative_to_the_stack_and_environment_overrides_it() {
    let r = Repo::new();
    r.write(
        "w/compose.yaml",
        "services:\n  app:\n    image: busybox\n    env_file: [app.env, {path: missing.env, required: false}]\n    environment: {B: over}\n",
    )
    .write("w/app.env", "A=1\nB=2\n");
    let d = r.ok();
    assert_eq!(container(&d, "w-app-1").env, vec!["A=1", "B=over"]);
    r.write(
        "w/compose.yaml",
        "services:\n  app:\n    image: busybox\n    env_file: ../../outside.env\n",
    );
    assert!(r.problems()[0].message.contains("climbs out"));
    r.write(
        "w/compose.yaml",
        "services:\n  app:\n    image: busybox\n    env_file: gone.env\n",
    );
    assert!(r.problems()[0].message.contains("does not exist"));
}

#[test]
fn bind_mounts_resolve_in_the_checkout_and_their_content_is_hashed() {
    let r = Repo::new();
    r.write(
        "web/compose.yaml",
        "services:\n  web:\n    image: busybox\n    volumes: ['./conf:/etc/app:ro', './data:/data', '/lib/modules:/lib/modules:ro', 'cache:/cache']\n  other:\n    image: busybox\nvolumes:\n  cache: {}\n",
    )
    .write("web/conf/app.conf", "a=1\n");
    let d1 = r.ok();
    let web = container(&d1, "web-web-1");
    let m: Vec<(MountKind, &str, &str, bool)> = web
        .mounts
        .iter()
        .map(|m| (m.kind, m.source.as_str(), m.target.as_str(), m.read_only))
        .collect();
    assert_eq!(
        m,
        vec![
            (MountKind::Volume, "web_cache", "/cache", false),
            (
                MountKind::Bind,
                "/var/lib/berth/repo/web/data",
                "/data",
                false
            ),
            (
                MountKind::Bind,
                "/var/lib/berth/repo/web/conf",
                "/etc/app",
                true
            ),
            (MountKind::Bind, "/lib/modules", "/lib/modules", true),
        ]
    );
    assert!(web.content_digest.is_some());
    let other_hash = container(&d1, "web-other-1").spec_hash();

    r.write("web/conf/app.conf", "a=2\n");
    let d2 = r.ok();
    assert_ne!(
        container(&d1, "web-web-1").spec_hash(),
        container(&d2, "web-web-1").spec_hash(),
        "a changed mounted file changes the hash"
    );
    assert_eq!(container(&d2, "web-other-1").spec_hash(), other_hash);
    // Rendering twice gives the same hashes (no recreate loop).
    assert_eq!(d2, r.ok());

    r.write(
        "web/compose.yaml",
        "services:\n  web:\n    image: busybox\n    volumes: ['../../etc:/x']\n",
    );
    assert!(r.problems()[0].message.contains("climbs out"));
    r.link("web/evil", "/etc").write(
        "web/compose.yaml",
        "services:\n  web:\n    image: busybox\n    volumes: ['./evil:/x']\n",
    );
    let p = r.problems();
    assert!(
        p[0].message.contains("points outside the repository"),
        "{}",
        p[0]
    );
    r.link("web/conf/escape", "../../../../etc/passwd").write(
        "web/compose.yaml",
        "services:\n  web:\n    image: busybox\n    volumes: ['./conf:/x']\n",
    );
    let p = r.problems();
    assert!(p[0].message.contains("web/conf/escape"), "{}", p[0]);
}

#[test]
fn binds_showing_the_git_directory_are_refused_with_service_file_and_line() {
    let r = Repo::new();
    std::fs::create_dir_all(r.0.path().join(".git")).unwrap();
    r.write(
        "compose.yaml",
        "services:\n  web:\n    image: busybox\n    volumes:\n      - ./conf:/etc/app\n      - .:/src\n      - ./.git:/g\n      - type: bind\n        source: ./sub/..\n        target: /t\n",
    )
    .write("conf/app.conf", "a=1\n");
    let root = r.0.path().canonicalize().unwrap();
    let e = render_dir(&root, "edge", Default::default()).unwrap_err();
    let lines: Vec<(Option<&str>, Option<usize>, Option<&str>)> = e
        .problems
        .iter()
        .map(|p| (p.file.as_deref(), p.line, p.service.as_deref()))
        .collect();
    assert_eq!(
        lines,
        [
            (Some("compose.yaml"), Some(6), Some("web")),
            (Some("compose.yaml"), Some(7), Some("web")),
            (Some("compose.yaml"), Some(8), Some("web")),
        ],
        "{e}"
    );
    assert!(e.problems.iter().all(|p| p.message.contains(".git")), "{e}");
    // The same binds of a directory that is not a clone's top are fine.
    std::fs::remove_dir(r.0.path().join(".git")).unwrap();
    assert!(render_dir(&root, "edge", Default::default()).is_ok());
}

#[test]
fn symlinked_shared_base_inside_the_repository_is_followed() {
    let r = Repo::new();
    r.write("shared/conf/app.conf", "x\n")
        .write(
            "hosts/a/compose.yaml",
            "services:\n  web:\n    image: busybox\n    volumes: ['./conf:/etc/app']\n",
        )
        .link("hosts/a/conf", "../../shared/conf");
    let d = r.render("hosts/a", &[]).unwrap();
    let web = container(&d, "edge-web-1");
    assert_eq!(web.mounts[0].source, "/var/lib/berth/repo/shared/conf");
    assert!(web.content_digest.is_some());
}

#[test]
fn references_must_be_declared_and_dependency_cycles_are_refused() {
    let r = Repo::new();
    r.write(
        "compose.yaml",
        "services:\n  a:\n    image: busybox\n    networks: [nope]\n    volumes: ['undeclared:/data']\n    depends_on: [ghost]\n",
    );
    let p = r.problems();
    let all: Vec<String> = p.iter().map(|p| p.to_string()).collect();
    assert!(
        all.iter().any(|m| m.contains("network \"nope\"")),
        "{all:#?}"
    );
    assert!(
        all.iter().any(|m| m.contains("volume \"undeclared\"")),
        "{all:#?}"
    );
    assert!(all.iter().any(|m| m.contains("\"ghost\"")), "{all:#?}");

    r.write(
        "compose.yaml",
        "services:\n  a: {image: busybox, depends_on: [b]}\n  b: {image: busybox, depends_on: [c]}\n  c: {image: busybox, depends_on: [a]}\n",
    );
    let p = r.problems();
    assert!(p[0].message.contains("dependency cycle"), "{}", p[0]);
}

#[test]
fn anonymous_volumes_are_accepted_in_short_and_long_syntax() {
    let r = Repo::new();
    r.write(
        "compose.yaml",
        "services:\n  db:\n    image: busybox\n    volumes:\n      - /data\n      - {type: volume, target: /long}\n      - {type: volume, target: /cache, read_only: true}\n",
    );
    let d = r.ok();
    let m: Vec<(MountKind, &str, &str, bool)> = container(&d, "edge-db-1")
        .mounts
        .iter()
        .map(|m| (m.kind, m.source.as_str(), m.target.as_str(), m.read_only))
        .collect();
    assert_eq!(
        m,
        [
            (MountKind::Volume, "", "/cache", true),
            (MountKind::Volume, "", "/data", false),
            (MountKind::Volume, "", "/long", false),
        ]
    );
    assert!(
        d.volumes().next().is_none(),
        "no volume to create: the engine makes them"
    );
}

#[test]
fn the_keys_of_this_release_normalise_to_one_form() {
    let r = Repo::new();
    r.write(
        "compose.yaml",
        r#"
x-common: &common
  restart: unless-stopped
  labels: {team: edge}
services:
  app:
    <<: *common
    image: busybox
    command: sh -c 'echo "hi there"'
    entrypoint: ["/bin/sh"]
    user: 1000
    working_dir: /srv
    hostname: app
    extra_hosts: ["db.local=10.0.0.2", "gw:10.0.0.1"]
    cap_add: [NET_ADMIN, SYS_TIME, NET_ADMIN]
    cap_drop: [ALL]
    privileged: "false"
    read_only: true
    init: true
    devices: ["/dev/null:/dev/mynull:r"]
    tmpfs: /run
    stop_signal: SIGINT
    stop_grace_period: 1m30s
    healthcheck:
      test: wget -q -O- http://localhost/ || exit 1
      interval: 10s
      retries: 3
    deploy: {replicas: 2}
    ports:
      - target: 80
        published: "8080"
        host_ip: 127.0.0.1
    networks:
      back: {aliases: [api]}
  side:
    image: busybox
    network_mode: service:app
    healthcheck: {disable: true}
networks:
  back: {internal: true, labels: [tier=back]}
"#,
    );
    let d = r.ok();
    let a = container(&d, "edge-app-2");
    assert_eq!(a.replica, 2);
    assert_eq!(a.restart, "unless-stopped");
    assert_eq!(a.labels.get("team").map(String::as_str), Some("edge"));
    assert_eq!(
        a.command.as_deref().unwrap(),
        ["sh", "-c", "echo \"hi there\""]
    );
    assert_eq!(a.user.as_deref(), Some("1000"));
    assert_eq!(a.extra_hosts, vec!["db.local:10.0.0.2", "gw:10.0.0.1"]);
    assert_eq!(a.cap_add, vec!["NET_ADMIN", "SYS_TIME"]);
    assert!(!a.privileged && a.read_only && a.init == Some(true));
    assert_eq!(a.devices[0].container, "/dev/mynull");
    assert_eq!(a.devices[0].permissions, "r");
    assert_eq!(a.tmpfs, vec!["/run"]);
    assert_eq!(a.stop_grace_period, Some(90));
    let h = a.healthcheck.as_ref().unwrap();
    assert_eq!(h.test[0], "CMD-SHELL");
    assert_eq!(h.interval_ns, 10_000_000_000);
    assert_eq!(h.retries, 3);
    assert_eq!(a.ports[0].host_port, Some(8080));
    assert_eq!(a.networks.len(), 1);
    assert_eq!(a.networks[0].name, "edge_back");
    assert_eq!(a.networks[0].aliases, vec!["api", "app", "edge-app-2"]);
    let s = container(&d, "edge-side-1");
    assert_eq!(s.network_mode.as_deref(), Some("container:edge-app-1"));
    assert!(s.networks.is_empty());
    assert_eq!(s.dependency_names().collect::<Vec<_>>(), vec!["app"]);
    assert_eq!(s.healthcheck.as_ref().unwrap().test, vec!["NONE"]);
    // Only the declared network is created; nobody uses the default one.
    let nets: Vec<&str> = d.stacks["edge"]
        .networks
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(nets, vec!["edge_back"]);
    assert!(d.stacks["edge"].networks[0].internal);
}

#[test]
fn namespace_sharing_container_follows_its_peer() {
    let r = Repo::new();
    let text = |img: &str| {
        format!("services:\n  app: {{image: {img}}}\n  side: {{image: busybox, network_mode: 'service:app'}}\n")
    };
    r.write("compose.yaml", &text("busybox:1"));
    let d1 = r.ok();
    r.write("compose.yaml", &text("busybox:2"));
    let d2 = r.ok();
    assert_ne!(
        container(&d1, "edge-side-1").spec_hash(),
        container(&d2, "edge-side-1").spec_hash(),
        "recreating app must recreate the container in its namespace"
    );
}

#[test]
fn stack_and_container_name_collisions_are_refused() {
    let r = Repo::new();
    r.write(
        "a/compose.yaml",
        "name: same\nservices: {x: {image: busybox}}\n",
    )
    .write(
        "b/compose.yaml",
        "name: same\nservices: {y: {image: busybox}}\n",
    );
    assert!(r.problems()[0].message.contains("also used by"));
    let r = Repo::new();
    r.write("compose.yaml", "name: Bad Name\nservices: {}\n");
    assert_eq!(r.problems()[0].line, Some(1));
}

#[test]
fn empty_and_missing_pieces() {
    let r = Repo::new();
    assert!(
        r.ok().stacks.is_empty(),
        "a directory without compose files has no stacks"
    );
    r.write("compose.yaml", "");
    assert!(r.ok().stacks["edge"].containers.is_empty());
    r.write("compose.yaml", "services:\n  a:\n    command: sleep 1\n");
    let p = r.problems();
    assert!(p[0].message.contains("`image` is required"), "{}", p[0]);
    assert_eq!(p[0].line, Some(2));
    r.write("compose.yaml", "- just\n- a list\n");
    assert!(r.problems()[0].message.contains("must be a mapping"));
}

#[test]
fn oversized_files_are_refused() {
    let r = Repo::new();
    let big = format!("services: {{}}\n# {}\n", "x".repeat(MAX_FILE_BYTES));
    r.write("compose.yaml", &big);
    assert!(r.problems()[0].message.contains("larger than"));
}

#[test]
fn render_dir_uses_the_directory_as_checkout() {
    let r = Repo::new();
    r.write(
        "compose.yaml",
        "services:\n  a:\n    image: busybox\n    volumes: ['./conf:/c']\n",
    );
    let d = render_dir(r.0.path(), "mine", Default::default()).unwrap();
    let root = r.0.path().canonicalize().unwrap();
    assert_eq!(
        Path::new(&container(&d, "mine-a-1").mounts[0].source),
        root.join("conf")
    );
}

#[test]
fn include_and_extends_bring_services_with_rebased_paths() {
    let r = Repo::new();
    r.write("shared/base.yaml", "services:\n  base:\n    image: busybox\n    environment: [A=1]\n    volumes: ['./conf:/etc/base:ro']\n    env_file: base.env\n")
        .write("shared/conf/x.conf", "x\n")
        .write("shared/base.env", "FROM_BASE=1\n")
        .write("hosts/a/inc/compose.yaml", "services:\n  extra:\n    image: busybox\n    volumes: ['./data:/data']\n")
        .write(
            "hosts/a/compose.yaml",
            "include:\n  - inc/compose.yaml\nservices:\n  app:\n    extends: {file: ../../shared/base.yaml, service: base}\n    environment: [B=2]\n  twin:\n    extends: app\n    command: sleep 1\n",
        );
    let d = r.render("hosts/a", &[]).unwrap_or_else(|e| panic!("{e}"));
    let app = container(&d, "edge-app-1");
    assert_eq!(app.env, vec!["A=1", "B=2", "FROM_BASE=1"]);
    assert_eq!(app.mounts[0].source, "/var/lib/berth/repo/shared/conf");
    let twin = container(&d, "edge-twin-1");
    assert_eq!(twin.env, app.env);
    assert_eq!(twin.command.as_deref().unwrap(), ["sleep", "1"]);
    let extra = container(&d, "edge-extra-1");
    assert_eq!(
        extra.mounts[0].source,
        "/var/lib/berth/repo/hosts/a/inc/data"
    );

    r.write(
        "hosts/a/compose.yaml",
        "include: [inc/compose.yaml]\nservices:\n  extra: {image: busybox}\n",
    );
    let p = r.render("hosts/a", &[]).unwrap_err().problems;
    assert!(
        p[0].message
            .contains("defined both here and in the included"),
        "{}",
        p[0]
    );
    r.write(
        "hosts/a/compose.yaml",
        "services:\n  a: {image: busybox, extends: b}\n  b: {image: busybox, extends: a}\n",
    );
    let p = r.render("hosts/a", &[]).unwrap_err().problems;
    assert!(p[0].message.contains("extends loop"), "{}", p[0]);
}

#[test]
fn profiles_scale_container_name_and_one_shot_jobs() {
    let r = Repo::new();
    r.write(
        "compose.yaml",
        r#"
services:
  web:
    image: busybox
    scale: 2
    depends_on:
      migrate: {condition: service_completed_successfully}
      db: {condition: service_healthy, restart: true}
  db:
    image: busybox
    container_name: the-db
    healthcheck: {test: ["CMD", "true"], start_interval: 1s}
  migrate:
    image: busybox
  debug:
    image: busybox
    profiles: [debug]
"#,
    );
    let d = r.ok();
    let names: Vec<&str> = d.containers().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["edge-migrate-1", "edge-web-1", "edge-web-2", "the-db"]
    );
    assert!(container(&d, "edge-migrate-1").run_once);
    assert!(!container(&d, "the-db").run_once);
    let web = container(&d, "edge-web-1");
    assert_eq!(web.depends_on[0].service, "db");
    assert_eq!(
        web.depends_on[0].condition,
        crate::model::Condition::ServiceHealthy
    );
    assert!(web.depends_on[0].restart);
    let d = r.render(".", &[("COMPOSE_PROFILES", "debug")]).unwrap();
    assert!(d.containers().any(|c| c.service == "debug"));

    r.write(
        "compose.yaml",
        "services:\n  a: {image: busybox, container_name: x, deploy: {replicas: 2}}\n",
    );
    assert!(r.problems()[0].message.contains("more than one replica"));
    r.write(
        "compose.yaml",
        "services:\n  a: {image: busybox, depends_on: [b]}\n  b: {image: busybox, profiles: [off]}\n",
    );
    assert!(r.problems()[0].message.contains("not enabled"));
}

#[test]
fn resources_and_engine_options_are_normalised() {
    let r = Repo::new();
    r.write(
        "compose.yaml",
        r#"
services:
  a:
    image: busybox
    mem_limit: 64m
    memswap_limit: -1
    mem_reservation: 32m
    cpus: "0.5"
    cpu_shares: 512
    cpuset: "0"
    pids_limit: 100
    shm_size: 1g
    ulimits: {nofile: {soft: 1024, hard: 2048}, nproc: 512}
    sysctls: [net.core.somaxconn=1024]
    security_opt: [no-new-privileges:true]
    logging: {driver: json-file, options: {max-size: 10m}}
    dns: 1.1.1.1
    expose: ["9000-9001", "53/udp"]
    tty: true
    stdin_open: true
    oom_score_adj: 100
    group_add: [wheel]
    pull_policy: daily
  b:
    image: busybox
    deploy:
      replicas: 1
      resources:
        limits: {cpus: "1.5", memory: 128M, pids: 50}
        reservations: {memory: 64M, cpus: "0.1"}
      restart_policy: {condition: on-failure, max_attempts: 3}
"#,
    );
    let d = r.ok();
    let a = container(&d, "edge-a-1");
    assert_eq!(a.memory, Some(64 << 20));
    assert_eq!(a.memory_swap, Some(-1));
    assert_eq!(a.memory_reservation, Some(32 << 20));
    assert_eq!(a.nano_cpus, Some(500_000_000));
    assert_eq!(a.shm_size, Some(1 << 30));
    assert_eq!(a.ulimits.len(), 2);
    assert_eq!(a.ulimits[1].name, "nproc");
    assert_eq!(a.ulimits[1].soft, 512);
    assert_eq!(a.sysctls["net.core.somaxconn"], "1024");
    assert_eq!(a.dns, vec!["1.1.1.1"]);
    assert_eq!(a.expose, vec!["53/udp", "9000-9001/tcp"]);
    assert!(a.tty && a.stdin_open);
    assert_eq!(a.logging.as_ref().unwrap().options["max-size"], "10m");
    let hash = a.spec_hash();
    let b = container(&d, "edge-b-1");
    assert_eq!(b.nano_cpus, Some(1_500_000_000));
    assert_eq!(b.memory, Some(128 << 20));
    assert_eq!(b.pids_limit, Some(50));
    assert_eq!(b.memory_reservation, Some(64 << 20));
    assert_eq!(b.restart, "on-failure:3");
    // pull_policy is not part of the hash: changing it recreates nothing.
    r.write(
        "compose.yaml",
        &std::fs::read_to_string(r.0.path().join("compose.yaml"))
            .unwrap()
            .replace("pull_policy: daily", "pull_policy: always"),
    );
    assert_eq!(container(&r.ok(), "edge-a-1").spec_hash(), hash);
    r.write("compose.yaml", "services:\n  a: {image: busybox, pull_policy: sometimes, mem_limit: lots, deploy: {restart_policy: {condition: sometimes}}}\n");
    let p = r.problems();
    assert_eq!(p.len(), 3, "{p:?}");
}

#[test]
fn secrets_and_configs_mount_files_and_keep_values_out_of_the_spec() {
    let r = Repo::new();
    r.write("secrets/db.txt", "hunter2\n").write(
        "compose.yaml",
        r#"
services:
  a:
    image: busybox
    secrets: [db, {source: token, target: api-token, mode: 0400}]
    configs: [{source: app, target: /etc/app.conf}]
secrets:
  db: {file: ./secrets/db.txt}
  token: {environment: API_TOKEN}
configs:
  app: {content: "level=debug"}
"#,
    );
    let d = r.render(".", &[("API_TOKEN", "t0ps3cret")]).unwrap();
    let a = container(&d, "edge-a-1");
    assert_eq!(a.mounts[0].target, "/run/secrets/db");
    assert_eq!(a.mounts[0].source, "/var/lib/berth/repo/secrets/db.txt");
    assert!(a.mounts[0].read_only && a.mounts[0].create_host_path == Some(false));
    let json = serde_json::to_string(&d).unwrap();
    assert!(
        !json.contains("t0ps3cret"),
        "a secret value must not reach the desired state"
    );
    let token = a
        .files
        .iter()
        .find(|f| f.target == "/run/secrets/api-token")
        .unwrap();
    assert_eq!(token.mode, 0o400);
    assert_eq!(
        token.source,
        crate::model::FileSource::Env("API_TOKEN".into())
    );
    let d2 = r.render(".", &[("API_TOKEN", "other")]).unwrap();
    assert_ne!(
        container(&d2, "edge-a-1").spec_hash(),
        a.spec_hash(),
        "a changed secret value recreates the container"
    );
    assert!(r.problems()[0].message.contains("API_TOKEN is not set"));
    // A value from the stack's .env is in the repository already: it is carried as content.
    r.write(".env", "API_TOKEN=from-dotenv\n");
    let d = r.ok();
    let token = container(&d, "edge-a-1")
        .files
        .iter()
        .find(|f| f.target == "/run/secrets/api-token")
        .cloned()
        .unwrap();
    assert_eq!(
        token.source,
        crate::model::FileSource::Content("from-dotenv".into())
    );
}
