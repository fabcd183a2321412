//! The shared harness of the integration tests (in the style of ripgrep's `tests/util.rs`): temp Git
//! repositories made with the `git` CLI, the real `berth` binary run as an agent or as a client, and
//! helpers that ask the real Docker engine (through the `docker` CLI) what is running.
//!
//! Every test uses its own agent id, so tests run in parallel on one engine; every guard here removes,
//! when dropped (also when the test failed), only what it made: the agent's own containers, networks and
//! volumes (found by the label `io.berth.agent=<id>`), and containers a test created by name.
//!
//! The harness is split by what it drives: `process` (running `berth` and other commands, their output),
//! `wait` (polling), `files` (temp dirs, files under a directory), `git` ([`GitRepo`]), `engine` (what the
//! Docker engine holds), `guards` (removing what a test or an agent id made), `agent` (the `berth agent`
//! process, its status JSON) and `stack` ([`Stack`], `berth apply`/`render` of a directory). Everything is
//! re-exported here, so tests keep `use crate::util::*;`.

#![allow(dead_code)]

mod agent;
mod engine;
mod files;
mod git;
mod guards;
mod process;
mod stack;
mod wait;

pub use agent::*;
pub use engine::*;
pub use files::*;
pub use git::*;
pub use guards::*;
pub use process::*;
pub use stack::*;
pub use wait::*;

use std::time::Duration;

/// The image every test container runs (scripts/lib.sh `ensure_test_image` builds it).
pub const IMAGE: &str = "berth-test/busybox:latest";

/// A compose `command:` that idles and stops at once on SIGTERM (a plain `sleep` as PID 1 ignores it, so
/// every stop would wait for the engine's 10 s grace period).
pub const IDLE: &str = r#"["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]"#;

/// Generous deadline for anything that waits on the engine or the agent.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The owner label key.
pub const AGENT_LABEL: &str = "io.berth.agent";

/// A unique, valid agent id (and root stack name) for one test: `t-<name>-<pid>`, lowercase, ≤ 63 chars.
pub fn agent_id(name: &str) -> String {
    let pid = std::process::id();
    let clean: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let max = 63 - format!("t--{pid}").len();
    let clean = &clean[..clean.len().min(max)];
    format!("t-{}-{pid}", clean.trim_end_matches('-'))
}
