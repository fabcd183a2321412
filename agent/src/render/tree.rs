//! Reading repository files safely: the [`Tree`] trait render reads through, a [`Tree`] over a plain
//! directory, and path resolution that follows repository symlinks but never lets a path or a symlink
//! lead outside the repository.
//!
//! Layer: foundations (see the table in `render`).

use std::path::{Component, Path, PathBuf};

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

/// A plain directory as a [`Tree`] (for `berth render DIR` / `berth apply DIR`). `.git` is not listed.
pub struct DirTree {
    root: PathBuf,
}

impl DirTree {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirTree { root: root.into() }
    }

    fn full(&self, path: &Path) -> PathBuf {
        if path.as_os_str().is_empty() || path == Path::new(".") {
            self.root.clone()
        } else {
            self.root.join(path)
        }
    }
}

impl Tree for DirTree {
    fn read(&self, path: &Path) -> std::io::Result<Option<Vec<u8>>> {
        let full = self.full(path);
        match std::fs::symlink_metadata(&full) {
            Ok(m) if m.is_file() => std::fs::read(&full).map(Some),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn kind(&self, path: &Path) -> std::io::Result<Option<EntryKind>> {
        let full = self.full(path);
        match std::fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() => {
                Ok(Some(EntryKind::Symlink(std::fs::read_link(&full)?)))
            }
            Ok(m) if m.is_dir() => Ok(Some(EntryKind::Dir)),
            Ok(_) => Ok(Some(EntryKind::File)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn list(&self, path: &Path) -> std::io::Result<Vec<Entry>> {
        let full = self.full(path);
        let rd = match std::fs::read_dir(&full) {
            Ok(rd) => rd,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.kind() == std::io::ErrorKind::NotADirectory =>
            {
                return Ok(Vec::new())
            }
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name == ".git" {
                continue;
            }
            let ft = entry.file_type()?;
            let kind = if ft.is_symlink() {
                EntryKind::Symlink(std::fs::read_link(entry.path())?)
            } else if ft.is_dir() {
                EntryKind::Dir
            } else {
                EntryKind::File
            };
            out.push(Entry { name, kind });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// `base` joined with the relative `rel`, normalised; `None` when it climbs above the repository root.
/// The root itself is `.`.
pub fn join_rel(base: &Path, rel: &Path) -> Option<PathBuf> {
    let mut parts: Vec<std::ffi::OsString> = Vec::new();
    for c in base.components().chain(rel.components()) {
        match c {
            Component::Normal(n) => parts.push(n.to_os_string()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(if parts.is_empty() {
        PathBuf::from(".")
    } else {
        parts.iter().collect()
    })
}

/// The most symlinks one path may pass through.
const MAX_HOPS: usize = 40;

/// Why a repository path could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{path}: too many levels of symlinks (more than {MAX_HOPS})")]
    TooManyLinks { path: PathBuf },
    #[error("symlink {link} points outside the repository (to {target})")]
    Outside { link: PathBuf, target: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Resolve every symlink along a repository path. A symlink with an absolute target, or one whose target
/// climbs out of the repository, is an error (naming the symlink); so is a chain of more than 40 links.
/// A path that does not exist resolves to itself.
pub fn resolve(tree: &dyn Tree, path: &Path) -> Result<PathBuf, ResolveError> {
    let mut pending: Vec<std::ffi::OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        })
        .collect();
    pending.reverse();
    let mut done = PathBuf::new();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        let candidate = if done.as_os_str().is_empty() {
            PathBuf::from(&part)
        } else {
            done.join(&part)
        };
        match tree.kind(&candidate) {
            Ok(Some(EntryKind::Symlink(target))) => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(ResolveError::TooManyLinks {
                        path: path.to_path_buf(),
                    });
                }
                let joined = match join_rel(&done, &target) {
                    Some(j) if !target.is_absolute() => j,
                    _ => {
                        return Err(ResolveError::Outside {
                            link: candidate,
                            target,
                        })
                    }
                };
                done = PathBuf::new();
                let mut rest: Vec<std::ffi::OsString> = joined
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(n) => Some(n.to_os_string()),
                        _ => None,
                    })
                    .collect();
                rest.reverse();
                pending.extend(rest);
            }
            Ok(Some(_)) => done = candidate,
            Ok(None) => {
                // Missing: nothing below it can be a symlink.
                done = candidate;
                while let Some(p) = pending.pop() {
                    done.push(p);
                }
            }
            Err(source) => {
                return Err(ResolveError::Io {
                    path: candidate,
                    source,
                })
            }
        }
    }
    Ok(if done.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        done
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_rel_refuses_climbing_out() {
        assert_eq!(
            join_rel(Path::new("a/b"), Path::new("../c")).unwrap(),
            PathBuf::from("a/c")
        );
        assert_eq!(
            join_rel(Path::new("."), Path::new("./x/./y")).unwrap(),
            PathBuf::from("x/y")
        );
        assert_eq!(
            join_rel(Path::new("a"), Path::new("..")).unwrap(),
            PathBuf::from(".")
        );
        assert!(join_rel(Path::new("a"), Path::new("../..")).is_none());
        assert!(join_rel(Path::new("a"), Path::new("/etc")).is_none());
    }

    #[test]
    fn resolve_follows_inner_symlinks_and_refuses_outer_ones() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("shared/conf")).unwrap();
        std::fs::write(root.join("shared/conf/app.conf"), "x").unwrap();
        std::fs::create_dir_all(root.join("hosts/a")).unwrap();
        std::os::unix::fs::symlink("../../shared/conf", root.join("hosts/a/conf")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("hosts/a/etc")).unwrap();
        std::os::unix::fs::symlink("../../../outside", root.join("hosts/a/up")).unwrap();
        std::os::unix::fs::symlink("loop2", root.join("hosts/a/loop1")).unwrap();
        std::os::unix::fs::symlink("loop1", root.join("hosts/a/loop2")).unwrap();
        let t = DirTree::new(root);
        assert_eq!(
            resolve(&t, Path::new("hosts/a/conf/app.conf")).unwrap(),
            PathBuf::from("shared/conf/app.conf")
        );
        assert_eq!(
            resolve(&t, Path::new("hosts/a/missing/x")).unwrap(),
            PathBuf::from("hosts/a/missing/x")
        );
        let e = resolve(&t, Path::new("hosts/a/etc/passwd"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("hosts/a/etc") && e.contains("outside"), "{e}");
        assert!(matches!(
            resolve(&t, Path::new("hosts/a/up")),
            Err(ResolveError::Outside { .. })
        ));
        assert!(matches!(
            resolve(&t, Path::new("hosts/a/loop1")),
            Err(ResolveError::TooManyLinks { .. })
        ));
        let names: Vec<String> = t
            .list(Path::new("hosts/a"))
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, vec!["conf", "etc", "loop1", "loop2", "up"]);
    }
}
