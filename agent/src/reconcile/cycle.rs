//! One cycle: gather the facts, [`decide`], and carry the decision out — apply a new commit under the
//! attempt record and the health gate (rolling back and quarantining on failure), keep a stored revision
//! converged, roll back, or refuse a quarantined or poisoned commit. Every record it writes goes through
//! [`Store::record`]: the revision, the pointers, the pin, the attempt and the quarantine in one transaction.
//!
//! This file holds the cycle itself, keeping and rolling back to stored revisions, and writing records;
//! `new_commit` rolls a new commit out, `converge` converges a target and runs its health gate.

use super::decide::{decide, Decision, Facts, Trigger, Unfinished};
use super::{short, Agent, Mode, Target};
use crate::api::CycleResult;
use crate::error::{CycleError, ErrorClass};
use crate::rollout::{GateFailure, GateOutcome};
use crate::signals::metrics::RollbackKind;
use crate::store::{Outcome, Quarantine, Record, Revision, Store};
use std::time::{Duration, Instant};

mod converge;
mod new_commit;

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
        self.quarantine_moved_on(&mut errors).await;
        let decision = self.decision(mode, pinned);
        tracing::debug!(?decision, "decided");
        self.drop_unfinished(&decision, &mut errors).await;
        self.carry_out(decision, started, &mut errors).await;
        self.refresh_pointers(&mut errors).await;
        self.alerts.cycle_done(&errors);
        self.finish(errors)
    }

    /// End the quarantine of a commit the remote has moved on from.
    async fn quarantine_moved_on(&mut self, errors: &mut Vec<CycleError>) {
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
    }

    /// What this cycle does, decided from `mode` and the agent's facts.
    fn decision(&self, mode: Mode, pinned: Option<u64>) -> Decision {
        let trigger = match mode {
            Mode::Follow { retry, .. } => Trigger::Follow { retry },
            Mode::Local => Trigger::Local,
            Mode::Rollback(seq) => Trigger::Rollback(seq),
        };
        decide(
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
        )
    }

    /// Forget the attempt found at start when `decision` does not resume it.
    async fn drop_unfinished(&mut self, decision: &Decision, errors: &mut Vec<CycleError>) {
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
    }

    /// Carry `decision` out: keep, roll back, refuse a quarantined or poisoned commit, or apply a new one.
    async fn carry_out(
        &mut self,
        decision: Decision,
        started: Instant,
        errors: &mut Vec<CycleError>,
    ) {
        match decision {
            Decision::Suspended => {}
            Decision::Keep { seq } => self.keep(seq, errors).await,
            Decision::Rollback { seq } => self.roll_back_to(seq, errors).await,
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
                self.keep(keep, errors).await;
            }
            Decision::Poisoned { commit, keep } => {
                self.poisoned(&commit, errors).await;
                self.keep(keep, errors).await;
            }
            Decision::Apply { commit, resumed } => {
                self.apply_new(&commit, resumed, started, errors).await
            }
        }
    }

    /// Copy the stored pointers (last good, pin) into the status.
    async fn refresh_pointers(&mut self, errors: &mut Vec<CycleError>) {
        match self.db(|s| s.pointers()).await {
            Ok(p) => self.set_status(|s| {
                s.last_good_seq = p.last_good;
                s.pinned = p.pinned.is_some();
                s.pinned_seq = p.pinned;
            }),
            Err(e) => errors.push(e),
        }
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

    /// The quarantine as the store now holds it, shown in status at once.
    fn set_quarantine(&mut self, q: Option<Quarantine>) {
        // As the store holds it: a secret value in the reason (a healthcheck's output, an engine message
        // quoting an environment value) shows as its digest in status and in later cycles' errors too.
        let redactor = crate::sealing::Redactor::new(&self.secrets, self.store.box_key().cloned());
        let q = q.map(|mut q| {
            q.reason = redactor.redact(&q.reason).into_owned();
            q
        });
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
