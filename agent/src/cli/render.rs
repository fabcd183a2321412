//! `berth render DIR`: render a directory and print the desired state; exit 1 on any problem. With
//! `--repo ROOT`, render boxes of a fleet repository as their agents would (see [`fleet`]).

pub mod fleet;

#[cfg(test)]
mod agent_path_tests;

use super::exit;
use crate::model::DesiredState;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// Render `dir` the way `berth apply` would (root stack named after the directory).
pub fn render_dir(dir: &Path) -> Result<DesiredState, crate::render::RenderError> {
    render_dir_with(
        dir,
        &BTreeMap::new(),
        &crate::config::hostname(),
        fleet::sops_options(None, "render"),
    )
    .0
}

/// Render `dir` with `facts`, this machine's identity under `agent_id` (`${BERTH_AGENT_ID}`; `berth
/// render DIR` gives the hostname, `apply`/`diff` their `--agent-id`) and its environment; also the
/// render's warnings (keys accepted and ignored, as Compose ignores them).
pub fn render_dir_with(
    dir: &Path,
    facts: &BTreeMap<String, String>,
    agent_id: &str,
    sops: crate::render::sops::SopsOptions,
) -> (
    Result<DesiredState, crate::render::RenderError>,
    Vec<crate::render::Problem>,
) {
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().to_string()))
        .unwrap_or_else(|| "default".into());
    crate::render::render_dir_warned(
        dir,
        &crate::reconcile::sanitize_stack_name(&name),
        crate::render::facts::scope(
            &crate::render::facts::BoxIdentity::local(agent_id),
            facts,
            std::env::vars(),
        ),
        sops,
    )
}

/// Render `dir` as `agent_id` and print its warnings; on problems, print each one and a summary
/// (`prefix` leads it) and return `None`. SOPS files are decrypted with `sops` (`apply` and `diff`:
/// `--age-key`, else the default key file; never placeholders).
pub fn render_or_report(
    dir: &Path,
    agent_id: &str,
    sops: crate::render::sops::SopsOptions,
    prefix: &str,
    err: &mut impl Write,
) -> std::io::Result<Option<DesiredState>> {
    report(
        dir,
        render_dir_with(dir, &BTreeMap::new(), agent_id, sops),
        prefix,
        err,
    )
}

/// How `berth apply` and `berth diff` decrypt SOPS files: `--age-key`, else `/etc/berth/age.key`.
pub fn box_sops_options(
    age_key: Option<&Path>,
    agent_id: &str,
) -> crate::render::sops::SopsOptions {
    crate::render::sops::SopsOptions {
        age_key_file: Some(age_key.map_or_else(
            || std::path::PathBuf::from(crate::render::sops::DEFAULT_AGE_KEY_FILE),
            Path::to_path_buf,
        )),
        placeholders: false,
        runtime_dir: crate::render::sops::runtime::runtime_dir(agent_id),
    }
}

fn report(
    dir: &Path,
    (rendered, warnings): (
        Result<DesiredState, crate::render::RenderError>,
        Vec<crate::render::Problem>,
    ),
    prefix: &str,
    err: &mut impl Write,
) -> std::io::Result<Option<DesiredState>> {
    for w in &warnings {
        writeln!(err, "warning: {w}")?;
    }
    match rendered {
        Ok(d) => Ok(Some(d)),
        Err(e) => {
            for p in &e.problems {
                writeln!(err, "{p}")?;
            }
            writeln!(
                err,
                "berth: {prefix}{} problem(s) in {}",
                e.problems.len(),
                dir.display()
            )?;
            Ok(None)
        }
    }
}

/// `berth render`: without `--repo`, the one directory given; with it, the boxes of a fleet.
pub fn run(args: &fleet::Args, out: &mut impl Write, err: &mut impl Write) -> anyhow::Result<i32> {
    let facts = match fleet::cli_facts(&args.facts) {
        Ok(f) => f,
        Err(e) => {
            writeln!(err, "berth: --fact: {e}")?;
            return Ok(exit::USAGE);
        }
    };
    if args.repo.is_some() {
        return fleet::run(args, &facts, out, err);
    }
    let [dir] = args.paths.as_slice() else {
        writeln!(
            err,
            "berth: render takes one DIR, or --repo ROOT with box paths or --all"
        )?;
        return Ok(exit::USAGE);
    };
    let sops = fleet::sops_options(args.age_key.as_deref(), &crate::config::hostname());
    run_dir(dir, &facts, sops, args.json, out, err)
}

fn run_dir(
    dir: &Path,
    facts: &BTreeMap<String, String>,
    sops: crate::render::sops::SopsOptions,
    json: bool,
    out: &mut impl Write,
    err: &mut impl Write,
) -> anyhow::Result<i32> {
    let rendered = render_dir_with(dir, facts, &crate::config::hostname(), sops);
    let Some(desired) = report(dir, rendered, "", err)? else {
        return Ok(exit::FAILED);
    };
    if json {
        serde_json::to_writer_pretty(&mut *out, &masked_json(&desired))?;
        writeln!(out)?;
        return Ok(exit::OK);
    }
    print_desired(&desired, out)?;
    Ok(exit::OK)
}

/// A desired state as JSON for printing: every secret value (see [`crate::sensitive`]) is `***`.
pub fn masked_json(desired: &DesiredState) -> serde_json::Value {
    let mut v = serde_json::to_value(desired).unwrap_or_default();
    crate::sealing::Redactor::new(&desired.sensitive, None).redact_json(&mut v);
    v
}

pub fn print_desired(desired: &DesiredState, out: &mut impl Write) -> std::io::Result<()> {
    if desired.stacks.is_empty() {
        writeln!(out, "no stacks")?;
    }
    for stack in desired.stacks.values() {
        writeln!(
            out,
            "stack {} ({}): {} container(s)",
            stack.name,
            stack.dir,
            stack.containers.len()
        )?;
        for c in &stack.containers {
            let ports: Vec<String> = c
                .ports
                .iter()
                .map(|p| match p.host_port {
                    Some(h) => format!("{h}:{}/{}", p.container_port, p.protocol),
                    None => format!("{}/{}", p.container_port, p.protocol),
                })
                .collect();
            writeln!(
                out,
                "  {}  {}  {}  {}",
                c.name,
                c.image,
                ports.join(","),
                &c.spec_hash()[..12]
            )?;
        }
        for n in &stack.networks {
            writeln!(out, "  network {}", n.name)?;
        }
        for v in &stack.volumes {
            writeln!(out, "  volume {}", v.name)?;
        }
    }
    Ok(())
}
