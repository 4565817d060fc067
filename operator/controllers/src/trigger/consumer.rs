//! The JetStream consumers a Trigger wants, built purely from the Trigger and its
//! effective delivery policy, and the comparisons reconcile needs.
//!
//! A Trigger owns its *queue*: a durable consumer on its Broker's queue stream that
//! reads only the Trigger's subject, where routers copy the events its filters match.
//! A Trigger whose `startPosition` reaches into the past also gets, for a while, a
//! *backfill* consumer on the Broker's event stream, from which the dispatchers copy
//! the matching history into the queue up to the sequence live routing started after.

use std::collections::HashMap;

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, IntoConsumerConfig, pull};
use herald_api::delivery::EffectiveDelivery;
use herald_api::trigger::{StartFrom, StartPosition};
use herald_api::{Trigger, naming};
use kube::ResourceExt;

use crate::error::Error;

/// Consumer metadata key marking it as Herald's, with the owning Trigger as value.
pub const OWNER_KEY: &str = "eventing.herald.dev/trigger";
/// Queue consumer metadata: the Broker sequence after which events are routed live.
pub const ROUTED_AFTER_KEY: &str = "eventing.herald.dev/routed-after";
/// Queue consumer metadata: the start position the queue was created for.
pub const START_KEY: &str = "eventing.herald.dev/start";
/// Unacknowledged events per Trigger across all dispatchers (unordered).
const MAX_ACK_PENDING: i64 = 10_000;
/// Unacknowledged Broker events of one backfill.
const BACKFILL_MAX_ACK_PENDING: i64 = 1_000;

/// The value of [`OWNER_KEY`] for a Trigger.
#[must_use]
pub fn owner_value(namespace: &str, name: &str) -> String {
    format!("Trigger/{namespace}/{name}")
}

/// The start position as one comparable word (`new`, `all`, `sequence:7`, `time:...`).
#[must_use]
pub fn start_key(start: Option<&StartPosition>) -> String {
    match start {
        None => "new".to_owned(),
        Some(s) => match s.from {
            StartFrom::New => "new".to_owned(),
            StartFrom::All => "all".to_owned(),
            StartFrom::Sequence => format!("sequence:{}", s.sequence.unwrap_or_default()),
            StartFrom::Time => format!("time:{}", s.time.as_deref().unwrap_or_default()),
        },
    }
}

/// The queue consumer for `trigger` in queue stream number `shard`, whose live routing
/// starts after Broker sequence `routed_after`.
///
/// `max_deliver` stays unlimited on purpose: the dispatcher counts attempts and, when
/// they are used up, hands the event to the dead-letter sink. JetStream's own limit
/// would silently stop redelivering instead, and an event whose dead-letter sink is
/// down would be stuck.
pub fn desired_config(
    trigger: &Trigger,
    delivery: &EffectiveDelivery,
    (routed_after, shard): (u64, u32),
    state_in_memory: bool,
) -> Result<pull::Config, Error> {
    let namespace = trigger.namespace().unwrap_or_default();
    let name = trigger.name_any();
    // Validates the start position, although the queue itself always starts at its beginning.
    deliver_policy(trigger.spec.start_position.as_ref())?;
    Ok(pull::Config {
        durable_name: Some(naming::consumer_name(&name)),
        description: Some(format!("Herald Trigger {namespace}/{name}")),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        // Fixed and short: the dispatcher sends progress acks while it holds an event.
        ack_wait: herald_api::delivery::ACK_WAIT,
        max_deliver: -1,
        filter_subject: naming::queue_shard_subject(&namespace, &trigger.spec.broker, shard, &name),
        max_ack_pending: max_ack_pending(trigger, delivery),
        // On a work queue the stream itself holds exactly what is not yet acknowledged,
        // so the consumer's state need not be on disk: a file per consumer, rewritten
        // after acks, was most of nats-server's work with 1,000 Triggers. A consumer
        // lost with it (nats-server restarted) is restored by the reconcile.
        memory_storage: state_in_memory,
        metadata: HashMap::from([
            (OWNER_KEY.to_owned(), owner_value(&namespace, &name)),
            (ROUTED_AFTER_KEY.to_owned(), routed_after.to_string()),
            (
                START_KEY.to_owned(),
                start_key(trigger.spec.start_position.as_ref()),
            ),
        ]),
        ..pull::Config::default()
    })
}

/// Events a Trigger's queue hands out before some are acknowledged, across all
/// dispatchers: one when ordered; for a `job` Trigger its `maxRunning`, so that
/// JetStream itself bounds the Jobs running at once however many dispatchers run
/// them (an event waiting for a retry holds its place too).
fn max_ack_pending(trigger: &Trigger, delivery: &EffectiveDelivery) -> i64 {
    if delivery.ordered {
        return 1;
    }
    match trigger.spec.job.as_ref().map(herald_api::job::resolve) {
        Some(Ok(job)) => i64::from(job.max_running),
        _ => MAX_ACK_PENDING,
    }
}

/// The backfill consumer for `trigger`, or `None` when it starts with new events.
pub fn backfill_config(trigger: &Trigger) -> Result<Option<pull::Config>, Error> {
    let policy = deliver_policy(trigger.spec.start_position.as_ref())?;
    if policy == DeliverPolicy::New {
        return Ok(None);
    }
    let namespace = trigger.namespace().unwrap_or_default();
    let name = trigger.name_any();
    Ok(Some(pull::Config {
        durable_name: Some(naming::backfill_consumer_name(&name)),
        description: Some(format!("Herald Trigger {namespace}/{name}: backfill")),
        deliver_policy: policy,
        ack_policy: AckPolicy::Explicit,
        ack_wait: herald_api::delivery::ACK_WAIT,
        max_deliver: -1,
        max_ack_pending: BACKFILL_MAX_ACK_PENDING,
        metadata: HashMap::from([(OWNER_KEY.to_owned(), owner_value(&namespace, &name))]),
        ..pull::Config::default()
    }))
}

/// The Broker sequence recorded on an existing queue consumer (0 if it has none).
#[must_use]
pub fn routed_after(existing: &consumer::Config) -> u64 {
    existing
        .metadata
        .get(ROUTED_AFTER_KEY)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Whether a backfill has copied everything up to `routed_after`: every event up to
/// it is acknowledged (the pull that fetched the last of them may have fetched later
/// events too, which nobody needs and nobody acknowledges), or nothing was left.
#[must_use]
pub fn backfill_done(info: &consumer::Info, routed_after: u64) -> bool {
    info.ack_floor.stream_sequence >= routed_after
        || (info.num_ack_pending == 0
            && (info.num_pending == 0 || info.delivered.stream_sequence >= routed_after))
}

fn deliver_policy(start: Option<&StartPosition>) -> Result<DeliverPolicy, Error> {
    let Some(start) = start else {
        return Ok(DeliverPolicy::New);
    };
    match start.from {
        StartFrom::New => Ok(DeliverPolicy::New),
        StartFrom::All => Ok(DeliverPolicy::All),
        StartFrom::Sequence => match start.sequence {
            Some(start_sequence) => Ok(DeliverPolicy::ByStartSequence { start_sequence }),
            None => Err(Error::InvalidSpec(
                "spec.startPosition.sequence is required with from: sequence".into(),
            )),
        },
        StartFrom::Time => {
            let text = start.time.as_deref().ok_or_else(|| {
                Error::InvalidSpec("spec.startPosition.time is required with from: time".into())
            })?;
            let start_time =
                time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .map_err(|e| {
                    Error::InvalidSpec(format!(
                        "spec.startPosition.time {text:?}: not RFC 3339 ({e})"
                    ))
                })?;
            Ok(DeliverPolicy::ByStartTime { start_time })
        }
    }
}

/// Why an existing consumer must be recreated to match (JetStream cannot change these
/// in place); empty when an update is enough.
#[must_use]
pub fn recreate_reasons(existing: &consumer::Config, desired: &pull::Config) -> Vec<String> {
    let desired = desired.into_consumer_config();
    let mut reasons = Vec::new();
    let (was, is) = (
        existing.metadata.get(START_KEY),
        desired.metadata.get(START_KEY),
    );
    if was != is {
        reasons.push(format!(
            "start position changed ({} -> {})",
            was.map_or("?", String::as_str),
            is.map_or("?", String::as_str)
        ));
    }
    if existing.filter_subject != desired.filter_subject {
        reasons.push("queue subject changed".to_owned());
    }
    if existing.ack_policy != desired.ack_policy {
        reasons.push("ack policy changed".to_owned());
    }
    if existing.memory_storage != desired.memory_storage {
        reasons.push("consumer storage changed".to_owned());
    }
    reasons
}

/// Whether the fields Herald manages differ.
#[must_use]
pub fn needs_update(existing: &consumer::Config, desired: &pull::Config) -> bool {
    let desired = desired.into_consumer_config();
    let ours = |c: &consumer::Config| {
        (
            c.ack_wait,
            c.max_deliver,
            c.filter_subject.clone(),
            c.max_ack_pending,
            c.description.clone(),
        )
    };
    ours(existing) != ours(&desired)
        || desired
            .metadata
            .iter()
            .any(|(k, v)| existing.metadata.get(k) != Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn trigger(yaml: &str) -> Trigger {
        let mut t = Trigger::new("orders", serde_yaml::from_str(yaml).unwrap());
        t.metadata.namespace = Some("shop".into());
        t
    }

    fn delivery(yaml: &str) -> EffectiveDelivery {
        herald_api::delivery::resolve(Some(&serde_yaml::from_str(yaml).unwrap()), None).unwrap()
    }

    #[test]
    fn the_queue_reads_only_the_triggers_subject_with_a_fixed_ack_wait() {
        let t = trigger(
            "broker: default\nsubscriber: {uri: http://x}\nfilter: {attributes: {type: a}}",
        );
        let cfg = desired_config(&t, &delivery("timeout: 10s"), (41, 0), false).unwrap();
        assert_eq!(cfg.durable_name.as_deref(), Some("trigger_orders"));
        assert_eq!(cfg.filter_subject, "heraldq.shop.default.orders");
        assert_eq!(cfg.ack_wait, Duration::from_secs(10));
        assert_eq!(cfg.max_deliver, -1);
        assert_eq!(cfg.deliver_policy, DeliverPolicy::All);
        assert_eq!(cfg.metadata[OWNER_KEY], "Trigger/shop/orders");
        assert_eq!(routed_after(&(&cfg).into_consumer_config()), 41);
        let ordered = desired_config(&t, &delivery("ordering: ordered"), (0, 0), false).unwrap();
        assert_eq!(ordered.max_ack_pending, 1);
        let sharded = desired_config(&t, &delivery("{}"), (0, 4), false).unwrap();
        assert_eq!(sharded.filter_subject, "heraldq.shop.default.4.orders");
        let mut job = t.clone();
        job.spec.subscriber = None;
        job.spec.job = Some(
            serde_yaml::from_str(
                "template: {spec: {containers: [{name: c, image: i}]}}\nmaxRunning: 3",
            )
            .unwrap(),
        );
        let bounded = desired_config(&job, &delivery("{}"), (0, 0), false).unwrap();
        assert_eq!(
            bounded.max_ack_pending, 3,
            "JetStream bounds a job Trigger's running Jobs across dispatchers"
        );
    }

    #[test]
    fn start_positions_become_backfills() {
        let new = trigger("broker: b\nsubscriber: {uri: http://x}");
        assert!(backfill_config(&new).unwrap().is_none());
        let all = trigger("broker: b\nsubscriber: {uri: http://x}\nstartPosition: {from: all}");
        let backfill = backfill_config(&all).unwrap().unwrap();
        assert_eq!(backfill.deliver_policy, DeliverPolicy::All);
        assert_eq!(backfill.durable_name.as_deref(), Some("backfill_orders"));
        let seq = trigger(
            "broker: b\nsubscriber: {uri: http://x}\nstartPosition: {from: sequence, sequence: 7}",
        );
        assert_eq!(
            backfill_config(&seq).unwrap().unwrap().deliver_policy,
            DeliverPolicy::ByStartSequence { start_sequence: 7 }
        );
        let time = trigger(
            "broker: b\nsubscriber: {uri: http://x}\nstartPosition: {from: time, time: '2026-11-23T07:00:00Z'}",
        );
        assert!(matches!(
            backfill_config(&time).unwrap().unwrap().deliver_policy,
            DeliverPolicy::ByStartTime { .. }
        ));
        let bad = trigger(
            "broker: b\nsubscriber: {uri: http://x}\nstartPosition: {from: time, time: yesterday}",
        );
        assert!(
            desired_config(&bad, &delivery("{}"), (0, 0), false)
                .unwrap_err()
                .to_string()
                .contains("RFC 3339")
        );
        let missing =
            trigger("broker: b\nsubscriber: {uri: http://x}\nstartPosition: {from: sequence}");
        assert_eq!(
            backfill_config(&missing).unwrap_err().reason(),
            "InvalidSpec"
        );
    }

    #[test]
    fn start_position_changes_need_a_recreate_other_changes_an_update() {
        let d = delivery("{}");
        let new = desired_config(
            &trigger("broker: b\nsubscriber: {uri: http://x}"),
            &d,
            (3, 0),
            false,
        )
        .unwrap();
        let all = desired_config(
            &trigger("broker: b\nsubscriber: {uri: http://x}\nstartPosition: {from: all}"),
            &d,
            (3, 0),
            false,
        )
        .unwrap();
        let existing = (&new).into_consumer_config();
        assert_eq!(recreate_reasons(&existing, &all).len(), 1);
        let mut slower = new.clone();
        slower.ack_wait = Duration::from_secs(99);
        assert!(recreate_reasons(&existing, &slower).is_empty());
        // A queue moving to a work queue gets its state in memory: a new consumer.
        let in_memory = desired_config(
            &trigger("broker: b\nsubscriber: {uri: http://x}"),
            &d,
            (3, 0),
            true,
        )
        .unwrap();
        assert_eq!(
            recreate_reasons(&existing, &in_memory),
            ["consumer storage changed"]
        );
        assert!(needs_update(&existing, &slower));
        assert!(!needs_update(&existing, &new));
    }

    #[test]
    fn a_backfill_is_done_when_it_passed_the_seam_with_nothing_held() {
        let mut info: consumer::Info = serde_json::from_value(serde_json::json!({
            "stream_name": "S", "name": "backfill_t", "created": "2026-01-01T00:00:00Z",
            "config": {"durable_name": "backfill_t", "deliver_policy": "all", "ack_policy": "explicit", "replay_policy": "instant"},
            "delivered": {"consumer_seq": 5, "stream_seq": 9},
            "ack_floor": {"consumer_seq": 5, "stream_seq": 9},
            "num_ack_pending": 0, "num_redelivered": 0, "num_waiting": 0, "num_pending": 3,
            "push_bound": false
        }))
        .unwrap();
        assert!(!backfill_done(&info, 10), "events up to 10 still to copy");
        info.delivered.stream_sequence = 11;
        assert!(backfill_done(&info, 10));
        info.num_ack_pending = 1;
        assert!(!backfill_done(&info, 10), "a copy still in flight");
        info.ack_floor.stream_sequence = 10;
        assert!(
            backfill_done(&info, 10),
            "what the last pull fetched past the seam is not owed"
        );
        info.ack_floor.stream_sequence = 9;
        info.num_ack_pending = 0;
        info.delivered.stream_sequence = 4;
        info.num_pending = 0;
        assert!(backfill_done(&info, 10), "nothing left (events aged out)");
    }
}
