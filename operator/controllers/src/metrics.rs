//! Operator metrics, registered under the `herald_operator_` prefix.

use std::time::Instant;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// Counters and histograms of the operator.
#[derive(Clone)]
pub struct Metrics {
    reconciles: IntCounterVec,
    failures: IntCounterVec,
    duration: HistogramVec,
    /// 1 while this process holds the leader Lease.
    pub leader: IntGauge,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let reconciles = IntCounterVec::new(
            Opts::new(
                "herald_operator_reconciles_total",
                "Reconciles run, by kind",
            ),
            &["kind"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "herald_operator_reconcile_errors_total",
                "Reconciles that failed, by kind and reason",
            ),
            &["kind", "reason"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "herald_operator_reconcile_duration_seconds",
                "Time spent in one reconcile, by kind",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["kind"],
        )?;
        let leader = IntGauge::new(
            "herald_operator_is_leader",
            "1 while this operator holds the leader Lease",
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        Ok(Self {
            reconciles,
            failures,
            duration,
            leader,
        })
    }

    /// Counts a reconcile of `kind` and times it until the guard is dropped.
    #[must_use]
    pub fn reconcile(&self, kind: &'static str) -> ReconcileTimer {
        self.reconciles.with_label_values(&[kind]).inc();
        ReconcileTimer {
            metrics: self.clone(),
            kind,
            start: Instant::now(),
        }
    }

    /// Counts a failed reconcile.
    pub fn failure(&self, kind: &str, reason: &str) {
        self.failures.with_label_values(&[kind, reason]).inc();
    }
}

/// Records the reconcile's duration when dropped, whichever way the reconcile ends.
pub struct ReconcileTimer {
    metrics: Metrics,
    kind: &'static str,
    start: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.metrics
            .duration
            .with_label_values(&[self.kind])
            .observe(self.start.elapsed().as_secs_f64());
    }
}
