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
use crate::render::{DirTree, EntryKind, RenderError, Tree};
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
    /// The age identity file SOPS-encrypted files are decrypted with. Without it, encrypted files are
    /// checked (SOPS structure) and rendered with placeholder values, with a warning.
    #[arg(long, value_name = "FILE")]
    pub age_key: Option<PathBuf>,
}

/// How `berth render` treats SOPS files: decrypted with `--age-key`, else placeholders.
pub fn sops_options(age_key: Option<&Path>, agent_id: &str) -> crate::render::sops::SopsOptions {
    crate::render::sops::SopsOptions {
        age_key_file: age_key.map(Path::to_path_buf),
        placeholders: age_key.is_none(),
        runtime_dir: crate::render::sops::runtime::runtime_dir(agent_id),
    }
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
    #[error("cannot read {FLEET_FILE}: {0}")]
    Resolve(#[source] crate::render::tree::ResolveError),
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

/// `fleet.yaml`: the boxes and their facts.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetFile {
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
        let (result, warnings) = render_box(
            &tree,
            &root,
            path,
            &fleet,
            &cli_facts,
            args.age_key.as_deref(),
            &secret_vars,
        );
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
                for w in &warnings {
                    writeln!(report, "  warning: {w}")?;
                }
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
    let tree = DirTree::new(&root);
    let fleet = read_fleet(&tree)?;
    let boxes = if args.all {
        all_boxes(&tree, &fleet)?
    } else {
        args.paths
            .iter()
            .map(|p| box_path(&root, p))
            .collect::<Result<Vec<_>, _>>()?
    };
    Ok((root, fleet, boxes))
}

/// The `fleet.yaml` at the root of `tree` (a directory, or a commit's tree); absent or empty: the default.
pub fn read_fleet(tree: &dyn Tree) -> Result<FleetFile, FleetError> {
    let path =
        crate::render::tree::resolve(tree, Path::new(FLEET_FILE)).map_err(FleetError::Resolve)?;
    let bytes = match tree.read(&path).map_err(FleetError::Read)? {
        Some(b) => b,
        None => return Ok(FleetFile::default()),
    };
    if bytes.len() > crate::render::MAX_FILE_BYTES {
        return Err(FleetError::TooLarge);
    }
    let text = String::from_utf8_lossy(&bytes);
    if text.trim().is_empty() {
        return Ok(FleetFile::default());
    }
    serde_yaml::from_str(&text).map_err(FleetError::Parse)
}

/// Every box of a fleet: the `boxes:` of its fleet file, else each directory under `hosts/`.
pub fn all_boxes(tree: &dyn Tree, fleet: &FleetFile) -> Result<Vec<PathBuf>, FleetError> {
    match &fleet.boxes {
        Some(list) => list
            .iter()
            .map(|b| {
                crate::config::normalise_rel_path(b).map_err(|source| FleetError::BoxPath {
                    path: b.into(),
                    source,
                })
            })
            .collect(),
        None => host_dirs(tree),
    }
}

/// Each directory under `hosts/` (or symlink to one inside the repository), sorted; hidden ones skipped.
fn host_dirs(tree: &dyn Tree) -> Result<Vec<PathBuf>, FleetError> {
    let dir = Path::new(HOSTS_DIR);
    let mut boxes = Vec::new();
    for entry in tree.list(dir).map_err(FleetError::List)? {
        if entry.name.starts_with('.') {
            continue;
        }
        let path = dir.join(&entry.name);
        let is_dir = match entry.kind {
            EntryKind::Dir => true,
            EntryKind::File => false,
            EntryKind::Symlink(_) => crate::render::tree::resolve(tree, &path)
                .ok()
                .is_some_and(|r| matches!(tree.kind(&r), Ok(Some(EntryKind::Dir)))),
        };
        if is_dir {
            boxes.push(path);
        }
    }
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

/// A box's facts: its `facts:` in the fleet file, under `--fact`; problems are reported against the
/// fleet file (never quoting a value).
pub fn box_facts(
    path: &Path,
    fleet: &FleetFile,
    cli_facts: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, RenderError> {
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
    if problems.is_empty() {
        return Ok(box_facts);
    }
    Err(RenderError {
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
    })
}

/// Render one box as its agent would: agent id and hostname are the box's directory name, the
/// architecture this machine's, facts from `fleet.yaml` under `--fact`, the environment over all.
pub(super) fn render_box(
    tree: &dyn Tree,
    root: &Path,
    path: &Path,
    fleet: &FleetFile,
    cli_facts: &BTreeMap<String, String>,
    age_key: Option<&Path>,
    secret_vars: &std::collections::BTreeSet<String>,
) -> (
    Result<DesiredState, RenderError>,
    Vec<crate::render::Problem>,
) {
    match box_facts(path, fleet, cli_facts) {
        Ok(facts) => render_box_with(tree, root, path, &facts, age_key, secret_vars),
        Err(e) => (Err(e), Vec::new()),
    }
}

/// [`render_box`] with the box's facts already gathered. `root`: where the repository is checked out
/// (relative bind mounts resolve under it).
pub fn render_box_with(
    tree: &dyn Tree,
    root: &Path,
    path: &Path,
    box_facts: &BTreeMap<String, String>,
    age_key: Option<&Path>,
    secret_vars: &std::collections::BTreeSet<String>,
) -> (
    Result<DesiredState, RenderError>,
    Vec<crate::render::Problem>,
) {
    let agent_id = match path.file_name() {
        Some(n) => n.to_string_lossy().to_string(),
        None => crate::config::hostname(),
    };
    let identity = BoxIdentity {
        hostname: agent_id.clone(),
        arch: facts::docker_arch(std::env::consts::ARCH).to_string(),
        agent_id: agent_id.clone(),
    };
    let sops = sops_options(age_key, &agent_id);
    let mut opts =
        crate::reconcile::box_render_options(path, root.to_path_buf(), &identity, box_facts, sops);
    opts.secret_vars = secret_vars.clone();
    crate::reconcile::render_tree_warned(tree, &opts)
}
