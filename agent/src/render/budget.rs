//! What rendering one stack may read and expand: the files and bytes it reads (compose files,
//! overrides, `include`d files, `extends` bases, `.env` and `env_file`s), the expanded size of their
//! YAML, and what variables add to them. One budget per stack, so no chain of includes, extends,
//! aliases or variables can make a small repository cost unbounded time or memory.
//!
//! Layer: input (see the table in `render`).

use super::Tree;
use std::path::{Path, PathBuf};

/// Largest compose / env file berth reads, in bytes.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;
/// The most files one stack may read. Every `extends: {file: …}` reads its file again, so this is
/// sized for a few hundred services extending a shared base.
pub const MAX_FILES: usize = 1000;
/// The most bytes one stack may read, over all its files.
pub const MAX_BYTES: usize = 32 * MAX_FILE_BYTES;
/// The expanded size of all the YAML of one stack (see `yaml::parse`): a document using anchors and
/// aliases may expand, a stack may not pass this.
pub const MAX_YAML_COST: usize = 64 * MAX_FILE_BYTES;

/// Why a repository file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path} is {size} bytes, larger than the {MAX_FILE_BYTES} allowed")]
    TooLarge { path: PathBuf, size: usize },
    #[error("{path}: this stack reads more than {MAX_FILES} files (include, extends, env_file)")]
    TooManyFiles { path: PathBuf },
    #[error("{path}: this stack reads more than {MAX_BYTES} bytes (include, extends, env_file)")]
    TooManyBytes { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What is left of one stack's budget.
#[derive(Debug, Clone)]
pub struct Budget {
    files: usize,
    bytes: usize,
    /// Left for `yaml::parse`.
    pub yaml: usize,
    /// Left for what variables add (`interpolate`).
    pub expansion: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            files: MAX_FILES,
            bytes: MAX_BYTES,
            yaml: MAX_YAML_COST,
            expansion: super::interpolate::MAX_EXPANDED_BYTES,
        }
    }
}

impl Budget {
    /// Read a repository file, refusing one over [`MAX_FILE_BYTES`] and charging the stack's files
    /// and bytes.
    pub fn read(&mut self, tree: &dyn Tree, path: &Path) -> Result<Option<Vec<u8>>, ReadError> {
        self.files = self
            .files
            .checked_sub(1)
            .ok_or_else(|| ReadError::TooManyFiles {
                path: path.to_path_buf(),
            })?;
        let bytes = match tree.read(path) {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(None),
            Err(source) => {
                return Err(ReadError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        if bytes.len() > MAX_FILE_BYTES {
            return Err(ReadError::TooLarge {
                path: path.to_path_buf(),
                size: bytes.len(),
            });
        }
        self.bytes =
            self.bytes
                .checked_sub(bytes.len())
                .ok_or_else(|| ReadError::TooManyBytes {
                    path: path.to_path_buf(),
                })?;
        Ok(Some(bytes))
    }
}
