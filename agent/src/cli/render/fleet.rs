//! `berth render --repo ROOT (PATH... | --all)`: render boxes of a fleet repository exactly as the agent
//! following each path would (the agent's `render_tree`, ROOT as the repository root), with facts from
//! `--fact` and `fleet.yaml`; one line per box, the problems with file and line, exit 1 if any box fails.
//!
//! `fleet.yaml` at ROOT (optional):
//!
//! ```yaml
//! boxes: [hosts/edge-01, hosts/edge-02]     # what --all renders; default: each directory under hosts/
//! facts:                                    # per box, as that box's agent config `facts:` gives them
//!   hosts/edge-02: {site: berlin}
//! ```

use super::super::exit;
use crate::model::DesiredState;
use crate::render::facts::{self, BoxIdentity, FactError};
use crate::render::{DirTree, RenderError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The fleet file at the repository root.
pub const FLEET_FILE: &str = "fleet.yaml";
/// Where boxes are looked for when `fleet.yaml` names none.
pub const HOSTS_DIR: &str = "hosts";

/// The arguments of `berth render`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Without --repo: the one directory to render (it is the repository root). With --repo: the boxes
    /// to render, as `source.path` names them (relative to ROOT).
    pub paths: Vec<PathBuf>,
    /// The repository root: render each PATH as the agent following it would.
    #[arg(long, value_name = "ROOT")]
    pub repo: Option<PathBuf>,
    /// With --repo: every box (the `boxes:` of ROOT/fleet.yaml, else each directory under hosts/).
    #[arg(long, requires = "repo", conflicts_with = "paths")]
    pub all: bool,
    /// A fact, as the agent config's `facts:` gives it (`${BERTH_FACT_<KEY>}`); repeatable; wins over
    /// fleet.yaml.
    #[arg(long = "fact", value_name = "KEY=VALUE")]
    pub facts: Vec<String>,
    /// With --repo: a secret fact, its value read from the file PATH (as an agent reads a fact given as
    /// `{secret_file: PATH}`); repeatable; wins over --fact. What it puts into a spec is printed as `***`.
    #[arg(long = "secret-fact", value_name = "KEY=PATH", requires = "repo")]
    pub secret_facts: Vec<String>,
    /// Print the desired state as JSON (with --repo: an object of box path → desired state).
    #[arg(long)]
    pub json: bool,
}

/// Why the fleet could not be read at all (a box's own problems are reported per box).
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("cannot read the repository root {}: {source}", root.display())]
    Root {
        root: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {FLEET_FILE}: {0}")]
    Read(#[source] std::io::Error),
    #[error("{FLEET_FILE} is larger than {} bytes", crate::render::MAX_FILE_BYTES)]
    TooLarge,
    #[error("{FLEET_FILE}: {0}")]
    Parse(#[source] serde_yaml::Error),
    #[error("cannot list {HOSTS_DIR}/: {0}")]
    List(#[source] std::io::Error),
    #[error("box path {}: {source}", path.display())]
    BoxPath {
        path: PathBuf,
        source: crate::config::RelPathError,
    },
    #[error("box path {} is not inside the repository root", path.display())]
    Outside { path: PathBuf },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FleetFile {
    #[serde(default)]
    boxes: Option<Vec<String>>,
    #[serde(default)]
    facts: BTreeMap<String, BTreeMap<String, serde_yaml::Value>>,
}

/// The `--fact KEY=VALUE` arguments, validated like the config's `facts:`.
pub fn cli_facts(args: &[String]) -> Result<BTreeMap<String, String>, FactError> {
    let mut out = BTreeMap::new();
    for a in args {
        let (k, v) = facts::parse_key_value(a)?;
        out.insert(k, v);
    }
    match facts::validate(&out).into_iter().next() {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// The `--secret-fact KEY=PATH` arguments: each file read, keys validated like the config's `facts:`.
pub fn cli_secret_facts(args: &[String]) -> Result<BTreeMap<String, String>, FactError> {
    let mut out = BTreeMap::new();
    for a in args {
        let (k, path) = facts::parse_key_value(a)?;
        let v = facts::read_secret(&k, Path::new(&path))?;
        out.insert(k, v);
    }
    match facts::validate(&out).into_iter().next() {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Run `berth render --repo`.
pub fn run(
    args: &Args,
    cli_facts: &BTreeMap<String, String>,
    out: &mut impl Write,
    err: &mut impl Write,
) -> anyhow::Result<i32> {
    let Some(repo) = &args.repo else {
        return Ok(exit::USAGE);
    };
    if !args.all && args.paths.is_empty() {
        writeln!(err, "berth: render --repo needs box paths or --all")?;
        return Ok(exit::USAGE);
    }
    let (root, fleet, boxes) = match load(repo, args) {
        Ok(v) => v,
        Err(e) => {
            writeln!(err, "berth: {e}")?;
            return Ok(exit::FAILED);
        }
    };
    if boxes.is_empty() {
        writeln!(
            err,
            "berth: no boxes found (no {FLEET_FILE} boxes:, no {HOSTS_DIR}/ directories)"
        )?;
        return Ok(exit::FAILED);
    }
    let secret = match cli_secret_facts(&args.secret_facts) {
        Ok(s) => s,
        Err(e) => {
            writeln!(err, "berth: --secret-fact: {e}")?;
            return Ok(exit::USAGE);
        }
    };
    let mut cli_facts = cli_facts.clone();
    cli_facts.extend(secret.iter().map(|(k, v)| (k.clone(), v.clone())));
    let secret_vars: std::collections::BTreeSet<String> = secret
        .keys()
        .map(|k| facts::variable(k))
        .chain(crate::render::secret_values::environment_names())
        .collect();
    let tree = DirTree::new(&root);
    let mut rendered: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut failed = 0usize;
    for path in &boxes {
        let name = path.display().to_string();
        let result = render_box(&tree, &root, path, &fleet, &cli_facts, &secret_vars);
        // Box lines and problems are the report; with --json they go beside the JSON, on stderr.
        let report: &mut dyn Write = if args.json { &mut *err } else { &mut *out };
        match result {
            Ok(desired) => {
                let containers: usize = desired.stacks.values().map(|s| s.containers.len()).sum();
                writeln!(
                    report,
                    "{name}: ok ({} stack(s), {containers} container(s))",
                    desired.stacks.len()
                )?;
                rendered.insert(name, super::masked_json(&desired));
            }
            Err(e) => {
                failed += 1;
                writeln!(report, "{name}: {} problem(s)", e.problems.len())?;
                for p in &e.problems {
                    writeln!(report, "  {p}")?;
                }
            }
        }
    }
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &rendered)?;
        writeln!(out)?;
    }
    let summary = format!(
        "{} of {} box(es) ok, {failed} failed",
        boxes.len() - failed,
        boxes.len()
    );
    if args.json {
        writeln!(err, "{summary}")?;
    } else {
        writeln!(out, "{summary}")?;
    }
    Ok(if failed > 0 { exit::FAILED } else { exit::OK })
}

/// The canonical root, its fleet file, and the boxes to render (normalised, relative to the root).
fn load(repo: &Path, args: &Args) -> Result<(PathBuf, FleetFile, Vec<PathBuf>), FleetError> {
    let root = repo.canonicalize().map_err(|source| FleetError::Root {
        root: repo.to_path_buf(),
        source,
    })?;
    let fleet = read_fleet(&root)?;
    let boxes = if args.all {
        match &fleet.boxes {
            Some(list) => list
                .iter()
                .map(|b| {
                    crate::config::normalise_rel_path(b).map_err(|source| FleetError::BoxPath {
                        path: b.into(),
                        source,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => host_dirs(&root)?,
        }
    } else {
        args.paths
            .iter()
            .map(|p| box_path(&root, p))
            .collect::<Result<Vec<_>, _>>()?
    };
    Ok((root, fleet, boxes))
}

fn read_fleet(root: &Path) -> Result<FleetFile, FleetError> {
    let path = root.join(FLEET_FILE);
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FleetFile::default()),
        Err(e) => return Err(FleetError::Read(e)),
    };
    if meta.len() > crate::render::MAX_FILE_BYTES as u64 {
        return Err(FleetError::TooLarge);
    }
    let text = std::fs::read_to_string(&path).map_err(FleetError::Read)?;
    if text.trim().is_empty() {
        return Ok(FleetFile::default());
    }
    serde_yaml::from_str(&text).map_err(FleetError::Parse)
}

/// Each directory under `hosts/`, sorted; hidden ones skipped.
fn host_dirs(root: &Path) -> Result<Vec<PathBuf>, FleetError> {
    let dir = root.join(HOSTS_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(FleetError::List(e)),
    };
    let mut boxes = Vec::new();
    for entry in entries {
        let entry = entry.map_err(FleetError::List)?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        boxes.push(Path::new(HOSTS_DIR).join(name));
    }
    boxes.sort();
    Ok(boxes)
}

/// A PATH argument as `source.path` would name it: relative to the root (an absolute path must lie in it).
fn box_path(root: &Path, p: &Path) -> Result<PathBuf, FleetError> {
    if p.is_absolute() {
        let full = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        let rel = full
            .strip_prefix(root)
            .map_err(|_| FleetError::Outside { path: p.into() })?;
        return Ok(if rel.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            rel.to_path_buf()
        });
    }
    crate::config::normalise_rel_path(&p.to_string_lossy()).map_err(|source| FleetError::BoxPath {
        path: p.into(),
        source,
    })
}

/// Render one box as its agent would: agent id and hostname are the box's directory name, the
/// architecture this machine's, facts from `fleet.yaml` under `--fact`, the environment over all.
pub(super) fn render_box(
    tree: &DirTree,
    root: &Path,
    path: &Path,
    fleet: &FleetFile,
    cli_facts: &BTreeMap<String, String>,
    secret_vars: &std::collections::BTreeSet<String>,
) -> Result<DesiredState, RenderError> {
    let mut box_facts = BTreeMap::new();
    let mut problems = Vec::new();
    let key = path.to_string_lossy();
    if let Some(raw) = fleet.facts.get(key.as_ref()) {
        for (k, v) in raw {
            match facts::scalar(k, v) {
                Ok(v) => {
                    box_facts.insert(k.clone(), v);
                }
                Err(e) => problems.push(e),
            }
        }
    }
    box_facts.extend(cli_facts.iter().map(|(k, v)| (k.clone(), v.clone())));
    problems.extend(facts::validate(&box_facts));
    if !problems.is_empty() {
        return Err(RenderError {
            problems: problems
                .into_iter()
                .map(|e| crate::render::Problem {
                    file: Some(FLEET_FILE.into()),
                    line: None,
                    column: None,
                    stack: None,
                    service: None,
                    message: e.to_string(),
                })
                .collect(),
        });
    }
    let agent_id = match path.file_name() {
        Some(n) => n.to_string_lossy().to_string(),
        None => crate::config::hostname(),
    };
    let identity = BoxIdentity {
        hostname: agent_id.clone(),
        arch: facts::docker_arch(std::env::consts::ARCH).to_string(),
        agent_id: agent_id.clone(),
    };
    let mut opts =
        crate::reconcile::box_render_options(path, root.to_path_buf(), &identity, &box_facts);
    opts.secret_vars = secret_vars.clone();
    crate::reconcile::render_tree(tree, &opts)
}
