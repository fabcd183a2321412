//! Alerts out: events, incidents, the persisted outbox and the providers that deliver them.
