//! One integration-test binary; each module drives the real `berth` binary against the real Docker engine
//! and real Git repositories (scripts/test.sh starts the engine and builds the test image).

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
mod leaks;
mod log_redaction;
mod monitoring;
mod ownership;
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
