//! A Trigger's delivery rate limit, as one dispatcher (or one consumer sidecar)
//! enforces it: its share of the Trigger's `delivery.rateLimit`
//! ([`herald_api::delivery::Rate::share`]), so that all of them together stay within
//! the limit. Events wait in the Trigger's queue meanwhile (held under progress acks
//! like events waiting for a delivery slot), not in a buffer of their own.

use std::num::NonZeroU32;

use governor::clock::DefaultClock;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use herald_api::delivery::Rate;

/// Lets delivery attempts through at a rate.
pub struct RateGate(RateLimiter<NotKeyed, InMemoryState, DefaultClock>);

impl RateGate {
    /// A gate for `rate`; `None` for a rate no gate can express (a zero interval).
    #[must_use]
    pub fn new(rate: Rate) -> Option<Self> {
        let quota = Quota::with_period(rate.interval())?
            .allow_burst(NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN));
        Some(Self(RateLimiter::direct(quota)))
    }

    /// Waits until one more attempt is allowed.
    pub async fn wait(&self) {
        self.0.until_ready().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn a_burst_goes_at_once_and_the_rest_at_the_rate() {
        let gate = RateGate::new(Rate {
            events: 20,
            per: Duration::from_secs(1),
            burst: 5,
        })
        .unwrap();
        let started = Instant::now();
        for _ in 0..5 {
            gate.wait().await;
        }
        assert!(
            started.elapsed() < Duration::from_millis(40),
            "the burst waited"
        );
        // Five more at 20/s take about 250 ms (real time: governor keeps its own clock).
        for _ in 0..5 {
            gate.wait().await;
        }
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(200),
            "went faster than the rate: {elapsed:?}"
        );
    }
}
