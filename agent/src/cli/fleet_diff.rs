//! `berth fleet-diff --repo ROOT FROM TO`: for each box of a fleet repository whose desired state changes
//! between two commits, the stacks and services its agent would create, recreate (naming the fields that
//! differ, never their values) or remove, and a count at the end. Boxes are those of `fleet.yaml` (or
//! `hosts/`) at either commit, each rendered from the commit's tree as `berth render --repo` renders it,
//! with its facts at that commit; [`walk`] renders them on every core and renders a box once when it is
//! proven unchanged. Exit 0: no box changes; 2: some do; 1: a box fails to render at TO, or the
//! repository or a revision cannot be read; 64: usage.

mod walk;

use super::exit;
use super::render::fleet::{self, FleetError, FleetFile};
use crate::diff::Description;
use crate::model::DesiredState;
use crate::render::RenderError;
use git2::Repository;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use walk::{Commit, Job, Rendered};

/// The arguments of `berth fleet-diff`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The fleet repository (a Git work tree or bare repository).
    #[arg(long, value_name = "ROOT")]
    pub repo: PathBuf,
    /// The revision boxes run now (a commit id, branch, tag, `HEAD~1`, …).
    pub from: String,
    /// The revision to compare with (e.g. the pull request's head).
    pub to: String,
    /// A fact for every box, at both revisions, over fleet.yaml's (`${BERTH_FACT_<KEY>}`); repeatable.
    #[arg(long = "fact", value_name = "KEY=VALUE")]
    pub facts: Vec<String>,
    /// Print the changed and failed boxes as JSON.
    #[arg(long)]
    pub json: bool,
    /// Render every box at both revisions, even one proven unchanged (the answer is the same; slower).
    #[arg(long)]
    pub render_all: bool,
}

/// Why the fleet could not be compared at all (a box's own problems are reported per box).
#[derive(Debug, thiserror::Error)]
pub enum FleetDiffError {
    #[error("cannot open the repository {}: {source}", root.display())]
    Open {
        root: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error("{rev:?} does not name a commit: {source}")]
    Revision {
        rev: String,
        #[source]
        source: git2::Error,
    },
    #[error("at {rev}: {source}")]
    Fleet {
        rev: String,
        #[source]
        source: FleetError,
    },
    #[error("reading the repository: {0}")]
    Walk(#[source] git2::Error),
}

/// What happens to one box.
#[derive(Debug, Serialize)]
pub struct BoxChange {
    #[serde(rename = "box")]
    pub path: String,
    pub status: BoxStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<Description>,
    /// Render problems at TO (`failed`) or at FROM (`fixed`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// Why a box is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BoxStatus {
    /// Its desired state changes.
    Changed,
    /// A box only at TO: everything is created.
    New,
    /// A box only at FROM: everything is removed.
    Gone,
    /// It did not render at FROM and does at TO: everything it renders is created.
    Fixed,
    /// It does not render at TO.
    Failed,
}

/// The whole answer.
#[derive(Debug, Serialize)]
pub struct FleetDiff {
    pub from: String,
    pub to: String,
    /// Boxes at either revision.
    pub boxes: usize,
    pub changed: usize,
    pub failed: usize,
    /// Boxes rendered once: every file they read is the same at both revisions.
    pub proven_unchanged: usize,
    /// Only the boxes that change or fail, in path order.
    pub changes: Vec<BoxChange>,
}

/// libgit2 caches a parsed tree only up to 4 KiB by default; a fleet's `hosts/` tree of 500 boxes is
/// larger, and every path render asks about passes through it. Cached, `fleet-diff` of 500 boxes takes a
/// fraction of the time.
const TREE_CACHE_LIMIT: usize = 16 * 1024 * 1024;

pub fn run(args: &Args, out: &mut impl Write, err: &mut impl Write) -> anyhow::Result<i32> {
    // SAFETY: a C global without synchronisation; `berth fleet-diff` sets it on the main thread before
    // it starts any thread or opens any repository (no other command of this process uses libgit2).
    unsafe {
        let _ = git2::opts::set_cache_object_limit(git2::ObjectType::Tree, TREE_CACHE_LIMIT);
    }
    let facts = match fleet::cli_facts(&args.facts) {
        Ok(f) => f,
        Err(e) => {
            writeln!(err, "berth: --fact: {e}")?;
            return Ok(exit::USAGE);
        }
    };
    let diff = match compare(args, &facts) {
        Ok(d) => d,
        Err(e) => {
            writeln!(err, "berth: fleet-diff: {e}")?;
            return Ok(exit::FAILED);
        }
    };
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &diff)?;
        writeln!(out)?;
    } else {
        print(&diff, out)?;
    }
    writeln!(
        err,
        "{} box(es) proven unchanged (no file they read differs) and rendered once",
        diff.proven_unchanged
    )?;
    Ok(if diff.failed > 0 {
        exit::FAILED
    } else if diff.changed > 0 {
        exit::CHANGES
    } else {
        exit::OK
    })
}

/// Render every box at both revisions and compare.
pub fn compare(
    args: &Args,
    cli_facts: &BTreeMap<String, String>,
) -> Result<FleetDiff, FleetDiffError> {
    let root = args
        .repo
        .canonicalize()
        .unwrap_or_else(|_| args.repo.clone());
    let repo = Repository::open(&root).map_err(|source| FleetDiffError::Open {
        root: args.repo.clone(),
        source,
    })?;
    let from = resolve(&repo, &args.from)?;
    let to = resolve(&repo, &args.to)?;
    // The checkout the boxes' relative bind mounts point into: the work tree, else the repository.
    let checkout = repo.workdir().unwrap_or(&root).to_path_buf();
    let (from_fleet, from_boxes) = fleet_at(&root, from, &args.from)?;
    let (to_fleet, to_boxes) = fleet_at(&root, to, &args.to)?;
    drop(repo);
    let union: BTreeSet<&PathBuf> = from_boxes.iter().chain(&to_boxes).collect();
    let jobs: Vec<Job> = union
        .into_iter()
        .map(|path| Job {
            path: path.clone(),
            from: from_boxes
                .contains(path)
                .then(|| fleet::box_facts(path, &from_fleet, cli_facts)),
            to: to_boxes
                .contains(path)
                .then(|| fleet::box_facts(path, &to_fleet, cli_facts)),
        })
        .collect();
    let boxes = jobs.len();
    let rendered = walk::render_all(&root, &checkout, from, to, jobs, !args.render_all)
        .map_err(FleetDiffError::Walk)?;
    let proven_unchanged = rendered.iter().filter(|r| r.proven_same).count();
    let changes: Vec<BoxChange> = rendered.into_iter().filter_map(judge).collect();
    Ok(FleetDiff {
        from: from.id.to_string(),
        to: to.id.to_string(),
        boxes,
        changed: changes
            .iter()
            .filter(|c| c.status != BoxStatus::Failed)
            .count(),
        failed: changes
            .iter()
            .filter(|c| c.status == BoxStatus::Failed)
            .count(),
        proven_unchanged,
        changes,
    })
}

fn resolve(repo: &Repository, rev: &str) -> Result<Commit, FleetDiffError> {
    let bad = |source| FleetDiffError::Revision {
        rev: rev.to_string(),
        source,
    };
    let commit = repo
        .revparse_single(rev)
        .and_then(|o| o.peel_to_commit())
        .map_err(bad)?;
    Ok(Commit {
        id: commit.id(),
        tree: commit.tree_id(),
    })
}

/// The fleet file and the boxes at one commit.
fn fleet_at(
    root: &Path,
    c: Commit,
    rev: &str,
) -> Result<(FleetFile, Vec<PathBuf>), FleetDiffError> {
    let fail = |source| FleetDiffError::Fleet {
        rev: rev.to_string(),
        source,
    };
    let repo = Repository::open(root).map_err(|source| FleetDiffError::Open {
        root: root.to_path_buf(),
        source,
    })?;
    let tree = crate::source::GitTree::new(repo, c.tree, c.id.to_string());
    let fleet = fleet::read_fleet(&tree).map_err(fail)?;
    let boxes = fleet::all_boxes(&tree, &fleet).map_err(fail)?;
    Ok((fleet, boxes))
}

/// What one box's two renders mean; `None` when it does not change.
fn judge(r: Rendered) -> Option<BoxChange> {
    let path = r.path.display().to_string();
    let empty = DesiredState::default();
    let change = |status, from: &DesiredState, to: &DesiredState, problems| {
        let diff = crate::diff::between(from, to);
        (diff.has_changes() || status != BoxStatus::Changed).then(|| BoxChange {
            path: path.clone(),
            status,
            diff: Some(diff),
            problems,
        })
    };
    match (r.from, r.to) {
        (_, Some(Err(e))) => Some(BoxChange {
            path: path.clone(),
            status: BoxStatus::Failed,
            diff: None,
            problems: lines(&e),
        }),
        (Some(Ok(from)), Some(Ok(to))) => change(BoxStatus::Changed, &from, &to, Vec::new()),
        (Some(Err(e)), Some(Ok(to))) => change(BoxStatus::Fixed, &empty, &to, lines(&e)),
        (None, Some(Ok(to))) => change(BoxStatus::New, &empty, &to, Vec::new()),
        (Some(Ok(from)), None) => change(BoxStatus::Gone, &from, &empty, Vec::new()),
        // Broken at FROM and no longer a box, or in neither: nothing the fleet runs changes.
        (Some(Err(_)), None) | (None, None) => None,
    }
}

fn lines(e: &RenderError) -> Vec<String> {
    e.problems.iter().map(|p| p.to_string()).collect()
}

/// The answer as text: one block per box that changes or fails, then the counts.
pub fn print(d: &FleetDiff, out: &mut impl Write) -> std::io::Result<()> {
    for c in &d.changes {
        let what = c
            .diff
            .as_ref()
            .map(super::diff::summary)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "nothing to run".into());
        match c.status {
            BoxStatus::Failed => writeln!(
                out,
                "{}: does not render at TO: {} problem(s)",
                c.path,
                c.problems.len()
            )?,
            BoxStatus::New => writeln!(out, "{}: new box: {what}", c.path)?,
            BoxStatus::Gone => writeln!(out, "{}: no longer a box: {what}", c.path)?,
            BoxStatus::Fixed => writeln!(
                out,
                "{}: did not render at FROM ({} problem(s)); at TO: {what}",
                c.path,
                c.problems.len()
            )?,
            BoxStatus::Changed => writeln!(out, "{}: {what}", c.path)?,
        }
        if c.status == BoxStatus::Failed {
            for p in &c.problems {
                writeln!(out, "  {p}")?;
            }
        }
        if let Some(diff) = &c.diff {
            super::diff::print_stacks(diff, "  ", out)?;
        }
    }
    write!(out, "{} of {} boxes change", d.changed, d.boxes)?;
    if d.failed > 0 {
        write!(out, ", {} fail to render at TO", d.failed)?;
    }
    writeln!(out)
}
