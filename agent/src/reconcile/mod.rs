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

use crate::api::server::{Command, Shared};
use crate::api::{CycleResult, QuarantineInfo, SourceInfo, Status};
use crate::config::Settings;
use crate::error::{overall_class, CycleError};
use crate::model::DesiredState;
use crate::render::{self, RenderError, RenderOptions, Tree};
use crate::runtime::DockerRuntime;
use crate::signals::metrics::Metrics;
use crate::source::{self, GitSource};
use crate::store::{Attempt, Outcome, Quarantine, Revision, Store, StoreError};
use crate::{apply, notify};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

pub mod backoff;
mod cycle;
pub mod decide;
mod diff;
mod drift;
pub use backoff::Backoff;
pub use drift::{watch_drift, DriftLink};

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

/// What `Agent::start` reads from disk, on the blocking pool.
struct Opened {
    store: Store,
    source: GitSource,
    pointers: crate::store::Pointers,
    pull_log: crate::images::PullLog,
    current: Option<Revision>,
    quarantine: Option<Quarantine>,
    unfinished: Option<Attempt>,
    suspended: bool,
}

fn open_state(settings: &Settings) -> anyhow::Result<Opened> {
    std::fs::create_dir_all(&settings.state_dir)
        .map_err(|e| anyhow::anyhow!("state_dir {}: {e}", settings.state_dir.display()))?;
    let (key, created) = crate::sealing::BoxKey::load_or_create(&settings.state_dir)?;
    let store = Store::open(&settings.state_dir.join("store"))?.with_key(Arc::new(key));
    let source = GitSource::open(&settings.state_dir, &settings.source)?;
    let pointers = store.pointers()?;
    if created && pointers.current.is_some() {
        tracing::warn!(
            key = %settings.state_dir.join(crate::sealing::KEY_FILE).display(),
            "a new box key was created for a store with history: revisions sealed with the old key cannot be rolled back to"
        );
    }
    let pull_log = store.pull_log().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read pull times; starting afresh");
        Default::default()
    });
    let current = match pointers.current {
        Some(seq) => match store.get(seq) {
            Ok(r) => r,
            // Its sealed values cannot be opened (the box key was lost or replaced): as if nothing were
            // applied, so the next cycle applies the followed commit afresh.
            Err(e) if store.get_lenient(seq).is_ok() => {
                tracing::error!(seq, error = %e, "the current revision cannot be opened with this box key; the followed commit will be applied afresh");
                None
            }
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    // An attempt still recorded at start: the agent died while applying it. Count that death first, so
    // a commit that kills the agent every time is quarantined however often systemd restarts it.
    let unfinished = match store.attempt()? {
        Some(mut a) => {
            a.deaths = a.deaths.saturating_add(1);
            store.record(&crate::store::Record {
                attempt: Some(Some(a.clone())),
                ..Default::default()
            })?;
            tracing::warn!(commit = %a.revision.commit, deaths = a.deaths, "the agent stopped while applying this commit");
            Some(a)
        }
        None => None,
    };
    Ok(Opened {
        quarantine: store.quarantine()?,
        suspended: store.suspended()?,
        store,
        source,
        pointers,
        pull_log,
        current,
        unfinished,
    })
}

impl Agent {
    pub async fn start(settings: Settings) -> anyhow::Result<(Agent, mpsc::Receiver<Command>)> {
        let runtime = DockerRuntime::connect(settings.docker_host.as_deref())
            .await?
            .with_auth_file(settings.docker_auth_file.clone());
        let opened = {
            let settings = settings.clone();
            tokio::task::spawn_blocking(move || open_state(&settings)).await??
        };
        let Opened {
            store,
            source,
            pointers,
            pull_log,
            current,
            quarantine,
            unfinished,
            suspended,
        } = opened;
        let (tx, rx) = mpsc::channel(64);
        let status = Status {
            agent_id: settings.agent_id.clone(),
            source: SourceInfo {
                url: source::redact(&settings.source.url),
                reference: settings.source.reference.to_string(),
                path: settings.source.path.display().to_string(),
            },
            applied_commit: current.as_ref().map(|r| r.commit.clone()),
            applied_seq: current.as_ref().map(|r| r.seq),
            applied_signer: current.as_ref().and_then(signer_of),
            warnings: current
                .as_ref()
                .map(|r| r.warnings.clone())
                .unwrap_or_default(),
            last_good_seq: pointers.last_good,
            pinned: pointers.pinned.is_some(),
            pinned_seq: pointers.pinned,
            suspended,
            quarantined: quarantine.as_ref().map(quarantine_info),
            ..Default::default()
        };
        let shared = Arc::new(Shared {
            status: Mutex::new(status),
            store: store.clone(),
            runtime: runtime.clone(),
            commands: tx,
            wake: tokio::sync::Notify::new(),
        });
        let metrics = Metrics::new(&settings.agent_id);
        metrics.current(current.as_ref());
        let alerts = crate::signals::alerts::Alerts::start(
            &settings,
            store.clone(),
            shared.clone(),
            metrics.clone(),
        );
        let mut secrets = crate::sensitive::Sensitive::default();
        if let Some(d) = current.as_ref().and_then(|c| c.desired.as_ref()) {
            secrets.extend(&d.sensitive);
        }
        let mut apply_options = apply::ApplyOptions::from_env();
        apply_options.allow_empty = settings.allow_empty;
        let agent = Agent {
            settings,
            runtime,
            store,
            source: Some(source),
            shared,
            current,
            fetched: None,
            quarantine,
            unfinished,
            suspended,
            backoff: Backoff::default(),
            cycles: 0,
            abandoned: 0,
            checked_out: None,
            pull_log,
            apply_options,
            alerts,
            metrics,
            secrets,
        };
        Ok((agent, rx))
    }

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

    /// Run forever (the caller stops it on SIGTERM/SIGINT by dropping this future, which may happen in the
    /// middle of a cycle: that is as safe as a crash, which berth must survive anyway). `once`: one cycle,
    /// then return its result.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        once: bool,
    ) -> anyhow::Result<Option<CycleResult>> {
        let mut watchdog =
            tokio::time::interval(notify::watchdog_interval().unwrap_or(Duration::from_secs(3600)));
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        let first = self.run_cycle(FOLLOW, &mut watchdog).await;
        notify::notify("READY=1");
        if once {
            return Ok(Some(first));
        }
        loop {
            let delay = self
                .backoff
                .next_delay(self.settings.source.interval, backoff::draw());
            tracing::debug!(delay_ms = delay.as_millis() as u64, "next cycle");
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            let first = loop {
                tokio::select! {
                    _ = &mut sleep => break None,
                    c = commands.recv() => break c,
                    // Idle: the loop is alive.
                    _ = watchdog.tick() => notify::notify("WATCHDOG=1"),
                }
            };
            let Some(first) = first else {
                let fetch = self
                    .backoff
                    .fetch_due(Instant::now(), self.settings.source.interval);
                let mode = Mode::Follow {
                    fetch,
                    retry: false,
                };
                self.run_cycle(mode, &mut watchdog).await;
                continue;
            };
            // Everything queued while the last cycle ran is served together: one cycle answers every
            // reconcile request and every drift event; rollback, resume and suspend keep their order.
            let mut queued = Queued::default();
            queued.add(first);
            while let Ok(c) = commands.try_recv() {
                queued.add(c);
            }
            if !queued.replies.is_empty() || queued.reconcile {
                if queued.retry {
                    self.lift_quarantine().await;
                }
                let mode = Mode::Follow {
                    fetch: true,
                    retry: queued.retry,
                };
                let r = self.run_cycle(mode, &mut watchdog).await;
                for reply in queued.replies {
                    let _ = reply.send(r.clone());
                }
            } else if queued.drift {
                self.run_cycle(Mode::Local, &mut watchdog).await;
            }
            if queued.drift {
                self.apply_options.drift.dequeued();
            }
            for c in queued.other {
                self.command(c, &mut watchdog).await;
            }
        }
    }

    async fn command(&mut self, cmd: Command, watchdog: &mut tokio::time::Interval) {
        match cmd {
            Command::Reconcile { reply, retry } => {
                if retry {
                    self.lift_quarantine().await;
                }
                let mode = Mode::Follow { fetch: true, retry };
                let r = self.run_cycle(mode, watchdog).await;
                if let Some(reply) = reply {
                    let _ = reply.send(r);
                }
            }
            Command::Rollback { seq, reply } => {
                if self.suspended {
                    let _ = reply.send(Err(crate::error::RollbackError::Suspended.into()));
                    return;
                }
                let target = match self.rollback_target(seq).await {
                    Ok(t) => t,
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                };
                let r = self.run_cycle(Mode::Rollback(target), watchdog).await;
                let _ = reply.send(Ok(r));
            }
            Command::Drift => {
                self.apply_options.drift.dequeued();
                self.run_cycle(Mode::Local, watchdog).await;
            }
            Command::Diff { fetch, reply } => {
                let _ = reply.send(self.diff(fetch, watchdog).await);
            }
            Command::Suspend { reply } => {
                let r = self.db(|s| s.set_suspended(true)).await;
                if r.is_ok() {
                    self.suspended = true;
                    self.set_status(|s| s.suspended = true);
                    tracing::warn!(
                        "suspended: no reconciling, drift repair included, until `berth resume`"
                    );
                }
                let _ = reply.send(r);
            }
            Command::Resume { reply } => {
                let unpinned = self
                    .db(|s| {
                        s.set_suspended(false)?;
                        s.set_pinned(None)
                    })
                    .await;
                if let Err(e) = unpinned {
                    tracing::error!(error = %e, "cannot resume");
                } else {
                    self.suspended = false;
                    self.set_status(|s| {
                        s.pinned = false;
                        s.pinned_seq = None;
                        s.suspended = false;
                    });
                    tracing::info!("resumed: following Git again");
                }
                let r = self.run_cycle(FOLLOW, watchdog).await;
                let _ = reply.send(r);
            }
        }
    }

    /// `berth reconcile --retry`: the quarantined commit may be applied again.
    async fn lift_quarantine(&mut self) {
        if self.quarantine.is_none() {
            return;
        }
        let lifted = self
            .db(|s| {
                s.record(&crate::store::Record {
                    quarantine: Some(None),
                    ..Default::default()
                })
            })
            .await;
        match lifted {
            Ok(()) => {
                if let Some(q) = self.quarantine.take() {
                    tracing::info!(commit = %q.commit, "quarantine lifted by the operator");
                }
                self.set_status(|s| s.quarantined = None);
            }
            Err(e) => tracing::error!(error = %e, "cannot lift the quarantine"),
        }
    }

    /// Which stored revision a rollback goes to: `seq`, or the last good one before the current.
    async fn rollback_target(&self, seq: Option<u64>) -> Result<u64, CycleError> {
        let picked = self.db(move |store| pick_rollback(store, seq)).await?;
        Ok(picked?)
    }

    fn set_status(&self, f: impl FnOnce(&mut Status)) {
        let mut s = self.shared.status.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s);
    }

    /// Run a cycle under its deadline, pinging the watchdog while it runs (a long pull is not a hang; a
    /// blocked loop thread stops the pings, and a cycle stuck in an await is abandoned at the deadline).
    async fn run_cycle(&mut self, mode: Mode, watchdog: &mut tokio::time::Interval) -> CycleResult {
        let n = self.cycles + 1;
        let started = Instant::now();
        let span = tracing::info_span!("cycle", n, revision = tracing::field::Empty);
        let limit = self.settings.cycle_timeout;
        let finished = {
            let fut = self.cycle(mode).instrument(span.clone());
            let deadline = tokio::time::sleep(limit);
            tokio::pin!(fut);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    r = &mut fut => break Some(r),
                    _ = &mut deadline => break None,
                    _ = watchdog.tick() => notify::notify("WATCHDOG=1"),
                }
            }
        };
        let result = match finished {
            Some(r) => r,
            None => {
                let _entered = span.enter();
                self.abandoned += 1;
                // A git task still running on the blocking pool keeps the source; the next cycle opens
                // the clone again. An attempt it left open is not a death of the agent.
                tracing::error!(
                    cycle_timeout_s = limit.as_secs(),
                    abandoned = self.abandoned,
                    "cycle abandoned: it did not finish within cycle_timeout"
                );
                let mut errors = vec![CycleError::Timeout { after: limit }];
                if let Err(e) = self
                    .db(|s| {
                        s.record(&crate::store::Record {
                            attempt: Some(None),
                            ..Default::default()
                        })
                    })
                    .await
                {
                    errors.push(e);
                }
                let abandoned = self.abandoned;
                self.set_status(|s| {
                    s.cycles_abandoned = abandoned;
                    s.rollout = None;
                });
                self.finish(errors)
            }
        };
        self.metrics.cycle_done(result.outcome, started.elapsed());
        self.metrics.current(self.current.as_ref());
        if mode == Mode::Local && !self.suspended {
            self.metrics.drift_corrected();
        }
        result
    }

    /// Count the cycle, set the backoff from its errors' class, and publish its result in status.
    fn finish(&mut self, errors: Vec<CycleError>) -> CycleResult {
        let signer = self.current.as_ref().and_then(signer_of);
        let class = overall_class(&errors);
        self.backoff.cycle_done(class);
        self.cycles += 1;
        let outcome = if errors.is_empty() {
            Outcome::Applied
        } else {
            Outcome::Failed
        };
        let redactor = crate::sealing::Redactor::new(&self.secrets, self.store.box_key().cloned());
        let error =
            (!errors.is_empty()).then(|| redactor.redact(&join(&errors, "\n")).into_owned());
        for e in &errors {
            let text = e.to_string();
            tracing::error!(error = %redactor.redact(&text), class = %e.class(), "cycle failed");
        }
        let result = CycleResult {
            outcome,
            error: error.clone(),
            error_class: class,
            applied_commit: self.current.as_ref().map(|c| c.commit.clone()),
            applied_seq: self.current.as_ref().map(|c| c.seq),
        };
        let cycles = self.cycles;
        let quarantined = self.quarantine.as_ref().map(quarantine_info);
        let warnings = self
            .current
            .as_ref()
            .map(|c| c.warnings.clone())
            .unwrap_or_default();
        self.set_status(|s| {
            s.warnings = warnings;
            s.outcome = Some(outcome);
            s.last_error = error;
            s.error_class = class;
            s.cycles = cycles;
            s.applied_commit = result.applied_commit.clone();
            s.applied_seq = result.applied_seq;
            s.applied_signer = signer;
            s.quarantined = quarantined;
            s.rollout = None;
        });
        result
    }

    /// Ask the remote where the followed ref is; fetch objects only when it moved.
    async fn fetch(&mut self) -> Result<(), CycleError> {
        tracing::debug!("checking the remote");
        let fetched = self
            .git(|src| src.fetch().map(|o| (o, src.fetch_count())))
            .await;
        self.backoff.fetch_done(fetched.is_ok(), Instant::now());
        self.alerts.fetched(fetched.is_ok());
        self.metrics.fetch_done(fetched.is_ok());
        let (outcome, count) = fetched.map_err(CycleError::Fetch)?;
        self.fetched = Some(outcome.commit.clone());
        self.set_status(|s| {
            s.fetched_commit = Some(outcome.commit.clone());
            s.fetched_at = Some(crate::now_unix());
            s.fetch_count = count;
        });
        Ok(())
    }

    /// History retention (`history.keep`): drop old revisions from the store, then the applied refs of
    /// revisions it no longer holds, and let `git gc --auto` reclaim objects. Both block: in the git task.
    async fn prune_history(&mut self) {
        let (store, keep) = (self.store.clone(), self.settings.history.keep);
        let pruned = self
            .git(move |src| {
                let removed = store.prune(keep, &[]);
                Ok(removed.map(|r| (r, src.prune_applied(&|seq| store.may_need(seq)))))
            })
            .await;
        match pruned {
            Ok(Ok((removed, Ok(refs)))) => {
                if !removed.is_empty() || !refs.deleted.is_empty() {
                    tracing::info!(
                        keep,
                        revisions = removed.len(),
                        refs = refs.deleted.len(),
                        "history pruned"
                    );
                }
                if let Err(e) = refs.gc {
                    tracing::warn!(error = %e, "git gc of the local clone failed");
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot prune history"),
            Ok(Ok((_, Err(e)))) | Err(e) => tracing::warn!(error = %e, "cannot prune applied refs"),
        }
    }

    /// Check `commit` out into the working tree unless it is known to be there already.
    async fn ensure_checkout(&mut self, commit: &str) -> Result<(), source::SourceError> {
        if self.checked_out.as_deref() == Some(commit) {
            return Ok(());
        }
        let c = commit.to_string();
        self.git(move |src| src.checkout(&c)).await?;
        self.checked_out = Some(commit.to_string());
        Ok(())
    }

    /// Verify a commit's signature (`source.verify`), render it from its Git tree, then (only if it
    /// rendered) check it out. `Err` carries the error and, when the commit could be read, a failed
    /// revision record (without a sequence number).
    async fn render_commit(
        &mut self,
        commit: &str,
    ) -> Result<(DesiredState, Revision), (CycleError, Option<Revision>)> {
        let opts = render_options(&self.settings);
        let c = commit.to_string();
        let rendered = self
            .git(move |src| {
                let info = src.commit_info(&c)?;
                // An unverified commit is not even rendered.
                let rendered = match src.verify(&c, jiff::Timestamp::now()) {
                    Ok(signer) => Ok((signer, render_tree_warned(&src.tree(&c)?, &opts))),
                    Err(e) => Err(e),
                };
                Ok((info, rendered))
            })
            .await;
        let (info, verified) = match rendered {
            Ok(v) => v,
            Err(source) => {
                let commit = short(commit).to_string();
                return Err((CycleError::Read { commit, source }, None));
            }
        };
        let mut rev = Revision {
            seq: 0,
            commit: info.id.clone(),
            author: info.author.clone(),
            summary: info.summary.clone(),
            commit_time: info.time,
            applied_at: crate::now_unix(),
            outcome: Outcome::Failed,
            error: None,
            duration_ms: 0,
            rollback: false,
            desired: None,
            images: Default::default(),
            error_class: None,
            facts: self.settings.public_facts(),
            signer: None,
            warnings: Vec::new(),
        };
        let c = short(commit).to_string();
        let desired = match verified {
            Err(source) => Err(CycleError::Verify { commit: c, source }),
            Ok((signer, (result, warnings))) => {
                rev.signer = signer;
                rev.warnings = warnings.iter().map(|w| w.to_string()).collect();
                for w in &rev.warnings {
                    tracing::warn!(warning = %w, commit = short(commit), "render");
                }
                result.map_err(|source| CycleError::Render { commit: c, source })
            }
        };
        let desired = match desired {
            Ok(mut d) => {
                crate::sealing::attach_digests(&mut d, self.store.box_key());
                self.secrets.extend(&d.sensitive);
                d
            }
            Err(err) => {
                let failed = Revision {
                    error: Some(err.to_string()),
                    ..rev
                };
                return Err((err, Some(failed)));
            }
        };
        if let Err(source) = self.ensure_checkout(commit).await {
            let commit = short(commit).to_string();
            return Err((CycleError::Checkout { commit, source }, None));
        }
        Ok((
            desired.clone(),
            Revision {
                desired: Some(desired),
                ..rev
            },
        ))
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

/// Commands that arrived together, merged: any number of reconcile requests and drift events become one
/// cycle.
#[derive(Default)]
struct Queued {
    reconcile: bool,
    retry: bool,
    replies: Vec<oneshot::Sender<CycleResult>>,
    drift: bool,
    other: Vec<Command>,
}

impl Queued {
    fn add(&mut self, c: Command) {
        match c {
            Command::Reconcile { reply, retry } => {
                self.reconcile = true;
                self.retry |= retry;
                self.replies.extend(reply);
            }
            Command::Drift => self.drift = true,
            c => self.other.push(c),
        }
    }
}

/// Pick the revision a rollback goes to: `seq`, or [`Store::default_rollback`] (the rule history
/// retention protects too). `Ok(Err(_))`: the store answered, the rollback is refused.
fn pick_rollback(
    store: &Store,
    seq: Option<u64>,
) -> Result<Result<u64, crate::error::RollbackError>, StoreError> {
    use crate::error::RollbackError;
    let rev = match seq {
        Some(s) => match store.get(s)? {
            Some(r) => r,
            None => return Ok(Err(RollbackError::NoSuchRevision(s))),
        },
        None => match store.default_rollback()? {
            Some(r) => r,
            None => return Ok(Err(RollbackError::NoEarlierGood)),
        },
    };
    if rev.desired.is_none() {
        return Ok(Err(RollbackError::NotRendered(rev.seq)));
    }
    Ok(Ok(rev.seq))
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

/// Render the followed path of a tree; a followed path missing from the commit is an error, not an
/// empty desired state (which would remove every container).
pub fn render_tree(tree: &dyn Tree, opts: &RenderOptions) -> Result<DesiredState, RenderError> {
    let (result, warnings) = render_tree_warned(tree, opts);
    for w in &warnings {
        tracing::warn!(warning = %w, "render");
    }
    result
}

/// [`render_tree`], and the render's warnings (see [`render::render_warned`]) instead of logging them.
pub fn render_tree_warned(
    tree: &dyn Tree,
    opts: &RenderOptions,
) -> (Result<DesiredState, RenderError>, Vec<render::Problem>) {
    let exists = opts.path.as_os_str() == "."
        || matches!(tree.kind(&opts.path), Ok(Some(render::EntryKind::Dir)));
    if !exists {
        let problems = vec![render::Problem {
            file: None,
            line: None,
            column: None,
            stack: None,
            service: None,
            message: format!(
                "source.path {} is not a directory in this commit",
                opts.path.display()
            ),
        }];
        return (Err(RenderError { problems }), Vec::new());
    }
    render::render_warned(tree, opts)
}

/// How this box renders a commit: its followed path, its checkout, and its variables (facts and the box's
/// own under the agent's environment, see [`crate::render::facts::scope`]).
pub fn render_options(settings: &Settings) -> RenderOptions {
    let mut opts = box_render_options(
        &settings.source.path,
        settings.state_dir.join("repo"),
        &crate::render::facts::BoxIdentity::local(&settings.agent_id),
        &settings.facts,
        sops_options(settings),
    );
    opts.secret_vars = settings.secret_vars();
    opts
}

/// How this box decrypts SOPS files: its `secrets.age_key_file` (an encrypted file without a key is a
/// render error) and its runtime directory for decrypted bind-mounted files.
pub fn sops_options(settings: &Settings) -> crate::render::sops::SopsOptions {
    crate::render::sops::SopsOptions {
        age_key_file: Some(settings.age_key_file.clone()),
        placeholders: false,
        runtime_dir: crate::render::sops::runtime::runtime_dir(&settings.agent_id),
    }
}

/// The options a box following `path` renders with, for the agent ([`render_options`]) and
/// `berth render --repo` alike: the root stack name from the path and the box's agent id, and the
/// variables from its identity, its facts and this process's environment (see
/// [`crate::render::facts::scope`]). Both then render with [`render_tree`].
pub fn box_render_options(
    path: &std::path::Path,
    checkout_dir: std::path::PathBuf,
    identity: &crate::render::facts::BoxIdentity,
    facts: &std::collections::BTreeMap<String, String>,
    sops: crate::render::sops::SopsOptions,
) -> RenderOptions {
    RenderOptions {
        path: path.to_path_buf(),
        checkout_dir,
        root_stack_name: root_stack_name_of(path, &identity.agent_id),
        env: crate::render::facts::scope(identity, facts, std::env::vars()),
        sops,
        // The process's environment; callers add the variables of secret facts.
        secret_vars: crate::render::secret_values::environment_names(),
    }
}

/// The stack name of the followed directory itself, when its compose file has no `name:`.
pub fn root_stack_name(settings: &Settings) -> String {
    root_stack_name_of(&settings.source.path, &settings.agent_id)
}

/// The root stack name of a box following `path` under `agent_id` (`berth render --repo` shares it).
pub fn root_stack_name_of(path: &std::path::Path, agent_id: &str) -> String {
    let base = match path.file_name() {
        Some(n) if path.as_os_str() != "." => n.to_string_lossy().to_string(),
        _ => agent_id.to_string(),
    };
    sanitize_stack_name(&base)
}

pub use crate::render::sanitize_stack_name;

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_names_are_sanitized() {
        assert_eq!(sanitize_stack_name("Edge-01"), "edge-01");
        assert_eq!(sanitize_stack_name("edge.box"), "edge-box");
        assert_eq!(sanitize_stack_name("..."), "default");
    }
}

/// How status names the signer of an applied revision.
fn signer_of(rev: &Revision) -> Option<String> {
    rev.signer.as_ref().map(|s| s.to_string())
}
