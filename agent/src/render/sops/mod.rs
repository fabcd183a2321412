//! SOPS-encrypted files in a repository: [`SopsTree`] wraps the [`Tree`] a render reads, so every file
//! it reads (compose files, `.env`, `env_file`s, `secrets:`/`configs:` files, bind-mounted files) is
//! decrypted as it is read when it carries SOPS metadata, and each decrypted value joins the render's
//! [`Sensitive`] set. A bind-mounted encrypted file is mounted from a runtime directory instead of the
//! checkout ([`runtime`] writes it there at apply time). Decryption: [`file`]; the box's key: [`keys`].
//!
//! Layer: input (see the table in `render`).

pub mod file;
pub mod keys;
pub mod runtime;

use super::budget::MAX_FILE_BYTES;
use super::problem::Problem;
use super::tree::{Entry, EntryKind, Tree};
use crate::sensitive::Sensitive;
use file::{Decrypted, SopsError};
use keys::{Identities, KeyError};
use sha2::{Digest, Sha256};
use std::cell::{OnceCell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

/// The default `secrets.age_key_file`.
pub const DEFAULT_AGE_KEY_FILE: &str = "/etc/berth/age.key";

/// How a render treats SOPS files.
#[derive(Debug, Clone, Default)]
pub struct SopsOptions {
    /// The box's age identities. A file that does not exist means "no key".
    pub age_key_file: Option<PathBuf>,
    /// With no key: check an encrypted file's structure and render it with placeholder values (and a
    /// warning) instead of failing. For `berth render` in a CI that has no box keys.
    pub placeholders: bool,
    /// Directory on the host under which decrypted bind-mounted files are placed (`<dir>/sops/…`).
    pub runtime_dir: PathBuf,
}

/// Why an encrypted file could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FileError {
    #[error(transparent)]
    Sops(#[from] SopsError),
    #[error(transparent)]
    Key(Arc<KeyError>),
}

/// A [`Tree`] that decrypts SOPS files as they are read.
pub struct SopsTree<'a> {
    inner: &'a dyn Tree,
    opts: &'a SopsOptions,
    keys: OnceCell<Result<Option<Identities>, Arc<KeyError>>>,
    files: RefCell<BTreeMap<PathBuf, Result<Rc<Decrypted>, FileError>>>,
    sensitive: RefCell<Sensitive>,
    placeholders: RefCell<BTreeSet<PathBuf>>,
}

impl<'a> SopsTree<'a> {
    pub fn new(inner: &'a dyn Tree, opts: &'a SopsOptions) -> Self {
        SopsTree {
            inner,
            opts,
            keys: OnceCell::new(),
            files: RefCell::new(BTreeMap::new()),
            sensitive: RefCell::new(Sensitive::default()),
            placeholders: RefCell::new(BTreeSet::new()),
        }
    }

    /// Every secret value the files read so far held in clear.
    pub fn sensitive(&self) -> Sensitive {
        self.sensitive.borrow().clone()
    }

    /// Warnings: each encrypted file rendered with placeholders because there was no key.
    pub fn warnings(&self) -> Vec<Problem> {
        self.placeholders
            .borrow()
            .iter()
            .map(|p| {
                Problem::at(
                    p,
                    format!(
                        "SOPS-encrypted and not decrypted (no age key): rendered with placeholder values \
                         ({:?} for strings)",
                        file::PLACEHOLDER
                    ),
                )
            })
            .collect()
    }

    fn keys(&self) -> Result<Option<&Identities>, FileError> {
        let loaded = self.keys.get_or_init(|| match &self.opts.age_key_file {
            Some(path) => Identities::load(path).map_err(Arc::new),
            None => Ok(None),
        });
        match loaded {
            Ok(k) => Ok(k.as_ref()),
            Err(e) => Err(FileError::Key(e.clone())),
        }
    }

    /// The decrypted form of `path` when `bytes` (its content) are a SOPS file; `None` otherwise.
    fn open(&self, path: &Path, bytes: &[u8]) -> Result<Option<Rc<Decrypted>>, FileError> {
        if bytes.len() > MAX_FILE_BYTES {
            return Ok(None);
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let Some(format) = file::detect(bytes, file::binary_by_name(&name)) else {
            return Ok(None);
        };
        if let Some(done) = self.files.borrow().get(path) {
            return done.clone().map(Some);
        }
        let result = self.decrypt(path, bytes, format);
        self.files
            .borrow_mut()
            .insert(path.to_path_buf(), result.clone());
        result.map(Some)
    }

    fn decrypt(
        &self,
        path: &Path,
        bytes: &[u8],
        format: file::Format,
    ) -> Result<Rc<Decrypted>, FileError> {
        let keys = self.keys()?;
        if keys.is_none() && !self.opts.placeholders {
            return Err(SopsError::NoKey.into());
        }
        let d = file::decrypt(bytes, format, keys)?;
        let mut s = self.sensitive.borrow_mut();
        for v in &d.secrets {
            s.add(v);
        }
        if d.placeholders {
            self.placeholders.borrow_mut().insert(path.to_path_buf());
        }
        Ok(Rc::new(d))
    }

    /// Where a decrypted file at `path` (repository-relative) is mounted from on the host.
    pub fn runtime_path(&self, path: &Path, clear: &[u8]) -> PathBuf {
        let digest = crate::model::hex(&Sha256::digest(clear));
        self.opts
            .runtime_dir
            .join(runtime::SUBDIR)
            .join(&digest[..16])
            .join(path)
    }
}

impl Tree for SopsTree<'_> {
    fn read(&self, path: &Path) -> std::io::Result<Option<Vec<u8>>> {
        let Some(bytes) = self.inner.read(path)? else {
            return Ok(None);
        };
        match self.open(path, &bytes) {
            Ok(None) => Ok(Some(bytes)),
            Ok(Some(d)) => Ok(Some(d.bytes.clone())),
            Err(e) => Err(std::io::Error::other(e)),
        }
    }

    fn kind(&self, path: &Path) -> std::io::Result<Option<EntryKind>> {
        self.inner.kind(path)
    }

    fn list(&self, path: &Path) -> std::io::Result<Vec<Entry>> {
        self.inner.list(path)
    }

    fn host_source(&self, path: &Path) -> std::io::Result<Option<PathBuf>> {
        // Only a regular file can be a SOPS file (a Git tree refuses to read a directory).
        if !matches!(self.inner.kind(path)?, Some(EntryKind::File)) {
            return Ok(None);
        }
        let Some(bytes) = self.inner.read(path)? else {
            return Ok(None);
        };
        match self.open(path, &bytes) {
            Ok(None) => Ok(None),
            Ok(Some(d)) => Ok(Some(self.runtime_path(path, &d.bytes))),
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

#[cfg(test)]
mod tests;
