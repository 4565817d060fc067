//! The durable JetStream consumer a Trigger wants, built purely from the Trigger and
//! its effective delivery policy, and the comparisons reconcile needs.

use std::collections::HashMap;

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, IntoConsumerConfig, pull};
use herald_api::delivery::EffectiveDelivery;
use herald_api::trigger::{StartFrom, StartPosition};
use herald_api::{Trigger, naming};
use kube::ResourceExt;

use crate::error::Error;

/// Consumer metadata key marking it as Herald's, with the owning Trigger as value.
pub const OWNER_KEY: &str = "eventing.herald.dev/trigger";
/// Unacknowledged events per Trigger across all dispatchers (unordered).
const MAX_ACK_PENDING: i64 = 10_000;

/// The value of [`OWNER_KEY`] for a Trigger.
#[must_use]
pub fn owner_value(namespace: &str, name: &str) -> String {
    format!("Trigger/{namespace}/{name}")
}

/// The consumer for `trigger`. `exact_type` is the Trigger's pure exact-type filter,
/// pushed down to a subject filter so JetStream skips other events.
///
/// `max_deliver` stays unlimited on purpose: the dispatcher counts attempts and, when
/// they are used up, hands the event to the dead-letter sink. JetStream's own limit
/// would silently stop redelivering instead, and an event whose dead-letter sink is
/// down would be stuck.
pub fn desired_config(
    trigger: &Trigger,
    delivery: &EffectiveDelivery,
    exact_type: Option<&str>,
) -> Result<pull::Config, Error> {
    let namespace = trigger.namespace().unwrap_or_default();
    let name = trigger.name_any();
    Ok(pull::Config {
        durable_name: Some(naming::consumer_name(&name)),
        description: Some(format!("Herald Trigger {namespace}/{name}")),
        deliver_policy: deliver_policy(trigger.spec.start_position.as_ref())?,
        ack_policy: AckPolicy::Explicit,
        // Fixed and short: the dispatcher sends progress acks while it holds an event.
        ack_wait: herald_api::delivery::ACK_WAIT,
        max_deliver: -1,
        filter_subject: exact_type
            .map(|t| naming::event_subject(&namespace, &trigger.spec.broker, t))
            .unwrap_or_default(),
        max_ack_pending: if delivery.ordered { 1 } else { MAX_ACK_PENDING },
        metadata: HashMap::from([(OWNER_KEY.to_owned(), owner_value(&namespace, &name))]),
        ..pull::Config::default()
    })
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
    if existing.deliver_policy != desired.deliver_policy {
        reasons.push(format!(
            "start position changed ({:?} -> {:?})",
            existing.deliver_policy, desired.deliver_policy
        ));
    }
    if existing.ack_policy != desired.ack_policy {
        reasons.push("ack policy changed".to_owned());
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
    fn exact_type_is_pushed_down_and_ack_wait_is_fixed() {
        let t = trigger("broker: default\nsubscriber: {uri: http://x}");
        let cfg = desired_config(&t, &delivery("timeout: 10s"), Some("order.created")).unwrap();
        assert_eq!(cfg.durable_name.as_deref(), Some("trigger_orders"));
        assert_eq!(cfg.filter_subject, "herald.shop.default.order.created");
        assert_eq!(cfg.ack_wait, Duration::from_secs(10));
        assert_eq!(cfg.max_deliver, -1);
        assert_eq!(cfg.deliver_policy, DeliverPolicy::New);
        assert_eq!(cfg.metadata[OWNER_KEY], "Trigger/shop/orders");
        let all = desired_config(&t, &delivery("ordering: ordered"), None).unwrap();
        assert_eq!((all.filter_subject.as_str(), all.max_ack_pending), ("", 1));
    }

    #[test]
    fn start_positions_map_to_deliver_policies() {
        let d = delivery("{}");
        let all = trigger("broker: b\nsubscriber: {uri: http://x}\nstartPosition: {from: all}");
        assert_eq!(
            desired_config(&all, &d, None).unwrap().deliver_policy,
            DeliverPolicy::All
        );
        let seq = trigger(
            "broker: b\nsubscriber: {uri: http://x}\nstartPosition: {from: sequence, sequence: 7}",
        );
        assert_eq!(
            desired_config(&seq, &d, None).unwrap().deliver_policy,
            DeliverPolicy::ByStartSequence { start_sequence: 7 }
        );
        let time = trigger(
            "broker: b\nsubscriber: {uri: http://x}\nstartPosition: {from: time, time: '2026-11-23T07:00:00Z'}",
        );
        assert!(matches!(
            desired_config(&time, &d, None).unwrap().deliver_policy,
            DeliverPolicy::ByStartTime { .. }
        ));
        let bad = trigger(
            "broker: b\nsubscriber: {uri: http://x}\nstartPosition: {from: time, time: yesterday}",
        );
        assert!(
            desired_config(&bad, &d, None)
                .unwrap_err()
                .to_string()
                .contains("RFC 3339")
        );
        let missing =
            trigger("broker: b\nsubscriber: {uri: http://x}\nstartPosition: {from: sequence}");
        assert_eq!(
            desired_config(&missing, &d, None).unwrap_err().reason(),
            "InvalidSpec"
        );
    }

    #[test]
    fn start_position_changes_need_a_recreate_other_changes_an_update() {
        let d = delivery("{}");
        let new =
            desired_config(&trigger("broker: b\nsubscriber: {uri: http://x}"), &d, None).unwrap();
        let all = desired_config(
            &trigger("broker: b\nsubscriber: {uri: http://x}\nstartPosition: {from: all}"),
            &d,
            None,
        )
        .unwrap();
        let existing = (&new).into_consumer_config();
        assert_eq!(recreate_reasons(&existing, &all).len(), 1);
        let mut slower = new.clone();
        slower.ack_wait = Duration::from_secs(99);
        assert!(recreate_reasons(&existing, &slower).is_empty());
        assert!(needs_update(&existing, &slower));
        assert!(!needs_update(&existing, &new));
    }
}
