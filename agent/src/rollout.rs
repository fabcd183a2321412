//! The health gate: after an apply, every container the cycle created, recreated, started or restarted
//! must be running, and healthy where it has a healthcheck, without a break for `rollout.stable`, all
//! within `rollout.timeout`. It fails at once on an exit, a restart (the engine's restart count rising) or
//! `unhealthy`. [`judge`] is the pure verdict over one round of observed states; [`wait`] polls the
//! engine until the verdict is final or something newer supersedes the rollout.

use crate::runtime::{ContainerState, Runtime, RuntimeError};
use std::future::Future;
use std::time::{Duration, Instant};

/// `rollout:` in the agent config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateSettings {
    pub timeout: Duration,
    pub stable: Duration,
}

impl Default for GateSettings {
    fn default() -> Self {
        GateSettings {
            timeout: Duration::from_secs(120),
            stable: Duration::from_secs(10),
        }
    }
}

/// One container the gate watches, in `depends_on` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub stack: String,
    pub service: String,
    pub replica: u32,
    pub id: String,
    pub has_healthcheck: bool,
    /// A one-shot job (others wait for it with `service_completed_successfully`, or its restart policy is
    /// `no` or `on-failure`): exiting 0 is success.
    pub one_shot: bool,
    /// The engine's restart count right after the apply started it (negative: take it from the gate's
    /// first observation).
    pub restarts_at_start: i64,
}

impl Watched {
    /// Watch container `id`, made from `spec` by this cycle.
    pub fn of(spec: &crate::model::ContainerSpec, id: &str) -> Watched {
        Watched {
            stack: spec.stack.clone(),
            service: spec.service.clone(),
            replica: spec.replica,
            id: id.to_string(),
            has_healthcheck: spec
                .healthcheck
                .as_ref()
                .is_some_and(|h| h.test.first().map(String::as_str) != Some("NONE")),
            // A job others wait for, or one the engine is not asked to keep running: exiting 0 is done.
            one_shot: spec.run_once || spec.may_finish(),
            // A container the engine (re)started by API counts restarts from 0.
            restarts_at_start: 0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GateFailure {
    #[error("stack {stack}, service {service}, replica {replica}: exited with code {code}")]
    Exited {
        stack: String,
        service: String,
        replica: u32,
        code: i64,
    },
    #[error("stack {stack}, service {service}, replica {replica}: restarted {count} time{}", if *count == 1 { "" } else { "s" })]
    Restarting {
        stack: String,
        service: String,
        replica: u32,
        count: i64,
    },
    #[error("stack {stack}, service {service}, replica {replica}: unhealthy: {output}")]
    Unhealthy {
        stack: String,
        service: String,
        replica: u32,
        /// The healthcheck's last output (trimmed, bounded).
        output: String,
    },
    #[error("stack {stack}, service {service}, replica {replica}: not {wanted} for {}s within {}s (it is {state})", stable.as_secs(), timeout.as_secs())]
    Timeout {
        stack: String,
        service: String,
        replica: u32,
        wanted: &'static str,
        state: String,
        stable: Duration,
        timeout: Duration,
    },
    #[error("stack {stack}, service {service}, replica {replica}: {source}")]
    Engine {
        stack: String,
        service: String,
        replica: u32,
        #[source]
        source: RuntimeError,
    },
}

/// The verdict on one container at one observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not (yet) running and healthy: the stable clock is not running.
    Waiting,
    /// Running (and healthy) now: the stable clock runs from its first such observation.
    Good,
    /// Done for good: a one-shot job that exited 0.
    Done,
    Failed(Failure),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Exited(i64),
    Restarted(i64),
    Unhealthy(String),
}

/// Longest healthcheck output kept in an error.
const MAX_OUTPUT: usize = 400;

/// Judge one observation of a watched container.
pub fn judge(w: &Watched, st: &ContainerState) -> State {
    let restarts = st.restart_count.saturating_sub(w.restarts_at_start);
    if restarts > 0 {
        return State::Failed(Failure::Restarted(restarts));
    }
    if st.health.as_deref() == Some("unhealthy") {
        let output = st.health_output.clone().unwrap_or_default();
        return State::Failed(Failure::Unhealthy(bounded(output.trim())));
    }
    match st.status.as_str() {
        "exited" | "dead" => {
            let code = st.exit_code.unwrap_or(-1);
            if w.one_shot && code == 0 {
                State::Done
            } else {
                State::Failed(Failure::Exited(code))
            }
        }
        // The restart policy is bringing it back: it died, whatever the count says yet.
        "restarting" => State::Failed(Failure::Restarted(restarts.max(1))),
        _ if !st.running => State::Waiting,
        _ if w.has_healthcheck && st.health.as_deref() != Some("healthy") => State::Waiting,
        _ => State::Good,
    }
}

fn bounded(s: &str) -> String {
    if s.len() <= MAX_OUTPUT {
        return s.to_string();
    }
    let mut end = MAX_OUTPUT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn failure(w: &Watched, f: Failure) -> GateFailure {
    let (stack, service, replica) = (w.stack.clone(), w.service.clone(), w.replica);
    match f {
        Failure::Exited(code) => GateFailure::Exited {
            stack,
            service,
            replica,
            code,
        },
        Failure::Restarted(count) => GateFailure::Restarting {
            stack,
            service,
            replica,
            count,
        },
        Failure::Unhealthy(output) => GateFailure::Unhealthy {
            stack,
            service,
            replica,
            output,
        },
    }
}

/// How a gate ended.
#[derive(Debug)]
pub enum GateOutcome {
    Passed,
    Failed(GateFailure),
    /// Something newer arrived: the caller goes on with it; the rollout is neither good nor failed.
    Superseded,
}

/// Poll every watched container until all have been good for `stable` (pass), one fails (the first in
/// `depends_on` order among those failing in the same round), `timeout` runs out, or `superseded`
/// resolves. `tick` is called with the seconds elapsed at each round (for status).
pub async fn wait<R: Runtime>(
    rt: &R,
    watched: &[Watched],
    settings: GateSettings,
    superseded: impl Future<Output = ()>,
    tick: &(dyn Fn(u64) + Sync),
) -> GateOutcome {
    let started = Instant::now();
    let mut good_since: Vec<Option<Instant>> = vec![None; watched.len()];
    let mut last_state: Vec<String> = vec![String::new(); watched.len()];
    let mut delay = Duration::from_millis(200);
    // A negative baseline is taken from the first observation.
    let mut watched: Vec<Watched> = watched.to_vec();
    tokio::pin!(superseded);
    loop {
        tick(started.elapsed().as_secs());
        let now = Instant::now();
        let mut all_stable = true;
        for (i, w) in watched.iter_mut().enumerate() {
            let st = match rt.container_state(&w.id).await {
                Ok(st) => st,
                Err(source) => {
                    return GateOutcome::Failed(GateFailure::Engine {
                        stack: w.stack.clone(),
                        service: w.service.clone(),
                        replica: w.replica,
                        source,
                    })
                }
            };
            last_state[i] = match &st.health {
                Some(h) => format!("{}, {h}", st.status),
                None => st.status.clone(),
            };
            if w.restarts_at_start < 0 {
                w.restarts_at_start = st.restart_count;
            }
            match judge(w, &st) {
                State::Failed(f) => return GateOutcome::Failed(failure(w, f)),
                State::Done => {}
                State::Good => {
                    let since = *good_since[i].get_or_insert(now);
                    if now.duration_since(since) < settings.stable {
                        all_stable = false;
                    }
                }
                State::Waiting => {
                    good_since[i] = None;
                    all_stable = false;
                }
            }
        }
        if all_stable {
            return GateOutcome::Passed;
        }
        if started.elapsed() >= settings.timeout {
            // The first container (in depends_on order) that is not stable is named.
            let i = good_since
                .iter()
                .zip(&watched)
                .position(|(g, _)| g.is_none_or(|t| now.duration_since(t) < settings.stable))
                .unwrap_or(0);
            let Some(w) = watched.get(i) else {
                return GateOutcome::Passed;
            };
            return GateOutcome::Failed(GateFailure::Timeout {
                stack: w.stack.clone(),
                service: w.service.clone(),
                replica: w.replica,
                wanted: if w.has_healthcheck {
                    "running and healthy"
                } else {
                    "running"
                },
                state: last_state.get(i).cloned().unwrap_or_default(),
                stable: settings.stable,
                timeout: settings.timeout,
            });
        }
        let left = settings.timeout.saturating_sub(started.elapsed());
        tokio::select! {
            _ = &mut superseded => return GateOutcome::Superseded,
            _ = tokio::time::sleep(delay.min(left)) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched(health: bool, one_shot: bool) -> Watched {
        Watched {
            stack: "s".into(),
            service: "web".into(),
            replica: 1,
            id: "x".into(),
            has_healthcheck: health,
            one_shot,
            restarts_at_start: 0,
        }
    }

    fn state(
        status: &str,
        health: Option<&str>,
        exit: Option<i64>,
        restarts: i64,
    ) -> ContainerState {
        ContainerState {
            running: status == "running",
            status: status.into(),
            health: health.map(Into::into),
            exit_code: exit,
            restart_count: restarts,
            health_output: health
                .filter(|h| *h == "unhealthy")
                .map(|_| "  connection refused\n".into()),
        }
    }

    #[test]
    fn verdicts() {
        #[rustfmt::skip]
        let cases = [
            ("running, no check", watched(false, false), state("running", None, None, 0), State::Good),
            ("created", watched(false, false), state("created", None, None, 0), State::Waiting),
            ("starting check", watched(true, false), state("running", Some("starting"), None, 0), State::Waiting),
            ("healthy", watched(true, false), state("running", Some("healthy"), None, 0), State::Good),
            ("unhealthy keeps the output", watched(true, false), state("running", Some("unhealthy"), None, 0), State::Failed(Failure::Unhealthy("connection refused".into()))),
            ("exited", watched(false, false), state("exited", None, Some(3), 0), State::Failed(Failure::Exited(3))),
            ("exited 0 is still an exit", watched(false, false), state("exited", None, Some(0), 0), State::Failed(Failure::Exited(0))),
            ("one-shot job done", watched(false, true), state("exited", None, Some(0), 0), State::Done),
            ("one-shot job failed", watched(false, true), state("exited", None, Some(1), 0), State::Failed(Failure::Exited(1))),
            ("restart loop caught running", watched(false, false), state("running", None, None, 2), State::Failed(Failure::Restarted(2))),
            ("restarting", watched(false, false), state("restarting", None, Some(1), 0), State::Failed(Failure::Restarted(1))),
        ];
        for (name, w, st, want) in cases {
            assert_eq!(judge(&w, &st), want, "{name}");
        }
    }

    #[test]
    fn restarts_count_from_the_start_of_the_rollout() {
        let mut w = watched(false, false);
        w.restarts_at_start = 5;
        assert_eq!(judge(&w, &state("running", None, None, 5)), State::Good);
        assert_eq!(
            judge(&w, &state("running", None, None, 6)),
            State::Failed(Failure::Restarted(1))
        );
    }

    #[test]
    fn long_output_is_bounded_on_a_char_boundary() {
        let s = "é".repeat(1000);
        let b = bounded(&s);
        assert!(b.len() <= MAX_OUTPUT + '…'.len_utf8());
        assert!(b.ends_with('…'));
    }

    #[test]
    fn failures_name_service_replica_and_reason() {
        let w = watched(true, false);
        let text = failure(&w, Failure::Unhealthy("boom".into())).to_string();
        assert_eq!(text, "stack s, service web, replica 1: unhealthy: boom");
        let text = failure(&w, Failure::Restarted(3)).to_string();
        assert_eq!(text, "stack s, service web, replica 1: restarted 3 times");
        let text = failure(&w, Failure::Exited(137)).to_string();
        assert_eq!(
            text,
            "stack s, service web, replica 1: exited with code 137"
        );
    }
}
