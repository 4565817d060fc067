//! Ingress metrics, under the `herald_ingress_` prefix.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// Counters and histograms of the ingress.
#[derive(Clone)]
pub struct Metrics {
    /// Events stored, by namespace and Broker.
    pub accepted: IntCounterVec,
    /// Events JetStream recognised as resends within the duplicate window.
    pub duplicates: IntCounterVec,
    /// Requests refused, by reason.
    pub rejected: IntCounterVec,
    /// Time from request to answer, by mode.
    pub request_duration: HistogramVec,
    /// Time from publish to JetStream's ack.
    pub ack_duration: HistogramVec,
    /// Requests being handled.
    pub in_flight: IntGauge,
}

const LATENCY_BUCKETS: [f64; 14] = [
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

impl Metrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            accepted: IntCounterVec::new(
                Opts::new(
                    "herald_ingress_events_accepted_total",
                    "Events stored in a Broker's stream",
                ),
                &["namespace", "broker"],
            )?,
            duplicates: IntCounterVec::new(
                Opts::new(
                    "herald_ingress_events_duplicate_total",
                    "Resent events JetStream stored only once",
                ),
                &["namespace", "broker"],
            )?,
            rejected: IntCounterVec::new(
                Opts::new(
                    "herald_ingress_requests_rejected_total",
                    "Requests refused, by reason",
                ),
                &["reason"],
            )?,
            request_duration: HistogramVec::new(
                HistogramOpts::new(
                    "herald_ingress_request_duration_seconds",
                    "Request latency, by mode",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["mode"],
            )?,
            ack_duration: HistogramVec::new(
                HistogramOpts::new(
                    "herald_ingress_publish_ack_duration_seconds",
                    "JetStream publish-ack latency",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["namespace", "broker"],
            )?,
            in_flight: IntGauge::new(
                "herald_ingress_requests_in_flight",
                "Requests being handled",
            )?,
        };
        registry.register(Box::new(m.accepted.clone()))?;
        registry.register(Box::new(m.duplicates.clone()))?;
        registry.register(Box::new(m.rejected.clone()))?;
        registry.register(Box::new(m.request_duration.clone()))?;
        registry.register(Box::new(m.ack_duration.clone()))?;
        registry.register(Box::new(m.in_flight.clone()))?;
        Ok(m)
    }
}
