//! One integration-test binary; each module drives the real `berth` binary against the real Docker engine
//! and real Git repositories (scripts/test.sh starts the engine and builds the test image).

/// Loopback HTTP servers (axum): shared with the unit tests in agent/src/source/tests.rs.
#[path = "support/http_server.rs"]
mod http_server;
mod util;

mod agent;
mod alerts;
mod api;
mod apply;
mod cli;
mod conformance;
mod dependencies;
mod diff;
mod files;
mod fleet;
mod full_disk;
mod jobs;
mod leaks;
mod log_redaction;
mod monitoring;
mod ownership;
mod preflight;
mod reconcile;
mod registry;
mod retention;
mod rollouts;
mod secrets_store;
mod signals_http;
mod sops;
mod systemd;
mod verify;
mod volumes;
