//! `depends_on` conditions, end to end with `berth apply DIR --agent-id ID` against the real engine (the
//! acceptance of the Compose-fidelity issue): `service_healthy` waits for the dependency's healthcheck,
//! `service_completed_successfully` waits for a one-shot job (and does not run it again), waits are
//! bounded (`BERTH_DEPENDENCY_TIMEOUT`) and a failed wait names the dependency and creates nothing after
//! it, and `restart: true` restarts the dependent when its dependency is replaced.
//!
//! Ordering is checked twice: while `berth apply` runs, the test polls the engine and fails if the
//! dependent exists while its dependency is not yet healthy; afterwards it compares the engine's own
//! timestamps (`State.Health.Log[].End`, `State.FinishedAt`, `Created`, `State.StartedAt`).

use crate::util::*;
use serde_json::Value;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// `docker inspect NAME` (the object, not the one-element array), if the container exists.
fn inspect(name: &str) -> Option<Value> {
    let o = docker(&["container", "inspect", name]);
    if !o.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&o.stdout).expect("docker inspect prints JSON");
    v.as_array().and_then(|a| a.first()).cloned()
}

fn inspect_ok(name: &str) -> Value {
    inspect(name).unwrap_or_else(|| panic!("no container {name}"))
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {v:#}"))
}

/// Nanoseconds since the epoch of an RFC 3339 time as Docker prints it
/// (`2026-11-25T08:51:00.496182229Z`, or with a `+hh:mm` offset).
fn ts(s: &str) -> i128 {
    s.parse::<jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("not an RFC 3339 time: {s:?}: {e}"))
        .as_nanosecond()
}

#[test]
fn timestamps_parse() {
    assert_eq!(ts("1970-01-01T00:00:00Z"), 0);
    assert_eq!(ts("1970-01-01T00:00:01.5Z"), 1_500_000_000);
    assert_eq!(ts("2000-03-01T00:00:00+01:00"), 951_865_200 * 1_000_000_000);
    assert!(ts("2026-11-25T08:51:01.058128501Z") > ts("2026-11-25T08:51:01.004129522Z"));
}

/// `(End, ExitCode)` of every entry of `State.Health.Log` (Docker keeps only the last five).
fn health_log(c: &Value) -> Vec<(String, i64)> {
    c.pointer("/State/Health/Log")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["End"].as_str().unwrap_or_default().to_string(),
                        e["ExitCode"].as_i64().unwrap_or(-1),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Nanoseconds since the epoch at which each successful health probe of `c` ended.
fn healthy_probe_ends(c: &Value) -> impl Iterator<Item = i128> {
    health_log(c)
        .into_iter()
        .filter(|(_, code)| *code == 0)
        .map(|(end, _)| ts(&end))
}

fn health_status(c: &Value) -> Option<&str> {
    c.pointer("/State/Health/Status").and_then(Value::as_str)
}

fn exit_code(c: &Value) -> Option<i64> {
    c.pointer("/State/ExitCode").and_then(Value::as_i64)
}

/// A stack of `db` (its image, then `db_lines`) and `web`, which waits for db with `service_healthy`.
fn web_after_healthy_db(db_lines: &str) -> String {
    format!(
        r#"services:
  db:
    image: {IMAGE}
{db_lines}  web:
    image: {IMAGE}
    command: {IDLE}
    depends_on:
      db:
        condition: service_healthy
"#
    )
}

/// The `db_lines` of a db that idles with a health probe that always fails, unhealthy after `retries`.
fn failing_healthcheck(retries: u32) -> String {
    format!(
        r#"    command: {IDLE}
    healthcheck:
      test: ["CMD-SHELL", "exit 1"]
      interval: 500ms
      retries: {retries}
"#
    )
}

/// `berth apply` of `s` with the dependency wait bounded by `bound` failed (exit 1), creating no `web`:
/// its output and how long it took.
fn apply_fails_before_web(s: &Stack, bound: &str) -> (std::process::Output, Duration) {
    let start = Instant::now();
    let o = s.apply_env(&[("BERTH_DEPENDENCY_TIMEOUT", bound)]);
    let took = start.elapsed();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert_not_created(s, "web");
    (o, took)
}

#[track_caller]
fn assert_not_created(s: &Stack, service: &str) {
    assert_eq!(
        container_id(&s.container(service)),
        None,
        "{service} must not be created"
    );
}

#[test]
fn service_healthy_starts_the_dependent_only_after_the_dependency_is_healthy() {
    let s = Stack::new(
        "dep-healthy",
        &web_after_healthy_db(
            r#"    command: ["sh", "-c", "sleep 3; touch /tmp/ready; trap 'exit 0' TERM; sleep 3600 & wait"]
    healthcheck:
      test: ["CMD-SHELL", "test -f /tmp/ready"]
      interval: 500ms
      timeout: 5s
      retries: 1000
"#,
        ),
    );
    let (db, web) = (s.container("db"), s.container("web"));

    let mut child = s
        .apply_cmd(&[])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn berth apply");
    // Watch the engine while berth works: web must not exist before db is healthy. web is looked at first,
    // then db, so "web exists and db is not healthy yet" is a real overlap, not a race of the two reads.
    let start = Instant::now();
    let mut healthy_ends: Vec<i128> = Vec::new();
    let mut saw_waiting = false;
    let mut violation: Option<String> = None;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!("berth apply still running after {TIMEOUT:?}: {}", show(&o));
        }
        let web_exists = container_id(&web).is_some();
        if let Some(d) = inspect(&db) {
            healthy_ends.extend(healthy_probe_ends(&d));
            let h = health_status(&d).unwrap_or("none").to_string();
            if h != "healthy" {
                if web_exists {
                    violation.get_or_insert(format!(
                        "{web} exists while {db} is {h} ({:?} after the start of berth apply)",
                        start.elapsed()
                    ));
                } else {
                    saw_waiting = true;
                }
            }
        } else if web_exists {
            violation.get_or_insert(format!("{web} exists before {db} does"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let o = child.wait_with_output().unwrap();
    assert!(status.success(), "berth apply: {}", show(&o));
    assert!(violation.is_none(), "{}\n{}", violation.unwrap(), show(&o));
    assert!(
        saw_waiting,
        "never saw {db} not yet healthy with {web} absent: the wait was not observed\n{}",
        show(&o)
    );
    assert!(
        stdout(&o).contains(&format!("create container {web}")),
        "{}",
        show(&o)
    );

    let d = inspect_ok(&db);
    let w = inspect_ok(&web);
    healthy_ends.extend(healthy_probe_ends(&d));
    let first_healthy = *healthy_ends
        .iter()
        .min()
        .unwrap_or_else(|| panic!("{db} never had a successful health probe: {d:#}"));
    assert_eq!(health_status(&d), Some("healthy"), "{d:#}");
    assert!(
        first_healthy >= ts(text(&d, "/State/StartedAt")) + 3_000_000_000,
        "db cannot be healthy before its 3 s sleep is over: {d:#}"
    );
    let created = ts(text(&w, "/Created"));
    let started = ts(text(&w, "/State/StartedAt"));
    assert!(
        created > first_healthy,
        "{web} was created {} ms before {db}'s first healthy probe ended",
        (first_healthy - created) / 1_000_000
    );
    assert!(
        started > first_healthy,
        "{web} started {} ms before {db}'s first healthy probe ended",
        (first_healthy - started) / 1_000_000
    );
    assert_eq!(text(&w, "/State/Status"), "running", "{w:#}");
}

/// Container `name` as inspected `now` is the one inspected `before`, not started since.
#[track_caller]
fn assert_same_run(now: &Value, before: &Value, name: &str) {
    assert_eq!(now["Id"], before["Id"], "{name} was replaced");
    assert_eq!(
        text(now, "/State/StartedAt"),
        text(before, "/State/StartedAt"),
        "{name} ran again"
    );
}

#[test]
fn service_completed_successfully_runs_the_job_first_and_only_once() {
    let compose = format!(
        r#"services:
  migrate:
    image: {IMAGE}
    command: ["sh", "-c", "sleep 1; echo migrated > /data/done"]
    volumes:
      - data:/data
  app:
    image: {IMAGE}
    command: ["sh", "-c", "test -f /data/done || exit 3; trap 'exit 0' TERM; sleep 3600 & wait"]
    volumes:
      - data:/data
    depends_on:
      migrate:
        condition: service_completed_successfully
volumes:
  data: {{}}
"#
    );
    let s = Stack::new("dep-completed", &compose);
    let (migrate, app) = (s.container("migrate"), s.container("app"));
    let o = s.apply();
    assert!(o.status.success(), "berth apply: {}", show(&o));

    let m = inspect_ok(&migrate);
    assert_eq!(text(&m, "/State/Status"), "exited", "{m:#}");
    assert_eq!(exit_code(&m), Some(0), "{m:#}");
    let a = inspect_ok(&app);
    let finished = ts(text(&m, "/State/FinishedAt"));
    assert!(
        ts(text(&a, "/Created")) > finished,
        "{app} was created before {migrate} exited: {a:#}"
    );
    assert!(
        ts(text(&a, "/State/StartedAt")) > finished,
        "{app} started before {migrate} exited: {a:#}"
    );
    assert_eq!(exec(&app, "cat /data/done"), "migrated");
    assert!(is_running(&app), "{:#}", inspect_ok(&app));

    // Converged: the finished job is its desired state; it is not run again.
    let o = s.apply();
    assert!(o.status.success(), "second berth apply: {}", show(&o));
    assert!(
        stdout(&o).contains("up to date"),
        "second berth apply: {}",
        show(&o)
    );
    let m2 = inspect_ok(&migrate);
    assert_same_run(&m2, &m, &migrate);
    assert_eq!(text(&m2, "/State/Status"), "exited");
    assert_eq!(exit_code(&m2), Some(0));
    let a2 = inspect_ok(&app);
    assert_eq!(a2["Id"], a["Id"], "{app} was replaced");
    assert_eq!(text(&a2, "/State/StartedAt"), text(&a, "/State/StartedAt"));

    // The dependent changes: it is recreated (its wait sees the finished job), the job is not run again.
    let changed = compose.replace(
        "    volumes:\n      - data:/data\n    depends_on:",
        "    environment:\n      MODE: \"2\"\n    volumes:\n      - data:/data\n    depends_on:",
    );
    assert_ne!(changed, compose);
    s.write(&changed);
    let o = s.apply_env(&[("BERTH_DEPENDENCY_TIMEOUT", "20s")]);
    assert!(
        o.status.success(),
        "berth apply of the changed app: {}",
        show(&o)
    );
    assert!(
        stdout(&o).contains(&format!("recreate container {app}")),
        "{}",
        show(&o)
    );
    assert!(
        !stdout(&o).contains(&migrate),
        "{migrate} must not be touched: {}",
        show(&o)
    );
    assert_same_run(&inspect_ok(&migrate), &m, &migrate);
    assert!(container_env(&app).contains(&"MODE=2".to_string()));
    assert!(is_running(&app));
}

/// Stack `name`, web after db (`db_lines`) with a 120 s bound: `berth apply` fails within 30 s, before
/// web is created, and its error names db and says `why` (a word of the reason).
fn fails_fast_naming_db(name: &str, db_lines: &str, why: &str) {
    let s = Stack::new(name, &web_after_healthy_db(db_lines));
    let (o, took) = apply_fails_before_web(&s, "120s");
    assert!(
        took < Duration::from_secs(30),
        "must not wait out the bound, took {took:?}: {}",
        show(&o)
    );
    let err = stderr(&o);
    assert!(
        err.contains("dependency db") && err.contains(why),
        "the error must say db: {why}: {}",
        show(&o)
    );
}

#[test]
fn service_healthy_on_a_dependency_without_healthcheck_fails_naming_it() {
    let db = format!("    command: {IDLE}\n");
    fails_fast_naming_db("dep-no-healthcheck", &db, "healthcheck");
}

#[test]
fn a_dependency_that_never_becomes_healthy_fails_within_the_bound() {
    let s = Stack::new(
        "dep-never-healthy",
        &web_after_healthy_db(&failing_healthcheck(10000)),
    );
    let (o, took) = apply_fails_before_web(&s, "5s");
    assert!(
        took >= Duration::from_millis(4500),
        "failed after {took:?}, before the 5 s bound: {}",
        show(&o)
    );
    assert!(
        took < Duration::from_secs(25),
        "took {took:?} with a 5 s bound: {}",
        show(&o)
    );
    let err = stderr(&o);
    assert!(
        err.contains("dependency db"),
        "the error must name db: {}",
        show(&o)
    );
    assert!(
        err.contains("web"),
        "the error must name the waiting service: {}",
        show(&o)
    );
    // Nothing is torn down because of the failure.
    assert!(is_running(&s.container("db")), "db must be left running");
}

#[test]
fn a_dependency_that_turns_unhealthy_fails_without_waiting_out_the_bound() {
    fails_fast_naming_db("dep-unhealthy", &failing_healthcheck(1), "unhealthy");
}

#[test]
fn a_job_that_fails_blocks_its_dependents_with_an_error_naming_it() {
    let s = Stack::new(
        "dep-job-fails",
        &format!(
            r#"services:
  migrate:
    image: {IMAGE}
    command: ["sh", "-c", "exit 7"]
  app:
    image: {IMAGE}
    command: {IDLE}
    depends_on:
      migrate:
        condition: service_completed_successfully
"#
        ),
    );
    let o = s.apply_env(&[("BERTH_DEPENDENCY_TIMEOUT", "30s")]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = stderr(&o);
    assert!(
        err.contains("dependency migrate"),
        "the error must name migrate: {}",
        show(&o)
    );
    assert!(
        err.contains("7"),
        "the error should give the exit code: {}",
        show(&o)
    );
    assert_not_created(&s, "app");
    let m = inspect_ok(&s.container("migrate"));
    assert_eq!(exit_code(&m), Some(7));
}

fn restart_stack(version: &str) -> String {
    format!(
        r#"services:
  db:
    image: {IMAGE}
    command: {IDLE}
    environment:
      VERSION: "{version}"
  web:
    image: {IMAGE}
    command: {IDLE}
    depends_on:
      db:
        condition: service_started
        restart: true
"#
    )
}

#[test]
fn restart_true_restarts_the_dependent_when_the_dependency_is_replaced() {
    let s = Stack::new("dep-restart", &restart_stack("1"));
    let (db, web) = (s.container("db"), s.container("web"));
    let o = s.apply();
    assert!(o.status.success(), "berth apply: {}", show(&o));
    let d1 = inspect_ok(&db);
    let w1 = inspect_ok(&web);
    assert_eq!(text(&w1, "/State/Status"), "running");

    s.write(&restart_stack("2"));
    let o = s.apply();
    assert!(
        o.status.success(),
        "berth apply of the changed db: {}",
        show(&o)
    );
    let out = stdout(&o);
    assert!(
        out.contains(&format!("recreate container {db}")),
        "{}",
        show(&o)
    );
    assert!(
        out.contains(&format!("restart container {web}")),
        "{}",
        show(&o)
    );
    let d2 = inspect_ok(&db);
    let w2 = inspect_ok(&web);
    assert_ne!(d2["Id"], d1["Id"], "db must be recreated");
    assert!(container_env(&db).contains(&"VERSION=2".to_string()));
    assert_eq!(w2["Id"], w1["Id"], "web is restarted, not recreated");
    assert!(
        ts(text(&w2, "/State/StartedAt")) > ts(text(&w1, "/State/StartedAt")),
        "web's StartedAt did not move: {} then {}",
        text(&w1, "/State/StartedAt"),
        text(&w2, "/State/StartedAt")
    );
    assert!(
        ts(text(&w2, "/State/StartedAt")) > ts(text(&d2, "/State/StartedAt")),
        "web must restart after the new db started"
    );
    assert_eq!(text(&w2, "/State/Status"), "running");

    // Nothing changed: nothing restarts.
    let o = s.apply();
    assert!(o.status.success(), "third berth apply: {}", show(&o));
    assert!(stdout(&o).contains("up to date"), "{}", show(&o));
    let w3 = inspect_ok(&web);
    assert_eq!(text(&w3, "/State/StartedAt"), text(&w2, "/State/StartedAt"));
}
