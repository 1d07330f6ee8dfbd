//! Capped, jittered exponential backoff for reconnecting (pure; the caller sleeps).

use std::time::Duration;

/// Backoff parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Delay before the first retry (before jitter).
    pub initial: Duration,
    /// Largest delay (before jitter); the delay doubles per failed attempt up to this.
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
        }
    }
}

/// Produces retry delays: attempt `n` (from 0) waits a uniformly random time in
/// `[d/2, d]` where `d = min(initial * 2^n, max)` ("equal jitter": spreads reconnect storms
/// after an introducer restart while keeping a floor). Randomness is seeded, so tests are
/// deterministic.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    /// A backoff with its jitter drawn from a generator seeded with `seed`.
    pub fn new(config: BackoffConfig, seed: u64) -> Self {
        Self {
            config,
            attempt: 0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The delay before the next attempt; each call counts one more failed attempt.
    pub fn next_delay(&mut self) -> Duration {
        let shift = self.attempt.min(31);
        self.attempt = self.attempt.saturating_add(1);
        let base = self
            .config
            .initial
            .saturating_mul(1u32 << shift)
            .min(self.config.max);
        let nanos = u64::try_from(base.as_nanos()).unwrap_or(u64::MAX);
        let half = nanos / 2;
        Duration::from_nanos(half + self.rng.u64(0..=nanos - half))
    }

    /// Forgets past failures (call after a connection succeeded).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Failed attempts counted since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_jitters_within_bounds() {
        let cfg = BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        let mut b = Backoff::new(cfg, 42);
        let mut prev_cap = Duration::ZERO;
        for n in 0..40u32 {
            let cap = cfg.initial.saturating_mul(1 << n.min(31)).min(cfg.max);
            let d = b.next_delay();
            assert!(
                d >= cap / 2 && d <= cap,
                "attempt {n}: {d:?} not in [{:?}, {cap:?}]",
                cap / 2
            );
            assert!(cap >= prev_cap);
            prev_cap = cap;
        }
        assert_eq!(prev_cap, cfg.max);
        b.reset();
        assert!(b.next_delay() <= cfg.initial);
    }

    #[test]
    fn deterministic_per_seed_and_seeds_differ() {
        let cfg = BackoffConfig::default();
        let run = |seed| {
            let mut b = Backoff::new(cfg, seed);
            (0..8).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }
}
