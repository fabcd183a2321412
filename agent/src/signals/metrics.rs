//! The agent's Prometheus metrics: one [`Metrics`] handle (cheap to clone) owning the registry, fed by the
//! reconcile loop (cycles, fetches, the current revision, rollbacks, drift), the webhook receivers and the
//! alerts outbox, and encoded in the text exposition format for `GET /metrics`. Every series carries the
//! `agent_id` label.

use crate::store::Revision;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The `Content-Type` of [`Metrics::encode`]'s text (OpenMetrics, which Prometheus scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the cycle duration histogram's buckets, in seconds: a no-op cycle takes milliseconds,
/// a pull or a health gate minutes.
const CYCLE_BUCKETS: [f64; 14] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RevisionLabels {
    commit: String,
    seq: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerLabels {
    stack: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReceiverLabels {
    receiver: String,
    result: String,
}

/// Why a rollback happened (`berth_rollbacks_total{kind}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackKind {
    /// A rollout failed its health gate and the last good revision was converged again.
    Auto,
    /// `berth rollback`.
    Manual,
}

impl RollbackKind {
    fn as_str(self) -> &'static str {
        match self {
            RollbackKind::Auto => "auto",
            RollbackKind::Manual => "manual",
        }
    }
}

/// What became of one webhook request (`berth_webhooks_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookResult {
    /// A push to the followed ref: a reconcile was queued.
    Triggered,
    /// Signed, but a ping, another event or another ref: nothing done.
    Ignored,
    /// A bad or missing signature or token.
    Unauthorized,
    /// A body over the limit.
    TooLarge,
    /// A signed body that is not the JSON its type sends.
    BadRequest,
}

impl WebhookResult {
    pub const ALL: [WebhookResult; 5] = [
        WebhookResult::Triggered,
        WebhookResult::Ignored,
        WebhookResult::Unauthorized,
        WebhookResult::TooLarge,
        WebhookResult::BadRequest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookResult::Triggered => "triggered",
            WebhookResult::Ignored => "ignored",
            WebhookResult::Unauthorized => "unauthorized",
            WebhookResult::TooLarge => "too_large",
            WebhookResult::BadRequest => "bad_request",
        }
    }
}

/// A failure to encode the registry (only a formatter error, which writing to a `String` never gives).
#[derive(Debug, thiserror::Error)]
#[error("encoding the metrics: {0}")]
pub struct EncodeError(#[from] std::fmt::Error);

/// The metrics of one agent; clones share the same series.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

struct Inner {
    registry: Registry,
    cycles: Family<ResultLabel, Counter>,
    cycle_duration: Histogram,
    revision: Family<RevisionLabels, Gauge>,
    last_applied: Gauge,
    source_up: Gauge,
    fetches: Family<ResultLabel, Counter>,
    drift: Counter,
    containers: Family<ContainerLabels, Gauge>,
    rollbacks: Family<KindLabel, Counter>,
    outbox: Gauge,
    alerts_sent: Family<ProviderLabels, Counter>,
    webhooks: Family<ReceiverLabels, Counter>,
    /// Held while the revision or the containers are replaced and while encoding, so a scrape never sees
    /// a half-replaced family.
    swap: Mutex<()>,
}

impl Inner {
    /// Every metric empty, with an empty placeholder registry.
    fn unregistered() -> Inner {
        Inner {
            cycles: Family::default(),
            cycle_duration: Histogram::new(CYCLE_BUCKETS),
            revision: Family::default(),
            last_applied: Gauge::default(),
            source_up: Gauge::default(),
            fetches: Family::default(),
            drift: Counter::default(),
            containers: Family::default(),
            rollbacks: Family::default(),
            outbox: Gauge::default(),
            alerts_sent: Family::default(),
            webhooks: Family::default(),
            swap: Mutex::new(()),
            registry: Registry::default(),
        }
    }

    /// Register the reconcile loop's metrics: cycles, revision, source, drift, containers, rollbacks.
    fn register_reconcile(&self, r: &mut Registry) {
        r.register(
            "cycles",
            "Reconcile cycles run, by result (applied, failed)",
            self.cycles.clone(),
        );
        r.register(
            "cycle_duration_seconds",
            "How long reconcile cycles took",
            self.cycle_duration.clone(),
        );
        r.register(
            "revision_info",
            "The revision the box is converged to (value 1)",
            self.revision.clone(),
        );
        r.register(
            "last_applied_timestamp_seconds",
            "When the current revision was applied, seconds since the Unix epoch",
            self.last_applied.clone(),
        );
        r.register(
            "source_up",
            "1 when the last ask of the Git remote succeeded, else 0",
            self.source_up.clone(),
        );
        r.register(
            "fetch",
            "Asks of the Git remote, by result (ok, error)",
            self.fetches.clone(),
        );
        r.register(
            "drift_corrections",
            "Cycles run to converge containers changed or removed behind the agent's back",
            self.drift.clone(),
        );
        r.register(
            "containers",
            "Containers the agent owns, by stack and engine state, listed at scrape time",
            self.containers.clone(),
        );
        r.register(
            "rollbacks",
            "Rollbacks, by kind (auto: a failed health gate; manual: berth rollback)",
            self.rollbacks.clone(),
        );
    }

    /// Register the alerts outbox's and the webhook receivers' metrics.
    fn register_delivery(&self, r: &mut Registry) {
        r.register(
            "alerts_outbox",
            "Alert events stored and waiting for delivery",
            self.outbox.clone(),
        );
        r.register(
            "alerts_sent",
            "Alert deliveries, by provider and result",
            self.alerts_sent.clone(),
        );
        r.register(
            "webhooks",
            "Webhook requests, by receiver and result",
            self.webhooks.clone(),
        );
    }

    /// Create the series a dashboard expects at zero: cycle and fetch results, rollback kinds.
    fn start_at_zero(&self) {
        for result in ["applied", "failed"] {
            self.cycles.get_or_create(&result_label(result)).inc_by(0);
        }
        for result in ["ok", "error"] {
            self.fetches.get_or_create(&result_label(result)).inc_by(0);
        }
        for kind in [RollbackKind::Auto, RollbackKind::Manual] {
            self.rollbacks
                .get_or_create(&KindLabel {
                    kind: kind.as_str().into(),
                })
                .inc_by(0);
        }
    }
}

impl Metrics {
    /// Every metric registered, with `agent_id` on every series; the label values a dashboard expects
    /// (cycle and fetch results, rollback kinds) start at zero so their series exist from the start.
    pub fn new(agent_id: &str) -> Metrics {
        let labels = [("agent_id".into(), agent_id.to_string().into())];
        let mut r = Registry::with_prefix_and_labels("berth", labels.into_iter());
        let inner = Inner::unregistered();
        inner.register_reconcile(&mut r);
        inner.register_delivery(&mut r);
        inner.start_at_zero();
        Metrics {
            inner: Arc::new(Inner {
                registry: r,
                ..inner
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner.swap.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A reconcile cycle ended with `outcome` after `elapsed`.
    pub fn cycle_done(&self, outcome: crate::store::Outcome, elapsed: Duration) {
        let i = &self.inner;
        i.cycles
            .get_or_create(&result_label(&outcome.to_string()))
            .inc();
        i.cycle_duration.observe(elapsed.as_secs_f64());
    }

    /// The revision the box is converged to now (`None`: nothing applied yet).
    pub fn current(&self, rev: Option<&Revision>) {
        let _swap = self.lock();
        let i = &self.inner;
        let labels = rev.map(|r| RevisionLabels {
            commit: r.commit.clone(),
            seq: r.seq.to_string(),
        });
        if labels.as_ref().is_some_and(|l| i.revision.get(l).is_some()) {
            return;
        }
        i.revision.clear();
        if let (Some(labels), Some(rev)) = (labels, rev) {
            i.revision.get_or_create(&labels).set(1);
            i.last_applied.set(rev.applied_at);
        }
    }

    /// The Git remote answered (`ok`) or not.
    pub fn fetch_done(&self, ok: bool) {
        let i = &self.inner;
        i.fetches
            .get_or_create(&result_label(if ok { "ok" } else { "error" }))
            .inc();
        i.source_up.set(i64::from(ok));
    }

    pub fn rollback(&self, kind: RollbackKind) {
        self.inner
            .rollbacks
            .get_or_create(&KindLabel {
                kind: kind.as_str().into(),
            })
            .inc();
    }

    /// A cycle ran to converge drift seen in the engine's events.
    pub fn drift_corrected(&self) {
        self.inner.drift.inc();
    }

    /// A configured receiver's series, all at zero, so they exist before the first request.
    pub fn webhook_receiver(&self, receiver: &str) {
        for result in WebhookResult::ALL {
            self.inner
                .webhooks
                .get_or_create(&receiver_labels(receiver, result))
                .inc_by(0);
        }
    }

    /// One request to a configured receiver (never called for unknown names: no series per guess).
    pub fn webhook(&self, receiver: &str, result: WebhookResult) {
        self.inner
            .webhooks
            .get_or_create(&receiver_labels(receiver, result))
            .inc();
    }

    /// For the alerts outbox: how many events wait for delivery.
    pub fn set_outbox(&self, events: u64) {
        self.inner
            .outbox
            .set(i64::try_from(events).unwrap_or(i64::MAX));
    }

    /// For the alerts: a configured provider's series (`ok` and `failed`) at zero.
    pub fn alert_provider(&self, provider: &str) {
        for delivered in [true, false] {
            self.inner
                .alerts_sent
                .get_or_create(&provider_labels(provider, delivered))
                .inc_by(0);
        }
    }

    /// For the alerts: one delivery attempt to `provider`, `delivered` when it answered 2xx.
    pub fn alert_sent(&self, provider: &str, delivered: bool) {
        self.inner
            .alerts_sent
            .get_or_create(&provider_labels(provider, delivered))
            .inc();
    }

    /// The text exposition, with `containers` (stack and state of each owned container, listed for this
    /// scrape) replacing the previous scrape's; `None` (the engine did not answer) drops them.
    pub fn encode<'a>(
        &self,
        containers: Option<impl IntoIterator<Item = (&'a str, &'a str)>>,
    ) -> Result<String, EncodeError> {
        let mut counts: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for key in containers.into_iter().flatten() {
            *counts.entry(key).or_default() += 1;
        }
        let _swap = self.lock();
        let i = &self.inner;
        i.containers.clear();
        for ((stack, state), n) in counts {
            i.containers
                .get_or_create(&ContainerLabels {
                    stack: stack.into(),
                    state: state.into(),
                })
                .set(n);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &i.registry)?;
        Ok(text)
    }
}

fn result_label(result: &str) -> ResultLabel {
    ResultLabel {
        result: result.into(),
    }
}

fn receiver_labels(receiver: &str, result: WebhookResult) -> ReceiverLabels {
    ReceiverLabels {
        receiver: receiver.into(),
        result: result.as_str().into(),
    }
}

fn provider_labels(provider: &str, delivered: bool) -> ProviderLabels {
    ProviderLabels {
        provider: provider.into(),
        result: if delivered { "ok" } else { "failed" }.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Outcome;

    fn rev(seq: u64, commit: &str) -> Revision {
        Revision {
            commit: commit.into(),
            applied_at: 1_700_000_000 + seq as i64,
            ..Revision::for_test(seq)
        }
    }

    fn lines(text: &str, prefix: &str) -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn every_series_carries_the_agent_id_and_counts_what_happened() {
        let m = Metrics::new("edge-01");
        m.cycle_done(Outcome::Applied, Duration::from_millis(30));
        m.cycle_done(Outcome::Failed, Duration::from_secs(3));
        m.fetch_done(false);
        m.rollback(RollbackKind::Manual);
        m.drift_corrected();
        m.webhook_receiver("gh");
        m.webhook("gh", WebhookResult::Unauthorized);
        m.alert_sent("ops", true);
        m.set_outbox(3);
        m.current(Some(&rev(7, "abc")));
        let text = m
            .encode(Some([("web", "running"), ("web", "running")]))
            .unwrap();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.contains("agent_id=\"edge-01\""), "{line}");
        }
        let has = |s: &str| assert!(text.lines().any(|l| l.starts_with(s)), "{s} in\n{text}");
        has(r#"berth_cycles_total{agent_id="edge-01",result="applied"} 1"#);
        has(r#"berth_cycles_total{agent_id="edge-01",result="failed"} 1"#);
        has(r#"berth_cycle_duration_seconds_count{agent_id="edge-01"} 2"#);
        has(r#"berth_fetch_total{agent_id="edge-01",result="error"} 1"#);
        has(r#"berth_source_up{agent_id="edge-01"} 0"#);
        has(r#"berth_rollbacks_total{agent_id="edge-01",kind="manual"} 1"#);
        has(r#"berth_rollbacks_total{agent_id="edge-01",kind="auto"} 0"#);
        has(r#"berth_drift_corrections_total{agent_id="edge-01"} 1"#);
        has(r#"berth_webhooks_total{agent_id="edge-01",receiver="gh",result="unauthorized"} 1"#);
        has(r#"berth_webhooks_total{agent_id="edge-01",receiver="gh",result="triggered"} 0"#);
        has(r#"berth_alerts_sent_total{agent_id="edge-01",provider="ops",result="ok"} 1"#);
        has(r#"berth_alerts_outbox{agent_id="edge-01"} 3"#);
        has(r#"berth_revision_info{agent_id="edge-01",commit="abc",seq="7"} 1"#);
        has(r#"berth_last_applied_timestamp_seconds{agent_id="edge-01"} 1700000007"#);
        has(r#"berth_containers{agent_id="edge-01",stack="web",state="running"} 2"#);
    }

    #[test]
    fn the_revision_and_the_containers_are_replaced_not_accumulated() {
        let m = Metrics::new("a");
        m.current(Some(&rev(1, "one")));
        m.current(Some(&rev(2, "two")));
        let text = m.encode(Some([("s", "running")])).unwrap();
        assert_eq!(lines(&text, "berth_revision_info{").len(), 1, "{text}");
        assert!(text.contains(r#"commit="two""#), "{text}");
        let text = m.encode(Some([("s", "exited")])).unwrap();
        assert_eq!(
            lines(&text, "berth_containers{"),
            vec![r#"berth_containers{agent_id="a",stack="s",state="exited"} 1"#]
        );
        let text = m.encode(None::<[(&str, &str); 0]>).unwrap();
        assert!(lines(&text, "berth_containers{").is_empty(), "{text}");
        m.current(None);
        let text = m.encode(None::<[(&str, &str); 0]>).unwrap();
        assert!(lines(&text, "berth_revision_info{").is_empty(), "{text}");
    }

    #[test]
    fn fetch_results_set_source_up() {
        let m = Metrics::new("a");
        m.fetch_done(true);
        let text = m.encode(None::<[(&str, &str); 0]>).unwrap();
        assert!(text.contains("berth_source_up{agent_id=\"a\"} 1"), "{text}");
        m.fetch_done(false);
        let text = m.encode(None::<[(&str, &str); 0]>).unwrap();
        assert!(text.contains("berth_source_up{agent_id=\"a\"} 0"), "{text}");
    }
}
