//! The single values of the meta tree besides the pointers: the unfinished attempt, the quarantined
//! commit, the suspend flag, the image pull times and the containers that finished by themselves.

use super::sealed::Lenient;
use super::{
    Attempt, Quarantine, Store, StoreError, ATTEMPT, FINISHED, PULLS, QUARANTINE, SUSPENDED,
};

impl Store {
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

    /// Ids of the containers the agent saw exit 0 by themselves (jobs that are done).
    pub fn finished_containers(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .meta_json(FINISHED, "finished containers")?
            .unwrap_or_default())
    }

    pub fn set_finished_containers(&self, ids: &[String]) -> Result<(), StoreError> {
        let v = serde_json::to_vec(ids).map_err(|e| self.err(e))?;
        self.meta.insert(FINISHED, v).map_err(|e| self.err(e))?;
        self.flush()
    }
}
