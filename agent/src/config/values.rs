//! Standalone value checks shared by the config and the rest of the agent: durations, repository-
//! relative paths, agent ids, and the host's name as the default id.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The longest duration anything in berth takes (an interval, a timeout, a grace period, a pull
/// period): ten years of 365.25 days. Longer is surely a typo, and would overflow the engine's
/// nanosecond counts.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 31_557_600);

/// A duration that does not parse, or is out of range.
#[derive(Debug, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("{text:?} is not a duration like 30s, 5m or 1h30m: {source}")]
    Invalid {
        text: String,
        source: humantime::DurationError,
    },
    #[error("{text:?} is longer than 10 years, the most a duration may be")]
    TooLong { text: String },
}

/// `1h30m`, `5m`, `30s`, `250ms`, `1.5s`, `1h 30m` (humantime's units); a bare number is seconds.
/// Anything over [`MAX_DURATION`] is an error.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let too_long = || DurationError::TooLong {
        text: text.to_string(),
    };
    let d = if s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| too_long())?
    } else {
        match humantime::parse_duration(s) {
            Ok(d) => d,
            Err(humantime::DurationError::NumberOverflow) => return Err(too_long()),
            Err(source) => {
                return Err(DurationError::Invalid {
                    text: text.to_string(),
                    source,
                })
            }
        }
    };
    if d > MAX_DURATION {
        return Err(too_long());
    }
    Ok(d)
}

/// A repository-relative path that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelPathError {
    #[error("{path:?} must be relative to the repository root")]
    Absolute { path: String },
    #[error("{path:?} climbs out of the repository")]
    ClimbsOut { path: String },
    #[error("{path:?} is not a plain relative path")]
    NotPlain { path: String },
}

/// Normalise a repository-relative path: no absolute paths, no `..` climbing out.
pub fn normalise_rel_path(p: &str) -> Result<PathBuf, RelPathError> {
    let path = Path::new(p);
    if path.is_absolute() {
        return Err(RelPathError::Absolute { path: p.into() });
    }
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() {
                    return Err(RelPathError::ClimbsOut { path: p.into() });
                }
            }
            _ => return Err(RelPathError::NotPlain { path: p.into() }),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    Ok(out)
}

pub fn valid_agent_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "berth".into())
}
