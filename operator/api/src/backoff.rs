//! The one retry-delay rule: Trigger delivery, the sources' sink retries and the
//! controllers' requeues all grow their delay this way, each with its own base and cap.

use std::time::Duration;

use crate::common::BackoffPolicy;

/// Delays that start at `base` and grow per `policy`, never beyond `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub policy: BackoffPolicy,
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// `base` doubling per retry, at most `max`.
    #[must_use]
    pub const fn exponential(base: Duration, max: Duration) -> Self {
        Self {
            policy: BackoffPolicy::Exponential,
            base,
            max,
        }
    }

    /// Delay before retry number `retry` (1-based; 0 counts as 1): `base * retry`
    /// (linear) or `base * 2^(retry-1)` (exponential), at most `max`.
    #[must_use]
    pub fn delay(&self, retry: u32) -> Duration {
        let retry = retry.max(1);
        let factor = match self.policy {
            BackoffPolicy::Linear => retry,
            BackoffPolicy::Exponential => 1u32.checked_shl(retry - 1).unwrap_or(u32::MAX),
        };
        self.base
            .checked_mul(factor)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn exponential_doubles_from_the_base_and_caps() {
        let b = Backoff::exponential(100 * MS, Duration::from_secs(5));
        let delays: Vec<_> = (0..=8).map(|r| b.delay(r)).collect();
        assert_eq!(
            delays,
            [100, 100, 200, 400, 800, 1600, 3200, 5000, 5000].map(|m| m * MS)
        );
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(5), "no overflow");
    }

    #[test]
    fn linear_grows_by_the_base() {
        let b = Backoff {
            policy: BackoffPolicy::Linear,
            base: 500 * MS,
            max: Duration::from_secs(1),
        };
        let delays: Vec<_> = (1..=3).map(|r| b.delay(r)).collect();
        assert_eq!(delays, [500, 1000, 1000].map(|m| m * MS));
    }

    #[test]
    fn a_huge_base_is_capped_not_overflowed() {
        let b = Backoff::exponential(Duration::MAX, Duration::from_secs(3600));
        assert_eq!(b.delay(3), Duration::from_secs(3600));
    }
}
