//! `berth apply DIR`: render a directory and converge the engine once, with no Git, daemon or history;
//! refused while a running agent (or another apply) holds the agent id's lock.

use super::exit;
use crate::model::DesiredState;
use crate::runtime::{DockerRuntime, Owner};
use std::io::IsTerminal;
use std::io::Write;
use std::path::Path;

pub fn run(
    dir: &Path,
    agent_id: Option<String>,
    age_key: Option<&Path>,
    conn: &super::Conn,
    out: &mut impl Write,
    err: &mut impl Write,
) -> anyhow::Result<i32> {
    let agent_id = agent_id.unwrap_or_else(crate::config::hostname);
    if !crate::config::valid_agent_id(&agent_id) {
        writeln!(err, "berth: --agent-id {agent_id:?} must be 1-63 characters of a-z, A-Z, 0-9, '.', '_' or '-'")?;
        return Ok(exit::FAILED);
    }
    // Held for the whole apply, so an agent cannot start under it.
    let _lock = match lock(&agent_id, conn, err)? {
        Locked::Held(l) => l,
        Locked::Refused => return Ok(exit::FAILED),
    };
    let Some(desired) = prepare(dir, &agent_id, age_key, conn, err)? else {
        return Ok(exit::FAILED);
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(converge_once(&desired, &agent_id, out, err))
}

/// What taking the agent id's lock came to.
enum Locked {
    /// Taken, or `None` where no agent can hold it (see [`crate::lock::Lock::apply`]).
    Held(Option<crate::lock::Lock>),
    /// Another agent or apply holds it (said on `err`).
    Refused,
}

/// Take the agent id's lock, or say who holds it and how to free it.
fn lock(agent_id: &str, conn: &super::Conn, err: &mut impl Write) -> anyhow::Result<Locked> {
    // The lock lives next to the socket of the agent this id would belong to (`--socket`, `--config`,
    // the default config, `/run/berth`).
    let socket = conn.socket_path()?;
    match crate::lock::Lock::apply(agent_id, &socket) {
        Ok(l) => Ok(Locked::Held(l)),
        Err(e @ crate::lock::LockError::Held { .. }) => {
            let how = match e.holder() {
                Some(h) if h.command == "agent" => {
                    "stop that agent first (e.g. `systemctl stop berth`), or pass another --agent-id"
                }
                Some(_) => "wait until it has finished, or pass another --agent-id",
                None => "stop the agent that runs it first, or pass another --agent-id",
            };
            writeln!(
                err,
                "berth: agent id {agent_id} is in use: {e}. `berth apply` would replace or remove the \
                 containers it runs; {how}. Nothing was changed."
            )?;
            Ok(Locked::Refused)
        }
        Err(e) => Err(e.into()),
    }
}

/// Render `dir` with the box key attached and place its decrypted bind-mounted files; `None` when
/// either fails (said on `err`, nothing changed).
fn prepare(
    dir: &Path,
    agent_id: &str,
    age_key: Option<&Path>,
    conn: &super::Conn,
    err: &mut impl Write,
) -> anyhow::Result<Option<DesiredState>> {
    let sops = super::render::box_sops_options(age_key, agent_id);
    let Some(mut desired) =
        super::render::render_or_report(dir, agent_id, sops.clone(), "nothing changed: ", err)?
    else {
        return Ok(None);
    };
    conn.attach_box_key(&mut desired, true)?;
    // Decrypted files the containers bind-mount, in the runtime directory (never in DIR).
    let checkout = dir.canonicalize()?;
    if let Err(e) = crate::render::sops::runtime::materialize(&desired, &checkout, &sops) {
        writeln!(err, "berth: {e}. Nothing was changed.")?;
        return Ok(None);
    }
    Ok(Some(desired))
}

/// Converge the engine to `desired` once (pull progress on a terminal) and report the steps.
async fn converge_once(
    desired: &DesiredState,
    agent_id: &str,
    out: &mut impl Write,
    err: &mut impl Write,
) -> anyhow::Result<i32> {
    let runtime = DockerRuntime::connect(std::env::var("DOCKER_HOST").ok().as_deref()).await?;
    let owner = Owner {
        agent_id: agent_id.to_string(),
        revision: "dir".into(),
    };
    // Pull progress goes to a terminal only; a script sees the outcome.
    let show_progress = std::io::stderr().is_terminal();
    let throttle = crate::images::Throttle::new(std::time::Duration::from_millis(500));
    let progress = |image: &str, line: &str| {
        if show_progress && throttle.pass(image, line) {
            eprintln!("pulling {image}: {line}");
        }
    };
    let (plan, report) = crate::apply::converge(
        &runtime,
        desired,
        &owner,
        &mut Default::default(),
        // An explicit `berth apply` of a directory without stacks removes what the id owns.
        &crate::apply::ApplyOptions {
            allow_empty: true,
            ..crate::apply::ApplyOptions::from_env()
        },
        &progress,
    )
    .await?;
    for w in &report.warnings {
        writeln!(err, "warning: {w}")?;
    }
    if plan.is_empty() && report.ok() {
        writeln!(
            out,
            "up to date: {} container(s)",
            desired.containers().count()
        )?;
        return Ok(exit::OK);
    }
    for step in &report.done {
        writeln!(out, "{step}")?;
    }
    for e in &report.errors {
        writeln!(err, "error: {e}")?;
    }
    Ok(if report.ok() { exit::OK } else { exit::FAILED })
}
