//! Signals: what a box tells the outside and hears from it — alerts out ([`alerts`]), webhooks in
//! ([`receivers`]), Prometheus [`metrics`], and the optional TCP listener that serves the last two
//! ([`http`]).

pub mod alerts;
pub mod http;
pub mod metrics;
pub mod receivers;

pub use metrics::Metrics;
