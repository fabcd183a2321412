//! `berth diff [DIR]`: what converging would change, changing nothing. With DIR: render it the way
//! `berth apply` does and plan it against the engine from here; without: ask the agent (`GET /v1/diff`)
//! for the plan of the commit it fetched (it asks the remote first unless `--no-fetch`), or why the agent
//! would refuse that commit (`source.verify`): then no plan, since the agent does not render it either.
//!
//! Exit 0: nothing to do; 2: something would change; 1: any error, including a plan whose apply would
//! fail (an image that cannot be had, a preflight check) and a commit the agent would refuse.

use super::{exit, Conn};
use crate::api::DiffAnswer;
use crate::diff::{engine, Description, KnownSpecs, ObjectAction, ObjectChange, Why};
use crate::runtime::DockerRuntime;
use std::io::Write;
use std::path::PathBuf;

/// What to plan: a directory (as `agent_id`), or the agent's fetched commit.
#[derive(Debug, Clone)]
pub struct Target {
    pub dir: Option<PathBuf>,
    pub agent_id: Option<String>,
    /// With DIR: the age identity file for SOPS files (`--age-key`).
    pub age_key: Option<PathBuf>,
    /// Without DIR: the agent asks the remote first.
    pub fetch: bool,
    pub conn: Conn,
}

pub fn run(
    target: &Target,
    json: bool,
    out: &mut impl Write,
    err: &mut impl Write,
) -> anyhow::Result<i32> {
    let answer = match &target.dir {
        Some(dir) => match local(
            dir,
            target.agent_id.clone(),
            target.age_key.as_deref(),
            &target.conn,
            err,
        )? {
            Some(a) => a,
            None => return Ok(exit::FAILED),
        },
        None => remote(&target.conn, target.fetch)?,
    };
    if json {
        serde_json::to_writer_pretty(&mut *out, &answer)?;
        writeln!(out)?;
    } else {
        print(&answer, out, err)?;
    }
    Ok(answer_code(&answer))
}

/// The exit code an answer means: a refused commit is an error, whatever its (empty) plan.
pub fn answer_code(a: &DiffAnswer) -> i32 {
    if a.refused.is_some() {
        exit::FAILED
    } else {
        code(&a.diff)
    }
}

/// The exit code a description means.
pub fn code(d: &Description) -> i32 {
    if !d.problems.is_empty() {
        exit::FAILED
    } else if d.has_changes() {
        exit::CHANGES
    } else {
        exit::OK
    }
}

/// Render `dir` and plan it here. `None`: the problem was printed (render problems like `berth render`).
fn local(
    dir: &std::path::Path,
    agent_id: Option<String>,
    age_key: Option<&std::path::Path>,
    conn: &Conn,
    err: &mut impl Write,
) -> anyhow::Result<Option<DiffAnswer>> {
    let agent_id = agent_id.unwrap_or_else(crate::config::hostname);
    if !crate::config::valid_agent_id(&agent_id) {
        writeln!(err, "berth: --agent-id {agent_id:?} must be 1-63 characters of a-z, A-Z, 0-9, '.', '_' or '-'")?;
        return Ok(None);
    }
    let sops = super::render::box_sops_options(age_key, &agent_id);
    let Some(mut desired) = super::render::render_or_report(dir, &agent_id, sops, "", err)? else {
        return Ok(None);
    };
    // The agent's key, so hashes agree with the labels it wrote; digests, never values, are printed.
    let key = conn.attach_box_key(&mut desired, false)?;
    let redactor = crate::sealing::Redactor::new(&desired.sensitive, key);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let runtime = DockerRuntime::connect(std::env::var("DOCKER_HOST").ok().as_deref()).await?;
        // No agent here: no pull times but the engine's tag times, no history but the labels.
        let planned = engine::plan(
            &runtime,
            &desired,
            &agent_id,
            &Default::default(),
            &Default::default(),
        )
        .await?;
        let known = engine::specs_from_labels(&runtime, &planned.plan, &KnownSpecs::new()).await;
        Ok(Some(DiffAnswer {
            agent_id,
            commit: None,
            applied_commit: None,
            pinned: false,
            signer: None,
            refused: None,
            diff: crate::sealing::redacted(planned.describe(&desired, &known), &redactor),
        }))
    })
}

/// Ask the agent. It answers after any cycle that is running.
fn remote(conn: &Conn, fetch: bool) -> anyhow::Result<DiffAnswer> {
    let socket = conn.socket_path()?;
    let path = if fetch {
        "/v1/diff"
    } else {
        "/v1/diff?fetch=0"
    };
    let body = crate::api::client::call(&socket, "GET", path, None)?;
    serde_json::from_slice(&body)
        .map_err(|e| anyhow::anyhow!("agent answered something unexpected: {e}"))
}

fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

/// The plan as text: by stack, networks and volumes first, then services and their containers; pulls;
/// a summary line. What would fail goes to `err`.
pub fn print(a: &DiffAnswer, out: &mut impl Write, err: &mut impl Write) -> std::io::Result<()> {
    if let Some(commit) = &a.commit {
        let runs = match &a.applied_commit {
            Some(c) if c == commit => " (the box runs it)".to_string(),
            Some(c) => format!(" (the box runs {})", short(c)),
            None => String::new(),
        };
        writeln!(
            out,
            "commit {} fetched by agent {}{runs}",
            short(commit),
            a.agent_id
        )?;
        if let Some(signer) = &a.signer {
            writeln!(out, "verified by {signer}")?;
        }
        if a.pinned {
            writeln!(out, "pinned: the agent stays on its rollback revision; this is what `berth resume` would do")?;
        }
    }
    if let Some(r) = &a.refused {
        writeln!(
            out,
            "refused: the agent would not apply this commit (source.verify); nothing is planned and the box stays as it is"
        )?;
        writeln!(
            err,
            "error: commit {} would be refused: {}",
            short(&r.commit),
            r.reason
        )?;
        return Ok(());
    }
    print_stacks(&a.diff, "", out)?;
    for p in &a.diff.pulls {
        writeln!(out, "pull {}: {}", p.image, p.reason)?;
    }
    if a.diff.has_changes() {
        writeln!(out, "would change: {}", summary(&a.diff))?;
    } else {
        writeln!(out, "nothing to do")?;
    }
    for p in &a.diff.problems {
        writeln!(err, "error: {p}")?;
    }
    if !a.diff.problems.is_empty() {
        writeln!(
            err,
            "berth: applying this would fail: {} problem(s)",
            a.diff.problems.len()
        )?;
    }
    Ok(())
}

/// The stacks of a description, each line led by `indent`: networks and volumes first, then services and
/// their containers (a recreate names the fields that differ, never their values).
pub fn print_stacks(d: &Description, indent: &str, out: &mut impl Write) -> std::io::Result<()> {
    for s in &d.stacks {
        writeln!(out, "{indent}stack {}", s.name)?;
        for n in &s.networks {
            writeln!(out, "{indent}  network {}", object(n))?;
        }
        for v in &s.volumes {
            writeln!(out, "{indent}  volume {}", object(v))?;
        }
        for svc in &s.services {
            writeln!(out, "{indent}  service {}", svc.name)?;
            for c in &svc.containers {
                let why = match &c.why {
                    Why::New => String::new(),
                    Why::SpecChanged { fields } if !fields.is_empty() => {
                        format!(" ({})", fields.join(", "))
                    }
                    other => format!(": {other}"),
                };
                writeln!(
                    out,
                    "{indent}    {:<8} {}{why}",
                    c.action.word(),
                    c.container
                )?;
            }
        }
    }
    Ok(())
}

/// What a description changes, in one phrase: `1 to create, 2 to recreate, 1 network/volume change(s)`.
pub fn summary(d: &Description) -> String {
    let objects = d
        .stacks
        .iter()
        .flat_map(|s| s.networks.iter().chain(&s.volumes))
        .filter(|o| o.action != ObjectAction::Keep)
        .count();
    let mut parts: Vec<String> = d
        .counts()
        .iter()
        .map(|(action, n)| format!("{n} to {}", action.word()))
        .collect();
    if objects > 0 {
        parts.push(format!("{objects} network/volume change(s)"));
    }
    parts.join(", ")
}

fn object(o: &ObjectChange) -> String {
    match o.action {
        ObjectAction::Create => format!("{}: create", o.name),
        ObjectAction::Remove => format!("{}: remove", o.name),
        ObjectAction::Keep => format!(
            "{}: no longer used, kept (berth never deletes data)",
            o.name
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{Action, ContainerChange, Pull, ServiceChanges, StackChanges};

    fn answer(diff: Description) -> DiffAnswer {
        DiffAnswer {
            agent_id: "edge-01".into(),
            commit: Some("a".repeat(40)),
            applied_commit: Some("b".repeat(40)),
            pinned: false,
            signer: None,
            refused: None,
            diff,
        }
    }

    fn printed(a: &DiffAnswer) -> (String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        print(a, &mut out, &mut err).unwrap();
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    fn change(container: &str, action: Action, why: Why) -> ContainerChange {
        ContainerChange {
            container: container.into(),
            action,
            why,
        }
    }

    #[test]
    fn prints_steps_by_stack_and_service_and_exits_by_what_would_happen() {
        let d = Description {
            stacks: vec![StackChanges {
                name: "shop".into(),
                services: vec![ServiceChanges {
                    name: "web".into(),
                    containers: vec![
                        change(
                            "shop-web-1",
                            Action::Recreate,
                            Why::SpecChanged {
                                fields: vec!["env".into(), "ports".into()],
                            },
                        ),
                        change("shop-web-2", Action::Create, Why::New),
                        change("shop-web-3", Action::Recreate, Why::SpecChangedUnknown),
                    ],
                }],
                networks: vec![ObjectChange {
                    name: "shop_default".into(),
                    action: ObjectAction::Create,
                }],
                volumes: vec![],
            }],
            pulls: vec![Pull {
                image: "busybox:1".into(),
                reason: "not on the engine".into(),
            }],
            problems: vec![],
        };
        let a = answer(d);
        let (out, err) = printed(&a);
        assert_eq!(
            out,
            "commit aaaaaaaaaaaa fetched by agent edge-01 (the box runs bbbbbbbbbbbb)\n\
             stack shop\n  network shop_default: create\n  service web\n\
             \x20   recreate shop-web-1 (env, ports)\n\
             \x20   create   shop-web-2\n\
             \x20   recreate shop-web-3: spec changed (old spec unknown)\n\
             pull busybox:1: not on the engine\n\
             would change: 1 to create, 2 to recreate, 1 network/volume change(s)\n"
        );
        assert_eq!(err, "");
        assert_eq!(code(&a.diff), exit::CHANGES);
    }

    #[test]
    fn nothing_to_do_exits_0_and_kept_volumes_are_no_change() {
        let mut d = Description::default();
        assert_eq!(code(&d), exit::OK);
        d.stacks.push(StackChanges {
            name: "old".into(),
            volumes: vec![ObjectChange {
                name: "old_data".into(),
                action: ObjectAction::Keep,
            }],
            ..Default::default()
        });
        d.pulls.push(Pull {
            image: "busybox".into(),
            reason: "pull_policy always".into(),
        });
        assert_eq!(
            code(&d),
            exit::OK,
            "a pull or a kept volume is not a change"
        );
        let (out, _) = printed(&DiffAnswer {
            commit: None,
            ..answer(d)
        });
        assert!(out.contains("old_data: no longer used, kept"), "{out}");
        assert!(out.ends_with("nothing to do\n"), "{out}");
    }

    #[test]
    fn an_apply_that_would_fail_exits_1_and_says_why_on_stderr() {
        let d = Description {
            stacks: vec![StackChanges {
                name: "s".into(),
                services: vec![ServiceChanges {
                    name: "a".into(),
                    containers: vec![change("s-a-1", Action::Create, Why::New)],
                }],
                ..Default::default()
            }],
            pulls: vec![],
            problems: vec!["image x is not on the engine and its pull_policy is never".into()],
        };
        let a = answer(d);
        let (_, err) = printed(&a);
        assert!(err.contains("error: image x is not on the engine"), "{err}");
        assert_eq!(code(&a.diff), exit::FAILED);
    }

    #[test]
    fn a_commit_the_agent_would_refuse_says_why_plans_nothing_and_exits_1() {
        let a = DiffAnswer {
            refused: Some(crate::api::Refusal {
                commit: "a".repeat(40),
                reason: "unsigned commit (source.verify.mode: head)".into(),
                class: crate::error::ErrorClass::Input,
            }),
            ..answer(Description::default())
        };
        let (out, err) = printed(&a);
        assert_eq!(
            out,
            "commit aaaaaaaaaaaa fetched by agent edge-01 (the box runs bbbbbbbbbbbb)\n\
             refused: the agent would not apply this commit (source.verify); nothing is planned and the box stays as it is\n"
        );
        assert_eq!(
            err,
            "error: commit aaaaaaaaaaaa would be refused: unsigned commit (source.verify.mode: head)\n"
        );
        assert_eq!(answer_code(&a), exit::FAILED);
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["refused"]["class"], "input", "{json:#}");
        assert_eq!(json["refused"]["commit"], "a".repeat(40), "{json:#}");

        // Verified: who signed it, and the exit code of the plan; no `refused` key at all.
        let signed = DiffAnswer {
            signer: Some("alice@example.com (SHA256:abc)".into()),
            ..answer(Description::default())
        };
        let (out, _) = printed(&signed);
        assert!(
            out.contains("\nverified by alice@example.com (SHA256:abc)\n"),
            "{out}"
        );
        assert_eq!(answer_code(&signed), exit::OK);
        assert!(serde_json::to_value(&signed)
            .unwrap()
            .get("refused")
            .is_none());
    }

    #[test]
    fn a_pinned_agent_says_what_resume_would_do() {
        let a = DiffAnswer {
            pinned: true,
            applied_commit: Some("a".repeat(40)),
            ..answer(Description::default())
        };
        let (out, _) = printed(&a);
        assert!(out.contains("(the box runs it)"), "{out}");
        assert!(out.contains("berth resume"), "{out}");
    }
}
