//! [`GitTree`]: a commit's tree read straight from the object database, for `render/`.

use crate::render::{Entry, EntryKind, Tree};
use git2::{ObjectType, Oid, Repository};
use std::io;
use std::path::{Component, Path, PathBuf};

const MODE_TREE: i32 = 0o040000;
const MODE_LINK: i32 = 0o120000;
const MODE_SUBMODULE: i32 = 0o160000;

/// The tree of one commit. Owns its own handle on the repository, so it is `Send + 'static` and can be
/// made and used inside one blocking task.
///
/// - Paths are repository-relative and `/`-separated; `.` or empty is the root; `..` may not climb out of
///   the root (that is an `InvalidInput` error, as is an absolute path).
/// - Symlinks are never followed, neither as the final component nor in the middle of a path: `kind`
///   reports `Symlink(target)` with the target as stored, `read` of a symlink is an `InvalidInput` error
///   (so a symlinked file is never mistaken for a missing one), and `a/b` where `a` is a symlink does not
///   exist.
/// - `read` of a directory is an `InvalidInput` error; `list` of something that is not a directory is
///   empty.
/// - Submodules (gitlinks) are reported as empty directories: their content is not in this repository.
pub struct GitTree {
    repo: Repository,
    tree: Oid,
    commit: String,
}

impl GitTree {
    pub(crate) fn new(repo: Repository, tree: Oid, commit: String) -> Self {
        GitTree { repo, tree, commit }
    }

    /// The full id of the commit this tree belongs to.
    pub fn commit(&self) -> &str {
        &self.commit
    }

    /// `(filemode, object id)` of the entry at `path` (`None`: no such entry): everything `read`, `kind`
    /// and `list` answer for `path` is a function of it, so two trees with the same entry id at a path
    /// answer alike there (`berth fleet-diff` proves a box unchanged with it).
    pub fn entry_id(&self, path: &Path) -> io::Result<Option<(i32, Oid)>> {
        self.entry(path)
    }

    /// `(filemode, id)` of the entry at `path`; the root is `(MODE_TREE, tree id)`.
    fn entry(&self, path: &Path) -> io::Result<Option<(i32, Oid)>> {
        let rel = normalise(path)?;
        if rel.as_os_str().is_empty() {
            return Ok(Some((MODE_TREE, self.tree)));
        }
        let tree = self.repo.find_tree(self.tree).map_err(other)?;
        match tree.get_path(&rel) {
            Ok(e) => Ok(Some((e.filemode(), e.id()))),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(other(e)),
        }
    }

    fn blob(&self, id: Oid) -> io::Result<Vec<u8>> {
        Ok(self.repo.find_blob(id).map_err(other)?.content().to_vec())
    }

    fn kind_of(&self, mode: i32, id: Oid) -> io::Result<EntryKind> {
        Ok(match mode {
            MODE_TREE | MODE_SUBMODULE => EntryKind::Dir,
            MODE_LINK => EntryKind::Symlink(bytes_to_path(self.blob(id)?)),
            _ => EntryKind::File,
        })
    }
}

impl Tree for GitTree {
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        match self.entry(path)? {
            None => Ok(None),
            Some((MODE_TREE | MODE_SUBMODULE, _)) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is a directory, not a file", path.display()),
            )),
            Some((MODE_LINK, id)) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is a symlink (to {}), not a regular file",
                    path.display(),
                    bytes_to_path(self.blob(id)?).display()
                ),
            )),
            Some((_, id)) => self.blob(id).map(Some),
        }
    }

    fn kind(&self, path: &Path) -> io::Result<Option<EntryKind>> {
        match self.entry(path)? {
            None => Ok(None),
            Some((mode, id)) => self.kind_of(mode, id).map(Some),
        }
    }

    fn list(&self, path: &Path) -> io::Result<Vec<Entry>> {
        let Some((MODE_TREE, id)) = self.entry(path)? else {
            return Ok(Vec::new());
        };
        let tree = self.repo.find_tree(id).map_err(other)?;
        let mut out = Vec::with_capacity(tree.len());
        for e in tree.iter() {
            let kind = match e.kind() {
                Some(ObjectType::Tree) | Some(ObjectType::Commit) => EntryKind::Dir,
                _ => self.kind_of(e.filemode(), e.id())?,
            };
            out.push(Entry {
                name: String::from_utf8_lossy(e.name_bytes()).into_owned(),
                kind,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// Lexically normalise a repository-relative path: drop `.` and empty components, resolve `..`; refuse
/// absolute paths and paths that climb out of the root.
fn normalise(path: &Path) -> io::Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                if !out.pop() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{} climbs out of the repository", path.display()),
                    ));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is absolute; repository paths are relative",
                        path.display()
                    ),
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(unix)]
fn bytes_to_path(b: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(b))
}

#[cfg(not(unix))]
fn bytes_to_path(b: Vec<u8>) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&b).into_owned())
}

fn other(e: git2::Error) -> io::Error {
    io::Error::other(e.message().to_string())
}
