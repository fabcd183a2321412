//! The history store (sled): one record per applied revision, the pointers `current`, `last_good` and
//! `pinned`, the unfinished attempt, the quarantined commit, the suspend flag and pull times. A record and
//! every pointer, pin, attempt and quarantine change that goes with it are written in one transaction
//! ([`Store::record`]) and flushed before the cycle reports success.
//!
//! Retention: [`Store::prune`] keeps the newest `history.keep` revisions plus every revision a pointer or a
//! default `berth rollback` names, and deletes the rest in one transaction.
//!
//! The store is valuable but recoverable: a store that cannot be opened is moved aside with a loud error
//! and a new one is started; it is never silently wiped.
//!
//! Secret values never reach the disk in clear: every string of a record's desired state that holds one
//! is sealed with the per-box key ([`crate::sealing`]) and opened again when read, so rollback works
//! offline with the values; errors, facts and quarantine reasons show keyed digests instead.
//!
//! This file opens the store and writes records and pointers; the record types are in `records`, history
//! reads and retention in `history`, the other meta values in `meta`, the alerts outbox in `outbox`, and
//! the sealing of secret values in `sealed`.

use sled::Transactional;
use std::path::{Path, PathBuf};

mod history;
mod meta;
mod outbox;
mod records;
mod sealed;

pub use records::{Attempt, Outcome, Pointers, Quarantine, Record, Revision};

/// sled's page cache: the box is small.
const CACHE_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("store {}: {message}", path.display())]
pub struct StoreError {
    pub path: PathBuf,
    pub message: String,
}

#[derive(Clone)]
pub struct Store {
    path: PathBuf,
    /// Seals and opens the secret values of desired states ([`Store::with_key`]); without it, a
    /// record with secret values is refused rather than written in clear.
    key: Option<std::sync::Arc<crate::sealing::BoxKey>>,
    db: sled::Db,
    revisions: sled::Tree,
    meta: sled::Tree,
    /// The alerts outbox: [`OUTBOX_STATE`] and one entry per event (key: `q` + big-endian seq).
    outbox: sled::Tree,
}

const CURRENT: &[u8] = b"current";
const LAST_GOOD: &[u8] = b"last_good";
const PINNED: &[u8] = b"pinned";
const PULLS: &[u8] = b"pulls";
/// Ids of containers seen exiting 0 by themselves ([`crate::reconcile::DriftLink`]).
const FINISHED: &[u8] = b"finished";
const ATTEMPT: &[u8] = b"attempt";
const QUARANTINE: &[u8] = b"quarantine";
const SUSPENDED: &[u8] = b"suspended";
/// The alerts worker's state (incidents, drop counts) in the outbox tree.
const OUTBOX_STATE: &[u8] = b"state";
const OUTBOX_ENTRY: u8 = b'q';

impl Store {
    /// Open `<dir>` (created if missing). When the existing store cannot be opened it is renamed to
    /// `<dir>.broken-<unix time>` with an error log, and a fresh store is opened in its place.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        match Self::open_once(dir) {
            Ok(s) => Ok(s),
            Err((first, cause)) if dir.exists() && is_unreadable(&cause) => {
                let aside =
                    PathBuf::from(format!("{}.broken-{}", dir.display(), crate::now_unix()));
                tracing::error!(
                    store = %dir.display(),
                    moved_to = %aside.display(),
                    error = %first.message,
                    "history store is unreadable; moving it aside and starting a new one (the old one is kept for recovery)"
                );
                std::fs::rename(dir, &aside).map_err(|e| StoreError {
                    path: dir.to_path_buf(),
                    message: format!(
                        "unreadable ({}) and cannot be moved aside: {e}",
                        first.message
                    ),
                })?;
                Self::open_once(dir).map_err(|(e, _)| e)
            }
            Err((e, _)) => Err(e),
        }
    }

    fn open_once(dir: &Path) -> Result<Store, (StoreError, sled::Error)> {
        let err = |e: sled::Error| {
            let store_error = StoreError {
                path: dir.to_path_buf(),
                message: e.to_string(),
            };
            (store_error, e)
        };
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(err)?;
        let revisions = db.open_tree("revisions").map_err(err)?;
        let meta = db.open_tree("meta").map_err(err)?;
        let outbox = db.open_tree("outbox").map_err(err)?;
        Ok(Store {
            path: dir.to_path_buf(),
            key: None,
            db,
            revisions,
            meta,
            outbox,
        })
    }

    /// Seal and open secret values with `key` (the per-box key).
    pub fn with_key(mut self, key: std::sync::Arc<crate::sealing::BoxKey>) -> Store {
        self.key = Some(key);
        self
    }

    /// The per-box key this store seals with.
    pub fn box_key(&self) -> Option<&std::sync::Arc<crate::sealing::BoxKey>> {
        self.key.as_ref()
    }

    fn err(&self, message: impl std::fmt::Display) -> StoreError {
        StoreError {
            path: self.path.clone(),
            message: message.to_string(),
        }
    }

    /// The sequence number the next new revision gets.
    pub fn next_seq(&self) -> Result<u64, StoreError> {
        let last = self.revisions.last().map_err(|e| self.err(e))?;
        Ok(match last {
            Some((k, _)) => key_seq(&k) + 1,
            None => 1,
        })
    }

    /// Write `rev` (new or updated) and move the pointers, atomically, then flush to disk.
    pub fn put(&self, rev: &Revision, set_current: bool, set_good: bool) -> Result<(), StoreError> {
        self.record(&Record {
            revision: Some(rev.clone()),
            current: set_current.then_some(rev.seq),
            last_good: set_good.then_some(rev.seq),
            ..Default::default()
        })
    }

    /// Write everything in `r` in one transaction, then flush to disk.
    pub fn record(&self, r: &Record) -> Result<(), StoreError> {
        let json = |v: &dyn erased::Json| v.to_json().map_err(|e| self.err(e));
        let revision = match &r.revision {
            Some(rev) => Some((
                rev.seq.to_be_bytes(),
                serde_json::to_vec(&self.encode_revision(rev)?).map_err(|e| self.err(e))?,
            )),
            None => None,
        };
        let attempt = match &r.attempt {
            Some(Some(a)) => Some(Some(self.encode_attempt(a)?)),
            Some(None) => Some(None),
            None => None,
        };
        let quarantine = match &r.quarantine {
            Some(Some(q)) => {
                let mut q = q.clone();
                let desired = (r.revision.as_ref())
                    .or(r
                        .attempt
                        .as_ref()
                        .and_then(|a| a.as_ref().map(|a| &a.revision)))
                    .and_then(|rev| rev.desired.as_ref());
                if let Some(d) = desired {
                    q.reason = self.redactor(&d.sensitive).redact(&q.reason).into_owned();
                }
                Some(Some(json(&q)?))
            }
            Some(None) => Some(None),
            None => None,
        };
        (&self.revisions, &self.meta)
            .transaction(|(revs, meta)| {
                if let Some((key, value)) = &revision {
                    revs.insert(key, value.as_slice())?;
                }
                if let Some(seq) = r.current {
                    meta.insert(CURRENT, &seq.to_be_bytes())?;
                }
                if let Some(seq) = r.last_good {
                    meta.insert(LAST_GOOD, &seq.to_be_bytes())?;
                }
                match r.pinned {
                    Some(Some(seq)) => {
                        meta.insert(PINNED, &seq.to_be_bytes())?;
                    }
                    Some(None) => {
                        meta.remove(PINNED)?;
                    }
                    None => {}
                }
                for (key, change) in [(ATTEMPT, &attempt), (QUARANTINE, &quarantine)] {
                    match change {
                        Some(Some(v)) => {
                            meta.insert(key, v.as_slice())?;
                        }
                        Some(None) => {
                            meta.remove(key)?;
                        }
                        None => {}
                    }
                }
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| self.err(format!("{e:?}")))?;
        self.flush()
    }

    pub fn set_pinned(&self, seq: Option<u64>) -> Result<(), StoreError> {
        self.record(&Record {
            pinned: Some(seq),
            ..Default::default()
        })
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(|e| self.err(e))
    }

    pub fn pointers(&self) -> Result<Pointers, StoreError> {
        let get = |k: &[u8]| -> Result<Option<u64>, StoreError> {
            Ok(self
                .meta
                .get(k)
                .map_err(|e| self.err(e))?
                .map(|v| key_seq(&v)))
        };
        Ok(Pointers {
            current: get(CURRENT)?,
            last_good: get(LAST_GOOD)?,
            pinned: get(PINNED)?,
        })
    }
}

/// Damage that moving the store aside can cure. A store locked by another running agent, a permission
/// problem or a full disk is reported as it is: moving a live or healthy store aside would lose history.
fn is_unreadable(e: &sled::Error) -> bool {
    match e {
        sled::Error::Corruption { .. }
        | sled::Error::Unsupported(_)
        | sled::Error::ReportableBug(_) => true,
        sled::Error::Io(io) => {
            matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ) && !io.to_string().contains("could not acquire lock")
        }
        _ => false,
    }
}

mod erased {
    /// Serialise any record type to JSON through one closure.
    pub trait Json {
        fn to_json(&self) -> serde_json::Result<Vec<u8>>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> serde_json::Result<Vec<u8>> {
            serde_json::to_vec(self)
        }
    }
}

fn key_seq(k: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = k.len().min(8);
    b[8 - n..].copy_from_slice(&k[k.len() - n..]);
    u64::from_be_bytes(b)
}

#[cfg(test)]
mod tests;
