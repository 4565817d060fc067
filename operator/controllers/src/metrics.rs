//! Operator metrics, registered under the `herald_operator_` prefix.

use std::time::Instant;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Counters and histograms of the operator.
#[derive(Clone)]
pub struct Metrics {
    reconciles: IntCounterVec,
    failures: IntCounterVec,
    duration: HistogramVec,
    /// 1 while this process holds the leader Lease.
    pub leader: IntGauge,
    /// Autoscaler: replicas wanted, by Trigger.
    pub desired_replicas: IntGaugeVec,
    /// Autoscaler: backlog (pending + unacknowledged) at the last poll, by Trigger.
    pub backlog: IntGaugeVec,
    /// Autoscaler: replica changes, by Trigger and reason.
    pub scalings: IntCounterVec,
    /// Autoscaler: time from seeing an event for a Trigger at zero to its scale-up.
    pub activation: Histogram,
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
        let trigger = ["namespace", "trigger"];
        let desired_replicas = IntGaugeVec::new(
            Opts::new(
                "herald_autoscaler_desired_replicas",
                "Replicas the autoscaler wants for a consumer Trigger",
            ),
            &trigger,
        )?;
        let backlog = IntGaugeVec::new(
            Opts::new(
                "herald_autoscaler_backlog",
                "Pending plus unacknowledged events of a consumer Trigger at the last poll",
            ),
            &trigger,
        )?;
        let scalings = IntCounterVec::new(
            Opts::new(
                "herald_autoscaler_scalings_total",
                "Replica changes made by the autoscaler, by Trigger and reason",
            ),
            &["namespace", "trigger", "reason"],
        )?;
        let activation = Histogram::with_opts(
            HistogramOpts::new(
                "herald_autoscaler_activation_seconds",
                "From the first event seen for a Trigger at zero replicas to its scale-up",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
        )?;
        registry.register(Box::new(desired_replicas.clone()))?;
        registry.register(Box::new(backlog.clone()))?;
        registry.register(Box::new(scalings.clone()))?;
        registry.register(Box::new(activation.clone()))?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        Ok(Self {
            reconciles,
            failures,
            duration,
            leader,
            desired_replicas,
            backlog,
            scalings,
            activation,
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
