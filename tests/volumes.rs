//! Anonymous volumes and interrupted creates, end to end with `berth apply DIR --agent-id ID` against the
//! real engine:
//! - data in an image's `VOLUME` and in `- /path` / `type: volume` without a source survives a recreate by
//!   an environment change (the new container mounts the old one's volumes), and the volumes outlive the
//!   service once it is removed; what a recreate keeps is what Docker Compose v2 keeps (a target that became
//!   a named volume is not carried);
//! - a container left under its temporary name (`<name>_berth-new`) by a kill is removed, never started,
//!   and the service is created with its networks and files; an old container a killed recreate left
//!   aside (`<name>_berth-old`) is what the recreate resumes from, so its volumes are kept.

use crate::util::*;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};

/// An image with `VOLUME /data`: the test image's filesystem imported with that one change (no `docker
/// build` on the test machine). Removed when dropped: declare it before the stacks that use it.
struct VolumeImage(String);

impl VolumeImage {
    fn build(name: &str) -> VolumeImage {
        let image = VolumeImage(format!("berth-test/{}:volume", agent_id(name)));
        let source = docker_ok(&["create", IMAGE, "true"]);
        let mut export = Command::new("docker")
            .args(["export", &source])
            .stdout(Stdio::piped())
            .spawn()
            .expect("docker export");
        let import = Command::new("docker")
            .args(["import", "--change", "VOLUME /data", "-", &image.0])
            .stdin(export.stdout.take().expect("piped"))
            .output()
            .expect("docker import");
        let exported = export.wait().expect("docker export");
        docker(&["rm", "-f", &source]);
        assert!(
            exported.success() && import.status.success(),
            "docker export | docker import: {}",
            show(&import)
        );
        image
    }
}

impl Drop for VolumeImage {
    fn drop(&mut self) {
        docker(&["rmi", "-f", &self.0]);
    }
}

/// Anonymous volumes the test came across, removed when dropped (berth never removes them). Declare it
/// before the stack, so the containers using them are gone first.
#[derive(Default)]
struct Anonymous(RefCell<BTreeSet<String>>);

impl Anonymous {
    /// The volumes container `name` mounts, by target; remembered for removal.
    fn of(&self, name: &str) -> BTreeMap<String, String> {
        let json = docker_ok(&["container", "inspect", "--format", "{{json .Mounts}}", name]);
        let mounts: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
        let volumes: BTreeMap<String, String> = mounts
            .iter()
            .filter(|m| m["Type"] == "volume")
            .map(|m| {
                let s = |k: &str| m[k].as_str().unwrap_or_default().to_string();
                (s("Destination"), s("Name"))
            })
            .collect();
        self.0.borrow_mut().extend(volumes.values().cloned());
        volumes
    }
}

impl Drop for Anonymous {
    fn drop(&mut self) {
        for v in self.0.borrow().iter() {
            docker(&["volume", "rm", "-f", v]);
        }
    }
}

fn db_stack(image: &str, version: &str) -> String {
    format!(
        r#"services:
  db:
    image: {image}
    command: {IDLE}
    environment:
      VERSION: "{version}"
    volumes:
      - /cache
      - type: volume
        target: /long
"#
    )
}

const TARGETS: [&str; 3] = ["/data", "/cache", "/long"];

fn read_all(container: &str) -> String {
    exec(container, "cat /data/f /cache/f /long/f")
}

#[test]
fn data_in_anonymous_volumes_survives_a_recreate_and_outlives_the_service() {
    let image = VolumeImage::build("volumes-image");
    let anonymous = Anonymous::default();
    let s = Stack::new("volumes-recreate", &db_stack(&image.0, "1"));
    let db = s.container("db");

    let o = s.apply();
    assert!(o.status.success(), "berth apply: {}", show(&o));
    let first = container_id(&db).expect("db created");
    let volumes = anonymous.of(&db);
    assert_eq!(
        volumes.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from(TARGETS),
        "the image's VOLUME and both anonymous volumes of the spec: {volumes:?}"
    );
    exec(
        &db,
        "echo image > /data/f && echo short > /cache/f && echo long > /long/f",
    );

    // An environment change recreates the container; the new one mounts the same volumes.
    s.write(&db_stack(&image.0, "2"));
    let o = s.apply();
    assert!(o.status.success(), "berth apply: {}", show(&o));
    assert!(
        stdout(&o).contains(&format!("recreate container {db}")),
        "{}",
        show(&o)
    );
    let second = container_id(&db).expect("db recreated");
    assert_ne!(first, second, "a new container");
    assert!(container_env(&db).contains(&"VERSION=2".to_string()));
    assert_eq!(
        anonymous.of(&db),
        volumes,
        "the same volumes at the same targets"
    );
    assert_eq!(read_all(&db), "image\nshort\nlong");

    // What is carried over is not part of the spec: nothing to do on the next apply.
    let o = s.apply();
    assert!(o.status.success(), "berth apply: {}", show(&o));
    assert!(stdout(&o).contains("up to date"), "{}", show(&o));
    assert_eq!(container_id(&db).as_deref(), Some(second.as_str()));

    // The service goes: its container is removed, its anonymous volumes are not.
    s.write(&format!(
        "services:\n  other:\n    image: {IMAGE}\n    command: {IDLE}\n"
    ));
    let o = s.apply();
    assert!(o.status.success(), "berth apply: {}", show(&o));
    assert_eq!(container_id(&db), None, "db removed: {}", show(&o));
    for (target, name) in &volumes {
        assert!(volume_exists(name), "the volume of {target} must remain");
    }
}

/// A service with two networks and an injected file: what a container that only exists once complete
/// must have.
fn complete_stack() -> String {
    format!(
        r#"services:
  app:
    image: {IMAGE}
    command: {IDLE}
    networks: [front, back]
    configs:
      - source: greeting
        target: /etc/greeting
configs:
  greeting:
    content: hello
networks:
  front: {{}}
  back: {{}}
"#
    )
}

fn networks_of(name: &str) -> BTreeSet<String> {
    let json = docker_ok(&[
        "container",
        "inspect",
        "--format",
        "{{json .NetworkSettings.Networks}}",
        name,
    ]);
    let v: BTreeMap<String, serde_json::Value> = serde_json::from_str(&json).unwrap();
    v.into_keys().collect()
}

/// `(action, name)` of the engine's events for the containers of `agent_id` since `since` (seconds since
/// the epoch), oldest first.
fn container_events(agent_id: &str, since: u64) -> Vec<(String, String)> {
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let out = docker_ok(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &format!("{until:.3}"),
        "--filter",
        &format!("label={AGENT_LABEL}={agent_id}"),
        "--filter",
        "type=container",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ]);
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, n)| (a.to_string(), n.to_string()))
        .collect()
}

#[test]
fn a_container_left_under_its_temporary_name_is_removed_and_the_service_created_complete() {
    let s = Stack::new("volumes-leftover-new", &complete_stack());
    let app = s.container("app");
    let temporary = format!("{app}_berth-new");
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let o = s.apply();
    assert!(o.status.success(), "berth apply: {}", show(&o));
    // The container is made under its temporary name, and takes the service's name only once its files
    // are in place (the archive upload: `extract-to-dir`) and its networks attached: a kill before the
    // rename leaves nothing the next plan could take as up to date.
    let events: Vec<(String, String)> = container_events(&s.id, since)
        .into_iter()
        .filter(|(action, _)| {
            ["create", "extract-to-dir", "rename", "start"].contains(&action.as_str())
        })
        .collect();
    let expected = [
        ("create", &temporary),
        ("extract-to-dir", &temporary),
        ("rename", &app),
        ("start", &app),
    ];
    assert_eq!(
        events,
        expected.map(|(a, n)| (a.to_string(), n.to_string())),
        "create under the temporary name, files, rename, then start"
    );
    let labels = container_labels(&app);
    let want_networks = BTreeSet::from([format!("{}_front", s.id), format!("{}_back", s.id)]);
    assert_eq!(networks_of(&app), want_networks);

    // What a kill right after the engine's create leaves: the final labels (spec hash included), one
    // network, no files, under the temporary name, and nothing under the service's name.
    docker_ok(&["rm", "-f", &app]);
    let mut args = vec![
        "create".to_string(),
        "--name".into(),
        temporary.clone(),
        "--network".into(),
        format!("{}_front", s.id),
    ];
    for (k, v) in labels.iter().filter(|(k, _)| k.starts_with("io.berth.")) {
        args.extend(["--label".to_string(), format!("{k}={v}")]);
    }
    args.extend([IMAGE.to_string(), "sleep".into(), "3600".into()]);
    let leftover = docker_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let o = s.apply();
    assert!(o.status.success(), "berth apply: {}", show(&o));
    let out = stdout(&o);
    assert!(
        out.contains(&format!("remove container {temporary}"))
            && out.contains(&format!("create container {app}")),
        "{}",
        show(&o)
    );
    assert_eq!(container_id(&temporary), None, "the leftover is gone");
    let id = container_id(&app).expect("app created");
    assert_ne!(id, leftover, "never the leftover, renamed or started");
    assert!(is_running(&app));
    assert_eq!(networks_of(&app), want_networks);
    assert_eq!(exec(&app, "cat /etc/greeting"), "hello");
    let names: Vec<String> = s.owned().into_iter().map(|c| c.name).collect();
    assert_eq!(names, vec![app.clone()], "nothing else left");
}

#[test]
fn a_recreate_killed_after_moving_the_old_container_aside_resumes_from_it() {
    let image = VolumeImage::build("volumes-aside-image");
    let anonymous = Anonymous::default();
    let s = Stack::new("volumes-leftover-old", &db_stack(&image.0, "1"));
    let db = s.container("db");
    let aside = format!("{db}_berth-old");
    let o = s.apply();
    assert!(o.status.success(), "berth apply: {}", show(&o));
    let old = container_id(&db).expect("db created");
    let volumes = anonymous.of(&db);
    exec(
        &db,
        "echo image > /data/f && echo short > /cache/f && echo long > /long/f",
    );

    // A recreate killed after the old container was stopped and moved aside, before the new one took
    // the name; then a new commit.
    docker_ok(&["stop", "-t", "1", &db]);
    docker_ok(&["rename", &db, &aside]);
    s.write(&db_stack(&image.0, "2"));
    let o = s.apply();
    assert!(o.status.success(), "berth apply: {}", show(&o));
    assert!(
        stdout(&o).contains(&format!("recreate container {db}")),
        "{}",
        show(&o)
    );
    assert_eq!(
        container_id(&aside),
        None,
        "the old one is removed once replaced"
    );
    let new = container_id(&db).expect("db recreated");
    assert_ne!(new, old);
    assert!(is_running(&db));
    assert!(container_env(&db).contains(&"VERSION=2".to_string()));
    assert_eq!(anonymous.of(&db), volumes, "the old container's volumes");
    assert_eq!(read_all(&db), "image\nshort\nlong");
}

/// The same service as [`db_stack`] after a change: another environment, and `/cache` now a named volume.
fn db_stack_changed(image: &str) -> String {
    format!(
        r#"services:
  db:
    image: {image}
    command: {IDLE}
    environment:
      VERSION: "2"
    volumes:
      - cache:/cache
      - type: volume
        target: /long
volumes:
  cache: {{}}
"#
    )
}

/// For each target: whether the recreated container mounts the same volume as before, and what the
/// file written there before reads now.
type Carried = BTreeMap<String, (bool, String)>;

/// Write a file into each volume of `container`, let `recreate` replace it, and say what was kept.
fn what_a_recreate_keeps(
    anonymous: &Anonymous,
    container: &str,
    recreate: impl FnOnce(),
) -> Carried {
    let before = anonymous.of(container);
    exec(
        container,
        "echo image > /data/f && echo short > /cache/f && echo long > /long/f",
    );
    let id = container_id(container);
    recreate();
    assert_ne!(container_id(container), id, "{container} must be recreated");
    let after = anonymous.of(container);
    TARGETS
        .iter()
        .map(|t| {
            let read = exec(container, &format!("cat {t}/f 2>/dev/null || echo missing"));
            (t.to_string(), (before.get(*t) == after.get(*t), read))
        })
        .collect()
}

/// Removes a Compose project and its named volumes when dropped.
struct ComposeProject {
    cmdline: Vec<String>,
    name: String,
    dir: tempfile::TempDir,
}

impl ComposeProject {
    fn up(&self, compose_yaml: &str) {
        std::fs::write(self.dir.path().join("compose.yaml"), compose_yaml).unwrap();
        let dir = self.dir.path().to_str().expect("temp paths are UTF-8");
        let o = run_with_deadline(
            &mut crate::conformance::compose(
                &self.cmdline,
                &["-p", &self.name, "--project-directory", dir, "up", "-d"],
            ),
            CLI_DEADLINE,
        );
        assert!(o.status.success(), "docker compose up: {}", show(&o));
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        let dir = self.dir.path().to_string_lossy().to_string();
        let args = [
            "-p",
            &self.name,
            "--project-directory",
            &dir,
            "down",
            "-v",
            "-t",
            "1",
        ];
        run_with_deadline(
            &mut crate::conformance::compose(&self.cmdline, &args),
            CLI_DEADLINE,
        );
    }
}

#[test]
fn a_recreate_keeps_the_same_anonymous_volumes_as_compose_does() {
    let cmdline = crate::conformance::compose_cmd().expect("Docker Compose v2");
    let image = VolumeImage::build("volumes-like-compose");
    let anonymous = Anonymous::default();

    let project = ComposeProject {
        cmdline,
        name: agent_id("volumes-compose"),
        dir: tempfile::tempdir().unwrap(),
    };
    project.up(&db_stack(&image.0, "1"));
    let compose = what_a_recreate_keeps(&anonymous, &format!("{}-db-1", project.name), || {
        project.up(&db_stack_changed(&image.0))
    });

    let s = Stack::new("volumes-berth", &db_stack(&image.0, "1"));
    let o = s.apply();
    assert!(o.status.success(), "berth apply: {}", show(&o));
    let berth = what_a_recreate_keeps(&anonymous, &s.container("db"), || {
        s.write(&db_stack_changed(&image.0));
        let o = s.apply();
        assert!(o.status.success(), "berth apply: {}", show(&o));
    });

    let kept = |s: &str| (true, s.to_string());
    let expected: Carried = [
        ("/cache".to_string(), (false, "missing".to_string())),
        ("/data".to_string(), kept("image")),
        ("/long".to_string(), kept("long")),
    ]
    .into();
    assert_eq!(compose, expected, "Docker Compose");
    assert_eq!(berth, compose, "berth keeps what Compose keeps");
}
