//! The `berth` command line: `render` and `apply` on a plain directory, client commands with and without
//! an agent, and the human and JSON output of `status` and `history`.

use crate::util::*;
use serde_json::Value;

fn two_services(mode: &str) -> String {
    format!(
        "services:\n  web:\n    image: {IMAGE}\n    command: {IDLE}\n    environment:\n      MODE: \"{mode}\"\n  api:\n    image: {IMAGE}\n    command: {IDLE}\n"
    )
}

#[test]
fn render_prints_stacks_and_containers() {
    let dir = Stack::new("render-text", &two_services("1"));
    let o = dir.render(&[]);
    assert!(o.status.success(), "{}", show(&o));
    let out = stdout(&o);
    assert!(out.contains(&format!("stack {}", dir.id)), "{out}");
    assert!(out.contains(&dir.container("web")), "{out}");
    assert!(out.contains(&dir.container("api")), "{out}");
    assert!(out.contains(IMAGE), "{out}");
    // Rendering touches nothing on the engine.
    assert!(owned_containers(&dir.id).is_empty());
    assert_eq!(container_id(&dir.container("web")), None);
}

#[test]
fn render_json_is_parseable() {
    let dir = Stack::new("render-json", &two_services("7"));
    let o = dir.render(&["--json"]);
    assert!(o.status.success(), "{}", show(&o));
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", show(&o)));
    let stack = &v["stacks"][&dir.id];
    assert!(stack.is_object(), "no stack {} in {v:#}", dir.id);
    let names: Vec<&str> = stack["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let mut want = vec![dir.container("api"), dir.container("web")];
    want.sort();
    let mut got: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    got.sort();
    assert_eq!(got, want, "{v:#}");
    let web = stack["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["service"] == "web")
        .expect("web");
    assert_eq!(web["image"].as_str(), Some(IMAGE));
    assert!(
        web["env"]
            .as_array()
            .is_some_and(|e| e.iter().any(|x| x == "MODE=7")),
        "{web:#}"
    );
}

#[test]
fn render_warns_about_swarm_only_deploy_keys_and_still_renders() {
    let text = format!(
        "services:\n  web:\n    image: {IMAGE}\n    deploy:\n      placement:\n        constraints: [node.role == manager]\n"
    );
    let dir = Stack::new("render-swarm", &text);
    let o = dir.render(&[]);
    assert!(o.status.success(), "{}", show(&o));
    let err = stderr(&o);
    assert!(
        err.contains("warning: ")
            && err.contains("compose.yaml:5")
            && err.contains("deploy.placement"),
        "{err}"
    );
    assert!(stdout(&o).contains(&dir.container("web")), "{}", show(&o));
}

#[test]
fn render_broken_file_exits_1_with_file_and_line() {
    // Line 5 is not valid YAML.
    let text =
        format!("services:\n  web:\n    image: {IMAGE}\n    environment:\n      MODE: a: b\n");
    let dir = Stack::new("render-broken", &text);
    for json in [false, true] {
        let o = dir.render(if json { &["--json"] } else { &[] });
        assert_eq!(o.status.code(), Some(1), "{}", show(&o));
        let err = stderr(&o);
        assert!(
            err.contains("compose.yaml:5"),
            "must name file and line: {err}"
        );
        assert!(
            stdout(&o).trim().is_empty(),
            "nothing rendered: {}",
            show(&o)
        );
    }

    // An unknown key is an error too, naming it.
    let text = format!("services:\n  web:\n    image: {IMAGE}\n    imagee: x\n");
    let dir = Stack::new("render-unknown", &text);
    let o = dir.render(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = stderr(&o);
    assert!(
        err.contains("imagee") && err.contains("compose.yaml:4"),
        "{err}"
    );
}

#[test]
fn apply_converges_once_then_is_up_to_date() {
    let dir = Stack::new("apply-dir", &two_services("1"));
    let o = dir.apply();
    assert!(o.status.success(), "{}", show(&o));
    let first = owned_containers(&dir.id);
    let names: Vec<&str> = first.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        vec![dir.container("api"), dir.container("web")],
        "{first:#?}"
    );
    assert!(first.iter().all(|c| c.state == "running"), "{first:#?}");
    let labels = container_labels(&dir.container("web"));
    assert_eq!(labels.get("io.berth.agent"), Some(&dir.id));
    assert_eq!(labels.get("io.berth.stack"), Some(&dir.id));
    assert!(container_env(&dir.container("web")).contains(&"MODE=1".to_string()));

    let o = dir.apply();
    assert!(o.status.success(), "{}", show(&o));
    assert!(stdout(&o).contains("up to date"), "{}", show(&o));
    assert_eq!(
        owned_containers(&dir.id),
        first,
        "a second apply changes nothing"
    );

    // A change applies: only web is recreated.
    dir.write(&two_services("2"));
    let o = dir.apply();
    assert!(o.status.success(), "{}", show(&o));
    let second = owned_containers(&dir.id);
    assert_eq!(second[0], first[0], "api unchanged");
    assert_ne!(second[1].id, first[1].id, "web recreated");
    assert!(container_env(&dir.container("web")).contains(&"MODE=2".to_string()));
}

#[test]
fn apply_of_a_broken_dir_changes_nothing() {
    let dir = Stack::new("apply-broken", &two_services("1"));
    let o = dir.apply();
    assert!(o.status.success(), "{}", show(&o));
    let before = owned_containers(&dir.id);
    dir.write(&format!(
        "services:\n  web:\n    image: {IMAGE}\n    environment:\n      MODE: a: b\n"
    ));
    let o = dir.apply();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(stderr(&o).contains("compose.yaml:5"), "{}", show(&o));
    assert_eq!(owned_containers(&dir.id), before, "nothing may change");
}

#[test]
fn client_commands_without_an_agent_fail_clearly() {
    let dir = tempfile::Builder::new()
        .prefix("b")
        .tempdir_in("/tmp")
        .unwrap();
    let socket = dir.path().join("none.sock");
    let socket = socket.to_str().unwrap();
    for cmd in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["history"],
        vec!["history", "--json"],
        vec!["reconcile"],
        vec!["reconcile", "--wait"],
        vec!["rollback"],
        vec!["resume"],
    ] {
        let mut args = vec![cmd[0], "--socket", socket];
        args.extend(&cmd[1..]);
        let o = run_with_deadline(std::process::Command::new(berth_bin()).args(&args), TIMEOUT);
        assert_eq!(o.status.code(), Some(1), "berth {args:?}: {}", show(&o));
        let err = stderr(&o);
        assert!(
            err.contains("cannot reach the agent") && err.contains(socket),
            "berth {args:?}: {err}"
        );
        assert!(stdout(&o).is_empty(), "berth {args:?}: {}", show(&o));
    }
}

#[test]
fn status_table_names_the_containers() {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &two_services("1"));
    let c1 = repo.commit_push("two services");
    let agent = Agent::start("status-table", &repo);
    agent.reconcile_ok();

    let o = agent.cli(&["status"]);
    assert!(o.status.success(), "{}", show(&o));
    let out = stdout(&o);
    assert!(out.contains(&agent.id), "{out}");
    assert!(out.contains(&c1[..12]), "applied commit: {out}");
    for svc in ["web", "api"] {
        let name = agent.container(svc);
        let line = out
            .lines()
            .find(|l| l.starts_with(&name))
            .unwrap_or_else(|| panic!("no row for {name}: {out}"));
        assert!(line.contains("running"), "{line}");
        let id = container_id(&name).unwrap();
        assert!(line.contains(&id[..12]), "{line}");
    }

    // The socket is found through --config too.
    let config = agent.config.to_str().unwrap().to_string();
    let o = berth(&["status", "--config", &config, "--json"]);
    assert!(o.status.success(), "{}", show(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["agent_id"].as_str(), Some(agent.id.as_str()));
}

#[test]
fn history_json_uses_full_commit_ids() {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &two_services("1"));
    let c1 = repo.commit_push("first");
    let agent = Agent::start("history-json", &repo);
    agent.reconcile_ok();
    repo.write("compose.yaml", &two_services("2"));
    let c2 = repo.commit_push("second");
    agent.reconcile_ok();

    let h = agent.history_json();
    let commits: Vec<&str> = h.iter().filter_map(|e| e["commit"].as_str()).collect();
    assert_eq!(
        commits,
        vec![c2.as_str(), c1.as_str()],
        "newest first: {h:#?}"
    );
    assert!(commits.iter().all(|c| is_full_sha(c)), "{commits:?}");
    assert_eq!(h[0]["summary"].as_str(), Some("second"));
    assert_eq!(
        h[0]["author"].as_str().map(|a| a.contains("Berth Test")),
        Some(true),
        "{h:#?}"
    );
    assert!(h.iter().all(|e| e["outcome"] == "applied"), "{h:#?}");
    // Each revision records the image id its image reference named when it was applied.
    let image_id = std::process::Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", IMAGE])
        .output()
        .expect("docker image inspect");
    let image_id = String::from_utf8_lossy(&image_id.stdout).trim().to_string();
    assert!(image_id.starts_with("sha256:"), "{image_id}");
    assert_eq!(
        h[0]["images"][IMAGE].as_str(),
        Some(image_id.as_str()),
        "{h:#?}"
    );
    let seqs: Vec<u64> = h.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs.len(), 2);
    assert!(seqs[0] > seqs[1], "{seqs:?}");

    let st = agent.status_json();
    for key in ["applied_commit", "fetched_commit"] {
        let c = str_field(&st, key).unwrap_or_default();
        assert!(is_full_sha(c), "{key}: {st:#}");
    }

    // The human table shows short ids; --limit is honoured.
    let o = agent.cli(&["history", "--limit", "1"]);
    assert!(o.status.success(), "{}", show(&o));
    let out = stdout(&o);
    assert!(out.contains(&c2[..12]) && !out.contains(&c1[..12]), "{out}");
    assert!(out.contains("second"), "{out}");
}
