//! Checking a commit out into the working tree like `git checkout --force --detach`, except that
//! untracked files in the way are never overwritten or deleted (the checkout is refused, naming them).

use super::{GitSource, SourceError};
use git2::build::CheckoutBuilder;
use git2::{ObjectType, Oid, TreeWalkMode, TreeWalkResult};
use std::collections::HashSet;
use std::path::Path;

const MODE_TREE: i32 = 0o040000;
const MODE_LINK: i32 = 0o120000;
const MODE_SUBMODULE: i32 = 0o160000;

impl GitSource {
    /// Make the working tree hold commit `id`, the way `git checkout --force --detach` does, except that
    /// untracked files are never overwritten or deleted (see the module documentation).
    pub fn checkout(&self, id: &str) -> Result<(), SourceError> {
        let oid = self.require_commit(id)?;
        let commit = self
            .repo
            .find_commit(oid)
            .map_err(|e| self.local_err("cannot read commit", &e))?;
        let tree = commit
            .tree()
            .map_err(|e| self.local_err("cannot read the tree of commit", &e))?;
        let blocked = self
            .untracked_in_the_way(&tree)
            .map_err(|e| self.local_err("cannot compare the working tree", &e))?;
        if !blocked.is_empty() {
            let mut list = blocked
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if blocked.len() > 10 {
                list.push_str(&format!(" and {} more", blocked.len() - 10));
            }
            return Err(SourceError::Local {
                path: self.repo_dir.clone(),
                message: format!(
                    "checkout of {} would overwrite untracked files: {list}; berth never deletes files \
                     it does not track: move them away (or commit them)",
                    short(&oid)
                ),
            });
        }
        let mut co = CheckoutBuilder::new();
        co.force();
        self.repo
            .checkout_tree(tree.as_object(), Some(&mut co))
            .map_err(|e| self.local_err(&format!("checkout of {}", short(&oid)), &e))?;
        self.repo
            .set_head_detached(oid)
            .map_err(|e| self.local_err("cannot move HEAD", &e))?;
        Ok(())
    }

    /// Repository-relative paths of untracked (or ignored) files that checking `tree` out would overwrite
    /// or delete.
    fn untracked_in_the_way(&self, tree: &git2::Tree<'_>) -> Result<Vec<String>, git2::Error> {
        let mut index = self.repo.index()?;
        index.read(false)?;
        let tracked: HashSet<Vec<u8>> = index.iter().map(|e| e.path).collect();
        let mut blocked = Vec::new();
        tree.walk(TreeWalkMode::PreOrder, |root, entry| {
            let rel = format!("{root}{}", String::from_utf8_lossy(entry.name_bytes()));
            let full = self.repo_dir.join(&rel);
            let mode = entry.filemode();
            let Ok(md) = std::fs::symlink_metadata(&full) else {
                return TreeWalkResult::Skip; // nothing on disk there (or below)
            };
            if mode == MODE_SUBMODULE {
                return TreeWalkResult::Skip;
            }
            if mode == MODE_TREE {
                if md.is_dir() {
                    return TreeWalkResult::Ok;
                }
                if !tracked.contains(rel.as_bytes()) {
                    blocked.push(rel);
                }
                return TreeWalkResult::Skip;
            }
            if tracked.contains(rel.as_bytes()) {
                return TreeWalkResult::Ok;
            }
            let in_the_way = if md.is_dir() {
                dir_has_untracked(&full, &rel, &tracked)
            } else {
                !same_content(&full, &md, mode, entry.id())
            };
            if in_the_way {
                blocked.push(rel);
            }
            TreeWalkResult::Ok
        })?;
        Ok(blocked)
    }
}

fn short(oid: &Oid) -> String {
    oid.to_string()[..12].to_string()
}

/// Does the directory `full` (repository path `rel`) hold a file (or symlink) the index does not track?
fn dir_has_untracked(full: &Path, rel: &str, tracked: &HashSet<Vec<u8>>) -> bool {
    let Ok(entries) = std::fs::read_dir(full) else {
        return true; // unreadable: assume the worst
    };
    for entry in entries {
        let Ok(entry) = entry else { return true };
        let child = format!("{rel}/{}", entry.file_name().to_string_lossy());
        match std::fs::symlink_metadata(entry.path()) {
            Ok(md) if md.is_dir() => {
                if dir_has_untracked(&entry.path(), &child, tracked) {
                    return true;
                }
            }
            Ok(_) => {
                if !tracked.contains(child.as_bytes()) {
                    return true;
                }
            }
            Err(_) => return true,
        }
    }
    false
}

/// Is the untracked file at `full` exactly what the commit puts there?
fn same_content(full: &Path, md: &std::fs::Metadata, mode: i32, id: Oid) -> bool {
    if mode == MODE_LINK {
        if !md.file_type().is_symlink() {
            return false;
        }
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            std::fs::read_link(full)
                .ok()
                .and_then(|t| Oid::hash_object(ObjectType::Blob, t.as_os_str().as_bytes()).ok())
                == Some(id)
        }
        #[cfg(not(unix))]
        {
            false
        }
    } else {
        md.is_file() && Oid::hash_file(ObjectType::Blob, full).ok() == Some(id)
    }
}
