//! The input of conversion: one stack's files ([`Doc`], for locating problems by file and line) and
//! everything conversion reads besides its merged document ([`StackInput`]: the tree, directories and
//! the interpolation scope).
//!
//! Layer: input (the bottom of conversion: types only, no compose logic).

use super::lines::LineIndex;
use super::Tree;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One file of a stack, for locating problems.
pub struct Doc {
    /// Repository-relative path.
    pub file: String,
    pub index: LineIndex,
}

/// Everything needed to turn one stack's merged document into a [`StackSpec`](crate::model::StackSpec).
pub struct StackInput<'a> {
    pub tree: &'a dyn Tree,
    pub name: String,
    /// Repository-relative directory of the stack (`.` for the root).
    pub dir: PathBuf,
    /// Where the repository root is (or will be) checked out on the host.
    pub checkout_dir: &'a Path,
    /// The stack's files in merge order.
    pub docs: &'a [Doc],
    pub doc: &'a Value,
    /// Interpolation scope: the stack's `.env` overlaid with the agent's environment.
    pub env: &'a BTreeMap<String, String>,
    /// The agent's environment alone.
    pub agent_env: &'a BTreeMap<String, String>,
}
