//! Test support: a repository held in memory as a [`Tree`], built from text or copied from a real
//! directory (the conformance fixtures), so render tests need no temporary directories.

use super::{Entry, EntryKind, Tree};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone, Default)]
pub struct MemTree {
    files: BTreeMap<PathBuf, Vec<u8>>,
}

/// `./a/b` and `a/b` alike; `.` and the empty path are the root (no components).
fn norm(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

impl MemTree {
    pub fn new() -> MemTree {
        MemTree::default()
    }

    /// Add (or replace) a file.
    pub fn with(mut self, path: &str, text: impl Into<Vec<u8>>) -> MemTree {
        self.set(path, text);
        self
    }

    pub fn set(&mut self, path: &str, text: impl Into<Vec<u8>>) {
        self.files.insert(norm(Path::new(path)), text.into());
    }

    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.files.get(&norm(Path::new(path))).map(Vec::as_slice)
    }

    /// Every file, by path.
    pub fn files(&self) -> impl Iterator<Item = (&PathBuf, &Vec<u8>)> {
        self.files.iter()
    }

    /// Every regular file under `dir`, with paths relative to it.
    pub fn from_dir(dir: &Path) -> std::io::Result<MemTree> {
        let mut tree = MemTree::new();
        let mut pending = vec![PathBuf::new()];
        while let Some(rel) = pending.pop() {
            for entry in std::fs::read_dir(dir.join(&rel))? {
                let entry = entry?;
                let child = rel.join(entry.file_name());
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    pending.push(child);
                } else if kind.is_file() {
                    tree.files.insert(child, std::fs::read(entry.path())?);
                }
            }
        }
        Ok(tree)
    }
}

impl Tree for MemTree {
    fn read(&self, path: &Path) -> std::io::Result<Option<Vec<u8>>> {
        Ok(self.files.get(&norm(path)).cloned())
    }

    fn kind(&self, path: &Path) -> std::io::Result<Option<EntryKind>> {
        let p = norm(path);
        if self.files.contains_key(&p) {
            return Ok(Some(EntryKind::File));
        }
        let is_dir = p.as_os_str().is_empty() || self.files.keys().any(|f| f.starts_with(&p));
        Ok(is_dir.then_some(EntryKind::Dir))
    }

    fn list(&self, path: &Path) -> std::io::Result<Vec<Entry>> {
        let p = norm(path);
        let mut out: BTreeMap<String, EntryKind> = BTreeMap::new();
        for f in self.files.keys() {
            let Ok(rest) = f.strip_prefix(&p) else {
                continue;
            };
            let mut parts = rest.components();
            let Some(first) = parts.next() else { continue };
            let name = first.as_os_str().to_string_lossy().to_string();
            let kind = if parts.next().is_some() {
                EntryKind::Dir
            } else {
                EntryKind::File
            };
            out.insert(name, kind);
        }
        Ok(out
            .into_iter()
            .map(|(name, kind)| Entry { name, kind })
            .collect())
    }
}
