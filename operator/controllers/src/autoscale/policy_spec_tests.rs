//! `Policy::from_spec`: defaults and the message for each bad field; `Reason` names.

use std::time::Duration;

use herald_api::trigger::ScalingSpec;

use super::super::Policy;
use super::super::Reason::{
    Activation, ArrivalRate, Backlog, Idle, MaxReplicas, MinReplicas, Stabilized, Steady,
    StepLimited,
};
use super::{policy, rules};

#[test]
fn from_spec_defaults() {
    let p = Policy::from_spec(&ScalingSpec::default()).unwrap();
    assert_eq!(
        p,
        Policy {
            min: 0,
            max: 10,
            target_per_replica: 10,
            activation: 0,
            poll_interval: Duration::from_secs(2),
            cooldown: Duration::from_secs(60),
            up_window: Duration::ZERO,
            down_window: Duration::from_secs(30),
            up_step: None,
            down_step: None,
        }
    );
    let p = policy(|s| {
        s.poll_interval = Some("500ms".into());
        s.cooldown_period = Some("PT5M".into());
        s.scale_up = rules(Some("15s"), Some(4));
        s.scale_down = rules(None, Some(1));
    });
    assert_eq!(
        (
            p.poll_interval,
            p.cooldown,
            p.up_window,
            p.up_step,
            p.down_window,
            p.down_step
        ),
        (
            Duration::from_millis(500),
            Duration::from_secs(300),
            Duration::from_secs(15),
            Some(4),
            Duration::from_secs(30),
            Some(1)
        )
    );
}

#[test]
fn from_spec_names_the_bad_field() {
    type Edit = fn(&mut ScalingSpec);
    let cases: Vec<(Edit, &str)> = vec![
        (
            |s| s.min_replicas = Some(-1),
            "scaling.minReplicas (-1) must not be negative",
        ),
        (
            |s| s.max_replicas = Some(0),
            "scaling.maxReplicas (0) must be at least 1",
        ),
        (
            |s| {
                s.min_replicas = Some(5);
                s.max_replicas = Some(2);
            },
            "scaling.minReplicas (5) is above scaling.maxReplicas (2)",
        ),
        (
            |s| s.target_backlog_per_replica = Some(0),
            "scaling.targetBacklogPerReplica (0) must be at least 1",
        ),
        (
            |s| s.activation_threshold = Some(-1),
            "scaling.activationThreshold (-1) must not be negative",
        ),
        (
            |s| s.poll_interval = Some("soon".into()),
            "scaling.pollInterval: invalid duration \"soon\"",
        ),
        (
            |s| s.poll_interval = Some("0s".into()),
            "scaling.pollInterval must be longer than 0",
        ),
        (
            |s| s.cooldown_period = Some("5 minutes".into()),
            "scaling.cooldownPeriod: invalid duration",
        ),
        (
            |s| s.scale_up = rules(Some("P1M"), None),
            "scaling.scaleUp.stabilizationWindow: invalid duration",
        ),
        (
            |s| s.scale_down = rules(Some("2h"), None),
            "scaling.scaleDown.stabilizationWindow (2h) must be at most 1h",
        ),
        (
            |s| s.scale_up = rules(None, Some(0)),
            "scaling.scaleUp.maxStep (0) must be at least 1",
        ),
        (
            |s| s.scale_down = rules(None, Some(-2)),
            "scaling.scaleDown.maxStep (-2) must be at least 1",
        ),
    ];
    for (edit, expected) in cases {
        let mut spec = ScalingSpec::default();
        edit(&mut spec);
        let err = Policy::from_spec(&spec).unwrap_err().to_string();
        assert!(
            err.starts_with(expected),
            "{err:?} should start with {expected:?}"
        );
    }
}

#[test]
fn reason_names() {
    let cases = [
        (Activation, "Activation"),
        (Backlog, "Backlog"),
        (ArrivalRate, "ArrivalRate"),
        (Idle, "Idle"),
        (MinReplicas, "MinReplicas"),
        (MaxReplicas, "MaxReplicas"),
        (Stabilized, "Stabilized"),
        (StepLimited, "StepLimited"),
        (Steady, "Steady"),
    ];
    for (reason, name) in cases {
        assert_eq!(reason.as_str(), name);
    }
}
