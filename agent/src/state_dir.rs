//! The agent's `state_dir`: made 0700 before anything is written into it (only its owner, root, may
//! enter: the checkout bind mounts point into, the clone's history and config, the store), and tightened to
//! 0700 when an existing one is looser. Containers still see what they bind-mount: the engine mounts it.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The mode of `state_dir`.
pub const MODE: u32 = 0o700;

#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("state_dir {}: {what}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state_dir {} is not a directory", path.display())]
    NotADirectory { path: PathBuf },
}

/// Create `path` (and missing parents) with mode 0700, or tighten an existing directory to 0700.
/// Returns the mode it had when it was tightened.
pub fn prepare(path: &Path) -> Result<Option<u32>, StateDirError> {
    let io = |what: &'static str| {
        let path = path.to_path_buf();
        move |source| StateDirError::Io { what, path, source }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(MODE)
        .create(path)
        .map_err(io("creating it"))?;
    let md = std::fs::metadata(path).map_err(io("inspecting it"))?;
    if !md.is_dir() {
        return Err(StateDirError::NotADirectory {
            path: path.to_path_buf(),
        });
    }
    let mode = md.permissions().mode() & 0o7777;
    if mode == MODE {
        return Ok(None);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(MODE))
        .map_err(io("setting mode 0700"))?;
    Ok(Some(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn made_0700_and_tightened_when_looser() {
        let t = tempfile::tempdir().unwrap();
        let state = t.path().join("a/state");
        assert_eq!(prepare(&state).unwrap(), None);
        assert_eq!(mode(&state), 0o700);
        assert_eq!(prepare(&state).unwrap(), None);
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(prepare(&state).unwrap(), Some(0o755));
        assert_eq!(mode(&state), 0o700);
        let file = t.path().join("f");
        std::fs::write(&file, "x").unwrap();
        assert!(prepare(&file).is_err());
    }
}
