//! One JetStream work queue (a durable consumer) and the replicas of its consumer
//! Deployment, advanced in fixed steps of [`STEP_MS`].
//!
//! - Events are FIFO. A replica handles one event at a time for [`SERVICE_MS`].
//! - A replica added at `t` starts taking events at `t + pod start`; a removed one
//!   stops at once. Like a `ReplicaSet`, a scale down removes not-ready pods first, then
//!   the newest ready ones. An event in the hands of a removed replica goes back to the
//!   head of the queue (a nak on SIGTERM) and is redelivered.
//! - Counters as `CONSUMER.INFO` reports them: `pending` = stored, never delivered;
//!   `ack_pending` = delivered, not acknowledged (in flight or waiting for redelivery);
//!   `delivered_seq` = consumer sequence, +1 per delivery (redeliveries too);
//!   `ack_floor_seq` = highest consumer sequence below which everything is acknowledged
//!   (a redelivered event keeps its first consumer sequence, as the server does).

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use herald_controllers::autoscale::policy::Sample;

/// Simulation step.
pub const STEP_MS: u64 = 10;
/// Processing time of one event: a replica handles `MU` = 1000 / `SERVICE_MS` = 10 events/s.
pub const SERVICE_MS: u64 = 100;
/// From the replica count being raised to the new pod taking events (main table;
/// [`Queue::new`] takes any).
pub const POD_START_MS: u64 = 2_000;

/// An event waiting for a replica.
#[derive(Clone, Copy)]
struct Waiting {
    arrival: u64,
    /// First consumer sequence of an event that was delivered before (a redelivery).
    first_dseq: Option<u64>,
}

/// The event a replica is processing.
#[derive(Clone, Copy)]
struct Job {
    arrival: u64,
    start: u64,
    first_dseq: u64,
}

struct Replica {
    ready_at: u64,
    job: Option<Job>,
}

/// The queue, its replicas, and what was measured so far (times in ms).
#[derive(Default)]
pub struct Queue {
    pod_start: u64,
    waiting: VecDeque<Waiting>,
    pending: u64,
    replicas: Vec<Replica>,
    delivered_seq: u64,
    /// First consumer sequences of the delivered, unacknowledged events.
    unacked: BTreeSet<u64>,
    /// Wait of each processed event: arrival → start of the processing that acked it.
    pub waits: Vec<u64>,
    pub redeliveries: u64,
    pub arrived: u64,
    /// Arrival of the first event and the first start of processing after it.
    pub first_arrival: Option<u64>,
    pub first_start: Option<u64>,
    /// ∫ requested replicas dt, in replica-milliseconds.
    pub replica_ms: u64,
    pub max_replicas: usize,
    /// Changes of the replica count.
    pub scalings: u64,
}

impl Queue {
    /// An empty queue whose new replicas take `pod_start` ms to start.
    pub fn new(pod_start: u64) -> Self {
        Queue {
            pod_start,
            ..Queue::default()
        }
    }

    /// Step `[now, now + STEP_MS)` before scaling: `arrivals` events arrive at `now`,
    /// finished events are acknowledged, idle ready replicas take the next events.
    pub fn advance(&mut self, now: u64, arrivals: u64) {
        if arrivals > 0 && self.first_arrival.is_none() {
            self.first_arrival = Some(now);
        }
        self.arrived += arrivals;
        self.pending += arrivals;
        for _ in 0..arrivals {
            self.waiting.push_back(Waiting {
                arrival: now,
                first_dseq: None,
            });
        }
        for replica in &mut self.replicas {
            if let Some(job) = replica.job
                && job.start + SERVICE_MS <= now
            {
                self.unacked.remove(&job.first_dseq);
                self.waits.push(job.start - job.arrival);
                replica.job = None;
            }
        }
        for replica in &mut self.replicas {
            if replica.ready_at > now || replica.job.is_some() {
                continue;
            }
            let Some(event) = self.waiting.pop_front() else {
                break;
            };
            self.delivered_seq += 1;
            let first_dseq = if let Some(dseq) = event.first_dseq {
                self.redeliveries += 1;
                dseq
            } else {
                self.pending -= 1;
                self.unacked.insert(self.delivered_seq);
                self.delivered_seq
            };
            if self.first_start.is_none() {
                self.first_start = Some(now);
            }
            replica.job = Some(Job {
                arrival: event.arrival,
                start: now,
                first_dseq,
            });
        }
    }

    /// After scaling: the step's cost.
    pub fn bill(&mut self) {
        self.replica_ms += STEP_MS * self.replicas.len() as u64;
        self.max_replicas = self.max_replicas.max(self.replicas.len());
    }

    /// Replicas requested (the Deployment's `spec.replicas`).
    pub fn replicas(&self) -> i32 {
        i32::try_from(self.replicas.len()).unwrap_or(i32::MAX)
    }

    /// Sets the requested replicas at `now`.
    pub fn scale(&mut self, now: u64, desired: i32) {
        let desired = usize::try_from(desired.max(0)).unwrap_or(0);
        if desired != self.replicas.len() {
            self.scalings += 1;
        }
        while self.replicas.len() < desired {
            self.replicas.push(Replica {
                ready_at: now + self.pod_start,
                job: None,
            });
        }
        let mut naked = Vec::new();
        while self.replicas.len() > desired {
            let victim = self
                .replicas
                .iter()
                .rposition(|r| r.ready_at > now)
                .unwrap_or(self.replicas.len() - 1);
            if let Some(job) = self.replicas.remove(victim).job {
                naked.push(job);
            }
        }
        // Back to the head of the queue, oldest first.
        naked.sort_by_key(|job| std::cmp::Reverse(job.first_dseq));
        for job in naked {
            self.waiting.push_front(Waiting {
                arrival: job.arrival,
                first_dseq: Some(job.first_dseq),
            });
        }
    }

    /// `pending + ack_pending`.
    pub fn backlog(&self) -> u64 {
        self.pending + self.unacked.len() as u64
    }

    /// What `CONSUMER.INFO` would report at `now`.
    pub fn sample(&self, now: u64) -> Sample {
        Sample {
            at: Duration::from_millis(now),
            pending: self.pending,
            ack_pending: self.unacked.len() as u64,
            delivered_seq: self.delivered_seq,
            ack_floor_seq: self
                .unacked
                .first()
                .map_or(self.delivered_seq, |first| first - 1),
        }
    }
}
