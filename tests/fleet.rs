//! Fleet repositories: `berth render --repo ROOT (PATH... | --all)` over the example fleet and broken
//! copies of it, `--fact` in the rendered spec, and an agent whose `facts:` reach a container's env.

use crate::util::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn example_fleet() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config-examples/fleet")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// A temporary copy of the example fleet.
fn fleet_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("berth-fleet-")
        .tempdir()
        .unwrap();
    let root = dir.path().join("fleet");
    copy_dir(&example_fleet(), &root);
    (dir, root)
}

#[test]
fn the_example_fleet_renders_every_box() {
    let root = example_fleet();
    let o = berth(&["render", "--repo", root.to_str().unwrap(), "--all"]);
    assert!(o.status.success(), "{}", show(&o));
    let out = stdout(&o);
    for b in ["hosts/edge-01", "hosts/edge-02", "hosts/edge-03"] {
        assert!(out.contains(&format!("{b}: ok")), "{b} not ok:\n{out}");
    }
    assert!(out.contains("3 of 3 box(es) ok"), "{out}");
    // hosts/edge-03 includes ../../../bases/sensor: refused when the box itself is taken as the root.
    let o = berth(&["render", root.join("hosts/edge-03").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
}

#[test]
fn a_broken_box_fails_the_fleet_and_is_named_with_file_and_line() {
    let (_tmp, root) = fleet_copy();
    std::fs::write(
        root.join("hosts/edge-02/compose.yaml"),
        "services:\n  reader:\n    image: busybox\n    ports: [\"not-a-port\"]\n",
    )
    .unwrap();
    let o = berth(&["render", "--repo", root.to_str().unwrap(), "--all"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let out = stdout(&o);
    assert!(out.contains("hosts/edge-01: ok"), "{out}");
    assert!(out.contains("hosts/edge-03: ok"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("hosts/edge-02: ") && l.contains("problem")),
        "{out}"
    );
    assert!(
        out.contains("hosts/edge-02/compose.yaml:4"),
        "no file:line:\n{out}"
    );
    assert!(out.contains("2 of 3 box(es) ok, 1 failed"), "{out}");

    // Without fleet.yaml, every directory under hosts/ is a box; one box path renders alone.
    std::fs::remove_file(root.join("fleet.yaml")).unwrap();
    let o = berth(&["render", "--repo", root.to_str().unwrap(), "--all"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let out = stdout(&o);
    assert!(out.contains("hosts/edge-01: ok"), "{out}");
    // No fleet.yaml facts: edge-03's base requires the fact site.
    assert!(
        out.lines()
            .any(|l| l.starts_with("hosts/edge-03: ") && l.contains("problem")),
        "{out}"
    );
    let o = berth(&[
        "render",
        "--repo",
        root.to_str().unwrap(),
        "hosts/edge-01",
        "hosts/edge-03",
        "--fact",
        "site=lyon",
    ]);
    assert!(o.status.success(), "{}", show(&o));
}

#[test]
fn a_fact_reaches_the_rendered_spec() {
    let root = example_fleet();
    let o = berth(&[
        "render",
        "--repo",
        root.to_str().unwrap(),
        "hosts/edge-03",
        "--fact",
        "site=paris",
        "--json",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", show(&o)));
    let c = &v["hosts/edge-03"]["stacks"]["sensor"]["containers"][0];
    let env: Vec<&str> = c["env"]
        .as_array()
        .unwrap_or_else(|| panic!("no env in {v:#}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // --fact wins over fleet.yaml's site: berlin; the box gives its id; the include's env_file its bus.
    assert!(env.contains(&"SITE=paris"), "{env:?}");
    assert!(env.contains(&"BOX=edge-03"), "{env:?}");
    assert!(env.contains(&"BUS=i2c-2"), "{env:?}");
    assert!(env.iter().any(|e| e.starts_with("ARCH=")), "{env:?}");

    // A bad fact key is a usage error.
    let o = berth(&[
        "render",
        "--repo",
        root.to_str().unwrap(),
        "--all",
        "--fact",
        "bad-key=x",
    ]);
    assert_eq!(o.status.code(), Some(64), "{}", show(&o));
}

#[test]
fn an_agent_with_facts_applies_them() {
    let repo = GitRepo::new();
    repo.write(
        "compose.yaml",
        &format!(
            "services:\n  app:\n    image: {IMAGE}\n    command: {IDLE}\n    environment:\n      SITE: ${{BERTH_FACT_SITE}}\n      TIER: ${{BERTH_FACT_TIER}}\n      BOX: ${{BERTH_AGENT_ID}}\n      ARCH: ${{BERTH_ARCH}}\n"
        ),
    )
    .write(".env", "BERTH_FACT_TIER=from-dotenv\n")
    .commit_push("facts");
    let mut opts = AgentOptions::new(&repo.url());
    opts.rollout
        .push_str("facts:\n  site: berlin\n  tier: edge\n");
    let a = Agent::start_with("fleet-facts", opts);
    let o = a.reconcile_ok();
    assert!(o.status.success(), "{}", show(&o));
    let env = container_env(&a.container("app"));
    assert!(env.contains(&"SITE=berlin".to_string()), "{env:?}");
    // facts rank above the stack's .env
    assert!(env.contains(&"TIER=edge".to_string()), "{env:?}");
    assert!(env.contains(&format!("BOX={}", a.id)), "{env:?}");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert!(env.contains(&format!("ARCH={arch}")), "{env:?}");
    // The history records which facts the revision was rendered with.
    let h = a.history_json();
    assert_eq!(h[0]["facts"]["site"], "berlin", "{h:#?}");
    assert_eq!(h[0]["facts"]["tier"], "edge", "{h:#?}");
}

/// 500 boxes, each with its own stack and one including the shared base, all render (0.45 s for 503 boxes
/// on a debug build here; a bench line for it is still to be written).
#[test]
fn five_hundred_boxes_render() {
    let (_tmp, root) = fleet_copy();
    std::fs::remove_file(root.join("fleet.yaml")).unwrap();
    let own = std::fs::read_to_string(root.join("hosts/edge-01/compose.yaml")).unwrap();
    for i in 0..500 {
        let dir = root.join(format!("hosts/bench-{i:03}"));
        std::fs::create_dir_all(dir.join("sensor")).unwrap();
        std::fs::write(dir.join("compose.yaml"), &own).unwrap();
        std::fs::write(
            dir.join("sensor/compose.yaml"),
            "include:\n  - path: ../../../bases/sensor/compose.yaml\n    env_file: sensor.env\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("sensor/sensor.env"),
            format!("SENSOR_BUS=i2c-{i}\n"),
        )
        .unwrap();
    }
    let start = std::time::Instant::now();
    let o = berth(&[
        "render",
        "--repo",
        root.to_str().unwrap(),
        "--all",
        "--fact",
        "site=bench",
    ]);
    let took = start.elapsed();
    assert!(o.status.success(), "{}", show(&o));
    assert!(stdout(&o).contains("503 of 503 box(es) ok"), "{}", show(&o));
    // Speed is a benchmark's business, not a test's: the time is printed, not judged.
    eprintln!("berth render --repo --all of 503 boxes took {took:?}");
}
