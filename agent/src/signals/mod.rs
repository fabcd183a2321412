//! Signals: what the agent tells the world about itself. [`alerts`]: events → incidents → a persisted
//! outbox → alert providers.

pub mod alerts;
