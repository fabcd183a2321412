//! Images before planning: every image the desired state names is made available according to its
//! `pull_policy`, before anything is stopped, and its local id is recorded so the planner can tell when a
//! tag now names another image (then the containers made from the old one are recreated).

use crate::model::DesiredState;
use crate::runtime::{Runtime, RuntimeError};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PullPolicy {
    /// Never pull: the image must be on the engine already.
    Never,
    /// Pull when the image is not on the engine (Compose's default).
    Missing,
    /// Pull when missing, or when the last pull is older than this (`daily`, `weekly`, `every_12h`).
    Every(Duration),
    /// Pull every time the stack is converged.
    Always,
}

/// A `pull_policy` berth does not take.
#[derive(Debug, thiserror::Error)]
pub enum PullPolicyError {
    #[error("pull_policy build is refused: berth deploys images; build and push them in CI")]
    Build,
    #[error("pull_policy {policy:?}: `every_` needs a duration like every_12h: {source}")]
    BadPeriod {
        policy: String,
        source: crate::config::DurationError,
    },
    #[error("pull_policy {policy:?}: `every_` needs a period longer than zero")]
    ZeroPeriod { policy: String },
    #[error(
        "pull_policy {policy:?} must be always, missing, never, daily, weekly or every_<duration>"
    )]
    Unknown { policy: String },
}

impl PullPolicy {
    pub fn parse(s: &str) -> Result<PullPolicy, PullPolicyError> {
        match s {
            "always" => Ok(PullPolicy::Always),
            "missing" | "if_not_present" => Ok(PullPolicy::Missing),
            "never" => Ok(PullPolicy::Never),
            "daily" => Ok(PullPolicy::Every(Duration::from_secs(86_400))),
            "weekly" => Ok(PullPolicy::Every(Duration::from_secs(7 * 86_400))),
            "build" => Err(PullPolicyError::Build),
            other => match other.strip_prefix("every_") {
                Some(d) => match crate::config::parse_duration(d) {
                    Ok(d) if d.is_zero() => Err(PullPolicyError::ZeroPeriod {
                        policy: other.to_string(),
                    }),
                    Ok(d) => Ok(PullPolicy::Every(d)),
                    Err(source) => Err(PullPolicyError::BadPeriod {
                        policy: other.to_string(),
                        source,
                    }),
                },
                None => Err(PullPolicyError::Unknown {
                    policy: other.to_string(),
                }),
            },
        }
    }

    /// The policy of a spec (`missing` when unset or unreadable: render already refused bad ones).
    pub fn of(policy: Option<&str>) -> PullPolicy {
        policy
            .and_then(|p| PullPolicy::parse(p).ok())
            .unwrap_or(PullPolicy::Missing)
    }

    /// Whether to pull now. `last_pull`: seconds since the epoch of the last pull (or tag) known.
    pub fn wants_pull(self, present: bool, last_pull: Option<i64>, now: i64) -> bool {
        match self {
            PullPolicy::Never => false,
            PullPolicy::Missing => !present,
            PullPolicy::Always => true,
            PullPolicy::Every(period) => {
                !present
                    || last_pull.is_none_or(|t| {
                        // A period is at most config::MAX_DURATION, far below i64::MAX seconds.
                        i64::try_from(period.as_secs())
                            .is_ok_and(|secs| now.saturating_sub(t) >= secs)
                    })
            }
        }
    }
}

/// What preparing the images found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// Local image id of every image that is available, by reference as written.
    pub ids: BTreeMap<String, String>,
    /// Images that are not available, with why (their containers cannot be created).
    pub errors: BTreeMap<String, String>,
    /// Pulls that failed while a local copy exists: the local copy is used.
    pub warnings: Vec<String>,
    /// Images pulled in this round.
    pub pulled: Vec<String>,
}

/// When each image was last pulled by this agent (seconds since the epoch); kept in the store.
pub type PullLog = BTreeMap<String, i64>;

/// Every image `desired` names, with the policy it is pulled by (the most eager one when services share
/// the image) and the platform of the first service naming it. `berth diff` decides with the same.
pub fn policies(desired: &DesiredState) -> BTreeMap<&str, (PullPolicy, Option<&str>)> {
    let mut policies: BTreeMap<&str, (PullPolicy, Option<&str>)> = BTreeMap::new();
    for c in desired.containers() {
        let p = PullPolicy::of(c.pull_policy.as_deref());
        let e = policies
            .entry(c.image.as_str())
            .or_insert((p, c.platform.as_deref()));
        if p > e.0 {
            e.0 = p;
        }
    }
    policies
}

/// Make every image of `desired` available by its policy (the most eager policy wins when services
/// share an image). Pulls run one at a time: an edge box's link is small, and a registry is not made
/// faster by hammering it.
pub async fn prepare<R: Runtime>(
    rt: &R,
    desired: &DesiredState,
    log: &mut PullLog,
    progress: &(dyn Fn(&str, &str) + Sync),
) -> Prepared {
    let now = crate::now_unix();
    let mut out = Prepared::default();
    for (image, (policy, platform)) in policies(desired) {
        let local = match rt.inspect_image(image).await {
            Ok(l) => l,
            Err(e) => {
                out.errors.insert(image.to_string(), e.to_string());
                continue;
            }
        };
        let last = log
            .get(image)
            .copied()
            .or_else(|| local.as_ref().and_then(|l| l.tagged_at));
        if !policy.wants_pull(local.is_some(), last, now) {
            match local {
                Some(l) => {
                    out.ids.insert(image.to_string(), l.id);
                }
                None => {
                    out.errors.insert(
                        image.to_string(),
                        format!("image {image} is not on the engine and its pull_policy is never"),
                    );
                }
            }
            continue;
        }
        let pulled = rt
            .pull_image(image, platform, &|status| progress(image, status))
            .await;
        match pulled {
            Ok(()) => {
                log.insert(image.to_string(), now);
                out.pulled.push(image.to_string());
                match rt.inspect_image(image).await {
                    Ok(Some(l)) => {
                        out.ids.insert(image.to_string(), l.id);
                    }
                    Ok(None) => {
                        out.errors.insert(
                            image.to_string(),
                            format!("image {image}: pulled, but the engine does not have it"),
                        );
                    }
                    Err(e) => {
                        out.errors.insert(image.to_string(), e.to_string());
                    }
                }
            }
            Err(e) => match local {
                // Offline, or the registry refuses: keep running what is here.
                Some(l) => {
                    out.warnings.push(format!("{e} (using the local copy)"));
                    out.ids.insert(image.to_string(), l.id);
                }
                None => {
                    out.errors.insert(image.to_string(), pull_error(image, e));
                }
            },
        }
    }
    out
}

fn pull_error(image: &str, e: RuntimeError) -> String {
    match e {
        RuntimeError::Image { .. } => e.to_string(),
        other => format!("image {image}: {other}"),
    }
}

/// Lets through at most one progress line per image per `every`, plus the lines that finish something
/// (`… complete`, `Status: …`), so a pull reaches the log or a terminal without flooding it.
pub struct Throttle {
    every: Duration,
    last: std::sync::Mutex<BTreeMap<String, std::time::Instant>>,
}

impl Throttle {
    pub fn new(every: Duration) -> Self {
        Throttle {
            every,
            last: Default::default(),
        }
    }

    pub fn pass(&self, image: &str, line: &str) -> bool {
        if line.starts_with("Status:") || line.contains("complete") || line.contains("Digest:") {
            return true;
        }
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        match last.get(image) {
            Some(t) if now.duration_since(*t) < self.every => false,
            _ => {
                last.insert(image.to_string(), now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_decide() {
        assert_eq!(PullPolicy::parse("always").unwrap(), PullPolicy::Always);
        assert_eq!(
            PullPolicy::parse("if_not_present").unwrap(),
            PullPolicy::Missing
        );
        assert_eq!(
            PullPolicy::parse("every_12h").unwrap(),
            PullPolicy::Every(Duration::from_secs(12 * 3600))
        );
        assert!(PullPolicy::parse("build")
            .unwrap_err()
            .to_string()
            .contains("CI"));
        assert!(matches!(
            PullPolicy::parse("every_"),
            Err(PullPolicyError::BadPeriod { .. })
        ));
        assert!(matches!(
            PullPolicy::parse("every_0s"),
            Err(PullPolicyError::ZeroPeriod { .. })
        ));
        let e = PullPolicy::parse("every_99999999999999999999h").unwrap_err();
        assert!(
            matches!(
                e,
                PullPolicyError::BadPeriod {
                    source: crate::config::DurationError::TooLong { .. },
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("10 years"), "{e}");
        assert!(PullPolicy::parse("sometimes").is_err());
        let daily = PullPolicy::parse("daily").unwrap();
        assert!(daily.wants_pull(false, Some(100), 200));
        assert!(!daily.wants_pull(true, Some(100), 100 + 3600));
        assert!(daily.wants_pull(true, Some(100), 100 + 86_400));
        assert!(daily.wants_pull(true, None, 0));
        assert!(!PullPolicy::Never.wants_pull(false, None, 0));
        assert!(!PullPolicy::Missing.wants_pull(true, None, 0));
        assert!(PullPolicy::Always.wants_pull(true, Some(0), 0));
        assert!(PullPolicy::Always > PullPolicy::Every(Duration::from_secs(1)));
        assert!(PullPolicy::Missing > PullPolicy::Never);
    }
}
