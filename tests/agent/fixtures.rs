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

/// A chain `s1 <- s2 <- … <- sN` (each depends on the one before), so an apply runs in `n` waves; service
/// `i`'s lines after its `image:` are `body(i)` (indented by 4 spaces).
pub(super) fn chain(n: usize, body: impl Fn(usize) -> String) -> String {
    let mut s = String::from("services:\n");
    for i in 1..=n {
        s.push_str(&format!("  s{i}:\n    image: {IMAGE}\n{}", body(i)));
        if i > 1 {
            s.push_str(&format!("    depends_on: [s{}]\n", i - 1));
        }
    }
    s
}
