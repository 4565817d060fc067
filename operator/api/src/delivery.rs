//! The delivery policy that applies to a Trigger: its own `delivery` fields, else its
//! Broker's, else Herald's defaults — and the retry schedule that follows from it.
//! The operator and the dispatcher both use this, so they always agree.

use std::time::Duration;

use crate::common::{BackoffPolicy, DeliverySpec, Destination, Ordering, RateLimit};

/// Retries when neither the Trigger nor its Broker says (at-least-once by default).
pub const DEFAULT_RETRY: u32 = 3;
/// Base retry delay when none is given.
pub const DEFAULT_BACKOFF_DELAY: Duration = Duration::from_secs(1);
/// Time one delivery attempt may take when none is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Deliveries in flight per Trigger and dispatcher when none is given.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 100;
/// How long JetStream waits for a dispatcher's ack before redelivering an event. Short,
/// so events held by a dispatcher that died (or lost its NATS connection) come back
/// quickly; a live dispatcher keeps what it holds alive with progress acks, so
/// deliveries may take longer (up to the delivery timeout).
pub const ACK_WAIT: Duration = Duration::from_secs(10);
/// Longest delay between two attempts, whatever the policy computes.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Longest wait a subscriber's `Retry-After` may ask for when `retryAfterMax` is unset.
pub const DEFAULT_RETRY_AFTER_MAX: Duration = Duration::from_secs(300);

/// A rate limit with its defaults filled in: `events` attempts per `per`, bursts of
/// `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Attempts per period.
    pub events: u32,
    /// The period.
    pub per: Duration,
    /// Attempts that may go at once.
    pub burst: u32,
}

impl Rate {
    /// This rate split between `sharers` that each enforce their part (dispatcher
    /// replicas, consumer pods): together they never go faster than the whole. The
    /// burst is split too, but never below one attempt.
    #[must_use]
    pub fn share(&self, sharers: u32) -> Rate {
        let sharers = sharers.max(1);
        Rate {
            events: self.events,
            per: self.per.saturating_mul(sharers),
            burst: (self.burst / sharers).max(1),
        }
    }

    /// The time between two attempts at this rate.
    #[must_use]
    pub fn interval(&self) -> Duration {
        self.per / self.events.max(1)
    }
}

/// A Trigger's delivery policy with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveDelivery {
    /// Retries after the first attempt.
    pub retry: u32,
    /// How the delay grows.
    pub backoff_policy: BackoffPolicy,
    /// Base delay.
    pub backoff_delay: Duration,
    /// Time one attempt may take.
    pub timeout: Duration,
    /// Where events go when every attempt failed.
    pub dead_letter_sink: Option<Destination>,
    /// One event at a time, in stream order.
    pub ordered: bool,
    /// Deliveries in flight at once (1 when ordered).
    pub max_in_flight: u32,
    /// Most attempts per period, if limited.
    pub rate_limit: Option<Rate>,
    /// Longest wait a subscriber's `Retry-After` may ask for.
    pub retry_after_max: Duration,
}

/// A delivery setting Herald cannot use; `field` is its path under `delivery.`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("delivery.{field}: {source}")]
    Duration {
        field: &'static str,
        #[source]
        source: crate::duration::ParseDurationError,
    },
    #[error("delivery.{field}: must be longer than 0")]
    Zero { field: &'static str },
    #[error("delivery.{field}: must be at least 1")]
    BelowOne { field: &'static str },
}

/// Merges the Trigger's delivery over its Broker's; `Err` names the bad field.
pub fn resolve(
    trigger: Option<&DeliverySpec>,
    broker: Option<&DeliverySpec>,
) -> Result<EffectiveDelivery, DeliveryError> {
    let pick =
        |f: fn(&DeliverySpec) -> Option<String>| trigger.and_then(f).or_else(|| broker.and_then(f));
    let duration = |field: &'static str, value: Option<String>, default: Duration| match value {
        Some(v) => {
            crate::duration::parse(&v).map_err(|source| DeliveryError::Duration { field, source })
        }
        None => Ok(default),
    };
    let retry = trigger
        .and_then(|d| d.retry)
        .or_else(|| broker.and_then(|d| d.retry));
    let ordering = trigger
        .and_then(|d| d.ordering)
        .or_else(|| broker.and_then(|d| d.ordering));
    let ordered = ordering == Some(Ordering::Ordered);
    let max_in_flight = trigger
        .and_then(|d| d.max_in_flight)
        .or_else(|| broker.and_then(|d| d.max_in_flight));
    let timeout = duration("timeout", pick(|d| d.timeout.clone()), DEFAULT_TIMEOUT)?;
    if timeout.is_zero() {
        return Err(DeliveryError::Zero { field: "timeout" });
    }
    let rate_limit = match trigger
        .and_then(|d| d.rate_limit.as_ref())
        .or_else(|| broker.and_then(|d| d.rate_limit.as_ref()))
    {
        Some(limit) => Some(rate(limit)?),
        None => None,
    };
    let retry_after_max = duration(
        "retryAfterMax",
        pick(|d| d.retry_after_max.clone()),
        DEFAULT_RETRY_AFTER_MAX,
    )?;
    Ok(EffectiveDelivery {
        retry: retry.map_or(DEFAULT_RETRY, |r| u32::try_from(r).unwrap_or(0)),
        backoff_policy: trigger
            .and_then(|d| d.backoff_policy)
            .or_else(|| broker.and_then(|d| d.backoff_policy))
            .unwrap_or(BackoffPolicy::Exponential),
        backoff_delay: duration(
            "backoffDelay",
            pick(|d| d.backoff_delay.clone()),
            DEFAULT_BACKOFF_DELAY,
        )?,
        timeout,
        dead_letter_sink: trigger
            .and_then(|d| d.dead_letter_sink.clone())
            .or_else(|| broker.and_then(|d| d.dead_letter_sink.clone())),
        ordered,
        rate_limit,
        retry_after_max,
        max_in_flight: if ordered {
            1
        } else {
            max_in_flight.map_or(DEFAULT_MAX_IN_FLIGHT, |m| {
                u32::try_from(m).unwrap_or(1).max(1)
            })
        },
    })
}

/// A rate limit as written, checked, with its defaults.
fn rate(limit: &RateLimit) -> Result<Rate, DeliveryError> {
    let events =
        u32::try_from(limit.events)
            .ok()
            .filter(|e| *e >= 1)
            .ok_or(DeliveryError::BelowOne {
                field: "rateLimit.events",
            })?;
    let per = match &limit.per {
        Some(p) => crate::duration::parse(p).map_err(|source| DeliveryError::Duration {
            field: "rateLimit.per",
            source,
        })?,
        None => Duration::from_secs(1),
    };
    if per.is_zero() {
        return Err(DeliveryError::Zero {
            field: "rateLimit.per",
        });
    }
    let burst = match limit.burst {
        Some(b) => u32::try_from(b)
            .ok()
            .filter(|b| *b >= 1)
            .ok_or(DeliveryError::BelowOne {
                field: "rateLimit.burst",
            })?,
        None => events,
    };
    Ok(Rate { events, per, burst })
}

impl EffectiveDelivery {
    /// Attempts in all: the first one plus the retries.
    #[must_use]
    pub fn attempts(&self) -> u32 {
        self.retry.saturating_add(1)
    }

    /// Delay before retry number `retry` (1-based), at most [`MAX_BACKOFF`].
    #[must_use]
    pub fn backoff(&self, retry: u32) -> Duration {
        crate::backoff::Backoff {
            policy: self.backoff_policy,
            base: self.backoff_delay,
            max: MAX_BACKOFF,
        }
        .delay(retry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> DeliverySpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn trigger_fields_win_over_broker_fields_and_defaults_fill_the_rest() {
        let broker =
            spec("retry: 5\nbackoffDelay: PT2S\ntimeout: 10s\ndeadLetterSink: {uri: http://dls}");
        let trigger = spec("retry: 1\nbackoffPolicy: linear");
        let d = resolve(Some(&trigger), Some(&broker)).unwrap();
        assert_eq!(d.retry, 1);
        assert_eq!(d.backoff_policy, BackoffPolicy::Linear);
        assert_eq!(d.backoff_delay, Duration::from_secs(2));
        assert_eq!(d.timeout, Duration::from_secs(10));
        assert_eq!(
            d.dead_letter_sink.unwrap().uri.as_deref(),
            Some("http://dls")
        );
        let defaults = resolve(None, None).unwrap();
        assert_eq!(
            (defaults.retry, defaults.timeout, defaults.max_in_flight),
            (3, DEFAULT_TIMEOUT, 100)
        );
        assert_eq!(defaults.attempts(), 4);
    }

    #[test]
    fn backoff_grows_per_policy_and_is_capped() {
        let mut d = resolve(Some(&spec("backoffDelay: PT0.5S")), None).unwrap();
        let delays: Vec<_> = (1..=4).map(|r| d.backoff(r)).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000].map(Duration::from_millis));
        d.backoff_policy = BackoffPolicy::Linear;
        let delays: Vec<_> = (1..=3).map(|r| d.backoff(r)).collect();
        assert_eq!(delays, [500, 1000, 1500].map(Duration::from_millis));
        d.backoff_policy = BackoffPolicy::Exponential;
        assert_eq!(d.backoff(200), MAX_BACKOFF);
    }

    #[test]
    fn ordered_means_one_in_flight_and_bad_durations_are_named() {
        assert_eq!(
            resolve(Some(&spec("ordering: ordered\nmaxInFlight: 50")), None)
                .unwrap()
                .max_in_flight,
            1
        );
        let e = resolve(Some(&spec("timeout: soon")), None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("delivery.timeout:"), "{e}");
    }

    #[test]
    fn a_rate_limit_is_checked_and_shared_between_its_enforcers() {
        let spec = |yaml: &str| -> DeliverySpec { serde_yaml::from_str(yaml).unwrap() };
        let limited = resolve(Some(&spec("rateLimit: {events: 10, per: 2s}")), None).unwrap();
        let rate = limited.rate_limit.unwrap();
        assert_eq!(
            (rate.events, rate.per, rate.burst),
            (10, Duration::from_secs(2), 10)
        );
        assert_eq!(rate.interval(), Duration::from_millis(200));
        // Three replicas each let a third through: 10 per 6 s each, bursts of 3.
        let third = rate.share(3);
        assert_eq!(
            (third.interval(), third.burst),
            (Duration::from_millis(600), 3)
        );
        assert_eq!(rate.share(100).burst, 1, "never a burst of none");
        // The Broker's limit applies to Triggers that set none.
        let inherited = resolve(None, Some(&spec("rateLimit: {events: 1}"))).unwrap();
        assert_eq!(inherited.rate_limit.unwrap().per, Duration::from_secs(1));
        for bad in [
            "rateLimit: {events: 0}",
            "rateLimit: {events: 1, per: 0s}",
            "rateLimit: {events: 1, burst: 0}",
        ] {
            assert!(resolve(Some(&spec(bad)), None).is_err(), "{bad}");
        }
        assert_eq!(
            resolve(None, None).unwrap().retry_after_max,
            DEFAULT_RETRY_AFTER_MAX
        );
    }
}
