//! `berth diff` end to end against the real engine: with a directory (`berth diff DIR --agent-id ID`) and
//! against a running agent (`berth diff --socket S`, which plans the commit the agent fetched). Exit codes
//! (0 nothing to do, 2 something would change, 1 an error), what is named (steps by stack and service,
//! the spec fields a recreate changes, never their values), and that nothing on the engine changes: no
//! container, network or volume made, started or replaced, and no image pulled.

use crate::util::*;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::process::{Command, Output};

/// `berth diff DIR --agent-id ID ARGS`, with the environment `berth apply` gets in these tests.
fn diff_dir(s: &Stack, args: &[&str]) -> Output {
    run_with_deadline(
        Command::new(berth_bin())
            .arg("diff")
            .arg(&s.path)
            .arg("--agent-id")
            .arg(&s.id)
            .args(args)
            .env("DOCKER_CONFIG", s.docker_config())
            .env_remove("BERTH_LOG"),
        CLI_DEADLINE,
    )
}

/// Everything on the engine whose name carries `id`: containers (id, name, state, start time, restarts),
/// networks (id, name) and volumes, sorted.
fn engine_snapshot(id: &str) -> Vec<String> {
    let filter = format!("name={id}");
    let mut all = Vec::new();
    let containers = docker_ok(&["ps", "-a", "-q", "--no-trunc", "--filter", &filter]);
    for c in containers.lines() {
        all.push(docker_ok(&[
            "container",
            "inspect",
            "--format",
            "container {{.Id}} {{.Name}} {{.State.Status}} {{.State.StartedAt}} {{.RestartCount}}",
            c,
        ]));
    }
    for n in docker_ok(&[
        "network",
        "ls",
        "--no-trunc",
        "--filter",
        &filter,
        "--format",
        "network {{.ID}} {{.Name}}",
    ])
    .lines()
    {
        all.push(n.to_string());
    }
    for v in docker_ok(&[
        "volume",
        "ls",
        "--filter",
        &filter,
        "--format",
        "volume {{.Name}}",
    ])
    .lines()
    {
        all.push(v.to_string());
    }
    all.sort();
    all
}

fn json_of(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("berth diff --json printed no JSON ({e}): {}", show(o)))
}

/// `(container, action)` of every container step in a `--json` answer.
fn json_steps(v: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in v["stacks"].as_array().into_iter().flatten() {
        for svc in s["services"].as_array().into_iter().flatten() {
            for c in svc["containers"].as_array().into_iter().flatten() {
                out.push((
                    c["container"].as_str().unwrap_or_default().to_string(),
                    c["action"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    out
}

fn two_services(token: &str) -> String {
    format!(
        r#"services:
  app:
    image: {IMAGE}
    command: {IDLE}
    environment:
      TOKEN: {token}
    volumes: [data:/data]
    networks: [back]
  web:
    image: {IMAGE}
    command: {IDLE}
networks:
  back: {{}}
volumes:
  data: {{}}
"#
    )
}

#[test]
fn a_fresh_stack_exits_2_naming_what_it_would_create_and_0_after_apply() {
    let s = Stack::new("diff-fresh", &two_services("one"));
    let before = engine_snapshot(&s.id);
    assert!(before.is_empty(), "{before:#?}");

    let o = diff_dir(&s, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let out = stdout(&o);
    for expected in [
        format!("stack {}", s.id),
        format!("network {}_back: create", s.id),
        format!("network {}_default: create", s.id),
        format!("volume {}_data: create", s.id),
        "service app".to_string(),
        format!("create   {}", s.container("app")),
        format!("create   {}", s.container("web")),
    ] {
        assert!(out.contains(&expected), "no {expected:?} in {}", show(&o));
    }
    let v = json_of(&diff_dir(&s, &["--json"]));
    assert_eq!(v["agent_id"], s.id.as_str());
    assert_eq!(
        json_steps(&v),
        [
            (s.container("app"), "create".to_string()),
            (s.container("web"), "create".to_string())
        ]
    );
    assert_eq!(
        engine_snapshot(&s.id),
        before,
        "berth diff changed the engine"
    );

    let a = s.apply();
    assert!(a.status.success(), "{}", show(&a));
    let applied = engine_snapshot(&s.id);
    let o = diff_dir(&s, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(stdout(&o), "nothing to do\n");
    let o = diff_dir(&s, &["--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(json_steps(&json_of(&o)).is_empty(), "{}", show(&o));
    assert_eq!(engine_snapshot(&s.id), applied);
}

#[test]
fn a_changed_env_var_is_a_recreate_naming_env_without_its_value() {
    let s = Stack::new("diff-env", &two_services("diff-secret-value-1"));
    let a = s.apply();
    assert!(a.status.success(), "{}", show(&a));
    let before = engine_snapshot(&s.id);
    s.write(&two_services("diff-secret-value-2"));

    let o = diff_dir(&s, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let app = s.container("app");
    // The runtime that writes io.berth.spec on a container lets a directory's diff name the fields;
    // without the label the old spec is unknown here (the agent knows it from its history).
    let labelled = container_labels(&app).contains_key("io.berth.spec");
    let expected = if labelled {
        format!("recreate {app} (env)\n")
    } else {
        format!("recreate {app}: spec changed (old spec unknown)\n")
    };
    assert!(
        stdout(&o).contains(&expected),
        "no {expected:?} in {}",
        show(&o)
    );
    assert!(
        !stdout(&o).contains(&s.container("web")),
        "web is unchanged: {}",
        show(&o)
    );
    let j = diff_dir(&s, &["--json"]);
    for o in [&o, &j] {
        assert!(
            !show(o).contains("diff-secret-value"),
            "a value was printed: {}",
            show(o)
        );
    }
    assert_eq!(json_steps(&json_of(&j)), [(app.clone(), "recreate".into())]);
    assert_eq!(
        engine_snapshot(&s.id),
        before,
        "berth diff changed the engine"
    );
    assert!(
        container_env(&app).contains(&"TOKEN=diff-secret-value-1".to_string()),
        "the container still runs the applied spec"
    );
}

#[test]
fn a_broken_file_exits_1_naming_the_file_and_line() {
    let s = Stack::new(
        "diff-broken",
        &format!("services:\n  app:\n    image: {IMAGE}\n    bogus_key: 1\n"),
    );
    let o = diff_dir(&s, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(stderr(&o).contains("compose.yaml:4"), "{}", show(&o));
    assert!(stderr(&o).contains("bogus_key"), "{}", show(&o));
    assert!(stdout(&o).is_empty(), "{}", show(&o));
    assert!(engine_snapshot(&s.id).is_empty());
}

/// A registry address that takes connections and never answers: any pull would knock on it.
fn watched_registry() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    (l, format!("127.0.0.1:{port}/berth-diff/app:1"))
}

#[test]
fn images_are_inspected_never_pulled_and_one_that_cannot_be_had_exits_1() {
    let (registry, image) = watched_registry();
    let compose = |policy: &str| {
        format!(
            "services:\n  app:\n    image: {image}\n    pull_policy: {policy}\n  web:\n    image: {IMAGE}\n    pull_policy: always\n    command: {IDLE}\n"
        )
    };
    let s = Stack::new("diff-pull", &compose("missing"));
    let o = diff_dir(&s, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let out = stdout(&o);
    assert!(
        out.contains(&format!("pull {image}: not on the engine")),
        "{}",
        show(&o)
    );
    assert!(
        out.contains(&format!("pull {IMAGE}: pull_policy always")),
        "{}",
        show(&o)
    );
    assert!(stderr(&o).is_empty(), "{}", show(&o));
    match registry.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("berth diff pulled from the registry: {other:?}"),
    }
    assert!(
        !docker(&["image", "inspect", &image]).status.success(),
        "the image appeared"
    );

    s.write(&compose("never"));
    let o = diff_dir(&s, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        stderr(&o).contains(&format!(
            "error: image {image} is not on the engine and its pull_policy is never"
        )),
        "{}",
        show(&o)
    );
    assert!(
        stdout(&o).contains(&format!("create   {}", s.container("app"))),
        "the plan is still shown: {}",
        show(&o)
    );
    assert!(engine_snapshot(&s.id).is_empty());
}

fn agent_compose(token: &str, extra: bool) -> String {
    let mut c = format!(
        "services:\n  app:\n    image: {IMAGE}\n    command: {IDLE}\n    environment:\n      TOKEN: {token}\n"
    );
    if extra {
        c.push_str(&format!(
            "  extra:\n    image: {IMAGE}\n    command: {IDLE}\n"
        ));
    }
    c
}

/// The agent follows a repository with interval 1h, so nothing is applied unless asked: `berth diff`
/// fetches the pushed commit itself, plans it, and applies nothing.
#[test]
fn against_the_agent_it_plans_the_pushed_commit_without_applying_it() {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &agent_compose("agent-secret-1", false));
    let first = repo.commit_push("first");
    let agent = Agent::start("diff-agent", &repo);
    agent.reconcile_ok();
    let o = agent.cli(&["diff"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(stdout(&o).contains("(the box runs it)"), "{}", show(&o));

    repo.write("compose.yaml", &agent_compose("agent-secret-2", true));
    let second = repo.commit_push("second: env and a service");
    let before = engine_snapshot(&agent.id);
    let history = agent.history_json().len();

    let o = agent.cli(&["diff"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let out = stdout(&o);
    for expected in [
        format!("commit {}", &second[..12]),
        format!("the box runs {}", &first[..12]),
        format!("recreate {} (env)\n", agent.container("app")),
        format!("create   {}\n", agent.container("extra")),
    ] {
        assert!(out.contains(&expected), "no {expected:?} in {}", show(&o));
    }
    assert!(!show(&o).contains("agent-secret"), "{}", show(&o));
    let j = agent.cli(&["diff", "--json"]);
    assert_eq!(j.status.code(), Some(2), "{}", show(&j));
    let v = json_of(&j);
    assert_eq!(v["commit"], second.as_str());
    assert_eq!(v["applied_commit"], first.as_str());
    assert!(!show(&j).contains("agent-secret"), "{}", show(&j));

    // Nothing applied, recorded or changed.
    assert_eq!(
        engine_snapshot(&agent.id),
        before,
        "berth diff changed the engine"
    );
    let st = agent.status_json();
    assert_eq!(str_field(&st, "applied_commit"), Some(first.as_str()));
    assert_eq!(str_field(&st, "fetched_commit"), Some(second.as_str()));
    assert_eq!(agent.history_json().len(), history);

    // --no-fetch plans the commit fetched last, even when the remote moved since.
    repo.write("compose.yaml", "services:\n  app:\n    image: [broken\n");
    let broken = repo.commit_push("broken");
    let v = json_of(&agent.cli(&["diff", "--no-fetch", "--json"]));
    assert_eq!(v["commit"], second.as_str());
    // With a fetch, the broken commit's render problem is the answer.
    let o = agent.cli(&["diff"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        stderr(&o).contains(&broken[..12]) && stderr(&o).contains("compose.yaml:4"),
        "{}",
        show(&o)
    );
    assert_eq!(
        engine_snapshot(&agent.id),
        before,
        "berth diff changed the engine"
    );

    repo.write("compose.yaml", &agent_compose("agent-secret-2", true));
    repo.commit_push("fixed");
    agent.reconcile_ok();
    let o = agent.cli(&["diff"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(stdout(&o).contains("nothing to do"), "{}", show(&o));
}

/// A plan whose apply preflight would refuse (an external network that does not exist) is shown, and
/// exits 1 with the check's error.
#[test]
fn a_failed_preflight_check_exits_1_naming_the_object() {
    let missing = agent_id("diff-no-such-net");
    let s = Stack::new(
        "diff-preflight",
        &format!(
            "services:\n  app:\n    image: {IMAGE}\n    command: {IDLE}\n    networks: [ext]\nnetworks:\n  ext:\n    external: true\n    name: {missing}\n"
        ),
    );
    let o = diff_dir(&s, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        stderr(&o).contains(&format!("external network {missing} does not exist")),
        "{}",
        show(&o)
    );
    assert!(
        stdout(&o).contains(&format!("create   {}", s.container("app"))),
        "{}",
        show(&o)
    );
    assert!(engine_snapshot(&s.id).is_empty());
}

#[test]
fn a_directory_and_the_agents_options_do_not_mix() {
    for args in [
        &["diff", "/nonexistent", "--socket", "/tmp/x.sock"][..],
        &["diff", "/nonexistent", "--no-fetch"],
        &["diff", "--agent-id", "x"],
    ] {
        let o = berth(args);
        assert!(!o.status.success(), "{args:?}: {}", show(&o));
        assert!(stderr(&o).contains("Usage"), "{args:?}: {}", show(&o));
    }
}
