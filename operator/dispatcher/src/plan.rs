//! What the dispatcher runs for each Trigger, derived purely from the Trigger (its
//! spec and the status the operator wrote) and its Broker.

use std::sync::Arc;

use herald_api::conditions;
use herald_api::delivery::{self, EffectiveDelivery};
use herald_api::workload::DispatcherPlan;
use herald_api::{Broker, Trigger, naming};
use herald_filter::CompiledFilter;
use kube::ResourceExt;

/// Everything needed to deliver one Trigger's events.
#[derive(Debug, Clone)]
pub struct TriggerPlan {
    /// Trigger namespace.
    pub namespace: String,
    /// Trigger name.
    pub trigger: String,
    /// Broker name (replies go there).
    pub broker: String,
    /// The Broker's stream.
    pub stream: String,
    /// The Trigger's durable consumer.
    pub consumer: String,
    /// Where events are sent (HTTP POST).
    pub subscriber: String,
    /// Audience of the token sent with each delivery (`subscriber.audience`).
    pub subscriber_audience: Option<String>,
    /// Where events go when retries are used up.
    pub dead_letter_sink: Option<String>,
    /// Retries, backoff, timeout, ordering.
    pub delivery: EffectiveDelivery,
    /// The Trigger's filters; `None` when the consumer's subject filter already
    /// selects exactly the matching events.
    pub filter: Option<Arc<CompiledFilter>>,
    /// The filter spec as written, to tell whether a Trigger's filters changed.
    filter_spec: String,
}

impl PartialEq for TriggerPlan {
    fn eq(&self, other: &Self) -> bool {
        (
            &self.namespace,
            &self.trigger,
            &self.broker,
            &self.stream,
            &self.consumer,
            &self.subscriber,
            &self.subscriber_audience,
            &self.dead_letter_sink,
            &self.delivery,
            &self.filter_spec,
        ) == (
            &other.namespace,
            &other.trigger,
            &other.broker,
            &other.stream,
            &other.consumer,
            &other.subscriber,
            &other.subscriber_audience,
            &other.dead_letter_sink,
            &other.delivery,
            &other.filter_spec,
        )
    }
}

/// The plan for a Trigger the operator reports Ready with a subscriber, or `None`
/// (not Ready yet, a consumer Deployment, or something the operator already reports).
#[must_use]
pub fn plan(trigger: &Trigger, broker: Option<&Broker>) -> Option<TriggerPlan> {
    let status = trigger.status.as_ref()?;
    // `NatsUnavailable` is the operator's own view of a NATS hiccup (e.g. a stream
    // leader election): the pull loop rides those out itself, so delivery goes on
    // instead of stopping until the operator's next successful reconcile.
    let deliverable = conditions::find(&status.conditions, "Ready")
        .is_some_and(|c| c.is_true() || c.reason == conditions::REASON_NATS_UNAVAILABLE);
    if !deliverable {
        return None;
    }
    let subscriber = status.subscriber_uri.clone()?;
    let spec = DispatcherPlan::new(
        &trigger.namespace()?,
        &trigger.name_any(),
        &trigger.spec,
        broker.and_then(|b| b.spec.delivery.as_ref()),
        status.dead_letter_sink_uri.clone(),
    );
    let mut plan = from_spec(&spec, subscriber).ok()?;
    plan.subscriber_audience = trigger
        .spec
        .subscriber
        .as_ref()
        .and_then(|d| d.audience.clone());
    Some(plan)
}

/// The plan of a consumer Deployment's sidecar: the operator's [`DispatcherPlan`] and
/// the local address of the user's container. `Err` says what is wrong with it.
pub fn from_spec(spec: &DispatcherPlan, subscriber: String) -> Result<TriggerPlan, String> {
    let delivery = delivery::resolve(spec.delivery.as_ref(), spec.broker_delivery.as_ref())?;
    let (attributes, filters) = spec.filter_parts();
    let compiled = CompiledFilter::from_parts(attributes.iter().copied(), &filters)
        .map_err(|e| format!("invalid filter: {e}"))?;
    let filter_spec = serde_json::json!([attributes, filters]).to_string();
    Ok(TriggerPlan {
        stream: naming::stream_name(&spec.namespace, &spec.broker),
        consumer: naming::consumer_name(&spec.trigger),
        broker: spec.broker.clone(),
        trigger: spec.trigger.clone(),
        namespace: spec.namespace.clone(),
        subscriber,
        // Sidecars have no API access to mint tokens; only the shared dispatcher sends them.
        subscriber_audience: None,
        dead_letter_sink: spec.dead_letter_sink_uri.clone(),
        delivery,
        // A pure exact-type filter is done by the consumer's subject filter.
        filter: (compiled.exact_type().is_none() && !compiled.is_match_all())
            .then(|| Arc::new(compiled)),
        filter_spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_api::TriggerStatus;
    use herald_api::conditions::{Condition, ConditionStatus};

    fn trigger(spec: &str, ready: bool) -> Trigger {
        let mut t = Trigger::new("t", serde_yaml::from_str(spec).unwrap());
        t.metadata.namespace = Some("ns".into());
        t.status = Some(TriggerStatus {
            conditions: vec![Condition::new(
                "Ready",
                ConditionStatus::from_bool(ready),
                "R",
                "",
            )],
            subscriber_uri: Some("http://sub".into()),
            ..TriggerStatus::default()
        });
        t
    }

    #[test]
    fn only_ready_triggers_are_planned() {
        assert!(
            plan(
                &trigger("broker: b\nsubscriber: {uri: http://sub}", false),
                None
            )
            .is_none()
        );
        let p = plan(
            &trigger("broker: b\nsubscriber: {uri: http://sub}", true),
            None,
        )
        .unwrap();
        assert_eq!(
            (p.stream.as_str(), p.consumer.as_str()),
            ("HERALD_ns_b", "trigger_t")
        );
        assert!(p.filter.is_none(), "no filters: nothing to evaluate");
        assert_eq!(p.subscriber_audience, None);
        let with_audience = plan(
            &trigger(
                "broker: b\nsubscriber: {uri: http://sub, audience: https://sub.example}",
                true,
            ),
            None,
        )
        .unwrap();
        assert_eq!(
            with_audience.subscriber_audience.as_deref(),
            Some("https://sub.example")
        );
        assert_ne!(
            p, with_audience,
            "a new audience restarts the Trigger's loop"
        );
    }

    #[test]
    fn a_nats_hiccup_seen_by_the_operator_does_not_stop_delivery() {
        let mut t = trigger("broker: b\nsubscriber: {uri: http://sub}", false);
        t.status.as_mut().unwrap().conditions[0].reason = "NatsUnavailable".into();
        assert!(plan(&t, None).is_some());
        t.status.as_mut().unwrap().conditions[0].reason = "InvalidFilter".into();
        assert!(plan(&t, None).is_none());
    }

    #[test]
    fn pushed_down_filters_are_not_evaluated_again_others_are() {
        let exact = plan(
            &trigger(
                "broker: b\nsubscriber: {uri: http://s}\nfilter: {attributes: {type: a}}",
                true,
            ),
            None,
        )
        .unwrap();
        assert!(exact.filter.is_none());
        let cesql = plan(
            &trigger(
                "broker: b\nsubscriber: {uri: http://s}\nfilters: [{cesql: \"source = 'x'\"}]",
                true,
            ),
            None,
        )
        .unwrap();
        assert!(cesql.filter.is_some());
        assert_ne!(exact, cesql);
    }
}
