//! The alerts outbox tree: the alerts worker's state and the events waiting to be delivered.

use super::{key_seq, Store, StoreError, OUTBOX_ENTRY, OUTBOX_STATE};
use serde::Serialize;

impl Store {
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
