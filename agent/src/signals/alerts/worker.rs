//! The alerts worker: a thread of its own that turns the loop's signals into incident events, writes
//! them to the store's outbox (with the incident state, in one write) before delivery, and delivers
//! each provider's events in order, removing each once the provider answered 2xx. A provider that fails
//! is retried with exponential backoff; the others go on. The outbox is bounded: past
//! [`OUTBOX_LIMIT`] events the oldest are dropped and counted, and the count rides on the provider's
//! next delivered event. Outbox and incidents are read back at start, so nothing is lost to a restart.

use super::incident::{Ctx, Incidents, Outgoing};
use super::provider::Sender;
use super::{redact_url, AlertSettings, Signal};
use crate::api::server::Shared;
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most events the outbox holds.
pub const OUTBOX_LIMIT: usize = 1000;
/// Each request's deadline, connect included.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(120);
/// The longest the worker sleeps without looking at the clock.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// What the store keeps besides the events themselves.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Persisted {
    incidents: Incidents,
    /// Provider → events dropped from the full outbox and not yet reported.
    dropped: BTreeMap<String, u64>,
}

struct Retry {
    failures: u32,
    at: Instant,
}

struct Worker {
    agent_id: String,
    routes: Vec<AlertSettings>,
    grace: Duration,
    store: Store,
    shared: Arc<Shared>,
    state: Persisted,
    /// The state as last written (nothing is written when it did not change).
    saved: Vec<u8>,
    queue: VecDeque<(u64, Outgoing)>,
    next_seq: u64,
    retry: BTreeMap<String, Retry>,
    sender: Sender,
    metrics: crate::signals::Metrics,
}

pub(super) fn spawn(
    settings: &crate::config::Settings,
    store: Store,
    shared: Arc<Shared>,
    metrics: crate::signals::Metrics,
    rx: Receiver<Signal>,
) -> std::io::Result<()> {
    for a in &settings.alerts {
        metrics.alert_provider(&a.name);
    }
    let mut w = Worker {
        agent_id: settings.agent_id.clone(),
        routes: settings.alerts.clone(),
        grace: settings.alerts_source_grace,
        store,
        shared,
        state: Persisted::default(),
        saved: Vec::new(),
        queue: VecDeque::new(),
        next_seq: 1,
        retry: BTreeMap::new(),
        sender: Sender::new(SEND_TIMEOUT),
        metrics,
    };
    std::thread::Builder::new()
        .name("berth-alerts".into())
        .spawn(move || {
            w.load();
            w.run(rx)
        })?;
    Ok(())
}

impl Worker {
    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            agent_id: &self.agent_id,
            routes: &self.routes,
            grace: self.grace,
        }
    }

    /// Read the outbox and the incidents back; events for providers no longer configured are dropped.
    fn load(&mut self) {
        match self.store.outbox_load::<Persisted, Outgoing>() {
            Ok((state, entries)) => {
                if let Some(s) = state {
                    self.state = s;
                }
                self.saved = serde_json::to_vec(&self.state).unwrap_or_default();
                self.next_seq = entries.last().map(|(k, _)| k + 1).unwrap_or(1);
                let (keep, gone): (Vec<_>, Vec<_>) = entries
                    .into_iter()
                    .partition(|(_, o)| self.routes.iter().any(|r| r.name == o.provider));
                if !gone.is_empty() {
                    tracing::warn!(
                        events = gone.len(),
                        "dropping outbox events of providers no longer in the config"
                    );
                    let seqs: Vec<u64> = gone.iter().map(|(k, _)| *k).collect();
                    self.write(&[], &seqs);
                }
                self.queue = keep.into();
                if !self.queue.is_empty() {
                    tracing::info!(
                        events = self.queue.len(),
                        "alerts outbox holds events from before; delivering them"
                    );
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the alerts outbox; starting empty"),
        }
        self.publish();
    }

    fn run(mut self, rx: Receiver<Signal>) {
        loop {
            let mut signals = Vec::new();
            match rx.recv_timeout(self.sleep()) {
                Ok(s) => signals.push(s),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while let Ok(s) = rx.try_recv() {
                signals.push(s);
            }
            let now = crate::now_unix();
            let mut out = Vec::new();
            for s in signals {
                out.extend(self.handle(s, now));
            }
            let ctx = Ctx {
                agent_id: &self.agent_id,
                routes: &self.routes,
                grace: self.grace,
            };
            out.extend(self.state.incidents.tick(now, &ctx));
            self.enqueue(out);
            self.deliver();
        }
    }

    fn handle(&mut self, s: Signal, now: i64) -> Vec<Outgoing> {
        let ctx = Ctx {
            agent_id: &self.agent_id,
            routes: &self.routes,
            grace: self.grace,
        };
        let inc = &mut self.state.incidents;
        match s {
            Signal::Cycle { failures, clean } => inc.cycle(failures, clean, now, &ctx),
            Signal::Notice(f) => inc.notice(f, now, &ctx),
            Signal::Fetched { ok } => inc.fetched(ok, now, &ctx),
        }
    }

    /// How long to wait for signals: until the next retry or incident tick is due.
    fn sleep(&self) -> Duration {
        let now = Instant::now();
        let retry = self
            .routes
            .iter()
            .filter(|r| self.queue.iter().any(|(_, o)| o.provider == r.name))
            .map(|r| match self.retry.get(&r.name) {
                Some(t) => t.at.saturating_duration_since(now),
                None => Duration::ZERO,
            })
            .min();
        let tick = self.state.incidents.next_tick(&self.ctx()).map(|t| {
            let secs = t.saturating_sub(crate::now_unix()).max(0);
            Duration::from_secs(u64::try_from(secs).unwrap_or(0))
        });
        retry
            .into_iter()
            .chain(tick)
            .min()
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP)
    }

    /// Queue new events (dropping the oldest past the limit) and write them with the state.
    fn enqueue(&mut self, out: Vec<Outgoing>) {
        let first_new = self.next_seq;
        let mut added = Vec::new();
        for o in out {
            let seq = self.next_seq;
            self.next_seq += 1;
            added.push((seq, o.clone()));
            self.queue.push_back((seq, o));
        }
        let mut removed = bound(&mut self.queue, &mut self.state.dropped, outbox_limit());
        if !removed.is_empty() {
            tracing::warn!(
                dropped = removed.len(),
                limit = OUTBOX_LIMIT,
                "alerts outbox full; oldest events dropped"
            );
        }
        // Events both added and dropped now are never written.
        added.retain(|(s, _)| !removed.contains(s));
        removed.retain(|s| *s < first_new);
        self.write(&added, &removed);
        self.publish();
    }

    /// Write the state (if it changed) with these entries added and removed, in one transaction.
    fn write(&mut self, added: &[(u64, Outgoing)], removed: &[u64]) {
        let state = serde_json::to_vec(&self.state).unwrap_or_default();
        let state_changed = state != self.saved;
        if !state_changed && added.is_empty() && removed.is_empty() {
            return;
        }
        let written = self
            .store
            .outbox_write(state_changed.then_some(&self.state), added, removed);
        match written {
            Ok(()) => self.saved = state,
            Err(e) => tracing::error!(error = %e, "cannot write the alerts outbox"),
        }
    }

    /// Deliver each provider's events in order until one fails or none is left.
    fn deliver(&mut self) {
        for i in 0..self.routes.len() {
            loop {
                let name = self.routes[i].name.clone();
                if self.retry.get(&name).is_some_and(|r| r.at > Instant::now()) {
                    break;
                }
                let Some(pos) = self.queue.iter().position(|(_, o)| o.provider == name) else {
                    break;
                };
                let (seq, mut event) = match self.queue.get(pos) {
                    Some((seq, o)) => (*seq, o.event.clone()),
                    None => break,
                };
                event.dropped = self.state.dropped.get(&name).copied().unwrap_or(0);
                let route = &self.routes[i];
                match self.sender.send(route, &event) {
                    Ok(()) => {
                        self.metrics.alert_sent(&name, true);
                        tracing::info!(provider = %name, reason = %event.reason, state = ?event.state, incident = %event.incident, "alert delivered");
                        self.queue.remove(pos);
                        self.retry.remove(&name);
                        if event.dropped > 0 {
                            let left = self.state.dropped.entry(name.clone()).or_default();
                            *left = left.saturating_sub(event.dropped);
                            if *left == 0 {
                                self.state.dropped.remove(&name);
                            }
                        }
                        self.write(&[], &[seq]);
                        self.publish();
                    }
                    Err(e) => {
                        self.metrics.alert_sent(&name, false);
                        let failures = self.retry.get(&name).map_or(0, |r| r.failures) + 1;
                        let delay = backoff(failures);
                        tracing::warn!(
                            provider = %name,
                            url = %redact_url(&route.url),
                            error = %e,
                            retry_in_s = delay.as_secs(),
                            "alert not delivered; kept in the outbox"
                        );
                        self.retry.insert(
                            name,
                            Retry {
                                failures,
                                at: Instant::now() + delay,
                            },
                        );
                        break;
                    }
                }
            }
        }
    }

    /// The outbox size in status.
    fn publish(&self) {
        let n = self.queue.len() as u64;
        self.metrics.set_outbox(n);
        let mut s = self.shared.status.lock().unwrap_or_else(|p| p.into_inner());
        s.alerts_outbox = n;
    }
}

/// [`OUTBOX_LIMIT`], or `BERTH_ALERTS_OUTBOX_LIMIT` (for tests: a small bound is reached quickly).
fn outbox_limit() -> usize {
    std::env::var("BERTH_ALERTS_OUTBOX_LIMIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(OUTBOX_LIMIT)
}

/// Drop the oldest events past `limit`, counting them per provider; the seqs dropped.
fn bound(
    queue: &mut VecDeque<(u64, Outgoing)>,
    dropped: &mut BTreeMap<String, u64>,
    limit: usize,
) -> Vec<u64> {
    let mut removed = Vec::new();
    while queue.len() > limit {
        if let Some((seq, o)) = queue.pop_front() {
            *dropped.entry(o.provider).or_default() += 1;
            removed.push(seq);
        }
    }
    removed
}

/// 1 s, 2 s, 4 s, … up to [`MAX_RETRY`], with up to 10 % jitter.
fn backoff(failures: u32) -> Duration {
    let exp = FIRST_RETRY.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let d = exp.min(MAX_RETRY);
    d + d.mul_f64(fastrand::f64() * 0.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert!(backoff(1) >= Duration::from_secs(1) && backoff(1) < Duration::from_millis(1101));
        assert!(backoff(3) >= Duration::from_secs(4) && backoff(3) < Duration::from_millis(4401));
        assert!(backoff(40) >= MAX_RETRY && backoff(40) <= MAX_RETRY.mul_f64(1.1));
    }

    #[test]
    fn the_outbox_drops_its_oldest_past_the_bound_and_counts_them_per_provider() {
        let ev = |p: &str| Outgoing {
            provider: p.into(),
            event: crate::signals::alerts::tests::event(),
        };
        let mut q: VecDeque<_> = (1..=5)
            .map(|i| (i, ev(if i == 2 { "b" } else { "a" })))
            .collect();
        let mut dropped = BTreeMap::new();
        assert_eq!(bound(&mut q, &mut dropped, 3), vec![1, 2]);
        assert_eq!(q.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert_eq!(dropped.get("a"), Some(&1));
        assert_eq!(dropped.get("b"), Some(&1));
        assert!(bound(&mut q, &mut dropped, 3).is_empty());
    }
}
