//! Decrypted files that containers bind-mount: written at apply time under `<runtime_dir>/sops/`
//! (a 0700 directory on tmpfs: `$RUNTIME_DIRECTORY` under systemd, else `/run/berth/<agent_id>`), one
//! directory per content digest, files 0444 (readable by the container's user; the 0700 parents keep
//! other host users out), decrypted again from the checked-out working tree; directories no container
//! of the applied state needs are removed. Nothing decrypted is ever written into the working tree.

use super::{SopsOptions, SopsTree};
use crate::model::{DesiredState, MountKind};
use crate::render::{DirTree, Tree};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The subdirectory of the runtime directory that holds decrypted files.
pub const SUBDIR: &str = "sops";

/// The runtime directory of `agent_id`: `$RUNTIME_DIRECTORY` (its first entry) or `/run/berth`, then
/// the agent id.
pub fn runtime_dir(agent_id: &str) -> PathBuf {
    let base = std::env::var_os("RUNTIME_DIRECTORY")
        .and_then(|v| {
            v.to_str()
                .and_then(|s| s.split(':').next())
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from("/run/berth"));
    base.join(agent_id)
}

/// Why decrypted files could not be placed. Names paths, never content.
#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    #[error("decrypted file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{rel}: not in the working tree, cannot decrypt it for {path}")]
    Missing { rel: PathBuf, path: PathBuf },
    #[error("{rel}: the working tree holds other content than was rendered (for {path})")]
    Changed { rel: PathBuf, path: PathBuf },
}

/// The decrypted files `desired` mounts: host path → (digest directory, repository-relative path).
fn wanted(desired: &DesiredState, root: &Path) -> BTreeMap<PathBuf, (String, PathBuf)> {
    let mut out = BTreeMap::new();
    for m in desired
        .containers()
        .flat_map(|c| c.mounts.iter())
        .filter(|m| m.kind == MountKind::Bind)
    {
        let host = PathBuf::from(&m.source);
        let Ok(rest) = host.strip_prefix(root) else {
            continue;
        };
        let mut parts = rest.components();
        let Some(digest) = parts.next() else { continue };
        let rel: PathBuf = parts.collect();
        if rel.as_os_str().is_empty() {
            continue;
        }
        let digest = digest.as_os_str().to_string_lossy().to_string();
        out.insert(host, (digest, rel));
    }
    out
}

/// Write every decrypted file `desired` bind-mounts, decrypting it from `checkout_dir`, and remove the
/// ones it no longer needs. Returns how many files it needs.
pub fn materialize(
    desired: &DesiredState,
    checkout_dir: &Path,
    opts: &SopsOptions,
) -> Result<usize, MaterializeError> {
    let root = opts.runtime_dir.join(SUBDIR);
    let wanted = wanted(desired, &root);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| MaterializeError::Io { path, source }
    };
    if wanted.is_empty() && !root.exists() {
        return Ok(0);
    }
    private_dir(&root).map_err(io(&root))?;
    let tree = DirTree::new(checkout_dir);
    let sops = SopsTree::new(&tree, opts);
    for (host, (digest, rel)) in &wanted {
        if host.is_file() {
            continue; // content-addressed: already there
        }
        let missing = || MaterializeError::Missing {
            rel: rel.clone(),
            path: host.clone(),
        };
        let clear = sops
            .read(rel)
            .map_err(|source| MaterializeError::Io {
                path: rel.clone(),
                source,
            })?
            .ok_or_else(missing)?;
        if !crate::model::hex(&Sha256::digest(&clear)).starts_with(digest.as_str()) {
            return Err(MaterializeError::Changed {
                rel: rel.clone(),
                path: host.clone(),
            });
        }
        write_private(host, &clear).map_err(io(host))?;
    }
    let keep: BTreeSet<&str> = wanted.values().map(|(d, _)| d.as_str()).collect();
    for entry in std::fs::read_dir(&root).map_err(io(&root))? {
        let entry = entry.map_err(io(&root))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if !keep.contains(name.as_str()) {
            let p = entry.path();
            std::fs::remove_dir_all(&p).map_err(io(&p))?;
        }
    }
    Ok(wanted.len())
}

/// Create `dir` (and its parents) as 0700, and make sure it is 0700.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Write `bytes` to `path` (0444) through a temporary file and a rename, parents 0700.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    private_dir(parent)?;
    let tmp = parent.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
