//! Dispatcher metrics, under the `herald_dispatcher_` prefix.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// What happened to one delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The subscriber answered 2xx.
    Delivered,
    /// Failed; will be retried.
    Retried,
    /// Retries used up (or not retryable): sent to the dead-letter sink.
    DeadLettered,
    /// Retries used up and no dead-letter sink: dropped.
    Dropped,
    /// The Trigger's filters did not match.
    Filtered,
    /// Not a CloudEvent; removed from the Trigger's queue.
    Malformed,
    /// Delivered, but its reply was not published: the reply chain reached its end
    /// (`knativebrokerttl`), or the reply's body was longer than
    /// [`crate::deliver::MAX_ANSWER_BYTES`] or slower than the delivery timeout.
    ReplyDropped,
    /// The egress policy refused the subscriber or dead-letter sink (counted besides
    /// the event's `dead_lettered` or `dropped`).
    Refused,
    /// The Trigger's transform failed for the event (counted besides the event's
    /// `dead_lettered` or `dropped`: a transform failure is not retried).
    TransformFailed,
}

impl Outcome {
    const ALL: [Outcome; 9] = [
        Self::Delivered,
        Self::Retried,
        Self::DeadLettered,
        Self::Dropped,
        Self::Filtered,
        Self::Malformed,
        Self::ReplyDropped,
        Self::Refused,
        Self::TransformFailed,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retried => "retried",
            Self::DeadLettered => "dead_lettered",
            Self::Dropped => "dropped",
            Self::Filtered => "filtered",
            Self::Malformed => "malformed",
            Self::ReplyDropped => "reply_dropped",
            Self::Refused => "refused",
            Self::TransformFailed => "transform_failed",
        }
    }
}

/// Counters and histograms of the dispatcher.
#[derive(Clone)]
pub struct Metrics {
    events: IntCounterVec,
    latency: HistogramVec,
    /// Deliveries in flight.
    pub in_flight: IntGauge,
    /// Triggers being delivered.
    pub triggers: IntGauge,
    /// Events of types beyond the catalog's bound, by Broker.
    pub eventtypes_overflow: IntCounterVec,
}

impl Metrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            events: IntCounterVec::new(
                Opts::new(
                    "herald_dispatcher_events_total",
                    "Events handled, by Trigger and outcome",
                ),
                &["namespace", "trigger", "outcome"],
            )?,
            latency: HistogramVec::new(
                HistogramOpts::new(
                    "herald_dispatcher_delivery_latency_seconds",
                    "From the event's storage in the stream to the subscriber's 2xx",
                )
                .buckets(vec![
                    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0, 60.0,
                ]),
                &["namespace", "trigger"],
            )?,
            in_flight: IntGauge::new(
                "herald_dispatcher_deliveries_in_flight",
                "Deliveries in flight",
            )?,
            triggers: IntGauge::new("herald_dispatcher_triggers", "Triggers being delivered")?,
            eventtypes_overflow: IntCounterVec::new(
                Opts::new(
                    "herald_dispatcher_eventtypes_overflow_total",
                    "Events routed but not catalogued: their type was beyond the bound of EventTypes per Broker",
                ),
                &["namespace", "broker"],
            )?,
        };
        registry.register(Box::new(m.events.clone()))?;
        registry.register(Box::new(m.latency.clone()))?;
        registry.register(Box::new(m.in_flight.clone()))?;
        registry.register(Box::new(m.triggers.clone()))?;
        registry.register(Box::new(m.eventtypes_overflow.clone()))?;
        Ok(m)
    }

    /// Counts one event's outcome.
    pub fn outcome(&self, namespace: &str, trigger: &str, outcome: Outcome) {
        self.events
            .with_label_values(&[namespace, trigger, outcome.label()])
            .inc();
    }

    /// Records a delivery's latency in seconds.
    pub fn latency(&self, namespace: &str, trigger: &str, seconds: f64) {
        self.latency
            .with_label_values(&[namespace, trigger])
            .observe(seconds);
    }

    /// Drops the series of a Trigger that is gone: namespaces come and go, and each
    /// Trigger's series would otherwise stay in memory (and in every scrape) for good.
    pub fn forget(&self, namespace: &str, trigger: &str) {
        for outcome in Outcome::ALL {
            let _ = self
                .events
                .remove_label_values(&[namespace, trigger, outcome.label()]);
        }
        let _ = self.latency.remove_label_values(&[namespace, trigger]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(registry: &Registry) -> usize {
        registry
            .gather()
            .iter()
            .filter(|family| family.name().starts_with("herald_dispatcher_"))
            .map(|family| family.get_metric().len())
            .sum()
    }

    #[test]
    fn a_forgotten_trigger_leaves_no_series_and_others_keep_theirs() {
        let registry = Registry::new();
        let metrics = Metrics::register(&registry).unwrap();
        let idle = series(&registry);
        metrics.outcome("gone", "t", Outcome::Delivered);
        metrics.outcome("gone", "t", Outcome::Dropped);
        metrics.latency("gone", "t", 0.1);
        metrics.outcome("stays", "t", Outcome::Delivered);
        assert_eq!(series(&registry), idle + 4);
        metrics.forget("gone", "t");
        assert_eq!(series(&registry), idle + 1);
    }
}
