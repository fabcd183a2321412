//! The incident state machine (pure: time comes in as an argument). Failures with the same reason on
//! the same stack are one incident, whatever the number of cycles or commits: the first sends `firing`,
//! later ones nothing, until the next clean cycle sends `resolved` once. A provider with `repeat` gets a
//! firing incident again each time that long has passed since it was last told. The remote failing for
//! longer than `alerts_source_grace` is the `source_unreachable` incident, resolved by the next answer.
//! The whole state is serialisable: the worker keeps it in the store, so incidents survive restarts.

use super::{AlertSettings, Event, Failure, Reason, State};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// What the machine needs to know besides the events: who the agent is and where events go.
pub struct Ctx<'a> {
    pub agent_id: &'a str,
    pub routes: &'a [AlertSettings],
    pub grace: Duration,
}

/// One event for one provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outgoing {
    pub provider: String,
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Open {
    id: String,
    reason: Reason,
    stack: Option<String>,
    service: Option<String>,
    commit: Option<String>,
    message: String,
    opened_at: i64,
    /// Provider name → when it was last sent this incident firing (for `repeat`).
    notified: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incidents {
    /// `reason/stack` → the open incident.
    open: BTreeMap<String, Open>,
    /// Since when the remote has not answered (no answer since); `None`: it answers.
    source_failing_since: Option<i64>,
    /// Notices raised so far (their incident ids are unique).
    notices: u64,
}

/// RFC 3339 (UTC) of a Unix time.
pub fn rfc3339(unix: i64) -> String {
    match jiff::Timestamp::from_second(unix) {
        Ok(t) => t.to_string(),
        Err(_) => unix.to_string(),
    }
}

fn key(reason: Reason, stack: &Option<String>) -> String {
    format!("{reason}/{}", stack.as_deref().unwrap_or(""))
}

impl Incidents {
    /// The open incidents (reason and stack), for tests and status.
    pub fn open(&self) -> Vec<(Reason, Option<String>)> {
        self.open
            .values()
            .map(|o| (o.reason, o.stack.clone()))
            .collect()
    }

    /// A cycle ended with `failures`; `clean`: nothing but a fetch failed, so every incident a cycle
    /// raises is resolved.
    pub fn cycle(
        &mut self,
        failures: Vec<Failure>,
        clean: bool,
        now: i64,
        ctx: &Ctx,
    ) -> Vec<Outgoing> {
        let mut out = Vec::new();
        for f in failures {
            out.extend(self.fail(f, now, ctx));
        }
        if clean {
            let done: Vec<String> = self
                .open
                .iter()
                .filter(|(_, o)| o.reason != Reason::SourceUnreachable)
                .map(|(k, _)| k.clone())
                .collect();
            for k in done {
                out.extend(self.resolve(&k, now, ctx));
            }
        }
        out
    }

    fn fail(&mut self, f: Failure, now: i64, ctx: &Ctx) -> Vec<Outgoing> {
        let k = key(f.reason, &f.stack);
        if let Some(o) = self.open.get_mut(&k) {
            // Already told: keep the latest details for the resolution and repeats.
            o.message = f.message;
            o.commit = f.commit.or(o.commit.take());
            o.service = f.service.or(o.service.take());
            return Vec::new();
        }
        let mut o = Open {
            id: format!("{}/{}/{now}", f.reason, f.stack.as_deref().unwrap_or("-")),
            reason: f.reason,
            stack: f.stack,
            service: f.service,
            commit: f.commit,
            message: f.message,
            opened_at: now,
            notified: BTreeMap::new(),
        };
        let out = fan_out(&o, State::Firing, o.message.clone(), now, ctx, |_| true);
        for g in &out {
            o.notified.insert(g.provider.clone(), now);
        }
        self.open.insert(k, o);
        out
    }

    fn resolve(&mut self, k: &str, now: i64, ctx: &Ctx) -> Vec<Outgoing> {
        let Some(o) = self.open.remove(k) else {
            return Vec::new();
        };
        let message = format!("resolved: {}", o.message);
        fan_out(&o, State::Resolved, message, now, ctx, |_| true)
    }

    /// An info notice (applied, drift corrected, agent started): sent once, `resolved` at once.
    pub fn notice(&mut self, f: Failure, now: i64, ctx: &Ctx) -> Vec<Outgoing> {
        self.notices = self.notices.saturating_add(1);
        let o = Open {
            id: format!("{}/{now}/{}", f.reason, self.notices),
            reason: f.reason,
            stack: f.stack,
            service: f.service,
            commit: f.commit,
            message: f.message,
            opened_at: now,
            notified: BTreeMap::new(),
        };
        fan_out(&o, State::Resolved, o.message.clone(), now, ctx, |_| true)
    }

    /// The remote answered (`ok`) or failed.
    pub fn fetched(&mut self, ok: bool, now: i64, ctx: &Ctx) -> Vec<Outgoing> {
        if !ok {
            self.source_failing_since.get_or_insert(now);
            return self.tick(now, ctx);
        }
        self.source_failing_since = None;
        self.resolve(&key(Reason::SourceUnreachable, &None), now, ctx)
    }

    /// Time passed: the source's grace may have run out, a repeat may be due.
    pub fn tick(&mut self, now: i64, ctx: &Ctx) -> Vec<Outgoing> {
        let mut out = Vec::new();
        if let Some(since) = self.source_failing_since {
            let grace = i64::try_from(ctx.grace.as_secs()).unwrap_or(i64::MAX);
            if now.saturating_sub(since) >= grace {
                let minutes = now.saturating_sub(since) / 60;
                out.extend(self.fail(
                    Failure {
                        reason: Reason::SourceUnreachable,
                        stack: None,
                        service: None,
                        commit: None,
                        message: format!(
                            "the Git remote has not answered for {minutes} min (since {})",
                            rfc3339(since)
                        ),
                    },
                    now,
                    ctx,
                ));
            }
        }
        for o in self.open.values_mut() {
            let due = |r: &AlertSettings| {
                let last = o.notified.get(&r.name).copied().unwrap_or(o.opened_at);
                r.repeat.is_some_and(|every| {
                    now.saturating_sub(last) >= i64::try_from(every.as_secs()).unwrap_or(i64::MAX)
                })
            };
            let again = fan_out(o, State::Firing, o.message.clone(), now, ctx, due);
            for g in &again {
                o.notified.insert(g.provider.clone(), now);
            }
            out.extend(again);
        }
        out
    }

    /// The next time [`Incidents::tick`] may have something to do, if any.
    pub fn next_tick(&self, ctx: &Ctx) -> Option<i64> {
        let grace = i64::try_from(ctx.grace.as_secs()).unwrap_or(i64::MAX);
        let source = self
            .source_failing_since
            .filter(|_| {
                !self
                    .open
                    .contains_key(&key(Reason::SourceUnreachable, &None))
            })
            .map(|s| s.saturating_add(grace));
        let repeats = self.open.values().flat_map(|o| {
            ctx.routes.iter().filter_map(move |r| {
                let every = i64::try_from(r.repeat?.as_secs()).unwrap_or(i64::MAX);
                let last = o.notified.get(&r.name).copied().unwrap_or(o.opened_at);
                r.wants(o.reason, o.reason.severity())
                    .then(|| last.saturating_add(every))
            })
        });
        source.into_iter().chain(repeats).min()
    }
}

/// The event of `o` in `state` for every provider that wants it and passes `pick`.
fn fan_out(
    o: &Open,
    state: State,
    message: String,
    now: i64,
    ctx: &Ctx,
    pick: impl Fn(&AlertSettings) -> bool,
) -> Vec<Outgoing> {
    let severity = o.reason.severity();
    ctx.routes
        .iter()
        .filter(|r| r.wants(o.reason, severity) && pick(r))
        .map(|r| Outgoing {
            provider: r.name.clone(),
            event: Event {
                agent_id: ctx.agent_id.to_string(),
                severity,
                reason: o.reason,
                message: message.clone(),
                commit: o.commit.clone(),
                stack: o.stack.clone(),
                service: o.service.clone(),
                raised_at: rfc3339(now),
                incident: o.id.clone(),
                state,
                dropped: 0,
            },
        })
        .collect()
}
