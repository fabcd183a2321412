//! Fleet repositories: `berth render --repo ROOT (PATH... | --all)` over the example fleet and broken
//! copies of it, `--fact` in the rendered spec, and an agent whose `facts:` reach a container's env.

use crate::util::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

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

/// `berth COMMAND --repo ROOT ARGS...`.
fn berth_on_repo(command: &str, root: &Path, args: &[&str]) -> Output {
    berth(&[&[command, "--repo", root.to_str().unwrap()], args].concat())
}

/// `berth render --repo ROOT ARGS...`.
fn render(root: &Path, args: &[&str]) -> Output {
    berth_on_repo("render", root, args)
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
    let o = render(&root, &["--all"]);
    assert!(o.status.success(), "{}", show(&o));
    let out = stdout(&o);
    for b in ["hosts/edge-01", "hosts/edge-02", "hosts/edge-03"] {
        assert!(out.contains(&format!("{b}: ok")), "{b} not ok:\n{out}");
    }
    assert!(out.contains("3 of 3 box(es) ok"), "{out}");
    // edge-01 and edge-03 run the shared base, each with its own .env and facts.
    let o = render(&root, &["--all", "--json"]);
    assert!(o.status.success(), "{}", show(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    for (b, site, bus) in [("edge-01", "lyon", "i2c-1"), ("edge-03", "berlin", "i2c-2")] {
        let env = v[format!("hosts/{b}")]["stacks"]["sensor"]["containers"][0]["env"].to_string();
        for want in [
            format!("SITE={site}"),
            format!("BUS={bus}"),
            format!("BOX={b}"),
        ] {
            assert!(env.contains(&want), "{b}: {want} not in {env}");
        }
    }
    // hosts/edge-03 includes ../../../bases/sensor: refused when the box itself is taken as the root.
    let o = berth(&["render", root.join("hosts/edge-03").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
}

#[test]
fn a_broken_box_fails_the_fleet_and_is_named_with_file_and_line() {
    let (_tmp, root) = fleet_copy();
    std::fs::write(
        root.join("hosts/edge-01/compose.yaml"),
        "services:\n  heartbeat:\n    image: busybox\n    ports: [\"not-a-port\"]\n",
    )
    .unwrap();
    let o = render(&root, &["--all"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let out = stdout(&o);
    assert!(out.contains("hosts/edge-02: ok"), "{out}");
    assert!(out.contains("hosts/edge-03: ok"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("hosts/edge-01: ") && l.contains("problem")),
        "{out}"
    );
    assert!(
        out.contains("hosts/edge-01/compose.yaml:4"),
        "no file:line:\n{out}"
    );
    assert!(out.contains("2 of 3 box(es) ok, 1 failed"), "{out}");

    // Without fleet.yaml, every directory under hosts/ is a box; one box path renders alone.
    std::fs::remove_file(root.join("fleet.yaml")).unwrap();
    let o = render(&root, &["--all"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let out = stdout(&o);
    // No fleet.yaml facts: the base edge-02 and edge-03 include requires the fact site.
    for b in ["hosts/edge-02: ", "hosts/edge-03: "] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(b) && l.contains("problem")),
            "{out}"
        );
    }
    assert!(out.contains("set the fact site"), "{out}");
    let o = render(
        &root,
        &["hosts/edge-02", "hosts/edge-03", "--fact", "site=lyon"],
    );
    assert!(o.status.success(), "{}", show(&o));
}

#[test]
fn a_fact_reaches_the_rendered_spec() {
    let root = example_fleet();
    let o = render(&root, &["hosts/edge-03", "--fact", "site=paris", "--json"]);
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
    let o = render(&root, &["--all", "--fact", "bad-key=x"]);
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

/// 500 boxes, each with its own stack and one including the shared base, all render (correctness only:
/// `bench/fleet.sh` times it).
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
    let o = render(&root, &["--all", "--fact", "site=bench", "--json"]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(stderr(&o).contains("503 of 503 box(es) ok"), "{}", show(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let boxes = v.as_object().unwrap();
    assert_eq!(boxes.len(), 503);
    // Each generated box runs its own heartbeat and the base's sensor with its own bus.
    let b = &v["hosts/bench-042"]["stacks"];
    assert_eq!(
        b["sensor"]["containers"][0]["name"], "sensor-sensor-1",
        "{b:#}"
    );
    let env = b["sensor"]["containers"][0]["env"].to_string();
    assert!(
        env.contains("BUS=i2c-42") && env.contains("BOX=bench-042"),
        "{env}"
    );
    assert_eq!(
        b["bench-042"]["containers"][0]["name"], "bench-042-heartbeat-1",
        "{b:#}"
    );
}

// ---------------------------------------------------------------------------------------------------
// berth fleet-diff

/// A base: one service `app`, with `level` and a secret-looking value in its environment.
fn base(level: &str, token: &str) -> String {
    format!(
        "services:\n  app:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n    environment:\n      LEVEL: {level}\n      TOKEN: {token}\n      SITE: ${{BERTH_FACT_SITE:-none}}\n      BUS: ${{BUS}}\n"
    )
}

/// `n` boxes `hosts/box-NNN`, box i including `bases/base-{i % 3}` with its own `.env`; committed.
fn generated_fleet(n: usize) -> GitRepo {
    let repo = GitRepo::new();
    for b in 0..3 {
        repo.write(
            &format!("bases/base-{b}/compose.yaml"),
            &base("info", "hunter2-old"),
        );
    }
    for i in 0..n {
        repo.write(
            &format!("hosts/box-{i:03}/compose.yaml"),
            &format!(
                "include:\n  - path: ../../bases/base-{}/compose.yaml\n",
                i % 3
            ),
        )
        .write(&format!("hosts/box-{i:03}/.env"), &format!("BUS=i2c-{i}\n"));
    }
    repo.commit("fleet");
    repo
}

fn fleet_diff(repo: &GitRepo, args: &[&str]) -> Output {
    berth_on_repo("fleet-diff", &repo.work, args)
}

/// The boxes a fleet-diff lists (lines that start a box's block).
fn listed_boxes(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with("hosts/"))
        .filter_map(|l| l.split(':').next())
        .map(String::from)
        .collect()
}

#[test]
fn fleet_diff_lists_exactly_the_boxes_of_a_changed_base() {
    let repo = generated_fleet(500);
    repo.write("bases/base-1/compose.yaml", &base("debug", "hunter2-new"));
    // A change nothing reads changes no box.
    repo.write("docs/README.md", "notes\n");
    repo.commit("base-1: debug");

    let o = fleet_diff(&repo, &["HEAD~1", "HEAD"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let out = stdout(&o);
    let want: Vec<String> = (0..500)
        .filter(|i| i % 3 == 1)
        .map(|i| format!("hosts/box-{i:03}"))
        .collect();
    assert_eq!(want.len(), 167);
    assert_eq!(listed_boxes(&out), want, "{out}");
    // Each with its service and the field that differs, never the values.
    assert!(out.contains(
        "hosts/box-001: 1 to recreate\n  stack box-001\n    service app\n      recreate box-001-app-1 (env)\n"
    ), "{out}");
    assert_eq!(out.matches("recreate box-").count(), 167, "{out}");
    assert!(out.ends_with("167 of 500 boxes change\n"), "{out}");
    assert!(
        !out.contains("hunter2") && !stderr(&o).contains("hunter2"),
        "{}",
        show(&o)
    );
    // The 333 other boxes read nothing that changed: proven unchanged, rendered once.
    assert!(
        stderr(&o).contains("333 box(es) proven unchanged"),
        "{}",
        show(&o)
    );

    // Rendering every box at both revisions gives the same answer.
    let full = fleet_diff(&repo, &["HEAD~1", "HEAD", "--render-all"]);
    assert_eq!(full.status.code(), Some(2), "{}", show(&full));
    assert_eq!(stdout(&full), out);
    assert!(
        stderr(&full).contains("0 box(es) proven unchanged"),
        "{}",
        show(&full)
    );

    // JSON for a CI job that posts its own comment.
    let j = fleet_diff(&repo, &["HEAD~1", "HEAD", "--json"]);
    assert_eq!(j.status.code(), Some(2), "{}", show(&j));
    let v: Value = serde_json::from_slice(&j.stdout).unwrap();
    assert_eq!(v["boxes"], 500);
    assert_eq!(v["changed"], 167);
    assert_eq!(v["failed"], 0);
    assert_eq!(v["changes"][0]["box"], "hosts/box-001");
    assert_eq!(v["changes"][0]["status"], "changed");
    let c = &v["changes"][0]["diff"]["stacks"][0]["services"][0]["containers"][0];
    assert_eq!(c["action"], "recreate", "{v:#}");
    assert_eq!(c["why"]["fields"], serde_json::json!(["env"]), "{v:#}");

    // The same revision twice: nothing changes, exit 0.
    let o = fleet_diff(&repo, &["HEAD", "HEAD"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(stdout(&o), "0 of 500 boxes change\n");
}

#[test]
fn fleet_diff_new_gone_and_broken_boxes() {
    let repo = generated_fleet(4);
    repo.write("fleet.yaml", "facts:\n  hosts/box-000: {site: berlin}\n");
    let from = repo.commit("facts");
    // box-000's site fact changes, box-001 goes, box-009 comes, box-002 breaks.
    repo.write("fleet.yaml", "facts:\n  hosts/box-000: {site: lyon}\n")
        .remove("hosts/box-001")
        .write("hosts/box-009/compose.yaml", &base("info", "x"))
        .write("hosts/box-009/.env", "BUS=i2c-9\n")
        .write(
            "hosts/box-002/compose.yaml",
            "services:\n  app:\n    image: x\n    ports: [\"not-a-port\"]\n",
        );
    let to = repo.commit("mixed");

    let o = fleet_diff(&repo, &[&from, &to]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a box failing at TO wins over changes: {}",
        show(&o)
    );
    let out = stdout(&o);
    assert_eq!(
        listed_boxes(&out),
        [
            "hosts/box-000",
            "hosts/box-001",
            "hosts/box-002",
            "hosts/box-009"
        ],
        "{out}"
    );
    assert!(out.contains("hosts/box-000: 1 to recreate"), "{out}");
    assert!(out.contains("recreate box-000-app-1 (env)"), "{out}");
    assert!(
        out.contains("hosts/box-001: no longer a box: 1 to remove"),
        "{out}"
    );
    assert!(
        out.contains("remove   box-001-app-1: stack no longer in Git"),
        "{out}"
    );
    assert!(
        out.contains("hosts/box-002: does not render at TO: 1 problem(s)"),
        "{out}"
    );
    assert!(out.contains("hosts/box-002/compose.yaml:4"), "{out}");
    assert!(out.contains("hosts/box-009: new box: 1 to create"), "{out}");
    assert!(out.contains("create   box-009-app-1"), "{out}");
    assert!(
        out.ends_with("3 of 5 boxes change, 1 fail to render at TO\n"),
        "{out}"
    );
    assert!(!out.contains("lyon") && !out.contains("berlin"), "{out}");

    // Going back fixes box-002: a change, not a failure.
    let o = fleet_diff(&repo, &[&to, &from]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(
        stdout(&o)
            .contains("hosts/box-002: did not render at FROM (1 problem(s)); at TO: 1 to create"),
        "{}",
        show(&o)
    );

    // A revision that is not one, a repository that is not one: errors; no revisions: usage.
    let o = fleet_diff(&repo, &["HEAD", "no-such-branch"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        stderr(&o).contains("\"no-such-branch\" does not name a commit"),
        "{}",
        show(&o)
    );
    let dir = tempfile::tempdir().unwrap();
    let o = berth_on_repo("fleet-diff", dir.path(), &["HEAD~1", "HEAD"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        stderr(&o).contains("cannot open the repository"),
        "{}",
        show(&o)
    );
    let o = fleet_diff(&repo, &["HEAD"]);
    assert_eq!(o.status.code(), Some(64), "{}", show(&o));
}

// ---------------------------------------------------------------------------------------------------
// apply and diff as --agent-id

#[test]
fn apply_and_diff_render_as_their_agent_id() {
    let s = Stack::new(
        "fleet-apply-id",
        &format!(
            "services:\n  app:\n    image: {IMAGE}\n    command: {IDLE}\n    environment:\n      BOX: ${{BERTH_AGENT_ID}}\n"
        ),
    );
    let o = s.apply();
    assert!(o.status.success(), "{}", show(&o));
    let env = container_env(&s.container("app"));
    assert!(env.contains(&format!("BOX={}", s.id)), "{env:?}");
    // diff renders as the same id: nothing to do (as the hostname, BOX would differ).
    let o = run_with_deadline(
        std::process::Command::new(berth_bin())
            .args(["diff", s.arg(), "--agent-id", &s.id])
            .env("DOCKER_CONFIG", s.docker_config()),
        CLI_DEADLINE,
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(stdout(&o).contains("nothing to do"), "{}", show(&o));
}

// ---------------------------------------------------------------------------------------------------
// Render warnings in status

#[test]
fn status_shows_the_render_warnings_of_the_applied_revision() {
    let repo = GitRepo::new();
    let plain = format!("services:\n  app:\n    image: {IMAGE}\n    command: {IDLE}\n");
    repo.write(
        "compose.yaml",
        &format!(
            "{plain}    deploy:\n      placement:\n        constraints: [node.role == manager]\n"
        ),
    )
    .commit_push("swarm keys");
    let mut a = Agent::start("fleet-warnings", &repo);
    a.reconcile_ok();
    let warnings = |a: &Agent| -> Vec<String> {
        a.status_json()["warnings"]
            .as_array()
            .map(|w| {
                w.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let w = warnings(&a);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("compose.yaml:6: ") && w[0].contains("deploy.placement"),
        "{w:?}"
    );
    let o = a.cli(&["status"]);
    assert!(
        stdout(&o).contains(&format!("warning:  {}", w[0])),
        "{}",
        show(&o)
    );
    // Recorded with the revision: a restarted agent shows them before its first cycle.
    let h = a.history_json();
    assert_eq!(h[0]["warnings"][0].as_str(), Some(w[0].as_str()), "{h:#?}");
    a.stop();
    a.spawn();
    assert_eq!(warnings(&a), w);
    // A revision without them clears them.
    repo.write("compose.yaml", &plain).commit_push("plain");
    a.reconcile_ok();
    assert!(warnings(&a).is_empty(), "{:#}", a.status_json());
    assert!(!stdout(&a.cli(&["status"])).contains("warning:"));
}
