use std::time::Duration;

use herald_api::trigger::{ScalingRules, ScalingSpec};

use super::{Decision, Policy, Reason, Sample, State};
use Reason::{
    Activation, ArrivalRate, Backlog, Idle, MaxReplicas, MinReplicas, Stabilized, Steady,
    StepLimited,
};

/// (t seconds, `pending`, `ack_pending`, `delivered_seq`, `ack_floor_seq`, current, expected
/// desired and reason or `None` when not checked).
type Row = (f64, u64, u64, u64, u64, i32, Option<(i32, Reason)>);

#[allow(clippy::unnecessary_wraps)] // reads better in the tables
fn want(desired: i32, reason: Reason) -> Option<(i32, Reason)> {
    Some((desired, reason))
}

fn sample(
    t: f64,
    pending: u64,
    ack_pending: u64,
    delivered_seq: u64,
    ack_floor_seq: u64,
) -> Sample {
    Sample {
        at: Duration::from_secs_f64(t),
        pending,
        ack_pending,
        delivered_seq,
        ack_floor_seq,
    }
}

fn policy(edit: impl FnOnce(&mut ScalingSpec)) -> Policy {
    let mut spec = ScalingSpec::default();
    edit(&mut spec);
    Policy::from_spec(&spec).unwrap()
}

#[allow(clippy::unnecessary_wraps)] // the spec field is an Option
fn rules(window: Option<&str>, step: Option<i32>) -> Option<ScalingRules> {
    Some(ScalingRules {
        stabilization_window: window.map(str::to_owned),
        max_step: step,
    })
}

/// Feeds `rows` to a fresh State and checks every expectation.
fn run(name: &str, policy: &Policy, rows: &[Row]) -> Vec<Decision> {
    let mut state = State::default();
    let mut out = Vec::new();
    for (i, &(t, pending, ack, delivered, floor, current, expected)) in rows.iter().enumerate() {
        let got = state.decide(policy, current, sample(t, pending, ack, delivered, floor));
        if let Some((desired, reason)) = expected {
            assert_eq!(
                (got.desired, got.reason),
                (desired, reason),
                "{name}: row {i} (t={t}s): {got:?}"
            );
        }
        out.push(got);
    }
    out
}

/// Closed loop: `current` is the previous decision, starting at `start`; one sample
/// every 2 s from `sample_at(t)` = (`pending`, `ack_pending`, delivered, ack floor) until `until`.
fn simulate(
    policy: &Policy,
    start: i32,
    until: u32,
    sample_at: impl Fn(u32) -> (u64, u64, u64, u64),
) -> Vec<(u32, Decision)> {
    let mut state = State::default();
    let mut current = start;
    (0..=until)
        .step_by(2)
        .map(|t| {
            let (p, a, d, f) = sample_at(t);
            let got = state.decide(policy, current, sample(f64::from(t), p, a, d, f));
            current = got.desired;
            (t, got)
        })
        .collect()
}

fn at(decisions: &[(u32, Decision)], t: u32) -> (i32, Reason) {
    let d = decisions.iter().find(|(at, _)| *at == t).unwrap().1;
    (d.desired, d.reason)
}

#[test]
fn activation_from_zero() {
    let cases: [(&str, Policy, Vec<Row>); 4] = [
        (
            "default",
            policy(|_| {}),
            vec![
                (0.0, 0, 0, 0, 0, 0, want(0, Steady)),
                (2.0, 35, 0, 0, 0, 0, want(4, Activation)),
            ],
        ),
        (
            "any event activates",
            policy(|_| {}),
            vec![(0.0, 1, 0, 0, 0, 0, want(1, Activation))],
        ),
        (
            "capped by max",
            policy(|s| s.max_replicas = Some(3)),
            vec![(0.0, 500, 0, 0, 0, 0, want(3, Activation))],
        ),
        (
            "capped by scaleUp.maxStep, no window",
            policy(|s| s.scale_up = rules(Some("1m"), Some(2))),
            vec![
                (0.0, 0, 0, 0, 0, 0, want(0, Steady)),
                (2.0, 500, 0, 0, 0, 0, want(2, Activation)),
            ],
        ),
    ];
    for (name, policy, rows) in cases {
        run(name, &policy, &rows);
    }
}

#[test]
fn activation_threshold_is_respected() {
    let p = policy(|s| s.activation_threshold = Some(20));
    run(
        "threshold 20",
        &p,
        &[
            (0.0, 0, 0, 0, 0, 0, want(0, Steady)),
            (2.0, 20, 0, 0, 0, 0, want(0, Steady)),
            (4.0, 15, 6, 0, 0, 0, want(3, Activation)),
        ],
    );
}

#[test]
fn activate_only_from_zero_above_threshold() {
    let p = policy(|s| s.activation_threshold = Some(10));
    // (current, pending, expected desired or None)
    let cases = [
        (0, 0, None),
        (0, 10, None),
        (0, 11, Some(2)),
        (0, 95, Some(10)),
        (2, 95, None),
    ];
    for (current, pending, expected) in cases {
        let got = State::default().activate(&p, current, sample(1.0, pending, 0, 0, 0));
        assert_eq!(
            got.map(|d| d.desired),
            expected,
            "current {current}, pending {pending}"
        );
        if let Some(d) = got {
            assert_eq!(d.reason, Activation);
        }
    }
    // The sample is recorded: a later decide sees the activation's recommendation.
    let mut state = State::default();
    assert!(state.activate(&p, 0, sample(0.0, 50, 0, 0, 0)).is_some());
    let d = state.decide(&p, 5, sample(2.0, 5, 0, 50, 0));
    assert_eq!((d.desired, d.reason), (5, Stabilized));
}

#[test]
fn backlog_term_rounds_up() {
    // (backlog, target per replica, expected desired, reason); current 1.
    let cases = [
        (1, 10, 1, Steady),
        (10, 10, 1, Steady),
        (11, 10, 2, Backlog),
        (100, 10, 10, Backlog),
        (101, 10, 11, Backlog),
        (7, 3, 3, Backlog),
        (7, 1, 7, Backlog),
    ];
    for (backlog, target, desired, reason) in cases {
        let p = policy(|s| {
            s.target_backlog_per_replica = Some(target);
            s.max_replicas = Some(100);
        });
        run(
            &format!("backlog {backlog} / {target}"),
            &p,
            &[(0.0, backlog, 0, 0, 0, 1, want(desired, reason))],
        );
    }
}

#[test]
fn clamps_to_min_and_max() {
    let cases: [(&str, Policy, Row); 6] = [
        (
            "above max",
            policy(|s| s.max_replicas = Some(5)),
            (0.0, 200, 0, 0, 0, 1, want(5, MaxReplicas)),
        ),
        (
            "at max",
            policy(|s| s.max_replicas = Some(5)),
            (0.0, 200, 0, 0, 0, 5, want(5, MaxReplicas)),
        ),
        (
            "max lowered below current",
            policy(|s| s.max_replicas = Some(5)),
            (0.0, 0, 0, 0, 0, 8, want(5, MaxReplicas)),
        ),
        (
            "at min",
            policy(|s| s.min_replicas = Some(3)),
            (0.0, 0, 0, 0, 0, 3, want(3, MinReplicas)),
        ),
        (
            "below min",
            policy(|s| s.min_replicas = Some(3)),
            (0.0, 0, 0, 0, 0, 1, want(3, MinReplicas)),
        ),
        (
            "zero with min",
            policy(|s| s.min_replicas = Some(2)),
            (0.0, 0, 0, 0, 0, 0, want(2, MinReplicas)),
        ),
    ];
    for (name, policy, row) in cases {
        run(name, &policy, &[row]);
    }
}

#[test]
fn scale_up_is_immediate_with_zero_window_and_held_by_a_window() {
    let rows = |late: Option<(i32, Reason)>| -> Vec<Row> {
        vec![
            (0.0, 0, 5, 0, 0, 1, want(1, Steady)),
            (2.0, 45, 5, 0, 0, 1, None),
            (8.0, 45, 5, 0, 0, 1, None),
            (10.0, 45, 5, 0, 0, 1, late),
        ]
    };
    let immediate = run("0s window", &policy(|_| {}), &rows(want(5, Backlog)));
    assert_eq!((immediate[1].desired, immediate[1].reason), (5, Backlog));
    let held = run(
        "10s window",
        &policy(|s| s.scale_up = rules(Some("10s"), None)),
        &rows(want(5, Backlog)),
    );
    assert_eq!((held[1].desired, held[1].reason), (1, Stabilized));
    assert_eq!((held[2].desired, held[2].reason), (1, Stabilized));
}

#[test]
fn scale_down_is_held_by_the_window_then_released() {
    run(
        "default 30s window",
        &policy(|_| {}),
        &[
            (0.0, 50, 0, 0, 0, 5, want(5, Steady)),
            (2.0, 10, 0, 0, 0, 5, want(5, Stabilized)),
            (10.0, 30, 0, 0, 0, 5, want(5, Stabilized)),
            (28.0, 10, 0, 0, 0, 5, want(5, Stabilized)),
            // t=0 (5) left the window; t=10 (3) is still in it.
            (30.0, 10, 0, 0, 0, 5, want(3, Stabilized)),
            (40.0, 10, 0, 0, 0, 3, want(1, Backlog)),
            (42.0, 10, 0, 0, 0, 1, want(1, Steady)),
        ],
    );
    run(
        "fresh state holds current",
        &policy(|_| {}),
        &[
            (100.0, 0, 10, 0, 0, 4, want(4, Stabilized)),
            (130.0, 0, 10, 0, 0, 4, want(1, Backlog)),
        ],
    );
}

#[test]
fn step_limits_both_ways() {
    let up = policy(|s| {
        s.scale_up = rules(None, Some(2));
        s.max_replicas = Some(10);
    });
    run(
        "up by 2",
        &up,
        &[
            (0.0, 0, 5, 0, 0, 1, want(1, Steady)),
            (2.0, 100, 0, 0, 0, 1, want(3, StepLimited)),
            (4.0, 100, 0, 0, 0, 3, want(5, StepLimited)),
            (6.0, 100, 0, 0, 0, 7, want(9, StepLimited)),
            (8.0, 100, 0, 0, 0, 9, want(10, Backlog)),
        ],
    );
    let down = policy(|s| s.scale_down = rules(Some("0s"), Some(1)));
    run(
        "down by 1",
        &down,
        &[
            (0.0, 10, 0, 0, 0, 5, want(4, StepLimited)),
            (2.0, 10, 0, 0, 0, 4, want(3, StepLimited)),
            (4.0, 10, 0, 0, 0, 2, want(1, Backlog)),
        ],
    );
}

#[test]
fn idle_to_zero_only_after_cooldown() {
    let rows = |at_cooldown: (i32, Reason)| -> Vec<Row> {
        vec![
            (0.0, 20, 0, 0, 0, 2, want(2, Steady)),
            (2.0, 0, 0, 20, 20, 2, want(2, Stabilized)),
            (30.0, 0, 0, 20, 20, 2, want(1, Backlog)),
            (58.0, 0, 0, 20, 20, 1, want(1, Steady)),
            (60.0, 0, 0, 20, 20, 1, Some(at_cooldown)),
        ]
    };
    run("default 60s", &policy(|_| {}), &rows((0, Idle)));
    run(
        "min 1 never idles",
        &policy(|s| s.min_replicas = Some(1)),
        &rows((1, Steady)),
    );
    run(
        "cooldown 2m",
        &policy(|s| s.cooldown_period = Some("2m".into())),
        &rows((1, Steady)),
    );
    run(
        "then reactivates",
        &policy(|_| {}),
        &[
            (0.0, 20, 0, 0, 0, 1, None),
            (60.0, 0, 0, 20, 20, 1, want(0, Idle)),
            (62.0, 0, 0, 20, 20, 0, want(0, Steady)),
            (64.0, 1, 0, 20, 20, 0, want(1, Activation)),
        ],
    );
}

#[test]
fn no_scale_to_zero_while_events_arrive() {
    // One event per second, processed at once: backlog always 0.
    let sim = simulate(&policy(|_| {}), 3, 300, |t| {
        (0, 0, u64::from(t), u64::from(t))
    });
    assert!(sim.iter().all(|(_, d)| d.desired >= 1), "{sim:?}");
    assert_eq!(at(&sim, 28), (3, Stabilized));
    // Throughput not learned (never saturated) and events flowing: halve, then go on.
    assert_eq!(at(&sim, 30), (2, StepLimited));
    assert_eq!(at(&sim, 32), (1, ArrivalRate));
    assert_eq!(at(&sim, 300), (1, Steady));
    // Once arrivals stop, the cooldown runs from the last event.
    let sim = simulate(&policy(|_| {}), 1, 200, |t| {
        let d = u64::from(t.min(100));
        (0, 0, d, d)
    });
    assert_eq!(at(&sim, 158), (1, Steady));
    assert_eq!(at(&sim, 160), (0, Idle));
}

#[test]
fn rate_term_scales_up_before_the_backlog_grows() {
    let p = policy(|s| s.max_replicas = Some(50));
    // 2 saturated replicas process 50/s; then arrivals rise to 60/s.
    let mut rows: Vec<Row> = (0..=5u32)
        .map(|k| {
            (
                f64::from(2 * k),
                10,
                10,
                100 * u64::from(k),
                100 * u64::from(k),
                2,
                want(2, Steady),
            )
        })
        .collect();
    // Backlog 40 (backlog term 4); +120 arrivals and +100 acks in 2 s.
    rows.push((12.0, 30, 10, 600, 600, 2, want(6, ArrivalRate)));
    let out = run("surge", &p, &rows);
    assert!(out[6].arrival_rate > out[6].processing_rate, "{:?}", out[6]);
}

#[test]
fn learned_throughput_keeps_busy_replicas_and_releases_idle_ones() {
    // 4 replicas, 100 events/s; saturated until t=10, then keeping up (pending 0),
    // then from t=100 only 20 events/s.
    let sim = simulate(&policy(|_| {}), 4, 200, |t| {
        let pending = if t <= 10 { 10 } else { 0 };
        let n = if t <= 100 {
            100 * u64::from(t)
        } else {
            10_000 + 20 * u64::from(t - 100)
        };
        (pending, 10, n, n)
    });
    assert_eq!(at(&sim, 90), (4, Steady));
    assert_eq!(at(&sim, 100), (4, Steady));
    assert_eq!(at(&sim, 200), (1, Steady));
    // Never saturated: busy-looking replicas are not proof they are needed.
    let sim = simulate(&policy(|_| {}), 10, 60, |t| {
        (0, 5, 10 * u64::from(t), 10 * u64::from(t))
    });
    assert_eq!(at(&sim, 28), (10, Stabilized));
    // Halving while throughput is unknown: 10, 5, 3, 2, 1.
    assert_eq!(at(&sim, 30), (5, StepLimited));
    assert_eq!(at(&sim, 32), (3, StepLimited));
    assert_eq!(at(&sim, 36), (1, Backlog));
}

#[test]
fn rates_reset_when_the_consumer_is_recreated() {
    let p = policy(|_| {});
    let out = run(
        "recreated",
        &p,
        &[
            (0.0, 0, 0, 1000, 1000, 1, None),
            (2.0, 0, 0, 1020, 1020, 1, None),
            (4.0, 0, 0, 1040, 1040, 1, None),
            (6.0, 0, 0, 3, 3, 1, want(1, Steady)),
            (8.0, 0, 0, 23, 23, 1, want(1, Steady)),
        ],
    );
    assert!(
        out[2].arrival_rate > 8.0 && out[2].processing_rate > 8.0,
        "{:?}",
        out[2]
    );
    assert_eq!((out[3].arrival_rate, out[3].processing_rate), (0.0, 0.0));
    // Measured from the new baseline: 10/s smoothed from 0, α = 1 − e^(−1).
    let expected = 10.0 * (1.0 - (-1.0f64).exp());
    assert!(
        (out[4].arrival_rate - expected).abs() < 1e-9,
        "{:?}",
        out[4]
    );
    assert!(
        (out[4].processing_rate - expected).abs() < 1e-9,
        "{:?}",
        out[4]
    );
}

#[test]
fn same_time_is_ignored_and_time_going_back_starts_over() {
    let p = policy(|_| {});
    let out = run(
        "dt",
        &p,
        &[
            (0.0, 0, 0, 0, 0, 1, None),
            (2.0, 0, 0, 20, 20, 1, None),
            (2.0, 0, 0, 40, 40, 1, None),
            (4.0, 0, 0, 40, 40, 1, None),
            (1.0, 0, 0, 60, 60, 1, None),
        ],
    );
    assert_eq!(out[2].arrival_rate.to_bits(), out[1].arrival_rate.to_bits());
    // The ignored events are counted in the next interval (20 in 2 s again).
    assert!(out[3].arrival_rate > out[1].arrival_rate, "{out:?}");
    assert!(out[4].arrival_rate.abs() < 1e-12, "{:?}", out[4]);
}

#[test]
fn never_panics_on_extremes() {
    let hand_built = Policy {
        min: 7,
        max: 3,
        target_per_replica: 0,
        activation: -5,
        poll_interval: Duration::ZERO,
        cooldown: Duration::MAX,
        up_window: Duration::MAX,
        down_window: Duration::ZERO,
        up_step: Some(0),
        down_step: Some(i32::MIN),
    };
    for p in [policy(|_| {}), hand_built] {
        let mut state = State::default();
        for (t, v, current) in [
            (0.0, u64::MAX, i32::MAX),
            (1e-9, u64::MAX, i32::MIN),
            (1.0, 0, 0),
            (1e9, u64::MAX, 1),
            (2e9, 0, i32::MAX),
        ] {
            let d = state.decide(&p, current, sample(t, v, v, v, v));
            assert!(d.desired >= 0 && d.desired <= p.max.max(0), "{d:?}");
            assert!(
                d.arrival_rate.is_finite() && d.processing_rate.is_finite(),
                "{d:?}"
            );
            let _ = state.activate(&p, 0, sample(t, v, 0, v, 0));
        }
    }
}

// `Policy::from_spec` and `Reason` names: what the user writes, rather than decisions.
#[path = "policy_spec_tests.rs"]
mod spec;
