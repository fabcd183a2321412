//! Acceptance tests of the core agent: a real `berth agent` process following a real Git repository and
//! converging the real Docker engine. Cycles are driven by `berth reconcile --wait` (the interval is 1h),
//! except where a test is about what happens without a trigger.
//!
//! The tests are here under their names (`agent::<test>`); what they share is in `agent/`: `fixtures`
//! (compose text), `checks` (ids, applied status) and `drift` (the drift-watcher scenario).

mod checks;
mod drift;
mod fixtures;

use checks::*;
use drift::*;
use fixtures::*;

use crate::util::*;
use std::collections::BTreeSet;

/// 1. A commit with three services converges: status names the full commit, outcome applied; the three
/// containers run with berth's labels.
#[test]
fn three_services_converge_with_labels() {
    let repo = GitRepo::new();
    repo.write(
        "compose.yaml",
        &compose(&[
            service("web", &env("1")),
            service("api", &env("1")),
            service("db", &env("1")),
        ]),
    );
    let c1 = repo.commit_push("three services");
    let agent = Agent::start("three-services", &repo);
    agent.reconcile_ok();

    let st = assert_applied(&agent, &c1);
    assert!(is_full_sha(&c1));
    assert_eq!(str_field(&st, "agent_id"), Some(agent.id.as_str()));
    assert_eq!(str_field(&st, "fetched_commit"), Some(c1.as_str()));

    let owned = agent.owned();
    let names: BTreeSet<String> = owned.iter().map(|c| c.name.clone()).collect();
    let want: BTreeSet<String> = ["api", "db", "web"]
        .iter()
        .map(|s| agent.container(s))
        .collect();
    assert_eq!(names, want, "owned containers: {owned:#?}");
    for svc in ["web", "api", "db"] {
        let name = agent.container(svc);
        assert!(is_running(&name), "{name} is not running");
        let labels = container_labels(&name);
        assert_eq!(
            labels.get("io.berth.agent"),
            Some(&agent.id),
            "{name}: {labels:?}"
        );
        assert_eq!(
            labels.get("io.berth.stack").map(String::as_str),
            Some(agent.stack())
        );
        assert_eq!(
            labels.get("io.berth.service").map(String::as_str),
            Some(svc)
        );
        assert_eq!(
            labels.get("io.berth.replica").map(String::as_str),
            Some("1")
        );
        assert_eq!(
            labels.get("io.berth.revision"),
            Some(&c1),
            "{name}: {labels:?}"
        );
        let hash = labels
            .get("io.berth.spec-hash")
            .cloned()
            .unwrap_or_default();
        assert!(
            hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}: spec hash {hash:?}"
        );
        assert!(
            container_env(&name).contains(&"MODE=1".to_string()),
            "{name}: {:?}",
            container_env(&name)
        );
    }
    // Status lists the same containers, running.
    let listed: BTreeSet<String> = status_containers(&st)
        .into_iter()
        .filter(|(_, _, state)| state == "running")
        .map(|(n, _, _)| n)
        .collect();
    assert_eq!(listed, want, "status containers: {st:#}");
    let h = agent.history_json();
    assert_eq!(h.len(), 1, "{h:#?}");
    assert_eq!(h[0]["commit"].as_str(), Some(c1.as_str()));
    assert_eq!(h[0]["outcome"].as_str(), Some("applied"));
}

/// 2. Changing one service's environment recreates that container only.
#[test]
fn env_change_recreates_only_that_container() {
    let repo = GitRepo::new();
    repo.write(
        "compose.yaml",
        &compose(&[
            service("web", &env("1")),
            service("api", &env("1")),
            service("db", &env("1")),
        ]),
    );
    repo.commit_push("v1");
    let agent = Agent::start("env-change", &repo);
    agent.reconcile_ok();
    let before = ids(&agent, &["web", "api", "db"]);
    assert!(before.iter().all(Option::is_some), "{before:?}");

    repo.write(
        "compose.yaml",
        &compose(&[
            service("web", &env("1")),
            service("api", &env("2")),
            service("db", &env("1")),
        ]),
    );
    let c2 = repo.commit_push("api: MODE=2");
    agent.reconcile_ok();
    assert_applied(&agent, &c2);
    let after = ids(&agent, &["web", "api", "db"]);
    assert_eq!(after[0], before[0], "web must keep its container");
    assert_eq!(after[2], before[2], "db must keep its container");
    assert!(
        after[1].is_some() && after[1] != before[1],
        "api must be recreated"
    );
    let api = agent.container("api");
    assert!(is_running(&api));
    assert!(container_env(&api).contains(&"MODE=2".to_string()));
    assert_eq!(
        container_labels(&api).get("io.berth.revision"),
        Some(&c2),
        "the recreated container names the new revision"
    );
    assert_eq!(agent.owned().len(), 3, "{:#?}", agent.owned());

    // A cycle with nothing new changes nothing.
    agent.reconcile_ok();
    assert_eq!(ids(&agent, &["web", "api", "db"]), after);
}

/// 3. Removing a service from Git removes its container, not its volume or data; look-alike containers
/// berth does not own are untouched.
#[test]
fn removed_service_keeps_volume_and_foreign_containers() {
    let repo = GitRepo::new();
    let db = format!("{}    volumes:\n      - data:/data\n", env("1"));
    repo.write(
        "compose.yaml",
        &format!(
            "{}volumes:\n  data: {{}}\n",
            compose(&[service("web", &env("1")), service("db", &db)])
        ),
    );
    repo.commit_push("web and db");
    let agent = Agent::start("remove-service", &repo);
    let stack = agent.stack().to_string();
    // Look-alikes: berth's naming, but no berth labels / another agent's label.
    let unlabelled = ForeignContainer::run(&format!("{stack}-db-2"), &[]);
    let other_id = format!("{}-other", agent.id);
    let other = ForeignContainer::run(
        &format!("{stack}-web-2"),
        &[
            &format!("io.berth.agent={other_id}"),
            &format!("io.berth.stack={stack}"),
            "io.berth.service=web",
            "io.berth.replica=2",
        ],
    );
    let foreign_ids = (
        container_id(&unlabelled.name).unwrap(),
        container_id(&other.name).unwrap(),
    );

    agent.reconcile_ok();
    let web = container_id(&agent.container("web")).expect("web");
    let db_name = agent.container("db");
    assert!(is_running(&db_name));
    exec(&db_name, "echo kept-data > /data/file");
    let volume = format!("{stack}_data");
    assert!(volume_exists(&volume), "volume {volume} must exist");

    repo.write("compose.yaml", &compose(&[service("web", &env("1"))]));
    let c2 = repo.commit_push("remove db");
    agent.reconcile_ok();
    assert_applied(&agent, &c2);

    assert_eq!(container_id(&db_name), None, "db container must be removed");
    assert_eq!(
        container_id(&agent.container("web")),
        Some(web),
        "web untouched"
    );
    assert!(volume_exists(&volume), "the named volume must stay");
    let data = docker_ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{volume}:/data"),
        IMAGE,
        "cat",
        "/data/file",
    ]);
    assert_eq!(data, "kept-data", "the data in the volume must stay");

    assert_eq!(
        container_id(&unlabelled.name).as_ref(),
        Some(&foreign_ids.0)
    );
    assert_eq!(container_id(&other.name).as_ref(), Some(&foreign_ids.1));
    assert!(
        is_running(&unlabelled.name),
        "unowned look-alike must keep running"
    );
    assert!(
        is_running(&other.name),
        "another agent's container must keep running"
    );
    let names: Vec<String> = agent.owned().into_iter().map(|c| c.name).collect();
    assert_eq!(names, vec![agent.container("web")]);
}

/// 4. Broken YAML and an unknown compose key change nothing on the engine; status names file and line;
/// the next good commit applies.
#[test]
fn bad_commits_change_nothing_and_name_file_and_line() {
    let repo = GitRepo::new();
    let good = |mode: &str| {
        format!(
            "services:\n  web:\n    image: {IMAGE}\n    command: {IDLE}\n    environment:\n      MODE: \"{mode}\"\n  api:\n    image: {IMAGE}\n    command: {IDLE}\n"
        )
    };
    repo.write("compose.yaml", &good("1"));
    let c1 = repo.commit_push("good");
    let agent = Agent::start("bad-commits", &repo);
    agent.reconcile_ok();
    assert_applied(&agent, &c1);
    let before = ids(&agent, &["web", "api"]);

    // Line 6 is not valid YAML ("mapping values are not allowed here").
    let broken = format!(
        "services:\n  web:\n    image: {IMAGE}\n    command: {IDLE}\n    environment:\n      MODE: a: b\n  api:\n    image: {IMAGE}\n    command: {IDLE}\n"
    );
    // Line 7 holds a key Compose does not have.
    let unknown = format!(
        "services:\n  web:\n    image: {IMAGE}\n    command: {IDLE}\n    environment:\n      MODE: \"3\"\n    restartt: always\n  api:\n    image: {IMAGE}\n    command: {IDLE}\n"
    );
    for (text, line, word) in [
        (broken, "compose.yaml:6", "broken yaml"),
        (unknown, "compose.yaml:7", "restartt"),
    ] {
        repo.write("compose.yaml", &text);
        let bad = repo.commit_push(word);
        let o = agent.reconcile_wait();
        assert_eq!(
            o.status.code(),
            Some(1),
            "a failed cycle exits 1: {}",
            show(&o)
        );
        let st = agent.status_json();
        assert_eq!(
            str_field(&st, "fetched_commit"),
            Some(bad.as_str()),
            "{st:#}"
        );
        assert_eq!(
            str_field(&st, "applied_commit"),
            Some(c1.as_str()),
            "{word}: the good revision stays applied: {st:#}"
        );
        assert_eq!(str_field(&st, "outcome"), Some("failed"), "{st:#}");
        let err = str_field(&st, "last_error").unwrap_or_default().to_string();
        assert!(
            err.contains(line),
            "{word}: last_error must name {line}: {err:?}"
        );
        if word == "restartt" {
            assert!(err.contains("restartt"), "must name the key: {err:?}");
        }
        assert_eq!(
            ids(&agent, &["web", "api"]),
            before,
            "{word}: engine changed"
        );
        assert!(is_running(&agent.container("web")) && is_running(&agent.container("api")));
        assert_eq!(agent.owned().len(), 2, "{:#?}", agent.owned());
        // Retried cycles keep reporting it and keep the engine as it is.
        let o = agent.reconcile_wait();
        assert_eq!(o.status.code(), Some(1), "{}", show(&o));
        assert_eq!(ids(&agent, &["web", "api"]), before);
    }

    repo.write("compose.yaml", &good("4"));
    let c4 = repo.commit_push("good again");
    agent.reconcile_ok();
    assert_applied(&agent, &c4);
    let after = ids(&agent, &["web", "api"]);
    assert_ne!(
        after[0], before[0],
        "web must be recreated by the good commit"
    );
    assert_eq!(after[1], before[1], "api must be kept");
    assert!(container_env(&agent.container("web")).contains(&"MODE=4".to_string()));
}

/// 5. A container stopped by hand and one removed by hand are restored by the next cycle.
#[test]
fn next_cycle_restores_stopped_and_removed_containers() {
    let repo = GitRepo::new();
    repo.write(
        "compose.yaml",
        &compose(&[service("web", ""), service("api", ""), service("db", "")]),
    );
    let c1 = repo.commit_push("three");
    let agent = Agent::start("restore-next-cycle", &repo);
    agent.reconcile_ok();
    let (web, api, db) = (
        agent.container("web"),
        agent.container("api"),
        agent.container("db"),
    );
    let db_id = container_id(&db);

    docker_ok(&["stop", &web]);
    docker_ok(&["rm", "-f", &api]);
    // The drift watcher may already be repairing them (it starts a cycle on the first event); either way
    // the next cycle leaves them running.
    agent.reconcile_ok();
    assert!(is_running(&web), "stopped container must run again");
    assert!(is_running(&api), "removed container must be recreated");
    assert_eq!(container_id(&db), db_id, "db untouched");
    assert_eq!(agent.owned().len(), 3, "{:#?}", agent.owned());
    assert_applied(&agent, &c1);
}

// 5b. The drift watcher: see `drift::drift_is_corrected_without_a_trigger`.

#[test]
fn drift_watcher_restarts_a_stopped_container() {
    drift_is_corrected_without_a_trigger("drift-stop", &["stop"]);
}

#[test]
fn drift_watcher_restarts_a_killed_container() {
    drift_is_corrected_without_a_trigger("drift-kill", &["kill"]);
}

#[test]
fn drift_watcher_recreates_a_removed_container() {
    drift_is_corrected_without_a_trigger("drift-rm", &["rm", "-f"]);
}

/// 6. Rollback works with the remote gone and pins; a new commit is fetched but not applied while
/// pinned; resume applies it.
#[test]
fn rollback_offline_pins_until_resume() {
    let repo = GitRepo::new();
    repo.write(
        "compose.yaml",
        &compose(&[service("web", &env("1")), service("api", "")]),
    );
    let c1 = repo.commit_push("v1");
    let agent = Agent::start("rollback", &repo);
    agent.reconcile_ok();
    assert_applied(&agent, &c1);

    repo.write(
        "compose.yaml",
        &compose(&[
            service("web", &env("2")),
            service("api", ""),
            service("extra", ""),
        ]),
    );
    let c2 = repo.commit_push("v2");
    agent.reconcile_ok();
    assert_applied(&agent, &c2);
    assert!(is_running(&agent.container("extra")));
    let api_id = container_id(&agent.container("api"));

    repo.delete_remote();
    let o = agent.cli(&["rollback"]);
    assert!(o.status.success(), "berth rollback: {}", show(&o));

    let st = agent.status_json();
    assert_eq!(st["pinned"], serde_json::json!(true), "{st:#}");
    assert_eq!(
        str_field(&st, "applied_commit"),
        Some(c1.as_str()),
        "{st:#}"
    );
    let web = agent.container("web");
    assert!(is_running(&web));
    assert!(
        container_env(&web).contains(&"MODE=1".to_string()),
        "{:?}",
        container_env(&web)
    );
    assert_eq!(container_labels(&web).get("io.berth.revision"), Some(&c1));
    assert_eq!(
        container_id(&agent.container("extra")),
        None,
        "extra is not in v1"
    );
    assert_eq!(
        container_id(&agent.container("api")),
        api_id,
        "api is the same in v1 and v2"
    );
    let h = agent.history_json();
    assert_eq!(h[0]["commit"].as_str(), Some(c1.as_str()), "{h:#?}");
    assert_eq!(h[0]["rollback"], serde_json::json!(true), "{h:#?}");
    let web_rolled_back = container_id(&web);

    // A fresh remote at the same path with a new commit: fetched, not applied while pinned.
    repo.write(
        "compose.yaml",
        &compose(&[service("web", &env("3")), service("api", "")]),
    );
    let c3 = repo.commit("v3");
    repo.recreate_remote();
    agent.reconcile_wait();
    let st = agent.status_json();
    assert_eq!(
        str_field(&st, "fetched_commit"),
        Some(c3.as_str()),
        "{st:#}"
    );
    assert_eq!(
        str_field(&st, "applied_commit"),
        Some(c1.as_str()),
        "{st:#}"
    );
    assert_eq!(st["pinned"], serde_json::json!(true));
    assert_eq!(
        container_id(&web),
        web_rolled_back,
        "nothing applied while pinned"
    );
    assert!(container_env(&web).contains(&"MODE=1".to_string()));

    let o = agent.cli(&["resume"]);
    assert!(o.status.success(), "berth resume: {}", show(&o));
    let st = assert_applied(&agent, &c3);
    assert_eq!(st["pinned"], serde_json::json!(false), "{st:#}");
    assert!(
        container_env(&web).contains(&"MODE=3".to_string()),
        "{:?}",
        container_env(&web)
    );
    assert_eq!(container_id(&agent.container("extra")), None);
}

/// 7. `kill -9` in the middle of an apply, then a restart: converged, no duplicates, no `_berth-old`
/// leftovers, history complete.
#[test]
fn kill_9_mid_apply_then_restart_converges() {
    const N: usize = 8;
    // A chain s1 <- s2 <- ... so the apply runs in N waves; each old container ignores SIGTERM (`sleep` as
    // PID 1) and is stopped after a 2 s grace period, so the apply takes well over N * 2 s.
    let text = |rev: &str| {
        chain(N, |_| {
            format!("    command: [\"sleep\", \"3600\"]\n    stop_grace_period: 2s\n    environment:\n      REV: \"{rev}\"\n")
        })
    };
    let repo = GitRepo::new();
    repo.write("compose.yaml", &text("1"));
    let c1 = repo.commit_push("rev 1");
    let mut agent = Agent::start("kill9", &repo);
    agent.reconcile_ok();
    let st = assert_applied(&agent, &c1);
    let seq1 = st["applied_seq"].as_u64().expect("applied_seq");
    assert_eq!(agent.owned().len(), N);

    repo.write("compose.yaml", &text("2"));
    let c2 = repo.commit_push("rev 2");
    let o = agent.cli(&["reconcile"]);
    assert!(o.status.success(), "{}", show(&o));
    // The middle: some containers already of the new revision, some still of the old one.
    let seen = wait_for(TIMEOUT, "the apply of rev 2 to be half done", || {
        let l = owned_label(&agent.id, "io.berth.revision");
        let new = l.iter().filter(|(_, r)| *r == c2).count();
        let old = l.iter().filter(|(_, r)| *r == c1).count();
        (new >= 1 && old >= 1).then_some(l)
    });
    agent.kill9();
    eprintln!("killed mid-apply; engine had: {seen:?}");

    agent.spawn();
    agent.reconcile_ok();
    assert_applied(&agent, &c2);

    let names = assert_one_running_per_service(&agent, N);
    assert!(!names.iter().any(|n| n.contains("_berth-old")));
    for n in &names {
        assert_eq!(
            container_labels(n).get("io.berth.revision"),
            Some(&c2),
            "{n}"
        );
        assert!(container_env(n).contains(&"REV=2".to_string()), "{n}");
    }
    let all = docker_ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(
        !all.lines()
            .any(|l| l.starts_with(&agent.id) && l.contains("berth-old")),
        "no moved-aside containers left: {all}"
    );

    let h = agent.history_json();
    let seqs: Vec<u64> = h.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs.len(), h.len(), "every entry has a seq: {h:#?}");
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first, unique: {seqs:?}"
    );
    let first = h
        .iter()
        .find(|e| e["seq"].as_u64() == Some(seq1))
        .unwrap_or_else(|| panic!("revision #{seq1} (reported applied) is missing: {h:#?}"));
    assert_eq!(first["commit"].as_str(), Some(c1.as_str()));
    assert_eq!(first["outcome"].as_str(), Some("applied"));
    assert_eq!(h[0]["commit"].as_str(), Some(c2.as_str()), "{h:#?}");
    assert_eq!(h[0]["outcome"].as_str(), Some("applied"), "{h:#?}");
}

/// 7b. `kill -9` in the middle of the very first apply (nothing recorded yet), then a restart: every
/// container exists exactly once and runs, and history holds the commit once, applied.
#[test]
fn kill_9_during_the_first_apply_then_restart_converges() {
    const N: usize = 10;
    let repo = GitRepo::new();
    // The agent starts on an empty remote: its first cycle fails (no branch yet), nothing is recorded.
    let mut agent = Agent::start("kill9-first", &repo);
    repo.write(
        "compose.yaml",
        &chain(N, |_| format!("    command: {IDLE}\n")),
    );
    let c1 = repo.commit_push("ten services in a chain");
    assert!(
        agent.history_json().is_empty(),
        "{:#?}",
        agent.history_json()
    );
    let o = agent.cli(&["reconcile"]);
    assert!(o.status.success(), "{}", show(&o));
    let seen = wait_for(TIMEOUT, "the first apply to be part done", || {
        let n = agent.owned().len();
        (1..N).contains(&n).then_some(n)
    });
    agent.kill9();
    eprintln!("killed with {seen} of {N} containers created");

    agent.spawn();
    agent.reconcile_ok();
    assert_applied(&agent, &c1);
    assert_one_running_per_service(&agent, N);
    let h = agent.history_json();
    let applied: Vec<&serde_json::Value> = h
        .iter()
        .filter(|e| e["commit"].as_str() == Some(c1.as_str()) && e["outcome"] == "applied")
        .collect();
    assert_eq!(applied.len(), 1, "c1 applied once in history: {h:#?}");
    assert_eq!(h[0]["commit"].as_str(), Some(c1.as_str()), "{h:#?}");
}

/// 8. Bind mounts: a tracked `./conf` is seen by the container, and a change recreates exactly that
/// container; data written into an untracked `./data` survives new revisions.
#[test]
fn bind_mounts_follow_the_repo_and_keep_untracked_data() {
    let repo = GitRepo::new();
    let text = |db_mode: &str| {
        compose(&[
            service("web", "    volumes:\n      - ./conf:/conf:ro\n"),
            service(
                "db",
                &format!("{}    volumes:\n      - ./data:/data\n", env(db_mode)),
            ),
            service("other", ""),
        ])
    };
    repo.write("compose.yaml", &text("1"));
    repo.write("conf/app.conf", "setting=one\n");
    repo.commit_push("v1");
    let agent = Agent::start("bind-mounts", &repo);
    agent.reconcile_ok();
    let (web, db, other) = (
        agent.container("web"),
        agent.container("db"),
        agent.container("other"),
    );
    assert_eq!(exec(&web, "cat /conf/app.conf"), "setting=one");
    exec(&db, "echo precious > /data/file");
    let before = ids(&agent, &["web", "db", "other"]);

    repo.write("conf/app.conf", "setting=two\n");
    let c2 = repo.commit_push("conf: two");
    agent.reconcile_ok();
    assert_applied(&agent, &c2);
    let after = ids(&agent, &["web", "db", "other"]);
    assert_ne!(
        after[0], before[0],
        "web mounts ./conf: it must be recreated"
    );
    assert_eq!(after[1], before[1], "db must keep its container");
    assert_eq!(after[2], before[2], "other must keep its container");
    assert_eq!(exec(&web, "cat /conf/app.conf"), "setting=two");
    assert_eq!(exec(&db, "cat /data/file"), "precious");

    // A new revision that recreates db: the untracked data is still there.
    repo.write("compose.yaml", &text("2"));
    let c3 = repo.commit_push("db: MODE=2");
    agent.reconcile_ok();
    assert_applied(&agent, &c3);
    let last = ids(&agent, &["web", "db", "other"]);
    assert_ne!(last[1], after[1], "db must be recreated");
    assert_eq!(last[0], after[0]);
    assert_eq!(exec(&db, "cat /data/file"), "precious");
    assert_eq!(exec(&web, "cat /conf/app.conf"), "setting=two");
    assert!(is_running(&other));
    // On the host, the data lives in the untracked directory of the working tree.
    let host = agent.state_dir.join("repo").join("data").join("file");
    assert_eq!(
        std::fs::read_to_string(&host).ok().as_deref(),
        Some("precious\n"),
        "{}",
        host.display()
    );
}

/// 9. With no new commit, cycles do not fetch.
#[test]
fn cycles_without_a_new_commit_do_not_fetch() {
    let repo = GitRepo::new();
    repo.write("compose.yaml", &compose(&[service("web", "")]));
    let c1 = repo.commit_push("one");
    let agent = Agent::start("fetch-economy", &repo);
    agent.reconcile_ok();
    let st = assert_applied(&agent, &c1);
    let count = st["fetch_count"].as_u64().expect("fetch_count");
    assert!(
        count >= 1,
        "the first commit must have been fetched: {st:#}"
    );
    let cycles = st["cycles"].as_u64().unwrap_or(0);

    for _ in 0..3 {
        agent.reconcile_ok();
    }
    let st = agent.status_json();
    assert!(st["cycles"].as_u64().unwrap_or(0) >= cycles + 3, "{st:#}");
    assert_eq!(
        st["fetch_count"].as_u64(),
        Some(count),
        "no new commit, no fetch: {st:#}"
    );
    assert_eq!(str_field(&st, "fetched_commit"), Some(c1.as_str()));

    // A new commit is fetched once.
    repo.write("compose.yaml", &compose(&[service("web", &env("2"))]));
    let c2 = repo.commit_push("two");
    agent.reconcile_ok();
    agent.reconcile_ok();
    let st = assert_applied(&agent, &c2);
    assert_eq!(st["fetch_count"].as_u64(), Some(count + 1), "{st:#}");
}

/// 10. A bad agent config exits 78 and names the key.
#[test]
fn bad_config_exits_78_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let socket = dir.path().join("s.sock");
    let cases = [
        (
            format!(
                "agent_id: t-bad\nsource:\n  url: file:///nonexistent\n  intervall: 5m\nstate_dir: {}\nsocket: {}\n",
                state.display(),
                socket.display()
            ),
            vec!["intervall"],
        ),
        (
            format!(
                "agent_id: \"bad id!\"\nsource:\n  url: file:///nonexistent\n  interval: soon\nstate_dir: {}\nsocket: {}\n",
                state.display(),
                socket.display()
            ),
            vec!["agent_id", "source.interval"],
        ),
        (
            "source:\n  branch: main\n".to_string(),
            vec!["source.url"],
        ),
    ];
    for (i, (text, keys)) in cases.iter().enumerate() {
        let config = dir.path().join(format!("bad{i}.yaml"));
        std::fs::write(&config, text).unwrap();
        let o = run_with_deadline(
            std::process::Command::new(berth_bin())
                .arg("agent")
                .arg("--config")
                .arg(&config),
            TIMEOUT,
        );
        assert_eq!(
            o.status.code(),
            Some(78),
            "config {i}:\n{text}\n{}",
            show(&o)
        );
        let err = stderr(&o);
        for k in keys {
            assert!(err.contains(k), "config {i}: stderr must name {k}: {err}");
        }
        assert!(!socket.exists(), "no socket for a bad config");
    }
}
