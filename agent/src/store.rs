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

use crate::model::DesiredState;
use serde::{Deserialize, Serialize};
use sled::Transactional;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

mod sealed;
use sealed::Lenient;

/// sled's page cache: the box is small.
const CACHE_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Applied and passed its health gate.
    Applied,
    Failed,
    /// Failed its health gate; the last good revision was converged again.
    RolledBack,
    /// A newer commit arrived while its health gate ran.
    Superseded,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Applied => "applied",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolled_back",
            Outcome::Superseded => "superseded",
        })
    }
}

/// One revision the agent rendered and tried to apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    pub seq: u64,
    /// Full 40-hex commit id (or a label such as `dir:<path>` for non-Git sources).
    pub commit: String,
    pub author: String,
    pub summary: String,
    /// Commit time, seconds since the epoch.
    pub commit_time: i64,
    /// When the apply finished, seconds since the epoch.
    pub applied_at: i64,
    pub outcome: Outcome,
    pub error: Option<String>,
    pub duration_ms: u64,
    /// This record re-applied an earlier revision (`berth rollback`).
    pub rollback: bool,
    /// The rendered desired state; `None` when the revision did not render.
    pub desired: Option<DesiredState>,
    /// The local image id (`sha256:…`) each image reference named when this revision was applied, so a
    /// tag that moved later can be told apart in history.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub images: std::collections::BTreeMap<String, String>,
    /// The class of `error` (transient failures are retried and may still become good).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<crate::error::ErrorClass>,
    /// The agent's `facts:` this revision was rendered with.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub facts: std::collections::BTreeMap<String, String>,
    /// Who signed the commit (or its tag), when `source.verify` checked it before it was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<crate::source::verify::Signer>,
    /// Render warnings (keys accepted and ignored, as Compose ignores them), located like problems; field
    /// names and locations only, never values. Records from before this field load with none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A new commit the agent started to apply and has not finished: written before the first engine write,
/// so a crash in between is resumed (even offline) and a commit that keeps killing the agent is found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// The record to be (no sequence number yet), with its desired state.
    pub revision: Revision,
    /// How many agent starts found this attempt unfinished.
    pub deaths: u32,
}

/// A commit that failed: not applied again until the remote moves on (or `berth reconcile --retry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    pub commit: String,
    pub reason: String,
    /// Seconds since the epoch.
    pub since: i64,
}

/// Changes written together in one transaction (then flushed): a revision record and every pointer,
/// pin, attempt and quarantine change that goes with it. `None` fields are left as they are.
#[derive(Debug, Default)]
pub struct Record {
    /// A record to insert or update (its `seq` must be set).
    pub revision: Option<Revision>,
    /// Point `current` at this seq.
    pub current: Option<u64>,
    /// Point `last_good` at this seq.
    pub last_good: Option<u64>,
    /// `Some(Some(seq))` pins, `Some(None)` unpins.
    pub pinned: Option<Option<u64>>,
    /// `Some(None)` clears the attempt.
    pub attempt: Option<Option<Attempt>>,
    /// `Some(None)` lifts the quarantine.
    pub quarantine: Option<Option<Quarantine>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pointers {
    /// The revision the engine was last converged to.
    pub current: Option<u64>,
    /// The newest revision that applied cleanly.
    pub last_good: Option<u64>,
    /// Set by rollback: the box stays on this revision until `berth resume`.
    pub pinned: Option<u64>,
}

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

    /// The unfinished attempt, if any.
    /// An attempt whose sealed values cannot be opened (the box key was lost) comes back without its
    /// desired state, with an error logged.
    pub fn attempt(&self) -> Result<Option<Attempt>, StoreError> {
        match self.meta.get(ATTEMPT).map_err(|e| self.err(e))? {
            None => Ok(None),
            Some(v) => self
                .decode(&v, &["revision"], Lenient::Yes)
                .map(Some)
                .map_err(|e| self.err(format!("attempt: {e}"))),
        }
    }

    /// The quarantined commit, if any.
    pub fn quarantine(&self) -> Result<Option<Quarantine>, StoreError> {
        self.meta_json(QUARANTINE, "quarantine")
    }

    /// Whether `berth suspend` is in force (it survives restarts).
    pub fn suspended(&self) -> Result<bool, StoreError> {
        Ok(self.meta.get(SUSPENDED).map_err(|e| self.err(e))?.is_some())
    }

    pub fn set_suspended(&self, on: bool) -> Result<(), StoreError> {
        if on {
            self.meta.insert(SUSPENDED, b"1").map_err(|e| self.err(e))?;
        } else {
            self.meta.remove(SUSPENDED).map_err(|e| self.err(e))?;
        }
        self.flush()
    }

    fn meta_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
        what: &str,
    ) -> Result<Option<T>, StoreError> {
        match self.meta.get(key).map_err(|e| self.err(e))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| self.err(format!("{what}: {e}"))),
        }
    }

    /// When each image was last pulled (seconds since the epoch).
    pub fn pull_log(&self) -> Result<crate::images::PullLog, StoreError> {
        match self.meta.get(PULLS).map_err(|e| self.err(e))? {
            None => Ok(Default::default()),
            Some(v) => serde_json::from_slice(&v).map_err(|e| self.err(format!("pull times: {e}"))),
        }
    }

    pub fn set_pull_log(&self, log: &crate::images::PullLog) -> Result<(), StoreError> {
        let v = serde_json::to_vec(log).map_err(|e| self.err(e))?;
        self.meta.insert(PULLS, v).map_err(|e| self.err(e))?;
        self.flush()
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

    pub fn get(&self, seq: u64) -> Result<Option<Revision>, StoreError> {
        match self
            .revisions
            .get(seq.to_be_bytes())
            .map_err(|e| self.err(e))?
        {
            None => Ok(None),
            Some(v) => self
                .decode(&v, &[], Lenient::No)
                .map(Some)
                .map_err(|e| self.err(format!("revision {seq}: {e}"))),
        }
    }

    /// [`Store::get`], but a revision whose sealed values cannot be opened (the box key was lost) comes
    /// back without its desired state, with an error logged, instead of failing.
    pub fn get_lenient(&self, seq: u64) -> Result<Option<Revision>, StoreError> {
        match self
            .revisions
            .get(seq.to_be_bytes())
            .map_err(|e| self.err(e))?
        {
            None => Ok(None),
            Some(v) => self
                .decode(&v, &[], Lenient::Yes)
                .map(Some)
                .map_err(|e| self.err(format!("revision {seq}: {e}"))),
        }
    }

    /// Up to `limit` revisions, newest first. A record that cannot be decoded is reported, not hidden.
    pub fn list(&self, limit: usize) -> Result<Vec<Revision>, StoreError> {
        let mut out = Vec::new();
        for item in self.revisions.iter().rev().take(limit) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let rev = self
                .decode(&v, &[], Lenient::Quiet)
                .map_err(|e| self.err(format!("revision {}: {e}", key_seq(&k))))?;
            out.push(rev);
        }
        Ok(out)
    }

    /// The revision `berth rollback` without a seq goes to: the newest good revision (applied, rendered)
    /// before the current one whose commit differs from the current commit (a rollback record re-applies
    /// an older commit, so every record of the current commit is stepped past). Without a current
    /// revision: the newest good one.
    pub fn default_rollback(&self) -> Result<Option<Revision>, StoreError> {
        self.default_rollback_read(Lenient::No)
    }

    /// [`Store::default_rollback`]; with `Lenient::Quiet`, a revision sealed with a lost key is not a
    /// candidate instead of an error (retention must not stop over it).
    fn default_rollback_read(&self, lenient: Lenient) -> Result<Option<Revision>, StoreError> {
        let current = match self.pointers()?.current {
            Some(seq) if lenient == Lenient::No => self.get(seq)?,
            Some(seq) => match self
                .revisions
                .get(seq.to_be_bytes())
                .map_err(|e| self.err(e))?
            {
                Some(v) => Some(
                    self.decode::<Revision>(&v, &[], lenient)
                        .map_err(|e| self.err(format!("revision {seq}: {e}")))?,
                ),
                None => None,
            },
            None => None,
        };
        let before = current.as_ref().map_or(u64::MAX, |c| c.seq);
        for item in self.revisions.range(..before.to_be_bytes()).rev() {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let rev: Revision = self
                .decode(&v, &[], lenient)
                .map_err(|e| self.err(format!("revision {}: {e}", key_seq(&k))))?;
            let good = rev.outcome == Outcome::Applied && rev.desired.is_some();
            if good && current.as_ref().is_none_or(|c| c.commit != rev.commit) {
                return Ok(Some(rev));
            }
        }
        Ok(None)
    }

    /// History retention: keep the newest `keep` revisions, the revisions the pointers name (current,
    /// last good, pinned), the one a default rollback would pick ([`Store::default_rollback`]) and those
    /// in `protect`; delete every other record in one transaction (which re-reads the pointers, so a
    /// record a pointer names is never deleted), flush, and return the removed seqs, oldest first.
    pub fn prune(&self, keep: usize, protect: &[u64]) -> Result<Vec<u64>, StoreError> {
        // The newest record always stays: `next_seq` is derived from it, and a seq given out twice would
        // make two revisions share one applied ref.
        let keep = keep.max(1);
        let pointers = self.pointers()?;
        let mut kept: BTreeSet<u64> = protect.iter().copied().collect();
        kept.extend(
            [pointers.current, pointers.last_good, pointers.pinned]
                .into_iter()
                .flatten(),
        );
        let mut doomed = Vec::new();
        for (i, key) in self.revisions.iter().keys().rev().enumerate() {
            let seq = key_seq(&key.map_err(|e| self.err(e))?);
            if i >= keep && !kept.contains(&seq) {
                doomed.push(seq);
            }
        }
        if doomed.is_empty() {
            return Ok(doomed);
        }
        if let Some(rev) = self.default_rollback_read(Lenient::Quiet)? {
            doomed.retain(|s| *s != rev.seq);
        }
        doomed.reverse();
        let removed = (&self.revisions, &self.meta)
            .transaction(|(revs, meta)| {
                let mut named = BTreeSet::new();
                for k in [CURRENT, LAST_GOOD, PINNED] {
                    if let Some(v) = meta.get(k)? {
                        named.insert(key_seq(&v));
                    }
                }
                let mut removed = Vec::new();
                for seq in doomed.iter().filter(|s| !named.contains(s)) {
                    if revs.remove(&seq.to_be_bytes())?.is_some() {
                        removed.push(*seq);
                    }
                }
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(removed)
            })
            .map_err(|e| self.err(format!("{e:?}")))?;
        self.flush()?;
        Ok(removed)
    }

    /// Whether the applied ref of `seq` may still be needed: the store holds that revision, or has not
    /// given that seq out yet (a ref left by an earlier store is overwritten, not deleted). An error
    /// reading the store answers yes.
    pub fn may_need(&self, seq: u64) -> bool {
        match (
            self.revisions.contains_key(seq.to_be_bytes()),
            self.next_seq(),
        ) {
            (Ok(held), Ok(next)) => held || seq >= next,
            _ => true,
        }
    }

    /// The newest applied revision with a sequence number below `before`.
    pub fn last_good_before(&self, before: u64) -> Result<Option<Revision>, StoreError> {
        for item in self.revisions.range(..before.to_be_bytes()).rev() {
            let (_, v) = item.map_err(|e| self.err(e))?;
            let rev: Revision = self.decode(&v, &[], Lenient::No).map_err(|e| self.err(e))?;
            if rev.outcome == Outcome::Applied && rev.desired.is_some() {
                return Ok(Some(rev));
            }
        }
        Ok(None)
    }

    /// The alerts outbox: the worker's state and the events waiting, oldest first. An entry that does
    /// not parse (written by another version) is logged and skipped.
    pub fn outbox_load<S, E>(&self) -> Result<(Option<S>, Vec<(u64, E)>), StoreError>
    where
        S: serde::de::DeserializeOwned,
        E: serde::de::DeserializeOwned,
    {
        let state = match self.outbox.get(OUTBOX_STATE).map_err(|e| self.err(e))? {
            Some(v) => Some(
                serde_json::from_slice(&v).map_err(|e| self.err(format!("outbox state: {e}")))?,
            ),
            None => None,
        };
        let mut entries = Vec::new();
        for item in self.outbox.scan_prefix([OUTBOX_ENTRY]) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let seq = key_seq(&k[1..]);
            match serde_json::from_slice(&v) {
                Ok(e) => entries.push((seq, e)),
                Err(e) => tracing::warn!(seq, error = %e, "skipping an unreadable outbox entry"),
            }
        }
        Ok((state, entries))
    }

    /// Change the outbox in one transaction, then flush: the state (if given), new entries, and
    /// entries removed (delivered or dropped).
    pub fn outbox_write<S: Serialize, E: Serialize>(
        &self,
        state: Option<&S>,
        add: &[(u64, E)],
        remove: &[u64],
    ) -> Result<(), StoreError> {
        let key = |seq: u64| {
            let mut k = vec![OUTBOX_ENTRY];
            k.extend_from_slice(&seq.to_be_bytes());
            k
        };
        let state = match state {
            Some(s) => Some(serde_json::to_vec(s).map_err(|e| self.err(e))?),
            None => None,
        };
        let mut added = Vec::with_capacity(add.len());
        for (seq, e) in add {
            added.push((key(*seq), serde_json::to_vec(e).map_err(|e| self.err(e))?));
        }
        let removed: Vec<Vec<u8>> = remove.iter().map(|s| key(*s)).collect();
        self.outbox
            .transaction(|t| {
                if let Some(s) = &state {
                    t.insert(OUTBOX_STATE, s.as_slice())?;
                }
                for (k, v) in &added {
                    t.insert(k.as_slice(), v.as_slice())?;
                }
                for k in &removed {
                    t.remove(k.as_slice())?;
                }
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| self.err(format!("{e:?}")))?;
        self.flush()
    }

    /// How many events wait in the alerts outbox.
    pub fn outbox_len(&self) -> usize {
        self.outbox.scan_prefix([OUTBOX_ENTRY]).count()
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
mod tests {
    use super::*;

    fn rev(seq: u64, outcome: Outcome) -> Revision {
        Revision {
            seq,
            commit: format!("{seq:040x}"),
            author: "t <t@t>".into(),
            summary: "msg".into(),
            commit_time: 1,
            applied_at: 2,
            outcome,
            error: None,
            duration_ms: 3,
            rollback: false,
            desired: Some(DesiredState::default()),
            images: Default::default(),
            error_class: None,
            facts: Default::default(),
            signer: None,
            warnings: Vec::new(),
        }
    }

    #[test]
    fn warnings_are_kept_and_records_without_them_load() {
        let mut r = rev(1, Outcome::Applied);
        let old = serde_json::to_string(&r).unwrap();
        assert!(!old.contains("warnings"), "none written when empty: {old}");
        let loaded: Revision = serde_json::from_str(&old).unwrap();
        assert!(loaded.warnings.is_empty());
        r.warnings = vec!["compose.yaml:7: stack s, service a: deploy.placement ignored".into()];
        let back: Revision = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.warnings, r.warnings);
    }

    #[test]
    fn records_and_pointers_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        {
            let s = Store::open(&path).unwrap();
            assert_eq!(s.next_seq().unwrap(), 1);
            s.put(&rev(1, Outcome::Applied), true, true).unwrap();
            s.put(&rev(2, Outcome::Failed), true, false).unwrap();
            s.set_pinned(Some(1)).unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.next_seq().unwrap(), 3);
        assert_eq!(
            s.pointers().unwrap(),
            Pointers {
                current: Some(2),
                last_good: Some(1),
                pinned: Some(1)
            }
        );
        let list = s.list(10).unwrap();
        assert_eq!(list.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(s.last_good_before(2).unwrap().unwrap().seq, 1);
        assert!(s.last_good_before(1).unwrap().is_none());
        s.set_pinned(None).unwrap();
        assert_eq!(s.pointers().unwrap().pinned, None);
    }

    /// `n` good revisions with distinct commits; the last is current and last good.
    fn filled(path: &Path, n: u64) -> Store {
        let s = Store::open(path).unwrap();
        for seq in 1..=n {
            s.put(&rev(seq, Outcome::Applied), true, true).unwrap();
        }
        s
    }

    fn seqs(s: &Store) -> Vec<u64> {
        let mut v: Vec<u64> = s.list(usize::MAX).unwrap().iter().map(|r| r.seq).collect();
        v.reverse();
        v
    }

    #[test]
    fn prune_keeps_the_newest_window() {
        let dir = tempfile::tempdir().unwrap();
        let s = filled(&dir.path().join("store"), 30);
        assert_eq!(s.prune(10, &[]).unwrap(), (1..=20).collect::<Vec<_>>());
        assert_eq!(seqs(&s), (21..=30).collect::<Vec<_>>());
        assert_eq!(
            s.prune(10, &[]).unwrap(),
            Vec::<u64>::new(),
            "nothing more to drop"
        );
        assert_eq!(s.next_seq().unwrap(), 31);
        // A window larger than the history drops nothing.
        assert!(s.prune(200, &[]).unwrap().is_empty());
    }

    #[test]
    fn prune_never_drops_what_a_pointer_or_the_caller_names() {
        let dir = tempfile::tempdir().unwrap();
        let s = filled(&dir.path().join("store"), 5);
        for seq in 6..=30 {
            s.put(&rev(seq, Outcome::Failed), true, false).unwrap();
        }
        s.set_pinned(Some(2)).unwrap();
        let removed = s.prune(10, &[4]).unwrap();
        assert!(!removed.contains(&2) && !removed.contains(&4) && !removed.contains(&5));
        let mut want = vec![2, 4, 5];
        want.extend(21..=30);
        assert_eq!(seqs(&s), want);
        assert_eq!(
            s.pointers().unwrap(),
            Pointers {
                current: Some(30),
                last_good: Some(5),
                pinned: Some(2)
            }
        );
        for seq in [2, 5, 30] {
            assert!(s.get(seq).unwrap().is_some(), "revision {seq} is named");
        }
    }

    #[test]
    fn prune_keeps_the_default_rollback_target_outside_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let s = filled(&dir.path().join("store"), 1);
        // A month of commits that did not render, then a good one: `berth rollback` goes to 1.
        for seq in 2..=29 {
            let mut r = rev(seq, Outcome::Failed);
            r.desired = None;
            s.put(&r, false, false).unwrap();
        }
        s.put(&rev(30, Outcome::Applied), true, true).unwrap();
        assert_eq!(s.default_rollback().unwrap().unwrap().seq, 1);
        s.prune(10, &[]).unwrap();
        let mut want = vec![1];
        want.extend(21..=30);
        assert_eq!(seqs(&s), want);
        assert_eq!(s.default_rollback().unwrap().unwrap().seq, 1);
    }

    #[test]
    fn the_rollback_target_steps_past_records_of_the_current_commit() {
        let dir = tempfile::tempdir().unwrap();
        let s = filled(&dir.path().join("store"), 3);
        // 4..=30 re-apply commit 3 (rollback records, re-applies): the target is 2, a different commit.
        for seq in 4..=30 {
            let mut r = rev(seq, Outcome::Applied);
            r.commit = rev(3, Outcome::Applied).commit;
            r.rollback = true;
            s.put(&r, true, true).unwrap();
        }
        assert_eq!(s.default_rollback().unwrap().unwrap().seq, 2);
        let removed = s.prune(10, &[]).unwrap();
        assert_eq!(
            removed,
            [1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]
        );
        assert_eq!(s.default_rollback().unwrap().unwrap().seq, 2);
    }

    #[test]
    fn pruned_history_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        {
            let s = filled(&path, 40);
            s.set_pinned(Some(7)).unwrap();
            s.prune(10, &[]).unwrap();
        }
        let s = Store::open(&path).unwrap();
        let mut want = vec![7];
        want.extend(31..=40);
        assert_eq!(seqs(&s), want);
        assert_eq!(s.next_seq().unwrap(), 41, "seqs are never given out twice");
        assert_eq!(s.pointers().unwrap().pinned, Some(7));
        assert_eq!(s.get(40).unwrap().unwrap(), rev(40, Outcome::Applied));
        // Even a window of 0 keeps the newest record, which `next_seq` counts from.
        s.set_pinned(None).unwrap();
        s.put(&rev(41, Outcome::Failed), false, false).unwrap();
        assert_eq!(s.prune(0, &[]).unwrap().len(), 9);
        assert_eq!(seqs(&s), vec![39, 40, 41]);
        assert_eq!(s.next_seq().unwrap(), 42);
    }

    #[test]
    fn applied_refs_are_needed_while_their_record_is_or_the_seq_is_unused() {
        let dir = tempfile::tempdir().unwrap();
        let s = filled(&dir.path().join("store"), 30);
        s.prune(10, &[]).unwrap();
        assert!(!s.may_need(5));
        assert!(s.may_need(25));
        assert!(s.may_need(31), "not given out yet");
        assert!(s.may_need(1000));
    }

    #[test]
    fn a_store_in_use_by_another_agent_is_not_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let first = Store::open(&path).unwrap();
        first.put(&rev(1, Outcome::Applied), true, true).unwrap();
        // sled's lock is per process (fcntl); a second process is what an operator would start by mistake.
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "store::tests::second_process_open",
                "--nocapture",
                "--ignored",
            ])
            .env("BERTH_TEST_STORE", &path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("SECOND-OPEN-REFUSED"), "{text}");
        assert!(!std::fs::read_dir(dir.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("broken")));
        assert_eq!(first.list(10).unwrap().len(), 1);
    }

    #[test]
    #[ignore = "run by a_store_in_use_by_another_agent_is_not_moved_aside in a second process"]
    fn second_process_open() {
        let Some(path) = std::env::var_os("BERTH_TEST_STORE") else {
            return;
        };
        match Store::open(Path::new(&path)) {
            Ok(_) => println!("SECOND-OPEN-SUCCEEDED"),
            Err(e) => println!("SECOND-OPEN-REFUSED: {e}"),
        }
    }

    #[test]
    fn unreadable_store_is_moved_aside_not_wiped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        std::fs::create_dir_all(&path).unwrap();
        // sled keeps its config in `conf`; garbage there makes the store unreadable.
        std::fs::write(path.join("conf"), b"\xff\xfe garbage").unwrap();
        std::fs::write(path.join("db"), b"not a sled database at all, definitely").unwrap();
        let s = Store::open(&path).unwrap();
        assert_eq!(s.next_seq().unwrap(), 1);
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("store.broken-"))
            .collect();
        assert_eq!(
            aside.len(),
            1,
            "the broken store is kept beside the new one"
        );
        let kept = dir.path().join(&aside[0]).join("db");
        assert_eq!(
            std::fs::read(kept).unwrap(),
            b"not a sled database at all, definitely"
        );
    }
}
