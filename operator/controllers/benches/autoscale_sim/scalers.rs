//! The two autoscalers under comparison. Each is called once per step, after the
//! queue has advanced, and returns the replicas the Deployment should have.

use std::collections::VecDeque;

use herald_api::trigger::ScalingSpec;
use herald_controllers::autoscale::policy::{Policy, State};

use crate::queue::Queue;

/// Upper bound on replicas, both scalers.
pub const MAX_REPLICAS: i32 = 20;
/// Backlog per replica, both scalers (Herald's targetBacklogPerReplica, KEDA's lagThreshold).
pub const TARGET_PER_REPLICA: i64 = 10;
/// Herald: from the first event at zero to the autoscaler's activation (the NATS
/// subscription of `autoscale/activation.rs` seeing it).
pub const WAKE_MS: u64 = 20;
/// Herald: first poll at this offset (then every pollInterval), so that the load
/// does not start exactly on a poll.
pub const HERALD_POLL_PHASE_MS: u64 = 1_000;

/// KEDA `pollingInterval` (activation 0 → 1 and the cooldown to 0).
pub const KEDA_POLL_MS: u64 = 30_000;
/// HPA `--horizontal-pod-autoscaler-sync-period`: the HPA reads the metric fresh
/// from KEDA's metrics server (no metrics cache) on each sync.
pub const HPA_SYNC_MS: u64 = 15_000;
/// HPA syncs this long after each KEDA poll (half a sync period: the average case).
pub const HPA_AFTER_POLL_MS: u64 = 7_500;
/// KEDA `cooldownPeriod`.
pub const KEDA_COOLDOWN_MS: u64 = 300_000;
/// HPA `behavior.scaleDown.stabilizationWindowSeconds` (default).
pub const HPA_DOWN_WINDOW_MS: u64 = 300_000;
/// HPA `--horizontal-pod-autoscaler-tolerance` (default).
pub const HPA_TOLERANCE: f64 = 0.1;

/// An autoscaler under test.
pub trait Scaler {
    /// Called at the end of each step with the queue after it advanced; `arrivals`
    /// is the number of events that arrived in this step. Returns the replicas to run.
    fn step(&mut self, now: u64, arrivals: u64, queue: &Queue) -> i32;
}

/// The Herald policy with Herald's defaults (maxReplicas 20, target 10), as
/// `autoscale/mod.rs` drives it: `decide` every pollInterval, and while at zero
/// `activate` [`WAKE_MS`] after an event arrives.
pub struct Herald {
    policy: Policy,
    state: State,
    next_poll: u64,
    wake_at: Option<u64>,
}

impl Herald {
    pub fn spec() -> ScalingSpec {
        ScalingSpec {
            max_replicas: Some(MAX_REPLICAS),
            target_backlog_per_replica: Some(TARGET_PER_REPLICA),
            ..ScalingSpec::default()
        }
    }

    pub fn new() -> Self {
        Herald {
            policy: Policy::from_spec(&Self::spec()).expect("valid scaling spec"),
            state: State::default(),
            next_poll: HERALD_POLL_PHASE_MS,
            wake_at: None,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }
}

impl Scaler for Herald {
    fn step(&mut self, now: u64, arrivals: u64, queue: &Queue) -> i32 {
        let mut current = queue.replicas();
        if now >= self.next_poll {
            self.next_poll = now + ms(self.policy.poll_interval);
            current = self
                .state
                .decide(&self.policy, current, queue.sample(now))
                .desired;
        }
        if current != 0 {
            self.wake_at = None;
            return current;
        }
        if self.wake_at.is_some_and(|at| at <= now) {
            self.wake_at = None;
            if let Some(decision) = self.state.activate(&self.policy, 0, queue.sample(now)) {
                return decision.desired;
            }
        }
        if arrivals > 0 && self.wake_at.is_none() {
            self.wake_at = Some(now + WAKE_MS);
        }
        0
    }
}

/// A KEDA `ScaledObject` (nats-jetstream scaler, defaults) and the HPA it creates:
///
/// - metric = `num_pending + num_ack_pending` (what KEDA's nats-jetstream scaler
///   reports), HPA target type `AverageValue` = 10 per replica;
/// - every [`KEDA_POLL_MS`] KEDA polls: backlog > 0 (activationLagThreshold 0) marks
///   the scaler active; at 0 replicas that scales to 1; inactive for
///   [`KEDA_COOLDOWN_MS`] since the last active poll scales to 0 (from any count);
/// - every [`HPA_SYNC_MS`] while replicas > 0 the HPA: desired = ⌈backlog / 10⌉, kept
///   at current when |backlog / (10 × current) − 1| ≤ 0.1; scale up at once (scaleUp
///   window 0), scale down to the highest recommendation of the last
///   [`HPA_DOWN_WINDOW_MS`]; clamped to [1, 20] (the HPA's minReplicas is 1).
///
/// Not modelled (each would only make the baseline slower): the HPA's default
/// scale-up rate limit (max of +100 % and +4 pods per 15 s), metric and informer lag.
pub struct Keda {
    poll_phase: u64,
    last_active: Option<u64>,
    /// HPA recommendations (time, replicas), oldest first.
    history: VecDeque<(u64, i32)>,
}

impl Keda {
    /// `poll_phase`: time of the first KEDA poll (then every [`KEDA_POLL_MS`]).
    pub fn new(poll_phase: u64) -> Self {
        Keda {
            poll_phase,
            last_active: None,
            history: VecDeque::new(),
        }
    }

    fn hpa(&mut self, now: u64, current: i32, backlog: u64) -> i32 {
        let target = TARGET_PER_REPLICA.unsigned_abs();
        let ratio = to_f64(backlog) / (to_f64(target) * f64::from(current));
        let rec = if (ratio - 1.0).abs() <= HPA_TOLERANCE {
            current
        } else {
            i32::try_from(backlog.div_ceil(target)).unwrap_or(i32::MAX)
        };
        while self
            .history
            .front()
            .is_some_and(|&(at, _)| now - at >= HPA_DOWN_WINDOW_MS)
        {
            self.history.pop_front();
        }
        self.history.push_back((now, rec));
        let highest = self.history.iter().map(|&(_, r)| r).max().unwrap_or(rec);
        let desired = if rec > current {
            rec
        } else {
            current.min(highest)
        };
        desired.clamp(1, MAX_REPLICAS)
    }
}

impl Scaler for Keda {
    fn step(&mut self, now: u64, _arrivals: u64, queue: &Queue) -> i32 {
        let mut current = queue.replicas();
        let backlog = queue.backlog();
        let since_poll = now.checked_sub(self.poll_phase);
        if since_poll.is_some_and(|t| t % KEDA_POLL_MS == 0) {
            if backlog > 0 {
                self.last_active = Some(now);
                if current == 0 {
                    self.history.clear();
                    return 1;
                }
            } else if current > 0
                && self
                    .last_active
                    .is_none_or(|at| now - at >= KEDA_COOLDOWN_MS)
            {
                self.history.clear();
                return 0;
            }
        }
        let since_sync = since_poll.and_then(|t| t.checked_sub(HPA_AFTER_POLL_MS));
        if current > 0 && since_sync.is_some_and(|t| t % HPA_SYNC_MS == 0) {
            current = self.hpa(now, current, backlog);
        }
        current
    }
}

#[allow(clippy::cast_precision_loss)] // event counts, far below 2^52
pub fn to_f64(n: u64) -> f64 {
    n as f64
}

pub fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
