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
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retried => "retried",
            Self::DeadLettered => "dead_lettered",
            Self::Dropped => "dropped",
            Self::Filtered => "filtered",
            Self::Malformed => "malformed",
            Self::ReplyDropped => "reply_dropped",
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
        };
        registry.register(Box::new(m.events.clone()))?;
        registry.register(Box::new(m.latency.clone()))?;
        registry.register(Box::new(m.in_flight.clone()))?;
        registry.register(Box::new(m.triggers.clone()))?;
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
}
