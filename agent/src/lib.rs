//! berth: a GitOps agent for edge boxes.
//!
//! The flow is source → render → checkout → observe → plan → apply → record; each step has its module.

pub mod api;
pub mod apply;
pub mod cli;
pub mod config;
pub mod diff;
pub mod error;
pub mod images;
pub mod lock;
pub mod model;
pub mod notify;
pub mod plan;
pub mod preflight;
pub mod reconcile;
pub mod render;
pub mod rollout;
pub mod runtime;
pub mod sealing;
pub mod sensitive;
pub mod signals;
pub mod source;
pub mod state_dir;
pub mod store;
pub mod telemetry;

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
