//! Reconnect delays. Pure: the random samples are passed in, so tests need neither an RNG
//! nor a clock.
//!
//! Ordinary failures use exponential backoff with *full jitter* (Brooker, "Exponential Backoff
//! And Jitter", AWS Architecture Blog, 2015): the n-th delay is uniform in
//! `[0, min(max, initial · 2ⁿ)]`, which spreads a fleet of sidecars reconnecting to a
//! restarted gateway over the whole window instead of synchronising them. Refusals that a
//! retry cannot fix (a revoked certificate) use a long fixed delay with *equal jitter*
//! (between half and all of it), so a revoked agent never hammers the gateway.

use std::time::Duration;

/// Exponential backoff state: how many consecutive failures there were.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            failures: 0,
        }
    }

    /// The delay before the next attempt, given a uniform `sample` in `[0, 1]` (values outside,
    /// including NaN, count as 1), and counts one more failure.
    pub(crate) fn next_delay(&mut self, sample: f64) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        scale(ceiling, sample)
    }

    /// The current upper bound: `min(max, initial · 2^failures)`.
    pub(crate) fn ceiling(&self) -> Duration {
        // 2^31 · initial overflows `Duration` only for absurd `initial`; saturate either way.
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// Forgets past failures (after a connection that stayed up).
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

/// The delay after a refusal that retrying cannot fix: between `base / 2` and `base`.
pub(crate) fn long_delay(base: Duration, sample: f64) -> Duration {
    let half = base / 2;
    half + scale(base - half, sample)
}

/// `d · sample`, with `sample` clamped to `[0, 1]` (NaN counts as 1). Never panics and never
/// exceeds `d` (unlike `Duration::mul_f64`, which panics when rounding overflows).
fn scale(d: Duration, sample: f64) -> Duration {
    let sample = if (0.0..=1.0).contains(&sample) {
        sample
    } else if sample < 0.0 {
        0.0
    } else {
        1.0
    };
    Duration::try_from_secs_f64(d.as_secs_f64() * sample).map_or(d, |scaled| scaled.min(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ceiling_doubles_from_initial_up_to_max() {
        let mut b = Backoff::new(50 * MS, 2000 * MS);
        let ceilings: Vec<_> = (0..8)
            .map(|_| {
                let c = b.ceiling();
                b.next_delay(1.0);
                c
            })
            .collect();
        assert_eq!(
            ceilings,
            [50, 100, 200, 400, 800, 1600, 2000, 2000].map(|ms| ms * MS)
        );
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling() {
        let mut b = Backoff::new(50 * MS, 2000 * MS);
        assert_eq!(b.next_delay(0.0), Duration::ZERO);
        assert_eq!(b.next_delay(0.5), 50 * MS); // ceiling 100 ms
        assert_eq!(b.next_delay(1.0), 200 * MS);
        for _ in 0..100 {
            assert!(b.next_delay(0.999) <= 2000 * MS);
        }
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::new(50 * MS, 2000 * MS);
        for _ in 0..10 {
            b.next_delay(0.3);
        }
        assert_eq!(b.ceiling(), 2000 * MS);
        b.reset();
        assert_eq!(b.ceiling(), 50 * MS);
    }

    #[test]
    fn many_failures_saturate_instead_of_overflowing() {
        let mut b = Backoff::new(Duration::from_secs(u64::MAX / 4), Duration::MAX);
        for _ in 0..100 {
            b.next_delay(1.0);
        }
        assert_eq!(b.ceiling(), Duration::MAX);
        // A max below initial is raised to initial rather than inverting the range.
        let b = Backoff::new(100 * MS, 10 * MS);
        assert_eq!(b.ceiling(), 100 * MS);
    }

    #[test]
    fn bad_samples_are_clamped() {
        let mut b = Backoff::new(50 * MS, 2000 * MS);
        assert_eq!(b.next_delay(f64::NAN), 50 * MS);
        assert_eq!(b.next_delay(-3.0), Duration::ZERO);
        assert_eq!(b.next_delay(7.0), 200 * MS);
    }

    #[test]
    fn long_delay_uses_equal_jitter() {
        let base = Duration::from_secs(30);
        assert_eq!(long_delay(base, 0.0), Duration::from_secs(15));
        assert_eq!(long_delay(base, 1.0), base);
        assert_eq!(long_delay(base, 0.5), Duration::from_millis(22_500));
        assert_eq!(long_delay(base, f64::INFINITY), base);
    }
}
