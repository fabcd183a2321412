//! Conformance with Docker Compose v2, the reference implementation.
//!
//! berth promises that an operator can drop an existing compose file in unchanged and get the containers
//! Docker Compose would make. This module measures that promise:
//!
//! - `conformance_corpus_matches_compose`: every fixture of `tests/fixtures/conformance/` (a directory with a
//!   compose file under any name Compose reads; images it needs are built first) is brought up once with
//!   `docker compose up -d` and once with `berth apply`, one tool after the other (so host ports, fixed
//!   addresses and container names never clash), and the two sets of containers, networks and volumes
//!   are compared through `docker inspect`, field by field, after normalising only what legitimately differs
//!   per tool (each normalisation says why where it is done). The table is printed; the test fails on a
//!   difference that is not listed under `### Known differences from Docker Compose` in README.md, and on a
//!   listed difference that no longer occurs.
//! - `reapply_never_recreates`: every fixture berth applied is applied a second time: berth must say
//!   `up to date` and keep every container id.
//! - `bad_files_are_refused_with_key_file_and_line`: every case of `tests/fixtures/bad/` must make
//!   `berth render` exit 1 with each string of the case's `expect` file in stderr, and `berth apply` of it
//!   must change nothing on the engine.
//!
//! The corpus runs once per test binary (both of the first two tests read the same results), a few fixtures
//! at a time. Set `BERTH_CONFORMANCE_FIXTURES=ports,volumes` to run only some fixtures (the stale check then
//! only judges README rows of those fixtures). Fixture placeholders (`__PROJECT__`, `__P0__`, …) are
//! described in `tests/fixtures/conformance/README.md`.
//!
//! This file holds the tests and the settings they share; the harness is in `conformance/`: `process`
//! runs the tools, `fixtures` prepares a fixture run and cleans up after it, `snapshot` and `fields` take
//! what a tool made, `running` runs one fixture and the corpus, `judge` compares and judges against the
//! known-differences table, `bad` helps the bad-files test.

mod bad;
mod fields;
mod fixtures;
mod judge;
mod process;
mod running;
mod snapshot;

use bad::*;
use fields::*;
use fixtures::*;
use judge::*;
use process::*;
pub(crate) use process::{compose, compose_cmd};
use running::*;
use snapshot::*;

use crate::util::{berth_bin, docker, show, stderr, stdout, AGENT_LABEL, IMAGE};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Fixtures run at the same time: the work is mostly waiting on the engine, but the machine has 2 cores
/// and other tests run next to this one. (62 fixtures took 265 s with 3 workers; 64 took 232 s with 4,
/// at a load average of 15.)
const WORKERS: usize = 4;
/// Deadline of one `docker compose up` / `berth apply` / `down`.
const TOOL_DEADLINE: Duration = Duration::from_secs(180);
/// Deadline of one short engine command (inspect, ls, exec).
const DOCKER_DEADLINE: Duration = Duration::from_secs(60);
/// How long to wait for a tool's containers to settle (none still `created` or `restarting`), and for
/// berth's to reach the states Compose's reached (one-shot containers may still run right after
/// `berth apply`).
const SETTLE_DEADLINE: Duration = Duration::from_secs(20);

const KNOWN_HEADING: &str = "### Known differences from Docker Compose";

/// Idle command for containers the harness makes itself (stops at once on SIGTERM).
const IDLE_SH: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures_root() -> PathBuf {
    manifest_dir().join("tests/fixtures/conformance")
}

fn bad_root() -> PathBuf {
    manifest_dir().join("tests/fixtures/bad")
}

// ---------------------------------------------------------------------------------------------------
// Tests

#[test]
fn conformance_corpus_matches_compose() {
    let results = corpus();
    assert!(
        !results.is_empty(),
        "no fixture in {}",
        fixtures_root().display()
    );
    let readme = std::fs::read_to_string(manifest_dir().join("README.md")).expect("README.md");
    let known = known_differences(&readme);

    let mut table = vec![vec![
        "fixture".to_string(),
        "fields_compared".into(),
        "fields_equal".into(),
        "differences".into(),
        "seconds".into(),
    ]];
    let mut all = Vec::new();
    let (mut tc, mut te) = (0, 0);
    for r in results {
        let (t, d) = compare(r);
        let status = if !r.errors.is_empty() {
            "  (harness error)"
        } else if let Some(BerthRun { apply: Err(e), .. }) = &r.berth {
            if refused(e) {
                "  (berth refused)"
            } else {
                "  (berth apply failed)"
            }
        } else {
            ""
        };
        table.push(vec![
            r.name.clone(),
            t.compared.to_string(),
            t.equal.to_string(),
            format!("{}{status}", t.compared - t.equal),
            format!("{:.0}", r.seconds),
        ]);
        tc += t.compared;
        te += t.equal;
        all.extend(d);
    }
    table.push(vec![
        "TOTAL".into(),
        tc.to_string(),
        te.to_string(),
        (tc - te).to_string(),
        String::new(),
    ]);
    println!(
        "\n===== Compose conformance =====\n{}",
        render_table(&table)
    );

    let mut lines_out = vec![vec![
        "fixture".to_string(),
        "container".into(),
        "field".into(),
        "compose=".into(),
        "berth=".into(),
    ]];
    for d in &all {
        let mark = if known.iter().any(|k| listed(k, d)) {
            " (known)"
        } else {
            ""
        };
        lines_out.push(vec![
            d.fixture.clone(),
            d.object.clone(),
            format!("{}{mark}", d.field),
            format!("compose={}", short(&d.compose, 400)),
            format!("berth={}", short(&d.berth, 400)),
        ]);
    }
    println!("===== Differences =====\n{}", render_table(&lines_out));

    // BERTH_CONFORMANCE_DUMP=1: every compared value of both tools, for debugging the harness.
    if std::env::var_os("BERTH_CONFORMANCE_DUMP").is_some() {
        for r in results {
            let b = r.berth.as_ref().and_then(|b| b.snapshot.as_ref());
            for (tool, snap) in [("compose", r.compose.as_ref()), ("berth", b)] {
                for (k, fields) in snap.map(|s| &s.objects).into_iter().flatten() {
                    for (f, v) in fields {
                        println!("{}  {tool}  {k}  {f}  {v}", r.name);
                    }
                }
            }
        }
    }
    for r in results {
        if let Some(BerthRun { apply: Err(e), .. }) = &r.berth {
            println!("===== berth apply of fixture {} failed =====\n{e}", r.name);
        }
    }

    let ran: BTreeSet<String> = results.iter().map(|r| r.name.clone()).collect();
    let all_ran = std::env::var("BERTH_CONFORMANCE_FIXTURES")
        .map(|s| s.trim().is_empty())
        .unwrap_or(true);
    let (unlisted, stale) = judge(&all, &known, &ran, all_ran);
    let errors: Vec<String> = results
        .iter()
        .flat_map(|r| {
            r.errors
                .iter()
                .map(move |e| format!("fixture {}: {e}", r.name))
        })
        .collect();
    for e in &errors {
        println!("===== HARNESS ERROR =====\n{e}");
    }
    let mut fail = Vec::new();
    if !errors.is_empty() {
        fail.push(format!(
            "{} harness/fixture error(s) (see above)",
            errors.len()
        ));
    }
    if !unlisted.is_empty() {
        let mut fields: BTreeMap<(String, String), usize> = BTreeMap::new();
        for d in &unlisted {
            *fields
                .entry((d.fixture.clone(), d.field.clone()))
                .or_default() += 1;
        }
        fail.push(format!(
            "{} difference(s) not listed under `{KNOWN_HEADING}` in README.md; rows that would list them:\n{}",
            unlisted.len(),
            fields
                .keys()
                .map(|(f, k)| format!("| {f} | {k} | … |"))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    if !stale.is_empty() {
        fail.push(format!(
            "{} README row(s) list a difference that no longer occurs:\n{}",
            stale.len(),
            stale
                .iter()
                .map(|k| format!("| {} | {} | {} |", k.fixture, k.field, k.reason))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    assert!(fail.is_empty(), "{}", fail.join("\n\n"));
}

#[test]
fn reapply_never_recreates() {
    let results = corpus();
    let mut rows = vec![vec![
        "fixture".to_string(),
        "reapply".into(),
        "detail".into(),
    ]];
    let mut failed = Vec::new();
    for r in results {
        let (state, detail) = match &r.berth {
            None => ("not run", r.errors.join("; ")),
            Some(BerthRun { apply: Err(_), .. }) => (
                "skipped",
                "the first `berth apply` failed (see the conformance test)".into(),
            ),
            Some(BerthRun { reapply: None, .. }) => ("not run", r.errors.join("; ")),
            Some(BerthRun {
                reapply: Some(re), ..
            }) => {
                if !re.ok {
                    failed.push(format!("fixture {}: {}", r.name, re.detail));
                }
                (if re.ok { "ok" } else { "FAILED" }, first_line(&re.detail))
            }
        };
        rows.push(vec![r.name.clone(), state.into(), detail]);
    }
    println!("\n===== berth apply, twice =====\n{}", render_table(&rows));
    // A fixture whose run broke off before the second apply could be judged is a harness failure.
    let broken: Vec<String> = results
        .iter()
        .filter(|r| {
            matches!(
                &r.berth,
                None | Some(BerthRun {
                    apply: Ok(()),
                    reapply: None,
                    ..
                })
            )
        })
        .map(|r| format!("fixture {}: {}", r.name, r.errors.join("; ")))
        .collect();
    assert!(
        failed.is_empty() && broken.is_empty(),
        "a second `berth apply` of an unchanged directory must say `up to date` and keep every container:\n{}",
        failed.iter().chain(&broken).cloned().collect::<Vec<_>>().join("\n\n")
    );
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

// ---------------------------------------------------------------------------------------------------
// Bad files

#[test]
fn bad_files_are_refused_with_key_file_and_line() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(bad_root())
        .expect("tests/fixtures/bad")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "only {} bad cases", cases.len());

    let pid = std::process::id();
    let stack = format!("cfbad-{pid}");
    let tmp = tempfile::Builder::new()
        .prefix("berth-bad-")
        .tempdir()
        .unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let _cleanup = OwnedCleanup(stack.clone());

    // A running stack of the same name: applying a bad directory must leave it exactly as it is.
    let base = root.join("baseline").join(&stack);
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(base.join("compose.yaml"), BASELINE).unwrap();
    let o = berth_apply(&base, &stack).unwrap();
    assert!(
        o.status.success(),
        "berth apply of the baseline stack: {}",
        show(&o)
    );
    let before = owned_state(&stack).unwrap();
    let reference = compose_cmd().ok();

    let mut rows = vec![vec![
        "case".to_string(),
        "render".into(),
        "missing in stderr".into(),
        "apply".into(),
        "compose config".into(),
    ]];
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let expect: Vec<String> = std::fs::read_to_string(case.join("expect"))
            .unwrap_or_else(|e| panic!("{}/expect: {e}", case.display()))
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect();
        assert!(
            !expect.is_empty(),
            "{}/expect lists nothing",
            case.display()
        );
        let dir = root.join(&name).join(&stack);
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(case).unwrap() {
            let e = e.unwrap();
            if e.file_name() != "expect" {
                let to = dir.join(e.file_name());
                if e.file_type().unwrap().is_dir() {
                    copy_fixture(&e.path(), &to, &[]).unwrap();
                } else {
                    std::fs::copy(e.path(), &to).unwrap();
                }
            }
        }

        let mut c = Command::new(berth_bin());
        c.arg("render").arg(&dir);
        tool_env(&mut c);
        let r = run(&mut c, TOOL_DEADLINE).unwrap();
        let err = stderr(&r);
        let missing: Vec<&String> = expect
            .iter()
            .filter(|s| !err.contains(s.as_str()))
            .collect();
        let render_ok = r.status.code() == Some(1);

        let a = berth_apply(&dir, &stack).unwrap();
        let after = owned_state(&stack).unwrap();
        let apply_ok = !a.status.success() && after == before;

        // For information: does the reference refuse the file too?
        let compose_says = match &reference {
            Some(cmd) => {
                let d = dir.to_string_lossy().to_string();
                let p = format!("cfbad-{name}-{pid}");
                match run(
                    &mut compose(cmd, &["-p", &p, "--project-directory", &d, "config", "-q"]),
                    DOCKER_DEADLINE,
                ) {
                    Ok(o) if o.status.success() => "accepts".to_string(),
                    Ok(o) => format!("refuses: {}", short(&first_line(stderr(&o).trim()), 90)),
                    Err(e) => format!("error: {}", short(&e, 60)),
                }
            }
            None => "n/a".into(),
        };

        rows.push(vec![
            name.clone(),
            if render_ok {
                "exit 1".into()
            } else {
                format!("exit {:?} (WRONG)", r.status.code())
            },
            if missing.is_empty() {
                "-".into()
            } else {
                missing
                    .iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            },
            if apply_ok {
                "refused, nothing changed".into()
            } else if a.status.success() {
                "APPLIED".into()
            } else {
                "refused, ENGINE CHANGED".into()
            },
            compose_says,
        ]);
        if !render_ok || !missing.is_empty() {
            failures.push(format!(
                "case {name}: `berth render` must exit 1 with {expect:?} in stderr; missing {missing:?}\n{}",
                show(&r)
            ));
        }
        if !apply_ok {
            failures.push(format!(
                "case {name}: `berth apply` must fail and change nothing\nbefore:\n{before}\nafter:\n{after}\n{}",
                show(&a)
            ));
        }
        if after != before {
            // Put the baseline back so the next case is judged on its own.
            let o = berth_apply(&base, &stack).unwrap();
            assert!(o.status.success(), "re-apply of the baseline: {}", show(&o));
        }
    }
    println!("\n===== bad files =====\n{}", render_table(&rows));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---------------------------------------------------------------------------------------------------
// The harness's own logic (no engine)

#[test]
fn harness_parses_known_differences_and_judges_them() {
    let readme = "# x\n\n### Known differences from Docker Compose\n\nSome text.\n\n| fixture | field | reason |\n|---|---|---|\n| `ports` | `port_bindings` | not yet |\n| * | networks | aliases |\n\nAfter.\n\n## Next\n| a | b | c |\n";
    let k = known_differences(readme);
    assert_eq!(
        k,
        vec![
            Known {
                fixture: "ports".into(),
                field: "port_bindings".into(),
                reason: "not yet".into()
            },
            Known {
                fixture: "*".into(),
                field: "networks".into(),
                reason: "aliases".into()
            },
        ]
    );
    assert!(known_differences("# no table here\n| a | b | c |\n").is_empty());
    let d = |fx: &str, field: &str| Difference {
        fixture: fx.into(),
        object: "app-1".into(),
        field: field.into(),
        compose: "1".into(),
        berth: "2".into(),
    };
    let ran: BTreeSet<String> = ["ports", "volumes"].iter().map(|s| s.to_string()).collect();
    let diffs = vec![d("volumes", "networks"), d("volumes", "mounts")];
    let (unlisted, stale) = judge(&diffs, &k, &ran, true);
    assert_eq!(unlisted, vec![d("volumes", "mounts")]);
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].fixture, "ports");
    // A row of a fixture that did not run is not judged stale.
    let only: BTreeSet<String> = ["volumes".to_string()].into();
    let (_, stale) = judge(&diffs, &k, &only, false);
    assert!(stale.is_empty());
}

#[test]
fn harness_normalises_only_what_differs_per_tool() {
    let norm = Norm {
        pairs: vec![
            ("/tmp/x/cfc-a-1".into(), "<DIR>".into()),
            ("cfc-a-1".into(), "<PROJECT>".into()),
        ],
        net_prefixes: vec![],
    };
    assert_eq!(norm.s("/tmp/x/cfc-a-1/conf"), "<DIR>/conf");
    assert_eq!(norm.s("cfc-a-1_default"), "<PROJECT>_default");
    let hex = "0123456789abcdef".repeat(4);
    assert_eq!(
        norm.s(&format!("/var/lib/docker/volumes/{hex}/_data")),
        "/var/lib/docker/volumes/<random-id>/_data"
    );
    // 63 or 65 hex digits are not an engine id.
    let not = format!("{hex}0");
    assert_eq!(norm.s(&not), not);
    assert_eq!(canon(json!([])), Value::Null);
    assert_eq!(canon(json!({})), Value::Null);
    assert_eq!(canon(json!("")), json!(""));
    assert_eq!(set(&json!(["b", "a", "b"])), json!(["a", "b"]));
    assert!(overlaps(
        (u32::from(std::net::Ipv4Addr::new(10, 211, 3, 0)), 24),
        (u32::from(std::net::Ipv4Addr::new(10, 0, 0, 0)), 8)
    ));
    assert!(!overlaps(
        (u32::from(std::net::Ipv4Addr::new(10, 211, 3, 0)), 24),
        (u32::from(std::net::Ipv4Addr::new(10, 211, 4, 0)), 24)
    ));
}
