//! One owner per agent id, end to end with the real binary: a running agent holds its id (and its
//! state_dir) against `berth apply` and against a second agent until it dies, even by SIGKILL; and the
//! agent's own stops and removals are not mistaken for drift.

use crate::util::*;
use std::path::Path;
use std::process::{Command, Output};

fn compose(services: &[(&str, &str)]) -> String {
    let mut s = String::from("services:\n");
    for (name, mode) in services {
        s.push_str(&format!(
            "  {name}:\n    image: {IMAGE}\n    command: {IDLE}\n    environment:\n      MODE: \"{mode}\"\n"
        ));
    }
    s
}

fn cycles(agent: &Agent) -> u64 {
    let st = agent.status_json();
    st["cycles"]
        .as_u64()
        .unwrap_or_else(|| panic!("no cycles in status: {st:#}"))
}

/// `berth agent --config CONFIG`, which must exit by itself.
fn agent_once_refused(config: &Path) -> Output {
    run_with_deadline(
        Command::new(berth_bin())
            .arg("agent")
            .arg("--config")
            .arg(config)
            .env_remove("NOTIFY_SOCKET"),
        TIMEOUT,
    )
}

#[test]
fn apply_refuses_an_id_a_running_agent_holds_and_changes_nothing() {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose(&[("web", "1"), ("api", "1")]));
    repo.commit_push("two");
    let agent = Agent::start("own-apply", &repo);
    agent.reconcile_ok();
    let before = agent.owned();
    assert_eq!(before.len(), 2, "{before:#?}");

    // A directory that would remove both and create another container under the agent's id.
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join(agent.stack());
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("compose.yaml"), compose(&[("other", "1")])).unwrap();
    let app = app.to_string_lossy().to_string();
    let socket = agent.socket.to_string_lossy().to_string();
    let config = agent.config.to_string_lossy().to_string();

    for how in [["--socket", socket.as_str()], ["--config", config.as_str()]] {
        let o = berth(&["apply", &app, "--agent-id", &agent.id, how[0], how[1]]);
        assert_eq!(o.status.code(), Some(1), "apply {how:?}: {}", show(&o));
        let e = stderr(&o);
        assert!(
            e.contains(&format!("pid {}", agent.pid())),
            "names the holder's pid: {e}"
        );
        assert!(e.contains(&socket), "names the holder's socket: {e}");
        assert!(
            e.contains("stop that agent") && e.contains("--agent-id"),
            "says how to proceed: {e}"
        );
        assert!(e.contains("Nothing was changed"), "{e}");
        assert_eq!(agent.owned(), before, "apply {how:?} changed the engine");
    }
    assert_eq!(container_id(&format!("{}-other-1", agent.stack())), None);
    // The agent is unharmed.
    agent.reconcile_ok();
    assert_eq!(agent.owned(), before);
}

#[test]
fn a_second_agent_is_refused_while_the_first_runs_and_starts_after_a_sigkill() {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose(&[("web", "1")]));
    repo.commit_push("one");
    let mut agent = Agent::start("own-twice", &repo);
    agent.reconcile_ok();
    let web_id = container_id(&agent.container("web"));
    let pid = agent.pid();

    // The same config.
    let o = agent_once_refused(&agent.config);
    assert_ne!(o.status.code(), Some(0), "second agent: {}", show(&o));
    let e = stderr(&o);
    assert!(e.contains(&format!("pid {pid}")), "names the holder: {e}");

    // The same state_dir under another id and socket; the same id with another state_dir.
    let text = std::fs::read_to_string(&agent.config).unwrap();
    let socket = agent.socket.to_string_lossy().to_string();
    let state = agent.state_dir.to_string_lossy().to_string();
    let dir = tempfile::tempdir().unwrap();
    let other_sock_dir = tempfile::Builder::new()
        .prefix("b")
        .tempdir_in("/tmp")
        .unwrap();
    let variants = [
        (
            "same state_dir",
            text.replace(
                &format!("agent_id: {}\n", agent.id),
                &format!("agent_id: {}-b\n", agent.id),
            )
            .replace(&socket, &other_sock_dir.path().join("s").to_string_lossy()),
        ),
        (
            "same agent id",
            text.replace(&state, &dir.path().join("state").to_string_lossy())
                .replace(&socket, &format!("{socket}2")),
        ),
    ];
    for (what, config) in variants {
        assert_ne!(config, text, "{what}: the config must differ");
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, config).unwrap();
        let o = agent_once_refused(&path);
        assert_ne!(o.status.code(), Some(0), "{what}: {}", show(&o));
        assert!(
            stderr(&o).contains(&format!("pid {pid}")),
            "{what}: {}",
            show(&o)
        );
    }

    // The first one is untouched: its socket answers, its container runs.
    let st = agent.status_json();
    assert_eq!(st["agent_id"].as_str(), Some(agent.id.as_str()), "{st:#}");
    assert_eq!(container_id(&agent.container("web")), web_id);
    assert!(is_running(&agent.container("web")));

    // SIGKILL frees the lock: a new agent with the same config starts and converges.
    agent.kill9();
    agent.spawn();
    agent.reconcile_ok();
    assert_eq!(container_id(&agent.container("web")), web_id);
}

#[test]
fn the_agents_own_recreate_queues_no_drift_cycle() {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose(&[("web", "1"), ("api", "1")]));
    repo.commit_push("v1");
    let agent = Agent::start("own-recreate", &repo);
    agent.reconcile_ok();
    let api = agent.container("api");
    let old = container_id(&api).expect("api runs");
    let c0 = cycles(&agent);

    repo.write("compose.yaml", &compose(&[("web", "1"), ("api", "2")]));
    repo.commit_push("api: MODE=2");
    agent.reconcile_ok();
    let new = container_id(&api).expect("api runs again");
    assert_ne!(new, old, "api must be recreated");
    // A second cycle queued behind anything the recreate may have queued.
    agent.reconcile_ok();
    assert_eq!(
        cycles(&agent),
        c0 + 2,
        "only the two cycles asked for ran; log:\n{}",
        agent.log_text()
    );
    // The watcher did see the old container's events, and ignored them.
    wait_until(TIMEOUT, "the watcher to see the old api's destroy", || {
        agent
            .log_text()
            .lines()
            .any(|l| l.contains("own change: ignored") && l.contains(&old) && l.contains("destroy"))
    });
    assert_eq!(cycles(&agent), c0 + 2, "no drift cycle came later either");

    // A hand-made removal of the new container is still drift.
    docker_ok(&["rm", "-f", &new]);
    wait_until(TIMEOUT, "the drift watcher to recreate api", || {
        is_running(&api) && container_id(&api).is_some_and(|id| id != new)
    });
}
