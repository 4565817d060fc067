//! Metrics of `herald sources`.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    /// Events by source and outcome (`sent`, `failed`).
    pub events: IntCounterVec,
    /// Webhook requests refused, by reason.
    pub refused: IntCounterVec,
    /// Time to hand one event to its sink, retries included.
    pub send_duration: Histogram,
    /// Sources running.
    pub sources: IntGauge,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let events = IntCounterVec::new(
            Opts::new(
                "herald_sources_events_total",
                "Events emitted, by source and outcome",
            ),
            &["namespace", "source", "outcome"],
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                "herald_sources_webhook_refused_total",
                "Webhook requests refused, by reason",
            ),
            &["reason"],
        )?;
        let send_duration = Histogram::with_opts(
            HistogramOpts::new(
                "herald_sources_send_duration_seconds",
                "Time to hand one event to its sink, retries included",
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0]),
        )?;
        let sources = IntGauge::new("herald_sources_running", "EventSources this adapter runs")?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(send_duration.clone()))?;
        registry.register(Box::new(sources.clone()))?;
        Ok(Self {
            events,
            refused,
            send_duration,
            sources,
        })
    }
}
