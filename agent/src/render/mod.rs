//! Render: a tree of files (a Git commit's tree, or a plain directory) → [`DesiredState`].
//!
//! Rendering reads only through the [`Tree`] trait, so a new commit is rendered from its Git tree before
//! any file on disk changes.
//!
//! Nothing in a tree can make render panic or take unbounded time or memory: numbers are read with
//! bounds (`numbers`), what a stack reads and expands has a budget (`budget`, `yaml`, `interpolate`),
//! and every problem is reported with its file and line (at most [`MAX_PROBLEMS`] of them).
//!
//! The values a render took from a secret source are collected in the state's `sensitive` set
//! ([`secret_values`]) for the store, labels and status to seal or digest.
//!
//! # Layers
//!
//! The modules are layered one way, from the bottom up: a module imports only modules of lower layers
//! (or of its own layer, without a circle), never one above it. `layers_tests` checks the sources
//! against this table (test modules are exempt); a new module gets a place in it, and says its layer in
//! its opening comment.
//!
//! | Layer | Modules | What they own |
//! |---|---|---|
//! | foundations | `lines`, `problem`, `tree`, `interpolate`, `yaml`, `merge`, `facts`, `refused` | key paths and their lines; problems; the [`Tree`] render reads through and paths that stay inside it; `${VAR}` and dotenv; bounded YAML; override merging; a box's facts; why a refused key is refused |
//! | input | `input`, `budget`, `rebase`, `sops` | conversion's input types (`Doc`, `StackInput`); what one stack may read; rebasing the paths of included files; SOPS files decrypted as they are read |
//! | assembly | `assemble` | a stack's files → one merged, interpolated document |
//! | value readers | `values`, `numbers` | `Ctx` (problems located by key path) and every spelling of a scalar, list or mapping; bounded numbers |
//! | top-level tables | `compose` | the `networks`, `volumes`, `secrets` and `configs` a stack defines; `labels` |
//! | service sections | `ports`, `mounts`, `networks`, `deploy`, `secrets`, `env`, `health`, `cgroups` | one section of a service each |
//! | service | `service` | one service → a container spec, section by section |
//! | conversion | `convert` | one stack's document → a stack spec |
//! | secret values | `secret_values` | which values of a rendered state came from a secret source |
//! | entry | `mod` (this file) | [`RenderOptions`], [`render`], [`render_dir`]: the stacks of a directory, each stack's `.env`, then assembly and conversion |
//!
//! SOPS-encrypted files are decrypted as they are read (`sops`), whatever reads them.

mod assemble;
mod budget;
mod cgroups;
pub mod compose;
mod convert;
mod deploy;
mod env;
pub mod facts;
mod health;
mod input;
pub mod interpolate;
pub mod lines;
pub mod merge;
mod mounts;
mod networks;
pub mod numbers;
pub mod ports;
mod problem;
mod rebase;
mod refused;
pub mod secret_values;
mod secrets;
mod service;
pub mod sops;
pub mod tree;
mod values;
mod yaml;
pub(crate) use yaml::without_scalars;

use crate::model::DesiredState;
use lines::Seg;
use problem::display_path;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use budget::MAX_FILE_BYTES;
pub use problem::{Problem, RenderError};
pub use tree::{DirTree, Entry, EntryKind, Tree};

/// Compose file names, in the order Docker Compose looks for them.
pub const COMPOSE_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];
/// Override file names, merged into the compose file when present.
pub const OVERRIDE_FILES: &[&str] = &[
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yaml",
    "docker-compose.override.yml",
];

/// The most stacks one followed directory may hold (each has its own budget, see `budget`).
pub const MAX_STACKS: usize = 1000;
/// The most problems one render reports (a file with thousands of bad entries says so in one line).
pub const MAX_PROBLEMS: usize = 200;

/// Inputs of a render besides the tree.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// The followed directory, relative to the repository root (`.` for the root).
    pub path: PathBuf,
    /// Absolute path on the host where the repository root is (or will be) checked out: relative bind
    /// mount sources resolve under it.
    pub checkout_dir: PathBuf,
    /// Name of the stack of the followed directory itself when its compose file has no `name:`.
    pub root_stack_name: String,
    /// Variables for `${VAR}` interpolation (the agent's environment), before a stack's `.env`.
    pub env: BTreeMap<String, String>,
    /// SOPS-encrypted files: the box's key, and what to do without one.
    pub sops: sops::SopsOptions,
    /// Which of `env` come from a secret source (the agent's process environment, facts marked
    /// secret): the values they put into the desired state are marked sensitive ([`secret_values`]).
    pub secret_vars: std::collections::BTreeSet<String>,
}

/// Render the followed directory of `tree` into a desired state: the directory itself and each
/// immediate subdirectory holding a compose file is a stack. Every problem is collected; warnings
/// (what is accepted but ignored, see [`render_warned`]) go to the log.
pub fn render(tree: &dyn Tree, opts: &RenderOptions) -> Result<DesiredState, RenderError> {
    let (result, warnings) = render_warned(tree, opts);
    for w in &warnings {
        tracing::warn!(warning = %w, "render");
    }
    result
}

/// [`render`], and the warnings: keys accepted and ignored as Compose ignores them on a single engine
/// (Swarm-only `deploy` keys), each located like a problem.
pub fn render_warned(
    tree: &dyn Tree,
    opts: &RenderOptions,
) -> (Result<DesiredState, RenderError>, Vec<Problem>) {
    let mut warnings = Vec::new();
    let tree = sops::SopsTree::new(tree, &opts.sops);
    let (result, taken) = interpolate::recording_taken(|| render_inner(&tree, opts, &mut warnings));
    warnings.extend(tree.warnings());
    let result = result.map(|mut desired| {
        desired.sensitive.extend(&tree.sensitive());
        secret_values::mark(&mut desired, &opts.env, &opts.secret_vars, &taken);
        desired
    });
    (result, warnings)
}

/// The stacks of the followed directory, each rendered, checked against the others and collected.
fn render_inner(
    tree: &dyn Tree,
    opts: &RenderOptions,
    warnings: &mut Vec<Problem>,
) -> Result<DesiredState, RenderError> {
    let mut problems = Vec::new();
    let mut desired = DesiredState::default();
    let base = match tree::resolve(tree, &opts.path) {
        Ok(b) => b,
        Err(e) => {
            return Err(RenderError {
                problems: vec![Problem::at(&opts.path, e)],
            })
        }
    };
    let dirs = stack_dirs(tree, &base, &mut problems);

    let mut containers: BTreeMap<String, String> = BTreeMap::new();
    let mut stacks_seen = 0;
    for (dir, dir_name) in dirs {
        let default_name = match &dir_name {
            None => opts.root_stack_name.clone(),
            Some(n) => sanitize_stack_name(n),
        };
        let before = problems.len();
        let rendered = render_stack(tree, opts, &dir, &default_name, &mut problems, warnings);
        if rendered.is_some() || problems.len() > before {
            stacks_seen += 1;
            if stacks_seen > MAX_STACKS {
                problems.push(Problem::at(
                    &base,
                    format!("more than {MAX_STACKS} stacks; a box follows at most that many"),
                ));
                break;
            }
        }
        let Some(stack) = rendered else {
            continue;
        };
        if problems.len() > before {
            continue;
        }
        add_stack(&mut desired, &mut containers, &dir, stack, &mut problems);
    }
    if problems.is_empty() {
        Ok(desired)
    } else {
        Err(RenderError {
            problems: capped(problems),
        })
    }
}

/// The directories that may hold a stack: `base` itself, then each immediate subdirectory (a symlink
/// to a directory counts; hidden entries do not).
fn stack_dirs(
    tree: &dyn Tree,
    base: &Path,
    problems: &mut Vec<Problem>,
) -> Vec<(PathBuf, Option<String>)> {
    let mut dirs: Vec<(PathBuf, Option<String>)> = vec![(base.to_path_buf(), None)];
    match tree.list(base) {
        Ok(entries) => {
            for e in entries {
                if e.name.starts_with('.') {
                    continue;
                }
                let child = if base == Path::new(".") {
                    PathBuf::from(&e.name)
                } else {
                    base.join(&e.name)
                };
                let is_dir = match &e.kind {
                    EntryKind::Dir => true,
                    EntryKind::File => false,
                    EntryKind::Symlink(_) => match tree::resolve(tree, &child) {
                        Ok(r) => matches!(tree.kind(&r), Ok(Some(EntryKind::Dir))),
                        Err(err) => {
                            problems.push(Problem::at(&child, err));
                            false
                        }
                    },
                };
                if is_dir {
                    dirs.push((child, Some(e.name.clone())));
                }
            }
        }
        Err(e) => problems.push(Problem::at(base, format!("cannot list: {e}"))),
    }
    dirs
}

/// Adds a rendered stack to `desired`, unless its name is taken; a container name another stack
/// produces too is a problem.
fn add_stack(
    desired: &mut DesiredState,
    containers: &mut BTreeMap<String, String>,
    dir: &Path,
    stack: crate::model::StackSpec,
    problems: &mut Vec<Problem>,
) {
    if let Some(prev) = desired.stacks.get(&stack.name) {
        problems.push(Problem {
            file: Some(display_path(dir)),
            line: None,
            column: None,
            stack: Some(stack.name.clone()),
            service: None,
            message: format!(
                "stack name {:?} is also used by {}; give one of them another `name:`",
                stack.name, prev.dir
            ),
        });
        return;
    }
    for c in &stack.containers {
        if let Some(other) = containers.insert(c.name.clone(), stack.name.clone()) {
            problems.push(Problem {
                file: Some(display_path(dir)),
                line: None,
                column: None,
                stack: Some(stack.name.clone()),
                service: Some(c.service.clone()),
                message: format!(
                    "container name {} is also produced by stack {other}; rename a stack or service",
                    c.name
                ),
            });
        }
    }
    desired.stacks.insert(stack.name.clone(), stack);
}

/// The first [`MAX_PROBLEMS`] problems, and a last one saying how many more there were.
fn capped(mut problems: Vec<Problem>) -> Vec<Problem> {
    if problems.len() > MAX_PROBLEMS {
        let more = problems.len() - MAX_PROBLEMS;
        problems.truncate(MAX_PROBLEMS);
        problems.push(Problem {
            file: None,
            line: None,
            column: None,
            stack: None,
            service: None,
            message: format!("… and {more} more problems"),
        });
    }
    problems
}

/// The first of `names` that exists in `dir` (resolving a symlinked file inside the repository).
fn find_file(
    tree: &dyn Tree,
    dir: &Path,
    names: &[&str],
    problems: &mut Vec<Problem>,
) -> Option<PathBuf> {
    for n in names {
        let p = if dir == Path::new(".") {
            PathBuf::from(n)
        } else {
            dir.join(n)
        };
        match tree.kind(&p) {
            Ok(Some(EntryKind::File)) => return Some(p),
            Ok(Some(EntryKind::Symlink(_))) => match tree::resolve(tree, &p) {
                Ok(r) => return Some(r),
                Err(e) => {
                    problems.push(Problem::at(&p, e));
                    return None;
                }
            },
            Ok(Some(EntryKind::Dir)) => {
                problems.push(Problem::at(&p, "is a directory, not a compose file"));
                return None;
            }
            Ok(None) => {}
            Err(e) => {
                problems.push(Problem::at(&p, format!("cannot read: {e}")));
                return None;
            }
        }
    }
    None
}

/// Render one stack directory; `None` when it holds no compose file or had problems.
fn render_stack(
    tree: &dyn Tree,
    opts: &RenderOptions,
    dir: &Path,
    default_name: &str,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<Problem>,
) -> Option<crate::model::StackSpec> {
    let main = find_file(tree, dir, COMPOSE_FILES, problems)?;
    let mut files = vec![main];
    if let Some(o) = find_file(tree, dir, OVERRIDE_FILES, problems) {
        files.push(o);
    }

    // Everything the stack reads and expands is charged to one budget.
    let mut budget = budget::Budget::default();
    let scope = stack_scope(tree, opts, dir, &mut budget, problems)?;

    let mut docs = Vec::new();
    let doc = assemble::assemble(
        tree,
        dir,
        &files,
        &scope,
        &opts.env,
        &mut budget,
        &mut docs,
        problems,
    )?;

    let name = stack_name(&doc, &docs, default_name, problems)?;
    let input = input::StackInput {
        tree,
        name,
        dir: dir.to_path_buf(),
        checkout_dir: &opts.checkout_dir,
        docs: &docs,
        doc: &doc,
        env: &scope,
        agent_env: &opts.env,
    };
    convert::convert(&input, budget, problems, warnings)
}

/// Interpolation scope: the stack's .env, then the agent's environment, which wins (as in Compose);
/// `None` when the .env cannot be read.
fn stack_scope(
    tree: &dyn Tree,
    opts: &RenderOptions,
    dir: &Path,
    budget: &mut budget::Budget,
    problems: &mut Vec<Problem>,
) -> Option<BTreeMap<String, String>> {
    let mut scope: BTreeMap<String, String> = BTreeMap::new();
    let env_path = if dir == Path::new(".") {
        PathBuf::from(".env")
    } else {
        dir.join(".env")
    };
    if let Ok(Some(EntryKind::File | EntryKind::Symlink(_))) = tree.kind(&env_path) {
        let resolved = match tree::resolve(tree, &env_path) {
            Ok(r) => r,
            Err(e) => {
                problems.push(Problem::at(&env_path, e));
                return None;
            }
        };
        match budget.read(tree, &resolved) {
            Ok(Some(bytes)) => {
                match interpolate::parse_dotenv(
                    &String::from_utf8_lossy(&bytes),
                    &opts.env,
                    &mut budget.expansion,
                ) {
                    Ok(pairs) => scope.extend(pairs),
                    Err(e) => {
                        problems.push(Problem {
                            line: Some(e.line),
                            ..Problem::at(&env_path, e.kind)
                        });
                        return None;
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                problems.push(Problem::at(&env_path, e));
                return None;
            }
        }
    }
    scope.extend(opts.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    Some(scope)
}

/// The stack's name: a valid `name:` of the document, else `default_name`; `None` (a problem) when
/// `name:` is not a valid stack name.
fn stack_name(
    doc: &Value,
    docs: &[input::Doc],
    default_name: &str,
    problems: &mut Vec<Problem>,
) -> Option<String> {
    match doc.get("name").filter(|v| !v.is_null()) {
        Some(Value::String(n)) if valid_stack_name(n) => Some(n.clone()),
        Some(other) => {
            let line = docs
                .iter()
                .rev()
                .find_map(|d| d.index.exact(&[Seg::Key("name".into())]).map(|l| (d, l)));
            problems.push(Problem {
                file: line.map(|(d, _)| d.file.clone()),
                line: line.map(|(_, l)| l),
                column: None,
                stack: None,
                service: None,
                message: format!(
                    "name: must be lowercase letters, digits, '_' or '-', starting with a letter or digit{}",
                    match other {
                        Value::String(_) => String::new(),
                        v => format!(", not {}", values::type_name(v)),
                    }
                ),
            });
            None
        }
        None => Some(default_name.to_string()),
    }
}

/// Compose's project-name rule for an explicit `name:`.
pub fn valid_stack_name(n: &str) -> bool {
    n.chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Lowercase, and anything outside `[a-z0-9_-]` becomes `-`, like Compose's project-name normalisation.
pub fn sanitize_stack_name(s: &str) -> String {
    let out: String = s
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = out.trim_start_matches(['-', '_']).to_string();
    if trimmed.is_empty() {
        "default".into()
    } else {
        trimmed
    }
}

/// Render a plain directory (for `berth render DIR` / `berth apply DIR`): the directory is the
/// repository root and the followed directory; relative bind mounts point into it.
pub fn render_dir(
    dir: &Path,
    root_stack_name: &str,
    env: BTreeMap<String, String>,
) -> Result<DesiredState, RenderError> {
    render_dir_warned(dir, root_stack_name, env, sops::SopsOptions::default()).0
}

/// [`render_dir`], and the warnings (see [`render_warned`]).
pub fn render_dir_warned(
    dir: &Path,
    root_stack_name: &str,
    env: BTreeMap<String, String>,
    sops: sops::SopsOptions,
) -> (Result<DesiredState, RenderError>, Vec<Problem>) {
    let fail = |p: Problem| (Err(RenderError { problems: vec![p] }), Vec::new());
    let root = match dir.canonicalize() {
        Ok(r) if r.is_dir() => r,
        Ok(r) => return fail(Problem::at(&r, "is not a directory")),
        Err(e) => return fail(Problem::at(dir, format!("cannot read: {e}"))),
    };
    let opts = RenderOptions {
        path: PathBuf::from("."),
        checkout_dir: root.clone(),
        root_stack_name: root_stack_name.to_string(),
        env,
        sops,
        // `berth render`/`apply`/`diff DIR`: what comes from this process's environment is secret.
        secret_vars: secret_values::environment_names(),
    };
    render_warned(&DirTree::new(root), &opts)
}

/// The options the render tests use: the root stack `edge`, checked out at `/var/lib/berth/repo`,
/// with these variables.
#[cfg(test)]
pub(crate) fn test_options(env: &[(&str, &str)]) -> RenderOptions {
    RenderOptions {
        path: PathBuf::from("."),
        checkout_dir: PathBuf::from("/var/lib/berth/repo"),
        root_stack_name: "edge".into(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        sops: Default::default(),
        secret_vars: Default::default(),
    }
}

/// Render `text` as the one `compose.yaml` of a temporary directory, with [`test_options`]; and the
/// render's warnings.
#[cfg(test)]
fn render_compose_text(text: &str) -> (Result<DesiredState, RenderError>, Vec<Problem>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), text).unwrap();
    render_warned(&DirTree::new(dir.path()), &test_options(&[]))
}

#[cfg(test)]
mod bounds_tests;
#[cfg(test)]
mod cgroups_tests;
#[cfg(test)]
mod compat_tests;
#[cfg(test)]
mod layers_tests;
#[cfg(test)]
mod memtree;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
