//! The compose files the agent tests commit: services of the test image that idle, with extra lines.

use crate::util::*;

/// A service block: the test image, idling, plus `extra` lines (indented by 4 spaces).
pub(super) fn service(name: &str, extra: &str) -> String {
    format!("  {name}:\n    image: {IMAGE}\n    command: {IDLE}\n{extra}")
}

/// A compose file of these service blocks.
pub(super) fn compose(services: &[String]) -> String {
    format!("services:\n{}", services.concat())
}

/// The `environment:` lines of a service setting `MODE` to `mode`.
pub(super) fn env(mode: &str) -> String {
    format!("    environment:\n      MODE: \"{mode}\"\n")
}
