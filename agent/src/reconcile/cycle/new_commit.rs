//! A new commit's rollout: render (or resume) it under the attempt record, converge it, hold it to the
//! health gate, and on failure roll back to the last good revision (or keep it) and quarantine the commit;
//! a commit that cannot be rendered is rejected and quarantined.

use super::{gate_error, millis, quarantine, Moves};
use crate::apply::{ApplyReport as Report, ConvergeError};
use crate::config::OnFailure;
use crate::error::{CycleError, ErrorClass};
use crate::reconcile::{short, Agent, Target};
use crate::rollout::GateOutcome;
use crate::signals::metrics::RollbackKind;
use crate::store::{Attempt, Outcome, Quarantine, Record, Revision};
use std::time::Instant;

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
    /// Render (or resume) a new commit and roll it out: attempt record, checkout, converge with preflight,
    /// health gate; on failure roll back to the last good revision (or keep it, `rollout.on_failure`).
    pub(super) async fn apply_new(
        &mut self,
        commit: &str,
        resumed: bool,
        started: Instant,
        errors: &mut Vec<CycleError>,
    ) {
        let Some((rev, deaths)) = self.revision_to_apply(commit, resumed, errors).await else {
            return;
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
        let rev = Revision {
            applied_at: crate::now_unix(),
            duration_ms: millis(started.elapsed()),
            ..rev
        };
        self.record_rollout(commit, rev, outcome, errors).await;
    }

    /// The revision of `commit` with its deaths: the unfinished attempt when this resumes it, else the
    /// commit rendered now. A commit that cannot be rendered is rejected and the current revision kept
    /// (`None`).
    async fn revision_to_apply(
        &mut self,
        commit: &str,
        resumed: bool,
        errors: &mut Vec<CycleError>,
    ) -> Option<(Revision, u32)> {
        match self.unfinished.take() {
            Some(a) if resumed && a.revision.commit == commit => {
                tracing::warn!(commit, "resuming the apply the agent was killed in");
                Some((a.revision, a.deaths))
            }
            _ => match self.render_commit(commit).await {
                Ok((_, rev)) => Some((rev, 0)),
                Err((err, rev)) => {
                    self.reject(commit, err, rev, errors).await;
                    let keep = self.current.as_ref().map(|c| c.seq);
                    self.keep(keep, errors).await;
                    None
                }
            },
        }
    }

    /// Record how the rollout of `rev` ended: good, current (superseded, or transient after touching the
    /// engine), its attempt dropped (transient before), or failed (rolled back or kept, quarantined).
    async fn record_rollout(
        &mut self,
        commit: &str,
        mut rev: Revision,
        outcome: Rollout,
        errors: &mut Vec<CycleError>,
    ) {
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
                self.record_transient(rev, errs, report, errors).await
            }
            Rollout::Failed(err, report) => {
                let touched = report.as_ref().is_some_and(|r| !r.done.is_empty());
                self.fail_rollout(rev, err, report, touched, errors).await;
            }
        }
    }

    /// A rollout that failed for a transient reason: retried with backoff. A revision that touched the
    /// engine becomes current (the box may run part of it), not good; otherwise its attempt is dropped.
    async fn record_transient(
        &mut self,
        mut rev: Revision,
        errs: Vec<CycleError>,
        report: Option<Report>,
        errors: &mut Vec<CycleError>,
    ) {
        rev.outcome = Outcome::Failed;
        rev.error = Some(crate::reconcile::join(&errs, "; "));
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
    pub(super) async fn fail_rollout(
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
}
