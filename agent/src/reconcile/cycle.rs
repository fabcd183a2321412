//! One cycle: gather the facts, [`decide`], and carry the decision out — apply a new commit under the
//! attempt record and the health gate (rolling back and quarantining on failure), keep a stored revision
//! converged, roll back, or refuse a quarantined or poisoned commit. Every record it writes goes through
//! [`Store::record`]: the revision, the pointers, the pin, the attempt and the quarantine in one transaction.

use super::decide::{decide, Decision, Facts, Trigger, Unfinished};
use super::{short, Agent, Mode, Target};
use crate::api::{CycleResult, RolloutInfo};
use crate::apply::{ApplyReport as Report, ConvergeError};
use crate::config::OnFailure;
use crate::error::{CycleError, ErrorClass};
use crate::rollout::{self, GateFailure, GateOutcome, Watched};
use crate::runtime::{Owner, Runtime};
use crate::signals::metrics::RollbackKind;
use crate::store::{Attempt, Outcome, Quarantine, Record, Revision, Store};
use std::time::{Duration, Instant};

/// How a new revision's rollout ended.
enum Rollout {
    Passed(Report),
    /// Engine trouble before or during the apply: retried with backoff.
    Transient(Vec<CycleError>, Option<Report>),
    /// The commit is bad: failed preflight, the empty-render guard, a dependency or the health gate.
    Failed(CycleError, Option<Report>),
    Superseded(Report),
}

impl Agent {
    pub(super) async fn cycle(&mut self, mode: Mode) -> CycleResult {
        let started = Instant::now();
        let mut errors: Vec<CycleError> = Vec::new();
        if self.suspended {
            tracing::debug!("suspended: nothing to do");
            return self.finish(errors);
        }
        let pinned = match self.db(|s| s.pointers()).await {
            Ok(p) => p.pinned,
            Err(e) => {
                errors.push(e);
                None
            }
        };
        if let Mode::Follow { fetch: true, .. } = mode {
            if let Err(e) = self.fetch().await {
                tracing::warn!(error = %e, "fetch failed; keeping the current revision");
                errors.push(e);
            }
        }
        // The remote moved on past a quarantined commit: the quarantine is over.
        if let (Some(q), Some(fetched)) = (&self.quarantine, &self.fetched) {
            if q.commit != *fetched {
                tracing::info!(quarantined = %q.commit, fetched = %fetched, "the remote moved on; quarantine lifted");
                match self
                    .write(Record {
                        quarantine: Some(None),
                        ..Default::default()
                    })
                    .await
                {
                    Ok(()) => self.set_quarantine(None),
                    Err(e) => errors.push(e),
                }
            }
        }
        let trigger = match mode {
            Mode::Follow { retry, .. } => Trigger::Follow { retry },
            Mode::Local => Trigger::Local,
            Mode::Rollback(seq) => Trigger::Rollback(seq),
        };
        let decision = decide(
            trigger,
            &Facts {
                suspended: self.suspended,
                pinned,
                current: self.current.as_ref().map(|c| (c.seq, c.commit.as_str())),
                fetched: self.fetched.as_deref(),
                quarantined: self.quarantine.as_ref().map(|q| q.commit.as_str()),
                unfinished: self.unfinished.as_ref().map(|a| Unfinished {
                    commit: a.revision.commit.as_str(),
                    deaths: a.deaths,
                }),
            },
        );
        tracing::debug!(?decision, "decided");
        // An attempt found at start that this decision does not resume is over.
        if !matches!(
            decision,
            Decision::Apply { resumed: true, .. } | Decision::Poisoned { .. }
        ) {
            if let Some(a) = self.unfinished.take() {
                tracing::info!(commit = %a.revision.commit, "dropping the unfinished attempt");
                if let Err(e) = self
                    .write(Record {
                        attempt: Some(None),
                        ..Default::default()
                    })
                    .await
                {
                    errors.push(e);
                }
            }
        }
        match decision {
            Decision::Suspended => {}
            Decision::Keep { seq } => self.keep(seq, &mut errors).await,
            Decision::Rollback { seq } => self.roll_back_to(seq, &mut errors).await,
            Decision::Quarantined { commit, keep } => {
                let reason = self
                    .quarantine
                    .as_ref()
                    .map(|q| q.reason.clone())
                    .unwrap_or_default();
                errors.push(CycleError::Quarantined {
                    commit: short(&commit).to_string(),
                    reason,
                });
                self.keep(keep, &mut errors).await;
            }
            Decision::Poisoned { commit, keep } => {
                self.poisoned(&commit, &mut errors).await;
                self.keep(keep, &mut errors).await;
            }
            Decision::Apply { commit, resumed } => {
                self.apply_new(&commit, resumed, started, &mut errors).await
            }
        }
        match self.db(|s| s.pointers()).await {
            Ok(p) => self.set_status(|s| {
                s.last_good_seq = p.last_good;
                s.pinned = p.pinned.is_some();
                s.pinned_seq = p.pinned;
            }),
            Err(e) => errors.push(e),
        }
        self.alerts.cycle_done(&errors);
        self.finish(errors)
    }

    /// Keep stored revision `seq` converged. A revision whose apply failed for a transient reason, or
    /// whose rollout was superseded, becomes good once it converges and passes its gate.
    async fn keep(&mut self, seq: Option<u64>, errors: &mut Vec<CycleError>) {
        let Some(seq) = seq else { return };
        let rev = match &self.current {
            Some(c) if c.seq == seq => c.clone(),
            _ => match self.db(move |s| s.get(seq)).await {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => return errors.push(e),
            },
        };
        let Some(target) = Target::of(&rev) else {
            return;
        };
        tracing::Span::current().record("revision", target.commit.as_str());
        let report = match self.converge(&target).await {
            Ok(r) => r,
            Err(e) => {
                return errors.push(CycleError::Converge {
                    commit: short(&target.commit).to_string(),
                    source: e,
                })
            }
        };
        let ok = report.ok();
        if !report.done.is_empty() && errors.iter().all(|e| matches!(e, CycleError::Fetch(_))) {
            self.alerts.drift_corrected(&target.commit, &report.done);
        }
        errors.extend(report.errors.into_iter().map(CycleError::Step));
        let promotable = matches!(
            (rev.outcome, rev.error_class),
            (Outcome::Failed, Some(ErrorClass::Transient)) | (Outcome::Superseded, _)
        );
        let is_current = self.current.as_ref().is_some_and(|c| c.seq == rev.seq);
        if !(ok && promotable && is_current) {
            return;
        }
        // The whole revision must be healthy now, not only what this cycle touched.
        let watched = match self.watch_all(&target).await {
            Ok(w) => w,
            Err(e) => return errors.push(e),
        };
        match self.gate(&watched, &target.commit).await {
            GateOutcome::Passed => {
                let rev = Revision {
                    outcome: Outcome::Applied,
                    error: None,
                    error_class: None,
                    ..rev
                };
                let write = self.write(Record {
                    revision: Some(rev.clone()),
                    current: Some(rev.seq),
                    last_good: Some(rev.seq),
                    ..Default::default()
                });
                match write.await {
                    Ok(()) => {
                        tracing::info!(seq = rev.seq, commit = %rev.commit, "revision passed its health gate: last good");
                        self.current = Some(rev);
                    }
                    Err(e) => errors.push(e),
                }
            }
            GateOutcome::Superseded => {}
            GateOutcome::Failed(f) => {
                let err = gate_error(&target.commit, f, false);
                // Box::pin: fail_rollout converges the last good revision through keep() again.
                Box::pin(self.fail_rollout(rev, err, None, true, errors)).await;
            }
        }
    }

    /// `berth rollback`: re-apply stored revision `seq` and pin there (the record and the pin in one
    /// transaction).
    async fn roll_back_to(&mut self, seq: u64, errors: &mut Vec<CycleError>) {
        let rev = match self.db(move |s| s.get(seq)).await {
            Ok(Some(rev)) if rev.desired.is_some() => rev,
            Ok(_) => return errors.push(crate::error::RollbackError::NotRendered(seq).into()),
            Err(e) => return errors.push(e),
        };
        let Some(target) = Target::of(&rev) else {
            return;
        };
        tracing::Span::current().record("revision", target.commit.as_str());
        tracing::info!(seq, commit = %rev.commit, "rolling back; pinned until `berth resume`");
        self.metrics.rollback(RollbackKind::Manual);
        let started = Instant::now();
        let converged = self.converge(&target).await;
        let mut record = Revision {
            seq: 0,
            rollback: true,
            applied_at: crate::now_unix(),
            duration_ms: millis(started.elapsed()),
            outcome: Outcome::Applied,
            error: None,
            error_class: None,
            ..rev
        };
        match converged {
            Ok(report) => {
                if !report.ok() {
                    record.outcome = Outcome::Failed;
                    record.error = Some(report.error_text());
                    record.error_class = report.errors.iter().map(|e| e.class()).max();
                }
                record.images = report.images;
                errors.extend(report.errors.into_iter().map(CycleError::Step));
            }
            Err(e) => {
                errors.push(CycleError::Converge {
                    commit: short(&target.commit).to_string(),
                    source: e,
                });
                return;
            }
        }
        let good = record.outcome == Outcome::Applied;
        let moves = Moves {
            current: true,
            good,
            pin: Some(seq),
        };
        match self.record_new(record, moves, None).await {
            Ok(rev) => {
                self.current = Some(rev);
                self.set_status(|s| {
                    s.pinned = true;
                    s.pinned_seq = Some(seq);
                });
            }
            Err(e) => errors.push(e),
        }
    }

    /// The agent died twice applying `commit`: record it as failed and quarantine it.
    async fn poisoned(&mut self, commit: &str, errors: &mut Vec<CycleError>) {
        let Some(attempt) = self.unfinished.take() else {
            return;
        };
        let err = CycleError::Poisoned {
            commit: short(commit).to_string(),
        };
        let rev = Revision {
            outcome: Outcome::Failed,
            error: Some(err.to_string()),
            error_class: Some(err.class()),
            applied_at: crate::now_unix(),
            ..attempt.revision
        };
        if let Err(e) = self
            .record_new(rev, Moves::NONE, Some(quarantine(commit, &err)))
            .await
        {
            errors.push(e);
        }
        errors.push(err);
    }

    /// Render (or resume) a new commit and roll it out: attempt record, checkout, converge with preflight,
    /// health gate; on failure roll back to the last good revision (or keep it, `rollout.on_failure`).
    async fn apply_new(
        &mut self,
        commit: &str,
        resumed: bool,
        started: Instant,
        errors: &mut Vec<CycleError>,
    ) {
        let (rev, deaths) = match self.unfinished.take() {
            Some(a) if resumed && a.revision.commit == commit => {
                tracing::warn!(commit, "resuming the apply the agent was killed in");
                (a.revision, a.deaths)
            }
            _ => match self.render_commit(commit).await {
                Ok((_, rev)) => (rev, 0),
                Err((err, rev)) => {
                    self.reject(commit, err, rev, errors).await;
                    let keep = self.current.as_ref().map(|c| c.seq);
                    return self.keep(keep, errors).await;
                }
            },
        };
        let Some(target) = Target::of(&rev) else {
            return;
        };
        tracing::Span::current().record("revision", target.commit.as_str());
        // Before the first engine write (and before the checkout rewrites files bind mounts see).
        let attempt = Attempt {
            revision: rev.clone(),
            deaths,
        };
        if let Err(e) = self
            .write(Record {
                attempt: Some(Some(attempt)),
                ..Default::default()
            })
            .await
        {
            // Without the record a crash could not be resumed: do not start.
            return errors.push(e);
        }
        let outcome = self.roll_out(&target).await;
        let mut rev = Revision {
            applied_at: crate::now_unix(),
            duration_ms: millis(started.elapsed()),
            ..rev
        };
        match outcome {
            Rollout::Passed(report) => {
                rev.outcome = Outcome::Applied;
                rev.images = report.images;
                match self.record_new(rev, Moves::GOOD, None).await {
                    Ok(rev) => {
                        self.alerts.applied(&rev.commit, &rev.summary);
                        self.current = Some(rev)
                    }
                    Err(e) => errors.push(e),
                }
            }
            Rollout::Superseded(report) => {
                tracing::info!(
                    commit,
                    "rollout superseded by a newer request; the gate was not finished"
                );
                rev.outcome = Outcome::Superseded;
                rev.images = report.images;
                match self.record_new(rev, Moves::CURRENT, None).await {
                    Ok(rev) => self.current = Some(rev),
                    Err(e) => errors.push(e),
                }
            }
            Rollout::Transient(errs, report) => {
                // Retried with backoff; the box may run part of it: it becomes current, not good.
                rev.outcome = Outcome::Failed;
                rev.error = Some(super::join(&errs, "; "));
                rev.error_class = Some(ErrorClass::Transient);
                let touched = report
                    .as_ref()
                    .is_some_and(|r| !r.touched.is_empty() || !r.done.is_empty());
                if let Some(r) = report {
                    rev.images = r.images;
                }
                if touched {
                    match self.record_new(rev, Moves::CURRENT, None).await {
                        Ok(rev) => self.current = Some(rev),
                        Err(e) => errors.push(e),
                    }
                } else if let Err(e) = self
                    .write(Record {
                        attempt: Some(None),
                        ..Default::default()
                    })
                    .await
                {
                    errors.push(e);
                }
                errors.extend(errs);
            }
            Rollout::Failed(err, report) => {
                let touched = report.as_ref().is_some_and(|r| !r.done.is_empty());
                self.fail_rollout(rev, err, report, touched, errors).await;
            }
        }
    }

    /// Checkout, converge (images, observe, plan, preflight, apply) and the health gate.
    async fn roll_out(&mut self, target: &Target) -> Rollout {
        let report = match self.converge(target).await {
            Ok(r) => r,
            Err(e @ ConvergeError::Engine(_)) => {
                return Rollout::Transient(
                    vec![CycleError::Converge {
                        commit: short(&target.commit).to_string(),
                        source: e,
                    }],
                    None,
                )
            }
            Err(e) => {
                let err = CycleError::Converge {
                    commit: short(&target.commit).to_string(),
                    source: e,
                };
                return Rollout::Failed(err, None);
            }
        };
        if !report.ok() {
            let mut report = report;
            let errs = std::mem::take(&mut report.errors);
            if errs.iter().all(|e| e.class() == ErrorClass::Transient) {
                let errs = errs.into_iter().map(CycleError::Step).collect();
                return Rollout::Transient(errs, Some(report));
            }
            // A dependency that never became healthy and the like: the commit's fault. The first such
            // step is the error; the others are logged.
            let mut bad = errs
                .into_iter()
                .filter(|e| e.class() != ErrorClass::Transient);
            let Some(first) = bad.next() else {
                return Rollout::Transient(Vec::new(), Some(report));
            };
            for other in bad {
                tracing::error!(error = %other, "apply step failed");
            }
            return Rollout::Failed(CycleError::Step(first), Some(report));
        }
        match self.gate(&report.touched, &target.commit).await {
            GateOutcome::Passed => Rollout::Passed(report),
            GateOutcome::Superseded => Rollout::Superseded(report),
            GateOutcome::Failed(f) => {
                Rollout::Failed(gate_error(&target.commit, f, false), Some(report))
            }
        }
    }

    /// The rollout failed: with `on_failure: rollback`, record the commit as rolled back, quarantine it,
    /// and converge the last good revision again; with `keep`, leave it running, recorded as failed.
    async fn fail_rollout(
        &mut self,
        mut rev: Revision,
        err: CycleError,
        report: Option<Report>,
        touched_engine: bool,
        errors: &mut Vec<CycleError>,
    ) {
        if let Some(r) = report {
            rev.images = r.images;
        }
        let last_good = match self.db(|s| s.pointers()).await {
            Ok(p) => p.last_good,
            Err(e) => {
                errors.push(e);
                None
            }
        };
        let roll_back =
            self.settings.rollout.on_failure == OnFailure::Rollback && last_good.is_some();
        let err = match err {
            CycleError::Gate { commit, source, .. } => CycleError::Gate {
                commit,
                source,
                rolled_back: roll_back && touched_engine,
            },
            other => other,
        };
        rev.error = Some(err.to_string());
        rev.error_class = Some(err.class());
        let q = quarantine(&rev.commit, &err);
        if !touched_engine {
            // Nothing was changed (preflight, empty render): the running revision stays as it is.
            rev.outcome = Outcome::Failed;
            if let Err(e) = self.record_new(rev, Moves::NONE, Some(q)).await {
                errors.push(e);
            }
            errors.push(err);
            // The checkout moved to the new commit: put the running revision's files back.
            let keep = self.current.as_ref().map(|c| c.seq);
            return self.keep(keep, errors).await;
        }
        if !roll_back {
            // on_failure: keep (or nothing good to go back to): the new revision stays, failed.
            rev.outcome = Outcome::Failed;
            match self.record_new(rev, Moves::CURRENT, Some(q)).await {
                Ok(rev) => self.current = Some(rev),
                Err(e) => errors.push(e),
            }
            return errors.push(err);
        }
        rev.outcome = Outcome::RolledBack;
        self.metrics.rollback(RollbackKind::Auto);
        tracing::error!(commit = %rev.commit, error = %err, "rollout failed; converging the last good revision");
        let rolled_back_record = self.record_rolled_back(rev, last_good, q).await;
        if let Err(e) = rolled_back_record {
            errors.push(e);
        }
        errors.push(err);
        self.keep(last_good, errors).await;
    }

    /// The failed commit's record (not current) and the pointer back to the last good revision, with the
    /// quarantine and the attempt cleared: one transaction.
    async fn record_rolled_back(
        &mut self,
        rev: Revision,
        last_good: Option<u64>,
        q: Quarantine,
    ) -> Result<(), CycleError> {
        let good = match last_good {
            Some(seq) => self.db(move |s| s.get(seq)).await?,
            None => None,
        };
        let q2 = q.clone();
        let recorded = self
            .db(move |s| {
                let mut rev = rev;
                if rev.seq == 0 {
                    rev.seq = s.next_seq()?;
                }
                s.record(&Record {
                    revision: Some(rev.clone()),
                    current: last_good,
                    attempt: Some(None),
                    quarantine: Some(Some(q2)),
                    ..Default::default()
                })?;
                Ok(rev)
            })
            .await?;
        tracing::info!(seq = recorded.seq, commit = %recorded.commit, outcome = %recorded.outcome, "revision recorded");
        self.set_quarantine(Some(q));
        if let Some(good) = good {
            self.current = Some(good);
        }
        self.prune_history().await;
        Ok(())
    }

    /// A new commit that did not render (or could not be read or checked out): recorded once, and
    /// quarantined until the remote moves on.
    async fn reject(
        &mut self,
        commit: &str,
        err: CycleError,
        rev: Option<Revision>,
        errors: &mut Vec<CycleError>,
    ) {
        tracing::error!(commit, error = %err, class = %err.class(), "revision rejected; the running revision stays");
        // A failure to read the commit is the clone's problem, not the commit's: retried, not quarantined.
        if err.class() == ErrorClass::Input {
            let q = quarantine(commit, &err);
            let rev = rev.map(|r| Revision {
                error_class: Some(err.class()),
                ..r
            });
            let written = match rev {
                Some(rev) => self.record_new(rev, Moves::NONE, Some(q)).await.map(|_| ()),
                None => {
                    let w = self
                        .write(Record {
                            quarantine: Some(Some(q.clone())),
                            ..Default::default()
                        })
                        .await;
                    if w.is_ok() {
                        self.set_quarantine(Some(q));
                    }
                    w
                }
            };
            if let Err(e) = written {
                errors.push(e);
            }
        }
        errors.push(err);
    }

    /// Write a new revision record (next sequence number) with the pointers it moves, the quarantine it
    /// sets and the attempt cleared, in one transaction; then keep a local ref to its commit so a
    /// rollback to it works offline, and prune history.
    pub(super) async fn record_new(
        &mut self,
        mut rev: Revision,
        moves: Moves,
        quarantine: Option<Quarantine>,
    ) -> Result<Revision, CycleError> {
        let q = quarantine.clone();
        let rev = self
            .db(move |s: &Store| {
                // A record already in history (a superseded rollout that failed later) is updated.
                if rev.seq == 0 {
                    rev.seq = s.next_seq()?;
                }
                s.record(&Record {
                    revision: Some(rev.clone()),
                    current: moves.current.then_some(rev.seq),
                    last_good: moves.good.then_some(rev.seq),
                    pinned: moves.pin.map(Some),
                    attempt: Some(None),
                    quarantine: q.map(Some),
                })?;
                Ok(rev)
            })
            .await?;
        if let Some(q) = quarantine {
            tracing::warn!(commit = %q.commit, reason = %q.reason, "commit quarantined until the remote moves on");
            self.set_quarantine(Some(q));
        }
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

    /// Every container of a target, in its stacks' order, for a gate over the whole revision.
    async fn watch_all(&self, target: &Target) -> Result<Vec<Watched>, CycleError> {
        let actual = self.runtime.observe(&self.settings.agent_id).await?;
        let ids: std::collections::BTreeMap<&str, &str> = actual
            .containers
            .iter()
            .map(|c| (c.name.as_str(), c.id.as_str()))
            .collect();
        Ok(target
            .desired
            .containers()
            .filter_map(|spec| {
                let id = ids.get(spec.name.as_str())?;
                Some(Watched {
                    // Restarts before this gate are not its business: count from what it sees first.
                    restarts_at_start: -1,
                    ..Watched::of(spec, id)
                })
            })
            .collect())
    }

    /// Wait on the health gate for `watched`; status shows the rollout while it runs, and an operator's
    /// command (a `berth reconcile` for a newer commit, a rollback, resume or suspend) supersedes it.
    async fn gate(&self, watched: &[Watched], commit: &str) -> GateOutcome {
        if watched.is_empty() {
            return GateOutcome::Passed;
        }
        let settings = self.settings.rollout.gate;
        tracing::info!(
            commit,
            containers = watched.len(),
            stable_s = settings.stable.as_secs(),
            timeout_s = settings.timeout.as_secs(),
            "health gate"
        );
        let shared = self.shared.clone();
        let commit_owned = commit.to_string();
        let tick = move |seconds: u64| {
            let mut s = shared.status.lock().unwrap_or_else(|p| p.into_inner());
            s.rollout = Some(RolloutInfo {
                commit: commit_owned.clone(),
                seconds,
            });
        };
        let wake = self.shared.wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let outcome = rollout::wait(&self.runtime, watched, settings, wake, &tick).await;
        self.set_status(|s| s.rollout = None);
        outcome
    }

    /// Images, observe, plan, preflight and apply for one target; pull times are kept in the store.
    pub(super) async fn converge(&mut self, target: &Target) -> Result<Report, ConvergeError> {
        self.secrets.extend(&target.desired.sensitive);
        // The working tree must hold the revision being converged (after a rollback, or when the clone
        // under state_dir was lost); without it, bind mounts would see other files.
        if let Err(e) = self.ensure_checkout(&target.commit).await {
            tracing::warn!(error = %e, commit = %target.commit, "cannot check out the revision; bind-mounted files stay as they are");
        }
        self.place_decrypted(target).await?;
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
        let converged = crate::apply::converge(
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

    /// Decrypted SOPS files the target's containers bind-mount, written to the runtime directory from
    /// the working tree (on a thread of their own: file writes and decryption block).
    async fn place_decrypted(&self, target: &Target) -> Result<(), ConvergeError> {
        let desired = target.desired.clone();
        let checkout = self.settings.state_dir.join("repo");
        let sops = super::sops_options(&self.settings);
        let placed = tokio::task::spawn_blocking(move || {
            crate::render::sops::runtime::materialize(&desired, &checkout, &sops)
        })
        .await;
        match placed {
            Ok(r) => r.map(|_| ()).map_err(ConvergeError::Secrets),
            Err(e) => Err(ConvergeError::Secrets(
                crate::render::sops::runtime::MaterializeError::Io {
                    path: self.settings.state_dir.join("repo"),
                    source: std::io::Error::other(e),
                },
            )),
        }
    }

    /// The quarantine as the store now holds it, shown in status at once.
    fn set_quarantine(&mut self, q: Option<Quarantine>) {
        let info = q.as_ref().map(super::quarantine_info);
        self.quarantine = q;
        self.set_status(|s| s.quarantined = info);
    }

    /// Write `r` to the store (one transaction, flushed).
    pub(super) async fn write(&self, r: Record) -> Result<(), CycleError> {
        self.db(move |s| s.record(&r)).await
    }
}

/// Which pointers a new record moves.
#[derive(Debug, Clone, Copy)]
pub(super) struct Moves {
    current: bool,
    good: bool,
    /// Pin the box to this stored revision (a rollback pins its target).
    pin: Option<u64>,
}

impl Moves {
    const NONE: Moves = Moves {
        current: false,
        good: false,
        pin: None,
    };
    const CURRENT: Moves = Moves {
        current: true,
        ..Moves::NONE
    };
    const GOOD: Moves = Moves {
        current: true,
        good: true,
        pin: None,
    };
}

fn gate_error(commit: &str, source: GateFailure, rolled_back: bool) -> CycleError {
    CycleError::Gate {
        commit: short(commit).to_string(),
        source,
        rolled_back,
    }
}

fn quarantine(commit: &str, err: &CycleError) -> Quarantine {
    Quarantine {
        commit: commit.to_string(),
        reason: err.to_string(),
        since: crate::now_unix(),
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}
