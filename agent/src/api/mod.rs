//! The status socket: wire types shared by the server (in the agent) and the client (the CLI).
//!
//! HTTP/1.1 + JSON over a Unix socket:
//! - `GET /v1/status` → [`Status`]
//! - `GET /v1/history?limit=N` → `[HistoryEntry]`, newest first
//! - `POST /v1/reconcile` (`?wait=1` to answer after the cycle, `?retry=1` to lift a quarantine) →
//!   [`CycleResult`]
//! - `POST /v1/rollback?seq=N` → [`CycleResult`] (after the cycle)
//! - `POST /v1/resume` → [`CycleResult`] (after the cycle): lifts a rollback pin and a suspend
//! - `POST /v1/suspend` → `{"suspended": true}`: no reconciling, drift repair included, until resume
//! - `GET /v1/diff` (`?fetch=0`: without asking the remote first) → [`DiffAnswer`]: the plan of the
//!   fetched commit against the engine, or (`refused`) why the agent would not apply it; nothing is
//!   pulled, recorded, checked out or applied
//!
//! Errors answer with a non-2xx status and [`ErrorBody`]; a query that does not parse (percent-decoded,
//! unknown keys refused) answers 400.

pub mod client;
pub mod server;

use crate::error::ErrorClass;
use crate::store::{Outcome, Revision};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// Secrets redacted.
    pub url: String,
    /// `branch main`, `tag v1`, `commit abc…`.
    #[serde(rename = "ref")]
    pub reference: String,
    pub path: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub agent_id: String,
    pub source: SourceInfo,
    pub fetched_commit: Option<String>,
    pub fetched_at: Option<i64>,
    pub fetch_count: u64,
    pub applied_commit: Option<String>,
    pub applied_seq: Option<u64>,
    /// Who signed the applied commit (`principal (fingerprint)`), when `source.verify` checked it.
    #[serde(default)]
    pub applied_signer: Option<String>,
    /// Render warnings of the applied revision (keys accepted and ignored, with file and line).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub last_good_seq: Option<u64>,
    pub outcome: Option<Outcome>,
    pub last_error: Option<String>,
    /// What kind of failure `last_error` is: transient, input, rollout or internal.
    #[serde(default)]
    pub error_class: Option<ErrorClass>,
    pub pinned: bool,
    pub pinned_seq: Option<u64>,
    /// `berth suspend` is in force: nothing is reconciled, drift repair included.
    #[serde(default)]
    pub suspended: bool,
    /// The commit that is not applied again until the remote moves (or `berth reconcile --retry`).
    #[serde(default)]
    pub quarantined: Option<QuarantineInfo>,
    /// A rollout waiting on its health gate.
    #[serde(default)]
    pub rollout: Option<RolloutInfo>,
    pub cycles: u64,
    /// Cycles that ran past `cycle_timeout` and were abandoned.
    #[serde(default)]
    pub cycles_abandoned: u64,
    pub containers: Vec<ContainerStatus>,
    /// Alert providers by name and type (never their URLs: those may hold tokens).
    #[serde(default)]
    pub alerts: Vec<AlertInfo>,
    /// Events waiting in the alerts outbox.
    #[serde(default)]
    pub alerts_outbox: u64,
    /// The TCP listener (`http.listen`) and its webhook receivers, when configured.
    #[serde(default)]
    pub http: Option<HttpInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// The bound TCP listener and the receivers it serves (names and types, never secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpInfo {
    pub listen: String,
    pub receivers: Vec<ReceiverInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiverInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineInfo {
    pub commit: String,
    pub reason: String,
    pub since: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutInfo {
    pub commit: String,
    /// Seconds since the health gate started.
    pub seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub name: String,
    pub id: String,
    pub stack: String,
    pub service: String,
    pub replica: u32,
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub seq: u64,
    pub commit: String,
    pub author: String,
    pub summary: String,
    pub commit_time: i64,
    pub applied_at: i64,
    pub outcome: Outcome,
    pub error: Option<String>,
    pub duration_ms: u64,
    pub rollback: bool,
    /// Image reference → local image id it ran with.
    #[serde(default)]
    pub images: std::collections::BTreeMap<String, String>,
    /// The agent's `facts:` the revision was rendered with.
    #[serde(default)]
    pub facts: std::collections::BTreeMap<String, String>,
    /// Who signed the commit (`principal (fingerprint)`), when `source.verify` checked it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// Render warnings of the revision (keys accepted and ignored, with file and line).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl From<&Revision> for HistoryEntry {
    fn from(r: &Revision) -> Self {
        HistoryEntry {
            seq: r.seq,
            commit: r.commit.clone(),
            author: r.author.clone(),
            summary: r.summary.clone(),
            commit_time: r.commit_time,
            applied_at: r.applied_at,
            outcome: r.outcome,
            error: r.error.clone(),
            duration_ms: r.duration_ms,
            rollback: r.rollback,
            images: r.images.clone(),
            facts: r.facts.clone(),
            signer: r.signer.as_ref().map(|s| s.to_string()),
            warnings: r.warnings.clone(),
        }
    }
}

/// The result of one reconcile cycle, as answered to a waiting client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleResult {
    pub outcome: Outcome,
    pub error: Option<String>,
    #[serde(default)]
    pub error_class: Option<ErrorClass>,
    pub applied_commit: Option<String>,
    pub applied_seq: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// What `berth diff` prints: the plan of a desired state against the engine, changing nothing
/// (`GET /v1/diff`, and `berth diff DIR --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffAnswer {
    pub agent_id: String,
    /// The commit planned: the one the agent fetched last; `None` for `berth diff DIR`.
    pub commit: Option<String>,
    /// The commit the box runs now (the agent's current revision).
    #[serde(default)]
    pub applied_commit: Option<String>,
    /// The agent is pinned by a rollback: this is what `berth resume` would do, not the next cycle.
    #[serde(default)]
    pub pinned: bool,
    /// Who signed `commit`, when `source.verify` checked it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// The agent would refuse `commit` (it fails `source.verify`): the plan is then empty, since the
    /// agent never renders a commit it would not apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
    #[serde(flatten)]
    pub diff: crate::diff::Description,
}

/// Why the agent would not apply a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The full id of the commit refused.
    pub commit: String,
    /// The verification error, as the cycle would report it.
    pub reason: String,
    /// `input` (the commit's fault: quarantined until the remote moves), `transient` (a trust file the
    /// operator can fix: retried) or `internal`.
    pub class: ErrorClass,
}
