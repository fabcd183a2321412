//! The loop: triggers (interval tick, commands, drift) merged and served one cycle at a time, the
//! operator's commands (reconcile, rollback, diff, suspend, resume), and each cycle run under its deadline
//! with its result published in status.

use super::{backoff, join, quarantine_info, signer_of, Agent, Mode, FOLLOW};
use crate::api::server::Command;
use crate::api::CycleResult;
use crate::error::{overall_class, CycleError};
use crate::notify;
use crate::store::{Outcome, Store, StoreError};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

impl Agent {
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
    pub(super) fn finish(&mut self, errors: Vec<CycleError>) -> CycleResult {
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
