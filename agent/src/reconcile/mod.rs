//! The reconcile loop: every trigger (interval tick with jitter, `berth reconcile`, rollback, resume, drift)
//! feeds one loop that runs one cycle at a time. A cycle asks [`decide`] what to converge (follow a new
//! commit, keep the current or pinned revision, roll back, refuse a quarantined commit, or nothing while
//! suspended) and [`cycle`] carries it out: fetch → verify (`source.verify`) → render → attempt record →
//! checkout → images → observe → plan → preflight → apply → health gate → record (one store transaction).
//!
//! Errors never tear anything down: a fetch or render failure keeps converging the current revision (so
//! drift is still corrected offline). Errors are typed ([`CycleError`]); their class decides the next
//! delay ([`backoff`]). Git and store calls run on the blocking pool, never on the loop's thread; each
//! cycle has a deadline (`cycle_timeout`) after which it is abandoned, and the systemd watchdog is pinged
//! from the loop only while it is alive and within that deadline.
//!
//! This file holds the agent's state ([`Agent`], what a cycle is asked to do and converges), the bridges
//! to the blocking pool, and the helpers status answers share; `start` opens the state, `run` is the loop
//! and its commands, `commits` the cycle's work on the clone, `rendering` how a box renders a commit.

use crate::api::server::Shared;
use crate::api::{QuarantineInfo, Status};
use crate::config::Settings;
use crate::error::CycleError;
use crate::model::DesiredState;
use crate::runtime::DockerRuntime;
use crate::signals::metrics::Metrics;
use crate::source::{self, GitSource};
use crate::store::{Attempt, Quarantine, Revision, Store, StoreError};
use crate::{apply, notify};
use std::sync::Arc;

pub mod backoff;
mod commits;
mod cycle;
pub mod decide;
mod diff;
mod drift;
mod rendering;
mod run;
mod start;
pub use backoff::Backoff;
pub use drift::{watch_drift, DriftLink};
pub use rendering::{
    box_render_options, render_options, render_tree, render_tree_warned, root_stack_name,
    root_stack_name_of, sanitize_stack_name, sops_options,
};

pub struct Agent {
    settings: Settings,
    runtime: DockerRuntime,
    store: Store,
    /// `None` only while a blocking git task holds it (or after a cycle holding it was abandoned).
    source: Option<GitSource>,
    shared: Arc<Shared>,
    /// The revision the engine is converged to (the `current` pointer), with its desired state.
    current: Option<Revision>,
    /// The last commit seen on the remote.
    fetched: Option<String>,
    /// The commit not applied again until the remote moves on (kept in the store).
    quarantine: Option<Quarantine>,
    /// An attempt this process found unfinished at start (the agent died applying it).
    unfinished: Option<Attempt>,
    /// `berth suspend` (kept in the store).
    suspended: bool,
    backoff: Backoff,
    cycles: u64,
    abandoned: u64,
    /// The commit the working tree is known to hold (checked out by this process).
    checked_out: Option<String>,
    /// When each image was last pulled (for `pull_policy: daily` and the like); kept in the store.
    pull_log: crate::images::PullLog,
    apply_options: apply::ApplyOptions,
    /// Where cycle outcomes go to become alerts (never blocks).
    alerts: crate::signals::alerts::Alerts,
    /// Prometheus metrics, updated once per event (cycle end, fetch, rollback).
    metrics: Metrics,
    /// Every secret value of a desired state this process rendered or converged: masked in the errors
    /// that status, cycle answers and the cycle's error log show.
    secrets: crate::sensitive::Sensitive,
}

/// What one cycle is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Follow Git (or the pinned revision); `fetch`: ask the remote first; `retry`: the operator lifted
    /// the quarantine.
    Follow { fetch: bool, retry: bool },
    /// Re-apply stored revision `seq` and pin there, without touching the remote.
    Rollback(u64),
    /// Converge the current (or pinned) revision again without fetching: drift seen in engine events.
    Local,
}

const FOLLOW: Mode = Mode::Follow {
    fetch: true,
    retry: false,
};

/// What a cycle converges: a desired state and the commit it came from.
struct Target {
    desired: DesiredState,
    commit: String,
}

impl Target {
    fn of(rev: &Revision) -> Option<Target> {
        rev.desired.clone().map(|desired| Target {
            desired,
            commit: rev.commit.clone(),
        })
    }
}

impl Agent {
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// The agent's metrics (served by the HTTP listener; the alerts feed theirs through it).
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// What the drift watcher shares with this agent's applies and loop.
    pub fn drift_link(&self) -> DriftLink {
        self.apply_options.drift.clone()
    }

    fn set_status(&self, f: impl FnOnce(&mut Status)) {
        let mut s = self.shared.status.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s);
    }

    /// Run blocking store work on the blocking pool (sled writes flush to disk).
    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, CycleError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| CycleError::Task {
                what: "store",
                message: e.to_string(),
            })?
            .map_err(CycleError::Store)
    }

    /// Run blocking git work on the blocking pool, with the source moved into the task and back.
    async fn git<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut GitSource) -> Result<T, source::SourceError> + Send + 'static,
    ) -> Result<T, source::SourceError> {
        let src = self.source.take();
        let (dir, settings) = (
            self.settings.state_dir.clone(),
            self.settings.source.clone(),
        );
        let joined = tokio::task::spawn_blocking(move || {
            let mut src = match src {
                Some(s) => s,
                None => match GitSource::open(&dir, &settings) {
                    Ok(s) => s,
                    Err(e) => return (None, Err(e)),
                },
            };
            let r = f(&mut src);
            (Some(src), r)
        })
        .await;
        match joined {
            Ok((src, r)) => {
                self.source = src;
                r
            }
            Err(e) => Err(source::SourceError::Local {
                path: self.settings.state_dir.join("repo"),
                message: format!("git task failed: {e}"),
            }),
        }
    }
}

fn join(errors: &[CycleError], separator: &str) -> String {
    let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    texts.join(separator)
}

fn quarantine_info(q: &Quarantine) -> QuarantineInfo {
    QuarantineInfo {
        commit: q.commit.clone(),
        reason: q.reason.clone(),
        since: q.since,
    }
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// How status names the signer of an applied revision.
fn signer_of(rev: &Revision) -> Option<String> {
    rev.signer.as_ref().map(|s| s.to_string())
}
