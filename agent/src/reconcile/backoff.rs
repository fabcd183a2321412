//! When the next cycle runs and whether it fetches: a pure policy over the last cycle's error class.
//!
//! - Success, and failures of the commit itself (input, rollout): the next cycle comes after `interval`
//!   (±10% jitter, so a fleet does not poll in step). A bad commit never makes a box poll faster.
//! - Transient and internal failures: exponential backoff with full jitter, capped at `interval`.
//! - A retry fetches only when a fetch is due (the last one failed, or `interval` has passed since it
//!   succeeded): an engine that is down is retried without asking the Git server each time.

use crate::error::ErrorClass;
use std::time::{Duration, Instant};

/// The first retry after a transient failure waits up to this; each further failure doubles it.
pub const BACKOFF_BASE: Duration = Duration::from_secs(2);
/// The shortest wait between two cycles, whatever the jitter draws.
pub const MIN_DELAY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Default)]
pub struct Backoff {
    /// Consecutive cycles that failed with a class that is retried (transient, internal).
    failures: u32,
    /// When the last fetch succeeded; `None`: never, or the last fetch failed.
    fetched_ok_at: Option<Instant>,
}

impl Backoff {
    /// Record how a cycle ended.
    pub fn cycle_done(&mut self, class: Option<ErrorClass>) {
        self.failures = match class {
            Some(ErrorClass::Transient | ErrorClass::Internal) => self.failures.saturating_add(1),
            _ => 0,
        };
    }

    /// Record how a fetch ended.
    pub fn fetch_done(&mut self, ok: bool, now: Instant) {
        self.fetched_ok_at = ok.then_some(now);
    }

    /// Whether a cycle the loop starts by itself (not one an operator or webhook asked for) should fetch.
    pub fn fetch_due(&self, now: Instant, interval: Duration) -> bool {
        match self.fetched_ok_at {
            None => true,
            // The interval timer is jittered by -10%: count that as due.
            Some(t) => now.saturating_duration_since(t) >= interval.mul_f64(0.9),
        }
    }

    /// How long to wait before the next cycle; `unit` is a uniform draw in [0, 1).
    pub fn next_delay(&self, interval: Duration, unit: f64) -> Duration {
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.5
        };
        if self.failures == 0 {
            // ±10%.
            return interval.mul_f64(0.9 + 0.2 * unit).max(MIN_DELAY);
        }
        let exp = BACKOFF_BASE
            .saturating_mul(1u32 << self.failures.saturating_sub(1).min(20))
            .min(interval);
        // Full jitter: anywhere in [0, exp], but never a hot loop.
        exp.mul_f64(unit).max(MIN_DELAY)
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// A uniform draw in [0, 1) for [`Backoff::next_delay`].
pub fn draw() -> f64 {
    fastrand::f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn success_and_bad_commits_wait_the_interval() {
        let mut b = Backoff::default();
        for class in [None, Some(ErrorClass::Input), Some(ErrorClass::Rollout)] {
            // However often the commit fails.
            for _ in 0..5 {
                b.cycle_done(class);
            }
            assert_eq!(b.next_delay(MIN, 0.0), Duration::from_secs(54));
            assert_eq!(b.next_delay(MIN, 1.0), Duration::from_secs(66));
        }
    }

    #[test]
    fn transient_failures_back_off_exponentially_with_full_jitter_capped_at_the_interval() {
        let mut b = Backoff::default();
        let mut caps = Vec::new();
        for _ in 0..8 {
            b.cycle_done(Some(ErrorClass::Transient));
            caps.push(b.next_delay(MIN, 1.0).as_secs());
            assert_eq!(
                b.next_delay(MIN, 0.0),
                MIN_DELAY,
                "full jitter reaches the floor"
            );
        }
        assert_eq!(caps, vec![2, 4, 8, 16, 32, 60, 60, 60]);
        // Many failures never overflow.
        for _ in 0..100 {
            b.cycle_done(Some(ErrorClass::Internal));
        }
        assert_eq!(b.next_delay(MIN, 1.0), MIN);
        b.cycle_done(None);
        assert_eq!(b.failures(), 0);
    }

    #[test]
    fn a_bad_draw_is_harmless() {
        let b = Backoff::default();
        assert_eq!(b.next_delay(MIN, f64::NAN), MIN);
        assert_eq!(b.next_delay(MIN, 7.0), Duration::from_secs(66));
    }

    #[test]
    fn fetch_is_due_after_a_failed_fetch_or_an_interval_not_after_an_engine_failure() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert!(b.fetch_due(t0, MIN), "first cycle fetches");
        b.fetch_done(true, t0);
        // The engine is down: retries come quickly but do not ask the Git server.
        b.cycle_done(Some(ErrorClass::Transient));
        assert!(!b.fetch_due(t0 + Duration::from_secs(2), MIN));
        assert!(!b.fetch_due(t0 + Duration::from_secs(53), MIN));
        assert!(b.fetch_due(t0 + Duration::from_secs(54), MIN));
        b.fetch_done(false, t0 + Duration::from_secs(54));
        assert!(b.fetch_due(t0 + Duration::from_secs(56), MIN));
    }

    #[test]
    fn draws_stay_in_the_unit_interval() {
        for _ in 0..1000 {
            let d = draw();
            assert!((0.0..1.0).contains(&d));
        }
    }
}
