//! How records hold secret values on disk: a revision's desired state with every string that holds one
//! sealed by the per-box key ([`crate::sealing`]), its error and facts with keyed digests in their place;
//! and the way back, which restores the state's secret values and attaches their digests.

use super::{Attempt, Revision, Store, StoreError};

/// Why a stored record could not be read back.
#[derive(Debug, thiserror::Error)]
pub(super) enum DecodeError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Seal(#[from] crate::sealing::SealError),
}

/// Whether a record whose sealed values cannot be opened is read without its desired state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lenient {
    /// Dropped, with an error logged.
    Yes,
    /// Dropped without a word (listing history, choosing what retention keeps).
    Quiet,
    No,
}

impl Store {
    pub(super) fn redactor(
        &self,
        sensitive: &crate::sensitive::Sensitive,
    ) -> crate::sealing::Redactor {
        crate::sealing::Redactor::new(sensitive, self.key.clone())
    }

    /// A revision as stored: the secret values of its desired state sealed, its error and facts with
    /// digests in their place.
    pub(super) fn encode_revision(&self, rev: &Revision) -> Result<serde_json::Value, StoreError> {
        let mut v = serde_json::to_value(rev).map_err(|e| self.err(e))?;
        // The secret values are not serialised: they travel with the in-memory revision only.
        let Some(desired) = &rev.desired else {
            return Ok(v);
        };
        let redactor = self.redactor(&desired.sensitive);
        for field in ["error", "facts"] {
            if let Some(f) = v.get_mut(field) {
                redactor.redact_json(f);
            }
        }
        if let Some(d) = v.get_mut("desired") {
            crate::sealing::seal_desired(d, &desired.sensitive, self.key.as_deref())
                .map_err(|e| self.err(format!("revision {}: {e}", rev.seq)))?;
        }
        Ok(v)
    }

    pub(super) fn encode_attempt(&self, a: &Attempt) -> Result<Vec<u8>, StoreError> {
        let mut v = serde_json::to_value(a).map_err(|e| self.err(e))?;
        if let Some(r) = v.get_mut("revision") {
            *r = self.encode_revision(&a.revision)?;
        }
        serde_json::to_vec(&v).map_err(|e| self.err(e))
    }

    /// A stored record (a revision, or what holds one at the JSON path `at`) back: sealed values opened,
    /// the desired state's secret values restored and their digests attached. With `Lenient::Yes` a
    /// desired state that cannot be opened (the box key was lost) is dropped with an error logged.
    pub(super) fn decode<T: serde::de::DeserializeOwned + HasRevision>(
        &self,
        bytes: &[u8],
        at: &[&str],
        lenient: Lenient,
    ) -> Result<T, DecodeError> {
        let mut v: serde_json::Value = serde_json::from_slice(bytes)?;
        let mut sensitive = crate::sensitive::Sensitive::default();
        let desired = at
            .iter()
            .try_fold(&mut v, |v, k| v.get_mut(*k))
            .and_then(|r| r.get_mut("desired"))
            .filter(|d| d.is_object());
        if let Some(d) = desired {
            match crate::sealing::unseal_desired(d, self.key.as_deref()) {
                Ok(s) => sensitive = s,
                Err(e) if lenient != Lenient::No => {
                    if lenient == Lenient::Yes {
                        tracing::error!(error = %e, "a stored revision's desired state cannot be opened; it cannot be rolled back to");
                    }
                    *d = serde_json::Value::Null;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let mut record: T = serde_json::from_value(v)?;
        if let Some(d) = record.revision_mut().desired.as_mut() {
            d.sensitive = sensitive;
            crate::sealing::attach_digests(d, self.key.as_ref());
        }
        Ok(record)
    }
}

/// What holds a revision: a revision itself, or an attempt.
pub(super) trait HasRevision {
    fn revision_mut(&mut self) -> &mut Revision;
}
impl HasRevision for Revision {
    fn revision_mut(&mut self) -> &mut Revision {
        self
    }
}
impl HasRevision for Attempt {
    fn revision_mut(&mut self) -> &mut Revision {
        &mut self.revision
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use crate::model::{ContainerSpec, DesiredState, StackSpec};
    use crate::sealing::BoxKey;
    use std::sync::Arc;

    const SECRET: &str = "hunter2-secret";

    fn key(byte: u8) -> Arc<BoxKey> {
        Arc::new(BoxKey::from_bytes(&[byte; crate::sealing::KEY_LEN]))
    }

    fn secret_rev(seq: u64) -> Revision {
        let mut d = DesiredState::default();
        d.stacks.insert(
            "s".into(),
            StackSpec {
                name: "s".into(),
                dir: ".".into(),
                containers: vec![ContainerSpec {
                    name: "s-web-1".into(),
                    image: "busybox".into(),
                    env: vec![format!("DB_PASSWORD={SECRET}"), "PLAIN=visible".into()],
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        d.sensitive.add(SECRET);
        Revision {
            seq,
            commit: format!("{seq:040x}"),
            author: "t <t@t>".into(),
            summary: "msg".into(),
            commit_time: 1,
            applied_at: 2,
            outcome: Outcome::Applied,
            error: Some(format!("engine said: bad env DB_PASSWORD={SECRET}")),
            duration_ms: 3,
            rollback: false,
            desired: Some(d),
            images: Default::default(),
            error_class: None,
            facts: [("db".to_string(), SECRET.to_string())].into(),
            signer: None,
            warnings: Vec::new(),
        }
    }

    /// Every byte sled wrote under `dir`.
    fn disk_holds(dir: &Path, needle: &str) -> bool {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let bytes = std::fs::read(&p).unwrap();
                    if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                        return true;
                    }
                }
            }
        }
        false
    }

    #[test]
    fn secret_values_are_sealed_on_disk_and_come_back_for_rollback() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let k = key(1);
        let rev = secret_rev(1);
        let hash = {
            let mut d = rev.desired.clone().unwrap();
            crate::sealing::attach_digests(&mut d, Some(&k));
            d.stacks["s"].containers[0].spec_hash()
        };
        // One handle: reopening a sled store at once can race its flusher; records are read back from
        // their stored bytes either way.
        let s = Store::open(&path).unwrap().with_key(k.clone());
        {
            s.record(&Record {
                revision: Some(rev.clone()),
                current: Some(1),
                attempt: Some(Some(Attempt {
                    revision: secret_rev(0),
                    deaths: 0,
                })),
                quarantine: Some(Some(Quarantine {
                    commit: "c".into(),
                    reason: format!("failed with {SECRET}"),
                    since: 1,
                })),
                ..Default::default()
            })
            .unwrap();
        }
        assert!(!disk_holds(&path, SECRET), "plaintext on disk");
        assert!(
            disk_holds(&path, "PLAIN=visible"),
            "the test reads the right files"
        );

        let back = s.get(1).unwrap().unwrap();
        let d = back.desired.as_ref().unwrap();
        assert_eq!(
            d.stacks,
            rev.desired.as_ref().unwrap().stacks,
            "values back for rollback"
        );
        assert_eq!(d.sensitive, rev.desired.as_ref().unwrap().sensitive);
        assert_eq!(
            d.stacks["s"].containers[0].spec_hash(),
            hash,
            "no recreate after a restart"
        );
        let error = back.error.unwrap();
        assert!(
            !error.contains(SECRET) && error.contains(&k.digest(SECRET)),
            "{error}"
        );
        assert!(!back.facts["db"].contains(SECRET));
        let attempt = s.attempt().unwrap().unwrap();
        assert_eq!(attempt.revision.desired.unwrap().stacks, d.stacks);
        assert!(!s.quarantine().unwrap().unwrap().reason.contains(SECRET));
    }

    #[test]
    fn a_lost_key_refuses_rollback_to_sealed_revisions_and_breaks_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let mut plain = secret_rev(2);
        plain.desired = Some(DesiredState::default());
        let s = Store::open(&path).unwrap().with_key(key(1));
        {
            s.put(&secret_rev(1), false, false).unwrap();
            s.put(&plain, true, true).unwrap();
        }
        // The same store under another key, as after box.key was lost and made anew.
        let s = s.with_key(key(2));
        let e = s.get(1).unwrap_err().to_string();
        assert!(e.contains("box.key") && e.contains("revision 1"), "{e}");
        assert!(!e.contains(SECRET));
        assert!(s.get_lenient(1).unwrap().unwrap().desired.is_none());
        assert_eq!(s.list(10).unwrap().len(), 2, "history still lists both");
        assert!(s.get(2).unwrap().unwrap().desired.is_some());
        // Retention goes on: a revision it cannot open is just not a rollback candidate.
        assert_eq!(s.prune(1, &[]).unwrap(), vec![1]);
    }

    #[test]
    fn records_without_sealing_still_load_and_a_keyless_store_refuses_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let s = Store::open(&path).unwrap();
        // A record as written before sealing existed: plain JSON, env in clear.
        let mut old = secret_rev(1);
        old.desired.as_mut().unwrap().sensitive = Default::default();
        s.revisions
            .insert(1u64.to_be_bytes(), serde_json::to_vec(&old).unwrap())
            .unwrap();
        let s = s.with_key(key(1));
        assert_eq!(s.get(1).unwrap().unwrap(), old);
        let keyless = Store::open(&dir.path().join("other")).unwrap();
        let e = keyless.put(&secret_rev(1), true, true).unwrap_err();
        assert!(e.to_string().contains("no box key"), "{e}");
    }
}
