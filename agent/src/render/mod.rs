//! Render: a tree of files (a Git commit's tree, or a plain directory) → [`DesiredState`].
//!
//! Rendering reads only through the [`Tree`] trait, so a new commit is rendered from its Git tree before
//! any file on disk changes.

use crate::model::DesiredState;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Largest compose / env file berth reads, in bytes.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    /// A symlink, with its target as stored.
    Symlink(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub kind: EntryKind,
}

/// Read-only view of a repository's files. Paths are relative to the repository root, `/`-separated, and
/// never absolute.
pub trait Tree {
    /// The bytes of a regular file; `Ok(None)` when there is no such file.
    fn read(&self, path: &Path) -> std::io::Result<Option<Vec<u8>>>;
    /// What a path is, without following a final symlink; `Ok(None)` when it does not exist.
    fn kind(&self, path: &Path) -> std::io::Result<Option<EntryKind>>;
    /// The entries of a directory, sorted by name; empty when it does not exist.
    fn list(&self, path: &Path) -> std::io::Result<Vec<Entry>>;
}

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
}

/// One problem found while rendering, with as much location as is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Repository-relative file.
    pub file: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub stack: Option<String>,
    pub service: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}")?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
                if let Some(col) = self.column {
                    write!(f, ":{col}")?;
                }
            }
            write!(f, ": ")?;
        }
        if let Some(stack) = &self.stack {
            write!(f, "stack {stack}")?;
            if let Some(service) = &self.service {
                write!(f, ", service {service}")?;
            }
            write!(f, ": ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// Every problem of a failed render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RenderError {
    pub problems: Vec<Problem>,
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Render the followed directory of `tree` into a desired state.
pub fn render(tree: &dyn Tree, opts: &RenderOptions) -> Result<DesiredState, RenderError> {
    let _ = (tree, opts);
    Err(RenderError {
        problems: vec![Problem {
            file: None,
            line: None,
            column: None,
            stack: None,
            service: None,
            message: "render not implemented".into(),
        }],
    })
}

/// Placeholder until the render branch lands.
pub fn render_dir(
    dir: &Path,
    root_stack_name: &str,
    env: BTreeMap<String, String>,
) -> Result<DesiredState, RenderError> {
    let _ = (dir, root_stack_name, env);
    Err(RenderError { problems: vec![] })
}
