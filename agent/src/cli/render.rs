//! `berth render DIR`: render a directory and print the desired state; exit 1 on any problem.

use super::exit;
use crate::model::DesiredState;
use std::io::Write;
use std::path::Path;

/// Render `dir` the way `berth apply` would (root stack named after the directory).
pub fn render_dir(dir: &Path) -> Result<DesiredState, crate::render::RenderError> {
    render_dir_warned(dir).0
}

/// [`render_dir`], and the render's warnings (keys accepted and ignored, as Compose ignores them).
pub fn render_dir_warned(
    dir: &Path,
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
        std::env::vars().collect(),
    )
}

/// Render `dir` and print its warnings; on problems, print each one and a summary (`prefix` leads it) and return `None`.
pub fn render_or_report(
    dir: &Path,
    prefix: &str,
    err: &mut impl Write,
) -> std::io::Result<Option<DesiredState>> {
    let (result, warnings) = render_dir_warned(dir);
    for w in &warnings {
        writeln!(err, "warning: {w}")?;
    }
    match result {
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

pub fn run(
    dir: &Path,
    json: bool,
    out: &mut impl Write,
    err: &mut impl Write,
) -> anyhow::Result<i32> {
    let Some(desired) = render_or_report(dir, "", err)? else {
        return Ok(exit::FAILED);
    };
    if json {
        serde_json::to_writer_pretty(&mut *out, &desired)?;
        writeln!(out)?;
        return Ok(exit::OK);
    }
    print_desired(&desired, out)?;
    Ok(exit::OK)
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
