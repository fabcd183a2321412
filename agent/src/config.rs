//! Agent configuration: raw serde structs (unknown keys rejected) → validated [`Settings`], with every
//! error collected and reported at once.
//!
//! This file holds the defaults and [`load`]; the settings types are in `schema`, the raw structs and
//! their validation in `parse`, the standalone value checks (durations, paths, ids) in `values`.

mod parse;
mod schema;
mod values;

pub use parse::parse;
pub use schema::{
    GitRef, HistorySettings, LogFormat, OnFailure, RolloutSettings, Settings, SourceSettings,
};
pub use values::{
    hostname, normalise_rel_path, parse_duration, valid_agent_id, DurationError, RelPathError,
    MAX_DURATION,
};

use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_CONFIG: &str = "/etc/berth/config.yaml";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/berth";
pub const DEFAULT_SOCKET: &str = "/run/berth/berth.sock";
/// The longest `source.interval` and `cycle_timeout`.
const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// How long one reconcile cycle may take before it is abandoned.
pub const DEFAULT_CYCLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Revisions kept in history by default (`history.keep`), and the fewest a config may ask for.
pub const DEFAULT_HISTORY_KEEP: usize = 200;
pub const MIN_HISTORY_KEEP: usize = 10;
/// A config file larger than this is refused before parsing.
const MAX_CONFIG_BYTES: u64 = 256 * 1024;

/// A bad config: every problem, each naming its key.
#[derive(Debug, thiserror::Error)]
#[error("invalid config {}:\n  {}", path.display(), problems.join("\n  "))]
pub struct ConfigError {
    pub path: PathBuf,
    pub problems: Vec<String>,
}

pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let err = |p: String| ConfigError {
        path: path.to_path_buf(),
        problems: vec![p],
    };
    let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read: {e}")))?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(err(format!(
            "file is {} bytes, larger than the {MAX_CONFIG_BYTES} allowed",
            meta.len()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
    parse(&text).map_err(|problems| ConfigError {
        path: path.to_path_buf(),
        problems,
    })
}

#[cfg(test)]
mod tests;
