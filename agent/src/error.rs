//! The typed errors of a reconcile cycle and their class. The class, not the text, decides what the loop
//! does next (backoff or wait for the next commit), what status says and which alert reason fires:
//! - transient: the engine, the network or the remote is down — retry with backoff;
//! - input: the commit itself is bad (render, preflight, signature verification) — wait for the next
//!   commit;
//! - rollout: the health gate failed;
//! - internal: the store or a task of the agent failed.

use crate::render::RenderError;
use crate::runtime::RuntimeError;
use crate::source::SourceError;
use crate::store::StoreError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorClass {
    /// The commit is bad: nothing to retry until the remote moves.
    Input,
    /// The health gate failed.
    Rollout,
    /// The agent's own store or tasks failed.
    Internal,
    /// Something outside the agent is down: retry with backoff.
    Transient,
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Input => "input",
            ErrorClass::Rollout => "rollout",
            ErrorClass::Internal => "internal",
        })
    }
}

/// One failed step of an apply, naming the object it was about.
#[derive(Debug, thiserror::Error)]
#[error("{}{action}: {cause}", scope(stack, service))]
pub struct StepError {
    pub stack: String,
    pub service: Option<String>,
    /// `create network x`, `recreate container s-web-1`, …
    pub action: String,
    pub cause: StepCause,
}

fn scope(stack: &str, service: &Option<String>) -> String {
    match service {
        Some(s) => format!("stack {stack}, service {s}: "),
        None if stack.is_empty() => String::new(),
        None => format!("stack {stack}: "),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StepCause {
    #[error(transparent)]
    Engine(#[from] RuntimeError),
    /// The image is neither present nor pullable (the pull error, if any, is reported on its own).
    #[error("image {0} is not available")]
    ImageMissing(String),
    /// A dependency of this service failed in this apply, so it was not touched.
    #[error("skipped: dependency {0} failed")]
    DependencyFailed(String),
    #[error("dependency {service} has no container")]
    DependencyMissing { service: String },
    #[error("dependency {service} is unhealthy")]
    DependencyUnhealthy { service: String },
    #[error("dependency {service} has no healthcheck, so it can never be service_healthy")]
    DependencyNoHealthcheck { service: String },
    #[error("dependency {service} exited (code {code}) before it became healthy")]
    DependencyExited { service: String, code: i64 },
    #[error("dependency {service} did not complete successfully (exit code {code})")]
    DependencyFailedJob { service: String, code: i64 },
    #[error("dependency {service} did not become {wanted} within {}s (it is {state})", after.as_secs())]
    DependencyTimeout {
        service: String,
        wanted: &'static str,
        after: Duration,
        state: String,
    },
}

impl StepError {
    pub fn class(&self) -> ErrorClass {
        match &self.cause {
            StepCause::Engine(e) => runtime_class(e),
            // An image that cannot be pulled may be a registry that is down.
            StepCause::ImageMissing(_) => ErrorClass::Transient,
            StepCause::DependencyFailed(_) | StepCause::DependencyMissing { .. } => {
                ErrorClass::Transient
            }
            // A dependency that never becomes healthy is the commit's fault.
            StepCause::DependencyUnhealthy { .. }
            | StepCause::DependencyNoHealthcheck { .. }
            | StepCause::DependencyExited { .. }
            | StepCause::DependencyFailedJob { .. }
            | StepCause::DependencyTimeout { .. } => ErrorClass::Rollout,
        }
    }
}

fn runtime_class(_: &RuntimeError) -> ErrorClass {
    // Unreachable engine, a pull that failed, an engine refusal: all may pass (a registry back online, a
    // port freed by hand); retrying with backoff capped at the interval costs little.
    ErrorClass::Transient
}

/// Why `berth rollback` cannot go where it was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RollbackError {
    #[error("no revision {0} in history")]
    NoSuchRevision(u64),
    #[error("no earlier good revision in history to roll back to")]
    NoEarlierGood,
    #[error("revision {0} did not render; it cannot be re-applied")]
    NotRendered(u64),
    #[error("the agent is suspended; `berth resume` first")]
    Suspended,
}

/// Everything that can go wrong in one cycle.
#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    #[error(transparent)]
    Fetch(SourceError),
    #[error("commit {commit}: {source}")]
    Render {
        commit: String,
        #[source]
        source: RenderError,
    },
    /// The commit (or the tag naming it) failed `source.verify`: unsigned, unknown key, expired key or
    /// bad signature. Nothing was rendered or changed.
    #[error("commit {commit}: refused: {source}")]
    Verify {
        commit: String,
        #[source]
        source: crate::source::verify::VerifyError,
    },
    /// Reading a commit's tree or metadata failed.
    #[error("commit {commit}: {source}")]
    Read {
        commit: String,
        #[source]
        source: SourceError,
    },
    #[error("checkout of {commit}: {source}")]
    Checkout {
        commit: String,
        #[source]
        source: SourceError,
    },
    /// The fetched commit failed before: not applied again until the remote moves on.
    #[error("commit {commit} is quarantined: {reason} (it is not applied again until the remote moves on, or `berth reconcile --retry`)")]
    Quarantined { commit: String, reason: String },
    /// The agent died twice while applying this commit.
    #[error("commit {commit}: the agent stopped while applying this commit")]
    Poisoned { commit: String },
    /// Preflight, the empty-render guard, or the engine before the first write: nothing was changed.
    #[error("commit {commit}: {source}")]
    Converge {
        commit: String,
        #[source]
        source: crate::apply::ConvergeError,
    },
    /// The health gate failed after the apply.
    #[error("commit {commit}: {source}{}", if *rolled_back { "; rolled back to the last good revision" } else { "" })]
    Gate {
        commit: String,
        #[source]
        source: crate::rollout::GateFailure,
        rolled_back: bool,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Observing the engine failed before anything was planned.
    #[error(transparent)]
    Engine(#[from] RuntimeError),
    #[error(transparent)]
    Step(#[from] StepError),
    #[error(transparent)]
    Rollback(#[from] RollbackError),
    /// A blocking task of the agent panicked or was cancelled.
    #[error("{what} task failed: {message}")]
    Task { what: &'static str, message: String },
    /// The cycle ran past `cycle_timeout` and was abandoned.
    #[error("the cycle did not finish within {}s and was abandoned", after.as_secs())]
    Timeout { after: Duration },
}

impl CycleError {
    pub fn class(&self) -> ErrorClass {
        match self {
            CycleError::Fetch(e) => match e {
                SourceError::Fetch { .. } | SourceError::RefNotFound { .. } => {
                    ErrorClass::Transient
                }
                SourceError::Local { .. } => ErrorClass::Internal,
            },
            CycleError::Render { .. } => ErrorClass::Input,
            CycleError::Verify { source, .. } => source.class(),
            // The commit's objects are local by now: failing to read them is the clone's problem.
            CycleError::Read { .. } | CycleError::Checkout { .. } => ErrorClass::Internal,
            CycleError::Quarantined { .. } | CycleError::Poisoned { .. } => ErrorClass::Input,
            CycleError::Converge { source, .. } => match source {
                crate::apply::ConvergeError::Engine(e) => runtime_class(e),
                crate::apply::ConvergeError::Preflight(_)
                | crate::apply::ConvergeError::Empty { .. } => ErrorClass::Input,
            },
            CycleError::Gate { .. } => ErrorClass::Rollout,
            CycleError::Store(_) | CycleError::Task { .. } => ErrorClass::Internal,
            CycleError::Engine(e) => runtime_class(e),
            CycleError::Step(e) => e.class(),
            CycleError::Rollback(_) => ErrorClass::Input,
            CycleError::Timeout { .. } => ErrorClass::Transient,
        }
    }
}

/// The class that decides what happens after a cycle with these errors: the most urgent to retry wins
/// (a transient failure is retried soon even when the commit is also bad).
pub fn overall_class<'a>(errors: impl IntoIterator<Item = &'a CycleError>) -> Option<ErrorClass> {
    errors.into_iter().map(CycleError::class).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_error() -> CycleError {
        CycleError::Render {
            commit: "abc".into(),
            source: RenderError { problems: vec![] },
        }
    }

    #[test]
    fn classes_follow_the_cause_not_the_text() {
        let fetch = CycleError::Fetch(SourceError::Fetch {
            url: "u".into(),
            message: "render failed".into(),
        });
        assert_eq!(fetch.class(), ErrorClass::Transient);
        assert_eq!(render_error().class(), ErrorClass::Input);
        assert_eq!(
            CycleError::Quarantined {
                commit: "abc".into(),
                reason: "did not render".into()
            }
            .class(),
            ErrorClass::Input
        );
        let step = StepError {
            stack: "s".into(),
            service: Some("web".into()),
            action: "create container s-web-1".into(),
            cause: StepCause::DependencyUnhealthy {
                service: "db".into(),
            },
        };
        assert_eq!(step.class(), ErrorClass::Rollout);
        assert_eq!(
            step.to_string(),
            "stack s, service web: create container s-web-1: dependency db is unhealthy"
        );
        let engine = CycleError::Engine(RuntimeError::Unreachable("down".into()));
        assert_eq!(engine.class(), ErrorClass::Transient);
    }

    #[test]
    fn transient_wins_over_input() {
        let errors = [
            render_error(),
            CycleError::Engine(RuntimeError::Unreachable("down".into())),
        ];
        assert_eq!(overall_class(&errors), Some(ErrorClass::Transient));
        assert_eq!(overall_class(&errors[..1]), Some(ErrorClass::Input));
        assert_eq!(overall_class(&[]), None);
    }
}
