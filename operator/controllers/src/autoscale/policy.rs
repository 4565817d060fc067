//! How many replicas a Trigger's consumer Deployment should run, decided from
//! periodic measurements ([`Sample`]s) of its durable JetStream consumer. Pure: no
//! clock, no I/O; the caller owns one [`State`] per Trigger and feeds it samples.
//!
//! # Policy
//!
//! - **Backlog** = `pending + ack_pending` (undelivered + delivered but unacknowledged).
//!   Backlog term = ⌈backlog / targetBacklogPerReplica⌉.
//! - **Rates** come from consecutive samples: arrivals ≈ Δ(delivered consumer
//!   sequence plus `pending`) / Δt (redeliveries count as arrivals), processing ≈
//!   Δ(ack floor consumer sequence) / Δt. Both are smoothed with a time-weighted EWMA,
//!   α = 1 − e^(−Δt / pollInterval) (α ≈ 0.63 per regular poll), starting from 0; rates
//!   under 0.01 events/s count as 0. A sample with the same time as the previous one
//!   is not used for rates; a sequence that goes backwards (consumer recreated) resets
//!   both rates to 0 and restarts the measurement from that sample.
//! - **Rate terms** (scale before the backlog peaks), used when replicas and
//!   processing are both above 0: the projected backlog after one horizon, i.e.
//!   backlog + (arrivals − processing) × max(scaleUp window, pollInterval), in
//!   replicas ⌈projected / target⌉; and the replicas needed to keep up,
//!   ⌈arrivals / per-replica throughput⌉. Per-replica throughput is processing /
//!   replicas, learned only while the consumer is saturated (at least one target's
//!   worth of events waits undelivered) and the replica count has been unchanged for
//!   two poll intervals; an unsaturated consumer only shows how busy its replicas
//!   are, not what they could do, so it can raise the learned value but not lower it.
//!   Until it is learned, this term is skipped. Recommendation = max(backlog term,
//!   rate terms); reason `Backlog` or `ArrivalRate` says which won.
//! - **Activation**: at 0 replicas, as soon as backlog > activationThreshold the
//!   consumer goes to max(1, recommendation) within [min, max] at once (no
//!   stabilization window; `scaleUp.maxStep` still caps it), reason `Activation`.
//!   At or below the threshold it stays at 0.
//! - **Scale to zero** (reason `Idle`): only with minReplicas 0, when the backlog has
//!   been 0 and no event has arrived for cooldownPeriod, and the arrival rate is ~0.
//!   The cooldown is its own stabilization: `Idle` ignores windows and steps. Otherwise
//!   at least 1 replica runs, and never fewer than the rate terms ask for.
//! - **Bounds**: the recommendation is clamped to [max(minReplicas, 1), maxReplicas]
//!   (reasons `MinReplicas`, `MaxReplicas`); the final result is clamped again, so the
//!   bounds win over windows and steps (e.g. right after maxReplicas is lowered).
//! - **Stabilization** (as the HPA): each recommendation is remembered with its time.
//!   Scale up goes to the lowest recommendation of the last scaleUp window (default
//!   0s: immediate), scale down to the highest of the last scaleDown window (default
//!   30s). Reason `Stabilized` when a window held the change back. A fresh [`State`]
//!   (e.g. after an operator restart) counts the current replicas as a recommendation
//!   made now, so a restart does not cause an immediate scale down.
//! - **Steps**: at most scaleUp.maxStep replicas added, scaleDown.maxStep removed per
//!   decision (reason `StepLimited`). While per-replica throughput is not learned and
//!   events keep arriving, one decision removes at most half the replicas (`StepLimited`).
//! - The rate terms are used only once the replica count has been unchanged for two
//!   polls (pods still starting would make the processing rate look low).
//! - Otherwise `desired == current` with reason `Steady`.

use std::collections::VecDeque;
use std::time::Duration;

use herald_api::duration;
use herald_api::trigger::{ScalingRules, ScalingSpec};

/// Rates below this many events per second count as zero.
const RATE_EPSILON: f64 = 0.01;
/// Longest stabilization window accepted (the HPA's limit too).
const MAX_WINDOW: Duration = Duration::from_secs(3600);
/// Bound on remembered recommendations, whatever the caller does.
const MAX_HISTORY: usize = 4096;
/// Poll intervals the replica count must be unchanged before throughput is learned.
const STABLE_POLLS: u32 = 2;

/// A validated [`ScalingSpec`] with its defaults applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub min: i32,
    pub max: i32,
    pub target_per_replica: i64,
    pub activation: i64,
    pub poll_interval: Duration,
    pub cooldown: Duration,
    pub up_window: Duration,
    pub down_window: Duration,
    pub up_step: Option<i32>,
    pub down_step: Option<i32>,
}

/// A `scaling` setting Herald cannot use; `field` is its full path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{field} ({value}) must not be negative")]
    Negative { field: &'static str, value: i64 },
    #[error("{field} ({value}) must be at least 1")]
    BelowOne { field: String, value: i64 },
    #[error("scaling.minReplicas ({min}) is above scaling.maxReplicas ({max})")]
    MinAboveMax { min: i32, max: i32 },
    #[error("{field}: {source}")]
    Duration {
        field: String,
        #[source]
        source: duration::ParseDurationError,
    },
    #[error("scaling.pollInterval must be longer than 0")]
    ZeroPollInterval,
    /// `text` is the window as written.
    #[error("{field} ({text}) must be at most 1h")]
    WindowTooLong { field: String, text: String },
}

impl Policy {
    /// Applies defaults and validates; the error names the offending field.
    pub fn from_spec(spec: &ScalingSpec) -> Result<Policy, PolicyError> {
        let below_one = |field: &str, value| PolicyError::BelowOne {
            field: field.to_owned(),
            value,
        };
        let min = spec.min_replicas.unwrap_or(0);
        if min < 0 {
            return Err(PolicyError::Negative {
                field: "scaling.minReplicas",
                value: min.into(),
            });
        }
        let max = spec
            .max_replicas
            .unwrap_or(i32::try_from(herald_api::trigger::DEFAULT_MAX_REPLICAS).unwrap_or(10));
        if max < 1 {
            return Err(below_one("scaling.maxReplicas", max.into()));
        }
        if min > max {
            return Err(PolicyError::MinAboveMax { min, max });
        }
        let target_per_replica = spec.target_backlog_per_replica.unwrap_or(10);
        if target_per_replica < 1 {
            return Err(below_one(
                "scaling.targetBacklogPerReplica",
                target_per_replica,
            ));
        }
        let activation = spec.activation_threshold.unwrap_or(0);
        if activation < 0 {
            return Err(PolicyError::Negative {
                field: "scaling.activationThreshold",
                value: activation,
            });
        }
        let poll_interval = field_duration(
            "scaling.pollInterval",
            spec.poll_interval.as_deref(),
            Duration::from_secs(2),
        )?;
        if poll_interval.is_zero() {
            return Err(PolicyError::ZeroPollInterval);
        }
        let cooldown = field_duration(
            "scaling.cooldownPeriod",
            spec.cooldown_period.as_deref(),
            Duration::from_secs(60),
        )?;
        let (up_window, up_step) =
            rules("scaling.scaleUp", spec.scale_up.as_ref(), Duration::ZERO)?;
        let (down_window, down_step) = rules(
            "scaling.scaleDown",
            spec.scale_down.as_ref(),
            Duration::from_secs(30),
        )?;
        Ok(Policy {
            min,
            max,
            target_per_replica,
            activation,
            poll_interval,
            cooldown,
            up_window,
            down_window,
            up_step,
            down_step,
        })
    }
}

fn field_duration(
    field: &str,
    value: Option<&str>,
    default: Duration,
) -> Result<Duration, PolicyError> {
    value.map_or(Ok(default), |v| {
        duration::parse(v).map_err(|source| PolicyError::Duration {
            field: field.to_owned(),
            source,
        })
    })
}

fn rules(
    field: &str,
    rules: Option<&ScalingRules>,
    default_window: Duration,
) -> Result<(Duration, Option<i32>), PolicyError> {
    let Some(rules) = rules else {
        return Ok((default_window, None));
    };
    let window_field = format!("{field}.stabilizationWindow");
    let window = field_duration(
        &window_field,
        rules.stabilization_window.as_deref(),
        default_window,
    )?;
    if window > MAX_WINDOW {
        let text = rules.stabilization_window.as_deref().unwrap_or_default();
        return Err(PolicyError::WindowTooLong {
            field: window_field,
            text: text.to_owned(),
        });
    }
    if let Some(step) = rules.max_step
        && step < 1
    {
        return Err(PolicyError::BelowOne {
            field: format!("{field}.maxStep"),
            value: step.into(),
        });
    }
    Ok((window, rules.max_step))
}

/// One measurement of the Trigger's durable consumer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Monotonic time since an arbitrary origin.
    pub at: Duration,
    pub pending: u64,
    pub ack_pending: u64,
    /// Consumer sequence of the last delivered message (JetStream `delivered.consumer_sequence`).
    pub delivered_seq: u64,
    /// JetStream `ack_floor.consumer_sequence`.
    pub ack_floor_seq: u64,
}

impl Sample {
    /// Events waiting for a replica: `pending + ack_pending`.
    #[must_use]
    pub fn backlog(&self) -> u64 {
        self.pending.saturating_add(self.ack_pending)
    }
}

/// Why a [`Decision`] chose its replica count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Activated from zero: the backlog went above the activation threshold.
    Activation,
    /// The backlog term set the count.
    Backlog,
    /// A rate term (keeping up with arrivals, projected backlog) set the count.
    ArrivalRate,
    /// Scaled to zero after the cooldown without backlog or arrivals.
    Idle,
    /// Raised to minReplicas.
    MinReplicas,
    /// Capped at maxReplicas.
    MaxReplicas,
    /// A stabilization window held the change back.
    Stabilized,
    /// The change was cut to maxStep.
    StepLimited,
    /// Nothing to change.
    Steady,
}

impl Reason {
    /// `CamelCase` name, for Events and status.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Activation => "Activation",
            Reason::Backlog => "Backlog",
            Reason::ArrivalRate => "ArrivalRate",
            Reason::Idle => "Idle",
            Reason::MinReplicas => "MinReplicas",
            Reason::MaxReplicas => "MaxReplicas",
            Reason::Stabilized => "Stabilized",
            Reason::StepLimited => "StepLimited",
            Reason::Steady => "Steady",
        }
    }
}

/// Replicas to run now, why, and the measurements behind it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    pub desired: i32,
    pub reason: Reason,
    pub backlog: u64,
    /// Smoothed arrivals, events/s.
    pub arrival_rate: f64,
    /// Smoothed acknowledgements, events/s.
    pub processing_rate: f64,
}

/// What the autoscaler remembers about one Trigger between samples.
#[derive(Clone, Debug, Default)]
pub struct State {
    /// Recent recommendations (time, replicas), oldest first; consecutive equal
    /// recommendations are merged into the latest one.
    history: VecDeque<(Duration, i32)>,
    prev: Option<Sample>,
    /// Smoothed rates, events/s.
    arrival_rate: f64,
    processing_rate: f64,
    /// Learned throughput of one replica, events/s.
    capacity: Option<f64>,
    /// Replica count of the last sample and since when it has been that.
    replicas: Option<(i32, Duration)>,
    /// Last time the backlog was non-zero or events arrived.
    last_active: Option<Duration>,
}

impl State {
    /// Feeds one sample; returns the replicas to run now given `current` replicas
    /// (the Deployment's replica count).
    pub fn decide(&mut self, policy: &Policy, current: i32, sample: Sample) -> Decision {
        let current = current.max(0);
        self.observe(policy, current, sample);
        let now = sample.at;
        if self.history.is_empty() {
            self.history.push_back((now, current));
        }
        let backlog = sample.backlog();
        let (arrival_rate, processing_rate) = (self.arrival_rate, self.processing_rate);
        let decision = |desired, reason| Decision {
            desired,
            reason,
            backlog,
            arrival_rate,
            processing_rate,
        };
        // A hand-built Policy may be inconsistent: max wins over min.
        let hi = policy.max.max(0);
        let lo = policy.min.max(0).min(hi);
        let (metric, metric_reason) = self.recommend(policy, current, backlog, now);

        if current == 0 {
            let activated = metric.max(1).max(lo).min(hi);
            if backlog > u64::try_from(policy.activation).unwrap_or(0) && activated > 0 {
                self.record(policy, now, activated);
                let desired = policy
                    .up_step
                    .map_or(activated, |s| activated.min(s.max(1)));
                return decision(desired, Reason::Activation);
            }
            if lo == 0 {
                self.record(policy, now, 0);
                return decision(0, Reason::Steady);
            }
        }

        let quiet = self
            .last_active
            .is_some_and(|t| now.saturating_sub(t) >= policy.cooldown);
        if lo == 0 && backlog == 0 && self.arrival_rate < RATE_EPSILON && quiet {
            self.record(policy, now, 0);
            return decision(0, Reason::Idle);
        }

        let (mut rec, mut reason) = (metric, metric_reason);
        if rec < 1 {
            rec = 1;
            if self.arrival_rate >= RATE_EPSILON {
                reason = Reason::ArrivalRate;
            }
        }
        clamp(&mut rec, &mut reason, lo, hi);
        self.record(policy, now, rec);

        let (up, down) = self.window_bounds(policy, now, rec);
        let mut desired = current.max(up).min(down);
        if desired != rec {
            reason = Reason::Stabilized;
        }
        if desired > current
            && let Some(step) = policy.up_step
        {
            let limit = current.saturating_add(step.max(1));
            if desired > limit {
                desired = limit;
                reason = Reason::StepLimited;
            }
        } else if desired < current
            && let Some(step) = policy.down_step
        {
            let limit = current.saturating_sub(step.max(1));
            if desired < limit {
                desired = limit;
                reason = Reason::StepLimited;
            }
        }
        // Until one replica's throughput is known, replicas may look idle only because
        // there are too many of them: while events keep arriving, at most halve.
        if desired < current && self.capacity.is_none() && self.arrival_rate >= RATE_EPSILON {
            let half = current - current / 2;
            if desired < half {
                desired = half;
                reason = Reason::StepLimited;
            }
        }
        clamp(&mut desired, &mut reason, lo.max(1).min(hi), hi);
        if desired == current && matches!(reason, Reason::Backlog | Reason::ArrivalRate) {
            reason = Reason::Steady;
        }
        decision(desired, reason)
    }

    /// Fast activation: called when a new message was seen on the Trigger's subjects
    /// while at zero. Records the sample as [`State::decide`] does, and returns the
    /// decision when the consumer should be activated immediately (`current` is 0 and
    /// the backlog is above the activation threshold), without waiting for
    /// stabilization; `None` otherwise.
    pub fn activate(&mut self, policy: &Policy, current: i32, sample: Sample) -> Option<Decision> {
        let decision = self.decide(policy, current, sample);
        (current <= 0 && decision.desired > 0).then_some(decision)
    }

    /// Updates rates, learned throughput and the activity time from `sample`.
    fn observe(&mut self, policy: &Policy, current: i32, sample: Sample) {
        let now = sample.at;
        let prev = match self.prev {
            Some(prev) if now < prev.at => {
                // A clock from another origin: nothing measured so far is comparable.
                *self = State::default();
                None
            }
            prev => prev,
        };
        match self.replicas {
            Some((n, _)) if n == current => {}
            _ => self.replicas = Some((current, now)),
        }
        if sample.backlog() > 0 {
            self.last_active = Some(now);
        }
        let Some(prev) = prev else {
            self.prev = Some(sample);
            self.last_active = Some(now);
            return;
        };
        if sample.delivered_seq < prev.delivered_seq || sample.ack_floor_seq < prev.ack_floor_seq {
            // The consumer was recreated: its sequences start over.
            self.arrival_rate = 0.0;
            self.processing_rate = 0.0;
            self.prev = Some(sample);
            self.last_active = Some(now);
            return;
        }
        let dt = now.saturating_sub(prev.at).as_secs_f64();
        if dt <= 0.0 {
            // Keep the older sample so that the next interval covers these events too.
            return;
        }
        let seen = |s: &Sample| s.delivered_seq.saturating_add(s.pending);
        let arrived = seen(&sample).saturating_sub(seen(&prev));
        let processed = sample.ack_floor_seq.saturating_sub(prev.ack_floor_seq);
        let alpha = 1.0 - (-dt / policy.poll_interval.as_secs_f64()).exp();
        let alpha = if alpha.is_finite() {
            alpha.clamp(0.0, 1.0)
        } else {
            1.0
        };
        self.arrival_rate = ewma(self.arrival_rate, to_f64(arrived) / dt, alpha);
        self.processing_rate = ewma(self.processing_rate, to_f64(processed) / dt, alpha);
        if arrived > 0 {
            self.last_active = Some(now);
        }
        self.prev = Some(sample);

        if current > 0 && self.is_stable(policy, now) && self.processing_rate >= RATE_EPSILON {
            let per_replica = self.processing_rate / f64::from(current);
            let target = u64::try_from(policy.target_per_replica).unwrap_or(1).max(1);
            let saturated = sample.pending >= target;
            self.capacity = match self.capacity {
                Some(c) if !saturated => Some(c.max(per_replica)),
                None if !saturated => None,
                _ => Some(per_replica),
            };
        }
    }

    /// Whether the replica count has been unchanged for [`STABLE_POLLS`] polls, so the
    /// processing rate reflects replicas that are all running.
    fn is_stable(&self, policy: &Policy, now: Duration) -> bool {
        self.replicas.is_some_and(|(_, since)| {
            now.saturating_sub(since) >= policy.poll_interval.saturating_mul(STABLE_POLLS)
        })
    }

    /// Max of the backlog term and the rate terms, with the reason of the winner. The
    /// rate terms wait for a stable replica count: right after a scale-up the new pods
    /// are still starting and the processing rate would understate them.
    fn recommend(
        &self,
        policy: &Policy,
        current: i32,
        backlog: u64,
        now: Duration,
    ) -> (i32, Reason) {
        let target = u64::try_from(policy.target_per_replica).unwrap_or(1).max(1);
        let backlog_term = i32::try_from(backlog.div_ceil(target)).unwrap_or(i32::MAX);
        let mut rate_term = 0;
        if current > 0 && self.processing_rate >= RATE_EPSILON && self.is_stable(policy, now) {
            let horizon = policy.up_window.max(policy.poll_interval).as_secs_f64();
            let projected = to_f64(backlog) + (self.arrival_rate - self.processing_rate) * horizon;
            rate_term = ceil_i32(projected / to_f64(target));
            if let Some(capacity) = self.capacity {
                rate_term = rate_term.max(ceil_i32(self.arrival_rate / capacity));
            }
        }
        if rate_term > backlog_term {
            (rate_term, Reason::ArrivalRate)
        } else {
            (backlog_term, Reason::Backlog)
        }
    }

    /// Remembers a recommendation and forgets those no window can see any more.
    fn record(&mut self, policy: &Policy, now: Duration, rec: i32) {
        let keep = policy.up_window.max(policy.down_window);
        while self
            .history
            .front()
            .is_some_and(|&(at, _)| now.saturating_sub(at) >= keep)
        {
            self.history.pop_front();
        }
        if let Some(last) = self.history.back_mut()
            && last.1 == rec
        {
            last.0 = now;
            return;
        }
        if self.history.len() >= MAX_HISTORY {
            self.history.pop_front();
        }
        self.history.push_back((now, rec));
    }

    /// Lowest recommendation within the scale-up window and highest within the
    /// scale-down window, both including `rec`.
    fn window_bounds(&self, policy: &Policy, now: Duration, rec: i32) -> (i32, i32) {
        let (mut up, mut down) = (rec, rec);
        for &(at, r) in &self.history {
            let age = now.saturating_sub(at);
            if age < policy.up_window {
                up = up.min(r);
            }
            if age < policy.down_window {
                down = down.max(r);
            }
        }
        (up, down)
    }
}

/// Clamps `n` to `[lo, hi]`, naming the bound as the reason when one applied.
fn clamp(n: &mut i32, reason: &mut Reason, lo: i32, hi: i32) {
    if *n > hi {
        *n = hi;
        *reason = Reason::MaxReplicas;
    } else if *n < lo {
        *n = lo;
        *reason = Reason::MinReplicas;
    }
}

fn ewma(old: f64, instant: f64, alpha: f64) -> f64 {
    let v = old + alpha * (instant - old);
    if !v.is_finite() || (v < RATE_EPSILON && instant < RATE_EPSILON) {
        0.0
    } else {
        v.max(0.0)
    }
}

#[allow(clippy::cast_precision_loss)] // event counts; rounding far below a replica
fn to_f64(n: u64) -> f64 {
    n as f64
}

/// ⌈x⌉ as replicas: 0 for NaN and negatives, saturating at `i32::MAX`; a hair of
/// float noise above an integer does not add a replica.
#[allow(clippy::cast_possible_truncation)] // range checked first
fn ceil_i32(x: f64) -> i32 {
    let x = x - 1e-9;
    if x.is_nan() || x <= 0.0 {
        0
    } else if x >= f64::from(i32::MAX) {
        i32::MAX
    } else {
        x.ceil() as i32
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
