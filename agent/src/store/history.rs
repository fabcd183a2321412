//! Reading the history (one revision, a list, the default rollback target, the last good one before a
//! seq) and retention ([`Store::prune`]).

use super::sealed::Lenient;
use super::{key_seq, Outcome, Revision, Store, StoreError, CURRENT, LAST_GOOD, PINNED};
use sled::Transactional;
use std::collections::BTreeSet;

impl Store {
    pub fn get(&self, seq: u64) -> Result<Option<Revision>, StoreError> {
        self.get_with(seq, Lenient::No)
    }

    /// [`Store::get`], but a revision whose sealed values cannot be opened (the box key was lost) comes
    /// back without its desired state, with an error logged, instead of failing.
    pub fn get_lenient(&self, seq: u64) -> Result<Option<Revision>, StoreError> {
        self.get_with(seq, Lenient::Yes)
    }

    fn get_with(&self, seq: u64, lenient: Lenient) -> Result<Option<Revision>, StoreError> {
        match self
            .revisions
            .get(seq.to_be_bytes())
            .map_err(|e| self.err(e))?
        {
            None => Ok(None),
            Some(v) => self
                .decode(&v, &[], lenient)
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
}
