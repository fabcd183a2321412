//! What the store holds: the revision records ([`Revision`], [`Outcome`]), the unfinished
//! [`Attempt`], the [`Quarantine`]d commit, the pointers, and a [`Record`] of changes written together.

use crate::model::DesiredState;
use serde::{Deserialize, Serialize};

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

#[cfg(test)]
impl Revision {
    /// An applied revision `seq` of commit `<seq as 40 hex>`, with nothing rendered: what tests start
    /// from and change.
    pub(crate) fn for_test(seq: u64) -> Revision {
        Revision {
            seq,
            commit: format!("{seq:040x}"),
            author: "t <t@t>".into(),
            summary: "msg".into(),
            commit_time: 1,
            applied_at: 2,
            outcome: Outcome::Applied,
            error: None,
            duration_ms: 3,
            rollback: false,
            desired: None,
            images: Default::default(),
            error_class: None,
            facts: Default::default(),
            signer: None,
            warnings: Vec::new(),
        }
    }
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
