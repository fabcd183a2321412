//! The reconcile loop: every trigger (interval tick with jitter, `berth reconcile`, rollback, resume, drift)
//! feeds one loop that recomputes everything: fetch → render → checkout → observe → plan → apply → record.
//!
//! Errors never tear anything down: a fetch or render failure keeps converging the current revision (so
//! drift is still corrected offline). Errors are typed ([`CycleError`]); their class decides the next
//! delay ([`backoff`]). Git and store calls run on the blocking pool, never on the loop's thread; each
//! cycle has a deadline (`cycle_timeout`) after which it is abandoned, and the systemd watchdog is pinged
//! from the loop only while it is alive and within that deadline.

use crate::api::server::{Command, Shared};
use crate::api::{CycleResult, SourceInfo, Status};
use crate::config::Settings;
use crate::error::{overall_class, CycleError, RollbackError};
use crate::model::DesiredState;
use crate::render::{self, RenderError, RenderOptions, Tree};
use crate::runtime::{DockerRuntime, Owner};
use crate::source::{self, GitSource};
use crate::store::{Outcome, Revision, Store, StoreError};
use crate::{apply, notify};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

pub mod backoff;
pub mod decide;
mod drift;
pub use backoff::Backoff;
pub use drift::watch_drift;

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
    /// A commit that failed to render or check out: not retried until the remote moves.
    rejected: Option<(String, Arc<CycleError>)>,
    backoff: Backoff,
    cycles: u64,
    abandoned: u64,
    /// The commit the working tree is known to hold (checked out by this process).
    checked_out: Option<String>,
    /// When each image was last pulled (for `pull_policy: daily` and the like); kept in the store.
    pull_log: crate::images::PullLog,
    apply_options: apply::ApplyOptions,
}

/// What one cycle is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Follow Git (or the pinned revision); `fetch`: ask the remote first.
    Follow { fetch: bool },
    /// Re-apply stored revision `seq` and pin there, without touching the remote.
    Rollback(u64),
    /// Converge the current (or pinned) revision again without fetching: drift seen in engine events.
    Local,
}

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
}

fn open_state(settings: &Settings) -> anyhow::Result<Opened> {
    std::fs::create_dir_all(&settings.state_dir)
        .map_err(|e| anyhow::anyhow!("state_dir {}: {e}", settings.state_dir.display()))?;
    let store = Store::open(&settings.state_dir.join("store"))?;
    let source = GitSource::open(&settings.state_dir, &settings.source)?;
    let pointers = store.pointers()?;
    let pull_log = store.pull_log().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read pull times; starting afresh");
        Default::default()
    });
    let current = match pointers.current {
        Some(seq) => store.get(seq)?,
        None => None,
    };
    Ok(Opened {
        store,
        source,
        pointers,
        pull_log,
        current,
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
            last_good_seq: pointers.last_good,
            pinned: pointers.pinned.is_some(),
            pinned_seq: pointers.pinned,
            ..Default::default()
        };
        let shared = Arc::new(Shared {
            status: Mutex::new(status),
            store: store.clone(),
            runtime: runtime.clone(),
            commands: tx,
        });
        let agent = Agent {
            settings,
            runtime,
            store,
            source: Some(source),
            shared,
            current,
            fetched: None,
            rejected: None,
            backoff: Backoff::default(),
            cycles: 0,
            abandoned: 0,
            checked_out: None,
            pull_log,
            apply_options: apply::ApplyOptions::from_env(),
        };
        Ok((agent, rx))
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
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

        let first = self
            .run_cycle(Mode::Follow { fetch: true }, &mut watchdog)
            .await;
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
                self.run_cycle(Mode::Follow { fetch }, &mut watchdog).await;
                continue;
            };
            // Everything queued while the last cycle ran is served together: one cycle answers every
            // reconcile request and every drift event; rollback and resume keep their order.
            let mut queued = Queued::default();
            queued.add(first);
            while let Ok(c) = commands.try_recv() {
                queued.add(c);
            }
            if !queued.replies.is_empty() || queued.reconcile {
                let r = self
                    .run_cycle(Mode::Follow { fetch: true }, &mut watchdog)
                    .await;
                for reply in queued.replies {
                    let _ = reply.send(r.clone());
                }
            } else if queued.drift {
                self.run_cycle(Mode::Local, &mut watchdog).await;
            }
            for c in queued.other {
                self.command(c, &mut watchdog).await;
            }
        }
    }

    async fn command(&mut self, cmd: Command, watchdog: &mut tokio::time::Interval) {
        match cmd {
            Command::Reconcile { reply } => {
                let r = self.run_cycle(Mode::Follow { fetch: true }, watchdog).await;
                if let Some(reply) = reply {
                    let _ = reply.send(r);
                }
            }
            Command::Rollback { seq, reply } => {
                let target = match self.rollback_target(seq).await {
                    Ok(t) => t,
                    Err(e) => {
                        let _ = reply.send(Err(e.to_string()));
                        return;
                    }
                };
                let r = self.run_cycle(Mode::Rollback(target), watchdog).await;
                let _ = reply.send(Ok(r));
            }
            Command::Drift => {
                self.run_cycle(Mode::Local, watchdog).await;
            }
            Command::Diff { fetch, reply } => {
                let _ = reply.send(self.diff(fetch, watchdog).await);
            }
            Command::Resume { reply } => {
                if let Err(e) = self.db(|s| s.set_pinned(None)).await {
                    tracing::error!(error = %e, "cannot unpin");
                }
                self.set_status(|s| {
                    s.pinned = false;
                    s.pinned_seq = None;
                });
                tracing::info!("resumed: following Git again");
                let r = self.run_cycle(Mode::Follow { fetch: true }, watchdog).await;
                let _ = reply.send(r);
            }
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
        match finished {
            Some(r) => r,
            None => {
                let _entered = span.enter();
                self.abandoned += 1;
                // A git task still running on the blocking pool keeps the source; the next cycle opens
                // the clone again.
                tracing::error!(
                    cycle_timeout_s = limit.as_secs(),
                    abandoned = self.abandoned,
                    "cycle abandoned: it did not finish within cycle_timeout"
                );
                let abandoned = self.abandoned;
                self.set_status(|s| s.cycles_abandoned = abandoned);
                self.finish(vec![CycleError::Timeout { after: limit }])
            }
        }
    }

    async fn cycle(&mut self, mode: Mode) -> CycleResult {
        let started = Instant::now();
        let mut errors: Vec<CycleError> = Vec::new();
        let pinned = match self.db(|s| s.pointers()).await {
            Ok(p) => p.pinned,
            Err(e) => {
                errors.push(e);
                None
            }
        };

        // 1. Fetch (not for a rollback: that works offline, from the store).
        if mode == (Mode::Follow { fetch: true }) {
            if let Err(e) = self.fetch().await {
                tracing::warn!(error = %e, "fetch failed; keeping the current revision");
                errors.push(e);
            }
        }

        // 2. Decide the target: a new revision to render, or the current/pinned one to keep converged.
        let (target, new_revision) = self.choose_target(mode, pinned, &mut errors).await;

        // 3-5. Observe, plan, apply.
        let mut apply_errors = Vec::new();
        let mut images_used = std::collections::BTreeMap::new();
        if let Some(t) = &target {
            tracing::Span::current().record("revision", t.commit.as_str());
            match self.converge(t).await {
                Ok(report) => {
                    images_used = report.images;
                    apply_errors.extend(report.errors.into_iter().map(CycleError::Step));
                }
                Err(e) => apply_errors.push(CycleError::Engine(e)),
            }
        }
        for e in &apply_errors {
            tracing::error!(error = %e, class = %e.class(), "apply step failed");
        }

        // 6. Record.
        let apply_ok = apply_errors.is_empty();
        let apply_text = join(&apply_errors, "; ");
        errors.extend(apply_errors);
        if let Some(mut rev) = new_revision {
            rev.applied_at = crate::now_unix();
            rev.duration_ms = started.elapsed().as_millis().try_into().unwrap_or(u64::MAX);
            rev.images = images_used;
            rev.outcome = if apply_ok {
                Outcome::Applied
            } else {
                Outcome::Failed
            };
            rev.error = (!apply_ok).then_some(apply_text);
            match self.record_new(rev, apply_ok).await {
                Ok(rev) => self.current = Some(rev),
                Err(e) => errors.push(e),
            }
        } else if let Some(cur) = self
            .current
            .clone()
            .filter(|c| c.outcome == Outcome::Failed && apply_ok && target.is_some())
        {
            // A revision that failed to apply now converged: it becomes good.
            let rev = Revision {
                outcome: Outcome::Applied,
                error: None,
                ..cur
            };
            let saved = rev.clone();
            match self.db(move |s| s.put(&saved, true, true)).await {
                Ok(()) => self.current = Some(rev),
                Err(e) => errors.push(e),
            }
        }
        match self.db(|s| s.pointers()).await {
            Ok(p) => self.set_status(|s| s.last_good_seq = p.last_good),
            Err(e) => errors.push(e),
        }
        self.finish(errors)
    }

    /// Count the cycle, set the backoff from its errors' class, and publish its result in status.
    fn finish(&mut self, errors: Vec<CycleError>) -> CycleResult {
        let class = overall_class(&errors);
        self.backoff.cycle_done(class);
        self.cycles += 1;
        let outcome = if errors.is_empty() {
            Outcome::Applied
        } else {
            Outcome::Failed
        };
        let error = (!errors.is_empty()).then(|| join(&errors, "\n"));
        let result = CycleResult {
            outcome,
            error: error.clone(),
            error_class: class,
            applied_commit: self.current.as_ref().map(|c| c.commit.clone()),
            applied_seq: self.current.as_ref().map(|c| c.seq),
        };
        let cycles = self.cycles;
        self.set_status(|s| {
            s.outcome = Some(outcome);
            s.last_error = error;
            s.error_class = class;
            s.cycles = cycles;
            s.applied_commit = result.applied_commit.clone();
            s.applied_seq = result.applied_seq;
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
        let (outcome, count) = fetched.map_err(CycleError::Fetch)?;
        self.fetched = Some(outcome.commit.clone());
        self.set_status(|s| {
            s.fetched_commit = Some(outcome.commit.clone());
            s.fetched_at = Some(crate::now_unix());
            s.fetch_count = count;
        });
        Ok(())
    }

    /// The desired state this cycle converges, and the new revision record it will write (when it is
    /// a new commit or a rollback).
    async fn choose_target(
        &mut self,
        mode: Mode,
        pinned: Option<u64>,
        errors: &mut Vec<CycleError>,
    ) -> (Option<Target>, Option<Revision>) {
        match (mode, pinned) {
            (Mode::Rollback(seq), _) => match self.db(move |s| s.get(seq)).await {
                Ok(Some(rev)) if rev.desired.is_some() => {
                    if let Err(e) = self.db(move |s| s.set_pinned(Some(seq))).await {
                        errors.push(e);
                    }
                    self.set_status(|s| {
                        s.pinned = true;
                        s.pinned_seq = Some(seq);
                    });
                    tracing::info!(seq, commit = %rev.commit, "rolling back; pinned until `berth resume`");
                    let target = Target::of(&rev);
                    let record = Revision {
                        rollback: true,
                        outcome: Outcome::Applied,
                        error: None,
                        ..rev
                    };
                    (target, Some(record))
                }
                Ok(_) => {
                    errors.push(RollbackError::NotRendered(seq).into());
                    (None, None)
                }
                Err(e) => {
                    errors.push(e);
                    (None, None)
                }
            },
            (Mode::Follow { .. } | Mode::Local, Some(seq)) => {
                // Pinned: new commits are fetched and shown, not applied.
                match self.db(move |s| s.get(seq)).await {
                    Ok(Some(rev)) => (Target::of(&rev), None),
                    _ => (self.current_target(), None),
                }
            }
            (Mode::Follow { .. }, None) => match self.fetched.clone() {
                Some(commit) if self.current.as_ref().map(|c| &c.commit) != Some(&commit) => {
                    if let Some((_, err)) = self.rejected.clone().filter(|(c, _)| *c == commit) {
                        // Already reported once; keep the running revision converged.
                        errors.push(CycleError::Rejected(err));
                        return (self.current_target(), None);
                    }
                    match self.render_commit(&commit).await {
                        Ok((desired, rev)) => (Some(Target { desired, commit }), Some(rev)),
                        Err((err, rev)) => {
                            tracing::error!(commit = %commit, error = %err, class = %err.class(), "revision rejected; the running revision stays");
                            let err = Arc::new(err);
                            self.rejected = Some((commit.clone(), err.clone()));
                            if let Some(rev) = rev {
                                if let Err(e) = self.record_rejected(rev).await {
                                    errors.push(e);
                                }
                            }
                            errors.push(CycleError::Rejected(err));
                            (self.current_target(), None)
                        }
                    }
                }
                _ => (self.current_target(), None),
            },
            (Mode::Local, None) => (self.current_target(), None),
        }
    }

    /// Images, observe, plan and apply for one target; pull times are kept in the store.
    async fn converge(
        &mut self,
        target: &Target,
    ) -> Result<apply::ApplyReport, crate::runtime::RuntimeError> {
        // The working tree must hold the revision being converged (after a rollback, or when the clone
        // under state_dir was lost); without it, bind mounts would see other files.
        if let Err(e) = self.ensure_checkout(&target.commit).await {
            tracing::warn!(error = %e, commit = %target.commit, "cannot check out the revision; bind-mounted files stay as they are");
        }
        let owner = Owner {
            agent_id: self.settings.agent_id.clone(),
            revision: target.commit.clone(),
        };
        let throttle = crate::images::Throttle::new(Duration::from_secs(2));
        let progress = |image: &str, line: &str| {
            if throttle.pass(image, line) {
                tracing::info!(image, progress = line, "pulling");
            }
        };
        let before = self.pull_log.clone();
        let converged = apply::converge(
            &self.runtime,
            &target.desired,
            &owner,
            &mut self.pull_log,
            &self.apply_options,
            &progress,
        )
        .await;
        if self.pull_log != before {
            let log = self.pull_log.clone();
            if let Err(e) = self.db(move |s| s.set_pull_log(&log)).await {
                tracing::warn!(error = %e, "cannot record pull times");
            }
        }
        let (plan, report) = converged?;
        for step in plan.describe() {
            tracing::info!(step = %step, "plan");
        }
        for w in &report.warnings {
            tracing::warn!(warning = %w, "image");
        }
        Ok(report)
    }

    /// Write a new revision record (next sequence number, pointers) in one transaction, then keep a
    /// local ref to its commit so a rollback to it works offline.
    async fn record_new(&mut self, mut rev: Revision, good: bool) -> Result<Revision, CycleError> {
        let rev = self
            .db(move |s| {
                rev.seq = s.next_seq()?;
                s.put(&rev, true, good)?;
                Ok(rev)
            })
            .await?;
        let (seq, commit) = (rev.seq, rev.commit.clone());
        if let Err(e) = self
            .git(move |src| {
                // A rollback record re-applies an older commit, which may be gone from a fresh clone.
                if src.has_commit(&commit) {
                    src.keep(seq, &commit)?;
                }
                Ok(())
            })
            .await
        {
            tracing::warn!(error = %e, "cannot keep a local ref to the applied commit");
        }
        tracing::info!(seq = rev.seq, commit = %rev.commit, outcome = %rev.outcome, duration_ms = rev.duration_ms, "revision recorded");
        self.prune_history().await;
        Ok(rev)
    }

    /// Record a commit that did not render, once (not again when it is the newest record already).
    async fn record_rejected(&mut self, mut rev: Revision) -> Result<(), CycleError> {
        let recorded = self
            .db(move |s| {
                let already = s.list(1)?.into_iter().next().is_some_and(|r| {
                    r.commit == rev.commit && r.outcome == Outcome::Failed && r.desired.is_none()
                });
                if !already {
                    rev.seq = s.next_seq()?;
                    s.put(&rev, false, false)?;
                }
                Ok(!already)
            })
            .await?;
        if recorded {
            self.prune_history().await;
        }
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

    fn current_target(&self) -> Option<Target> {
        self.current.as_ref().and_then(Target::of)
    }

    /// Render a commit from its Git tree, then (only if it rendered) check it out. `Err` carries the
    /// error and, when the commit could be read, a failed revision record (without a sequence number).
    async fn render_commit(
        &mut self,
        commit: &str,
    ) -> Result<(DesiredState, Revision), (CycleError, Option<Revision>)> {
        let opts = RenderOptions {
            path: self.settings.source.path.clone(),
            checkout_dir: self.settings.state_dir.join("repo"),
            root_stack_name: root_stack_name(&self.settings),
            env: std::env::vars().collect(),
        };
        let c = commit.to_string();
        let rendered = self
            .git(move |src| {
                let info = src.commit_info(&c)?;
                let tree = src.tree(&c)?;
                Ok((info, render_tree(&tree, &opts)))
            })
            .await;
        let (info, result) = match rendered {
            Ok(v) => v,
            Err(source) => {
                let commit = short(commit).to_string();
                return Err((CycleError::Read { commit, source }, None));
            }
        };
        let rev = Revision {
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
        };
        let desired = match result {
            Ok(d) => d,
            Err(source) => {
                let err = CycleError::Render {
                    commit: short(commit).to_string(),
                    source,
                };
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

    /// `berth diff` without a directory: render the fetched commit from the local clone (`fetch`: ask
    /// the remote first), plan it against the engine and describe the plan, with old specs from the
    /// store. Nothing is pulled, checked out, recorded or applied. Bounded by `cycle_timeout`, pinging
    /// the watchdog, like a cycle.
    async fn diff(
        &mut self,
        fetch: bool,
        watchdog: &mut tokio::time::Interval,
    ) -> Result<crate::api::DiffAnswer, crate::diff::DiffError> {
        use crate::diff::{engine, DiffError};
        let limit = self.settings.cycle_timeout;
        let work = async {
            if fetch {
                self.fetch().await.map_err(DiffError::Fetch)?;
            }
            let commit = self.fetched.clone().ok_or(DiffError::NothingFetched)?;
            let opts = RenderOptions {
                path: self.settings.source.path.clone(),
                checkout_dir: self.settings.state_dir.join("repo"),
                root_stack_name: root_stack_name(&self.settings),
                env: std::env::vars().collect(),
            };
            let (c, short_id) = (commit.clone(), short(&commit).to_string());
            let desired = self
                .git(move |src| Ok(render_tree(&src.tree(&c)?, &opts)))
                .await
                .map_err(|source| DiffError::Read {
                    commit: short_id.clone(),
                    source,
                })?
                .map_err(|source| DiffError::Render {
                    commit: short_id,
                    source,
                })?;
            let pointers = self.db(|s| s.pointers()).await.map_err(DiffError::Agent)?;
            let agent_id = self.settings.agent_id.clone();
            let planned = engine::plan(&self.runtime, &desired, &agent_id, &self.pull_log).await?;
            let wanted = crate::diff::changed_hashes(&planned.plan);
            let mut known = self
                .db(move |s| engine::specs_in_store(s, &wanted))
                .await
                .map_err(DiffError::Agent)?;
            known.extend(engine::specs_from_labels(&self.runtime, &planned.plan, &known).await);
            Ok(crate::api::DiffAnswer {
                agent_id,
                commit: Some(commit),
                applied_commit: self.current.as_ref().map(|c| c.commit.clone()),
                pinned: pointers.pinned.is_some(),
                diff: planned.describe(&desired, &known),
            })
        };
        let deadline = tokio::time::sleep(limit);
        tokio::pin!(work);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                r = &mut work => return r,
                _ = &mut deadline => return Err(DiffError::Timeout { after: limit }),
                _ = watchdog.tick() => notify::notify("WATCHDOG=1"),
            }
        }
    }
}

/// Commands that arrived together, merged: any number of reconcile requests and drift events become one
/// cycle.
#[derive(Default)]
struct Queued {
    reconcile: bool,
    replies: Vec<oneshot::Sender<CycleResult>>,
    drift: bool,
    other: Vec<Command>,
}

impl Queued {
    fn add(&mut self, c: Command) {
        match c {
            Command::Reconcile { reply } => {
                self.reconcile = true;
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
) -> Result<Result<u64, RollbackError>, StoreError> {
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

/// Render the followed path of a tree; a followed path missing from the commit is an error, not an
/// empty desired state (which would remove every container).
pub fn render_tree(tree: &dyn Tree, opts: &RenderOptions) -> Result<DesiredState, RenderError> {
    let exists = opts.path.as_os_str() == "."
        || matches!(tree.kind(&opts.path), Ok(Some(render::EntryKind::Dir)));
    if !exists {
        return Err(RenderError {
            problems: vec![render::Problem {
                file: None,
                line: None,
                column: None,
                stack: None,
                service: None,
                message: format!(
                    "source.path {} is not a directory in this commit",
                    opts.path.display()
                ),
            }],
        });
    }
    render::render(tree, opts)
}

/// The stack name of the followed directory itself, when its compose file has no `name:`.
pub fn root_stack_name(settings: &Settings) -> String {
    let base = match settings.source.path.file_name() {
        Some(n) if settings.source.path.as_os_str() != "." => n.to_string_lossy().to_string(),
        _ => settings.agent_id.clone(),
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
