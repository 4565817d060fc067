//! Kubernetes Events about dropped events, at most one per Trigger per period.
//!
//! Publishing an Event for every dropped event turns a failing subscriber into a flood
//! on the shared apiserver: measured in the churn test, 50 Triggers to a subscriber
//! that was gone held ~3,800 connections to the apiserver at once, each delivery
//! waiting on its own Event. Deliveries only note a drop here (no I/O); one task
//! publishes a summary per Trigger per [`REPORT_EVERY`], one request at a time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use herald_api::Trigger;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};

/// Longest a drop waits to be reported; also the shortest gap between two Events of
/// one Trigger.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);
/// Triggers with drops waiting to be reported, at most (a bound on memory; drops are
/// counted in the metrics whether reported or not).
const MAX_PENDING: usize = 10_000;

/// Drops noted since the last report, by Trigger.
#[derive(Default)]
pub struct DropReports {
    pending: Mutex<HashMap<(String, String), Pending>>,
}

/// Drops of one Trigger since its last report.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    dropped: u64,
    attempts: u32,
    last_error: String,
}

impl DropReports {
    /// Notes that an event of `namespace/trigger` was dropped after `attempts`.
    pub fn note(&self, namespace: &str, trigger: &str, attempts: u32, last_error: String) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (namespace.to_owned(), trigger.to_owned());
        if let Some(p) = pending.get_mut(&key) {
            p.dropped += 1;
            p.attempts = attempts;
            p.last_error = last_error;
        } else if pending.len() < MAX_PENDING {
            pending.insert(
                key,
                Pending {
                    dropped: 1,
                    attempts,
                    last_error,
                },
            );
        }
    }

    fn take(&self) -> HashMap<(String, String), Pending> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Publishes what was noted, every [`REPORT_EVERY`], until the task is dropped.
    pub async fn publish_every_period(self: Arc<Self>, recorder: Recorder) {
        let mut every = tokio::time::interval(REPORT_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            for ((namespace, trigger), pending) in self.take() {
                let reference = ObjectReference {
                    api_version: Some(Trigger::api_version(&()).into_owned()),
                    kind: Some(Trigger::kind(&()).into_owned()),
                    name: Some(trigger),
                    namespace: Some(namespace),
                    ..ObjectReference::default()
                };
                if let Err(e) = recorder.publish(&event(&pending), &reference).await {
                    tracing::debug!(error = %e, "could not publish a Kubernetes Event");
                }
            }
        }
    }
}

fn event(pending: &Pending) -> Event {
    let note = if pending.dropped == 1 {
        format!(
            "an event failed {} attempt(s) (last: {}) and was dropped: set delivery.deadLetterSink to keep such events",
            pending.attempts, pending.last_error
        )
    } else {
        format!(
            "{} events failed their attempts (last one after {}: {}) and were dropped within {}s: set delivery.deadLetterSink to keep such events",
            pending.dropped,
            pending.attempts,
            pending.last_error,
            REPORT_EVERY.as_secs()
        )
    };
    Event {
        type_: EventType::Warning,
        reason: "EventDropped".into(),
        note: Some(note),
        action: "Deliver".into(),
        secondary: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_of_one_trigger_become_one_event_per_period() {
        let reports = DropReports::default();
        for n in 0..500 {
            reports.note("team-a", "orders", 3, format!("HTTP 500 #{n}"));
        }
        reports.note("team-b", "orders", 1, "timed out".into());
        let taken = reports.take();
        assert_eq!(taken.len(), 2);
        let a = &taken[&("team-a".into(), "orders".into())];
        assert_eq!(a.dropped, 500);
        let note = event(a).note.expect("note");
        assert!(note.starts_with("500 events failed"), "{note}");
        assert!(note.contains("HTTP 500 #499"), "{note}");
        let b = event(&taken[&("team-b".into(), "orders".into())]);
        assert!(
            b.note
                .expect("note")
                .starts_with("an event failed 1 attempt(s) (last: timed out)")
        );
        assert!(reports.take().is_empty(), "taken once");
    }

    #[test]
    fn waiting_reports_are_bounded() {
        let reports = DropReports::default();
        for n in 0..MAX_PENDING + 10 {
            reports.note("ns", &format!("t{n}"), 1, String::new());
        }
        assert_eq!(reports.take().len(), MAX_PENDING);
    }
}
