//! Alerts out: the reconcile loop reports what happened ([`Alerts`], never blocking it); failures become
//! incidents (one per reason and stack, `firing` once, `resolved` once: [`incident`]); every event for a
//! provider is written to the store's outbox before delivery and removed once the provider answered 2xx
//! ([`worker`], a thread of its own); [`provider`] formats and sends one event with ureq. Config:
//! [`settings`].

pub mod incident;
pub mod provider;
pub mod settings;
mod worker;

pub use settings::{redact_url, AlertSettings, ProviderKind};

use crate::error::CycleError;
use serde::{Deserialize, Serialize};
use std::sync::mpsc;

/// How bad an event is; a provider's `min_severity` filters on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Error,
}

/// Why an event was raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Applied,
    RenderFailed,
    /// The commit (or its tag) failed `source.verify`.
    VerifyFailed,
    ApplyFailed,
    PreflightFailed,
    RolledBack,
    DriftCorrected,
    SourceUnreachable,
    AgentStarted,
}

impl Reason {
    pub const ALL: [Reason; 9] = [
        Reason::Applied,
        Reason::RenderFailed,
        Reason::VerifyFailed,
        Reason::ApplyFailed,
        Reason::PreflightFailed,
        Reason::RolledBack,
        Reason::DriftCorrected,
        Reason::SourceUnreachable,
        Reason::AgentStarted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Applied => "applied",
            Reason::RenderFailed => "render_failed",
            Reason::VerifyFailed => "verify_failed",
            Reason::ApplyFailed => "apply_failed",
            Reason::PreflightFailed => "preflight_failed",
            Reason::RolledBack => "rolled_back",
            Reason::DriftCorrected => "drift_corrected",
            Reason::SourceUnreachable => "source_unreachable",
            Reason::AgentStarted => "agent_started",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            Reason::Applied | Reason::DriftCorrected | Reason::AgentStarted => Severity::Info,
            _ => Severity::Error,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `firing` opens an incident; `resolved` closes it. A notice (an info event: applied, drift corrected,
/// agent started) opens and closes at once: it is sent `resolved`, so no receiver keeps it open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Firing,
    Resolved,
}

/// What a provider receives (`generic` sends exactly this as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub agent_id: String,
    pub severity: Severity,
    pub reason: Reason,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// RFC 3339, UTC: when the event was raised (kept through the outbox, however late it is sent).
    pub raised_at: String,
    /// Stable for the life of an incident: the firing and the resolved event share it.
    pub incident: String,
    pub state: State,
    /// Events for this provider dropped from the full outbox since the last one delivered.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One failure of a cycle, as an incident sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: Reason,
    pub stack: Option<String>,
    pub service: Option<String>,
    pub commit: Option<String>,
    pub message: String,
}

/// The longest message sent (chat providers cap theirs; Discord at 2,000 characters).
const MAX_MESSAGE: usize = 1500;

pub(crate) fn bounded(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// The incident a cycle error belongs to, by its variant (never its text). `None`: not an incident of
/// its own — a fetch failure (that is `source_unreachable`, after its grace), a quarantined commit (its
/// incident was raised when it failed), a refused rollback (answered to the operator).
pub fn failure_of(e: &CycleError) -> Option<Failure> {
    use crate::apply::ConvergeError;
    let mut f = Failure {
        reason: Reason::ApplyFailed,
        stack: None,
        service: None,
        commit: None,
        message: bounded(&e.to_string()),
    };
    match e {
        CycleError::Fetch(_) | CycleError::Quarantined { .. } | CycleError::Rollback(_) => {
            return None
        }
        CycleError::Render { commit, source } => {
            f.reason = Reason::RenderFailed;
            f.commit = Some(commit.clone());
            if let Some(p) = source.problems.first() {
                f.stack = p.stack.clone();
                f.service = p.service.clone();
            }
        }
        CycleError::Verify { commit, .. } => {
            f.reason = Reason::VerifyFailed;
            f.commit = Some(commit.clone());
        }
        CycleError::Converge { commit, source } => {
            f.commit = Some(commit.clone());
            if matches!(
                source,
                ConvergeError::Preflight(_) | ConvergeError::Empty { .. }
            ) {
                f.reason = Reason::PreflightFailed;
            }
        }
        CycleError::Gate {
            commit,
            source,
            rolled_back,
        } => {
            if *rolled_back {
                f.reason = Reason::RolledBack;
            }
            f.commit = Some(commit.clone());
            let (stack, service) = gate_scope(source);
            f.stack = Some(stack.to_string());
            f.service = Some(service.to_string());
        }
        CycleError::Step(s) => {
            f.stack = (!s.stack.is_empty()).then(|| s.stack.clone());
            f.service = s.service.clone();
        }
        CycleError::Read { commit, .. }
        | CycleError::Checkout { commit, .. }
        | CycleError::Poisoned { commit } => f.commit = Some(commit.clone()),
        CycleError::Store(_)
        | CycleError::Engine(_)
        | CycleError::Task { .. }
        | CycleError::Timeout { .. } => {}
    }
    Some(f)
}

fn gate_scope(g: &crate::rollout::GateFailure) -> (&str, &str) {
    use crate::rollout::GateFailure as G;
    match g {
        G::Exited { stack, service, .. }
        | G::Restarting { stack, service, .. }
        | G::Unhealthy { stack, service, .. }
        | G::Timeout { stack, service, .. }
        | G::Engine { stack, service, .. } => (stack, service),
    }
}

/// What the loop tells the alerts worker.
#[derive(Debug)]
pub(crate) enum Signal {
    /// A cycle ended: its failures, and whether anything but a fetch failed (no: its stacks are fine).
    Cycle { failures: Vec<Failure>, clean: bool },
    /// A notice: applied, drift corrected.
    Notice(Failure),
    /// The remote answered (or not).
    Fetched { ok: bool },
}

/// The loop's handle on the alerts worker: every call only queues a message (never blocks, never
/// fails the cycle). Without `alerts:` in the config it does nothing.
#[derive(Clone, Default)]
pub struct Alerts {
    tx: Option<mpsc::Sender<Signal>>,
}

impl Alerts {
    /// Start the worker thread (when any provider is configured), which raises `agent_started` first
    /// and publishes the providers and the outbox size in status.
    pub fn start(
        settings: &crate::config::Settings,
        store: crate::store::Store,
        shared: std::sync::Arc<crate::api::server::Shared>,
        metrics: crate::signals::Metrics,
    ) -> Alerts {
        {
            let mut s = shared.status.lock().unwrap_or_else(|p| p.into_inner());
            s.alerts = settings
                .alerts
                .iter()
                .map(|a| crate::api::AlertInfo {
                    name: a.name.clone(),
                    kind: a.kind.to_string(),
                })
                .collect();
        }
        if settings.alerts.is_empty() {
            return Alerts::default();
        }
        let (tx, rx) = mpsc::channel();
        let _ = tx.send(Signal::Notice(Failure {
            reason: Reason::AgentStarted,
            stack: None,
            service: None,
            commit: None,
            message: format!("berth {} started", env!("CARGO_PKG_VERSION")),
        }));
        match worker::spawn(settings, store, shared, metrics, rx) {
            Ok(()) => Alerts { tx: Some(tx) },
            Err(e) => {
                tracing::error!(error = %e, "cannot start the alerts worker; no alerts are sent");
                Alerts::default()
            }
        }
    }

    fn send(&self, s: Signal) {
        if let Some(tx) = &self.tx {
            if tx.send(s).is_err() {
                tracing::warn!("the alerts worker stopped; event not recorded");
            }
        }
    }

    /// A cycle ended with these errors.
    pub fn cycle_done(&self, errors: &[CycleError]) {
        if self.tx.is_none() {
            return;
        }
        let failures = errors.iter().filter_map(failure_of).collect();
        let clean = errors.iter().all(|e| matches!(e, CycleError::Fetch(_)));
        self.send(Signal::Cycle { failures, clean });
    }

    /// A new revision passed its gate and is the box's last good one.
    pub fn applied(&self, commit: &str, summary: &str) {
        self.send(Signal::Notice(Failure {
            reason: Reason::Applied,
            stack: None,
            service: None,
            commit: Some(commit.to_string()),
            message: bounded(&format!("applied {}: {summary}", short(commit))),
        }));
    }

    /// A cycle changed containers of the revision already applied (`done`: the steps).
    pub fn drift_corrected(&self, commit: &str, done: &[String]) {
        self.send(Signal::Notice(Failure {
            reason: Reason::DriftCorrected,
            stack: None,
            service: None,
            commit: Some(commit.to_string()),
            message: bounded(&format!("drift corrected: {}", done.join(", "))),
        }));
    }

    /// The remote answered a fetch (`ok`) or not.
    pub fn fetched(&self, ok: bool) {
        self.send(Signal::Fetched { ok });
    }
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

#[cfg(test)]
mod tests;
