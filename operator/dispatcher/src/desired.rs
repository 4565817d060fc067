//! What the dispatcher runs for each Trigger, derived purely from the Trigger (its
//! spec and the status the operator wrote) and its Broker: a route into its queue, a
//! backfill while one is owed, and — with a subscriber — delivery from the queue.

use std::collections::HashMap;
use std::sync::Arc;

use herald_api::conditions;
use herald_api::delivery::{self, EffectiveDelivery};
use herald_api::trigger::TransformSpec;
use herald_api::workload::SidecarConfig;
use herald_api::{Broker, Trigger, naming, trigger::filter_version};
use herald_filter::CompiledFilter;
use kube::ResourceExt;

use crate::routes::Route;

/// Everything needed to deliver one Trigger's queue.
#[derive(Debug, Clone)]
pub struct TriggerDelivery {
    pub namespace: String,
    pub trigger: String,
    /// Broker name (replies go there).
    pub broker: String,
    /// The queue stream.
    pub stream: String,
    /// The Trigger's durable consumer on it.
    pub consumer: String,
    /// Where events are sent (HTTP POST).
    pub subscriber: String,
    /// Audience of the token sent with each delivery (`subscriber.audience`).
    pub subscriber_audience: Option<String>,
    /// CA certificates (PEM) trusted for the subscriber besides the dispatcher's
    /// (`subscriber.caCerts`).
    pub subscriber_ca_certs: Option<String>,
    /// Where events go when retries are used up.
    pub dead_letter_sink: Option<String>,
    /// Whether subscribers' replies are published into the Broker (an open Broker, or
    /// one whose `spec.auth` says `acceptReplies`).
    pub accepts_replies: bool,
    /// Retries, backoff, timeout, ordering.
    pub delivery: EffectiveDelivery,
    /// The Trigger's filters, checked again only for a copy routed under other filters
    /// (its filter version differs).
    pub filter: Arc<CompiledFilter>,
    /// Digest of the filters; a change restarts delivery.
    pub filter_version: String,
    /// The Trigger's transform, applied right before delivery.
    pub transform: Option<crate::transforming::CompiledTransform>,
    /// With a `job`: each event runs as a Job instead of a POST to `subscriber`.
    pub job: Option<Arc<crate::jobs::TriggerJob>>,
}

impl PartialEq for TriggerDelivery {
    fn eq(&self, other: &Self) -> bool {
        (
            &self.namespace,
            &self.trigger,
            &self.broker,
            &self.stream,
            &self.consumer,
            &self.subscriber,
            &self.subscriber_audience,
            &self.subscriber_ca_certs,
            &self.dead_letter_sink,
            self.accepts_replies,
            &self.delivery,
            &self.filter_version,
        ) == (
            &other.namespace,
            &other.trigger,
            &other.broker,
            &other.stream,
            &other.consumer,
            &other.subscriber,
            &other.subscriber_audience,
            &other.subscriber_ca_certs,
            &other.dead_letter_sink,
            other.accepts_replies,
            &other.delivery,
            &other.filter_version,
        ) && self.transform == other.transform
            && self.job == other.job
    }
}

/// What the dispatcher does for one Trigger whose queue exists.
#[derive(Debug, Clone)]
pub struct TriggerLoops {
    /// `namespace/name`.
    pub key: String,
    /// The Broker's event stream (routed from).
    pub events_stream: String,
    /// Where its matches go.
    pub route: Route,
    /// Its compiled filters.
    pub filter: Arc<CompiledFilter>,
    /// The backfill consumer, while the history is being copied in.
    pub backfill: Option<String>,
    /// Delivery from the queue; `None` for a consumer Deployment (which delivers itself).
    pub delivery: Option<TriggerDelivery>,
}

/// Compiled filters by Trigger, reused while a Trigger's filters stay the same, so a
/// status update of one Trigger does not recompile every Trigger's filters.
#[derive(Default)]
pub struct FilterCache {
    compiled: HashMap<String, (String, Arc<CompiledFilter>)>,
    transforms: HashMap<String, crate::transforming::CompiledTransform>,
}

impl FilterCache {
    /// The compiled filters of Trigger `key` at `version`, compiling only on a change.
    fn get(
        &mut self,
        key: &str,
        version: &str,
        compile: impl FnOnce() -> Option<CompiledFilter>,
    ) -> Option<Arc<CompiledFilter>> {
        if let Some((v, f)) = self.compiled.get(key)
            && v == version
        {
            return Some(f.clone());
        }
        let filter = Arc::new(compile()?);
        self.compiled
            .insert(key.to_owned(), (version.to_owned(), filter.clone()));
        Some(filter)
    }

    /// The compiled transform of Trigger `key`, compiling only on a change; `Err`
    /// for a transform that does not compile (the operator reports it).
    fn transform(
        &mut self,
        key: &str,
        spec: Option<&TransformSpec>,
    ) -> Result<Option<crate::transforming::CompiledTransform>, herald_transform::TransformError>
    {
        let Some(spec) = spec else {
            self.transforms.remove(key);
            return Ok(None);
        };
        if let Some(planned) = self.transforms.get(key).filter(|p| p.spec == *spec) {
            return Ok(Some(planned.clone()));
        }
        let planned = crate::transforming::CompiledTransform::compile(Some(spec))?;
        if let Some(p) = &planned {
            self.transforms.insert(key.to_owned(), p.clone());
        }
        Ok(planned)
    }

    /// Forgets the Triggers not in `keep`.
    pub fn retain(&mut self, keep: &std::collections::HashSet<&str>) {
        self.compiled.retain(|k, _| keep.contains(k.as_str()));
        self.transforms.retain(|k, _| keep.contains(k.as_str()));
    }
}

/// The loops for a Trigger the operator reports Ready with a queue, or `None` (not Ready
/// yet, or something the operator already reports).
#[must_use]
pub fn desired(
    trigger: &Trigger,
    broker: Option<&Broker>,
    cache: &mut FilterCache,
) -> Option<TriggerLoops> {
    let status = trigger.status.as_ref()?;
    // `NatsUnavailable` is the operator's own view of a NATS hiccup (e.g. a stream
    // leader election): the loops ride those out themselves, so delivery goes on
    // instead of stopping until the operator's next successful reconcile.
    if conditions::served(&status.conditions).is_err() {
        return None;
    }
    let queue = status
        .queue
        .as_ref()
        .filter(|q| q.broker == trigger.spec.broker)?;
    let namespace = trigger.namespace()?;
    let name = trigger.name_any();
    let key = format!("{namespace}/{name}");
    let version = filter_version(trigger.spec.filter.as_ref(), &trigger.spec.filters);
    let filter = cache.get(&key, &version, || {
        let (attributes, filters) = trigger.spec.filter_parts();
        CompiledFilter::from_parts(attributes, &filters).ok()
    })?;
    let job = crate::jobs::trigger_job(trigger);
    let subscriber = match &job {
        Some(_) => Some(crate::jobs::destination(&namespace, &name)),
        None => status
            .subscriber_uri
            .clone()
            .filter(|_| trigger.spec.consumer.is_none()),
    };
    let delivery = match subscriber {
        Some(subscriber) => {
            let transform = cache
                .transform(&key, trigger.spec.transform.as_ref())
                .ok()?;
            let spec = SidecarConfig::new(
                &namespace,
                &name,
                &trigger.spec,
                broker.map(|b| &b.spec),
                status.dead_letter_sink_uri.clone(),
            );
            let mut effective =
                delivery::resolve(spec.delivery.as_ref(), spec.broker_delivery.as_ref()).ok()?;
            if let Some(job) = &job {
                // One delivery in flight is one Job running.
                effective.max_in_flight = effective.max_in_flight.min(job.job.max_running);
            }
            Some(TriggerDelivery {
                namespace: namespace.clone(),
                trigger: name.clone(),
                broker: trigger.spec.broker.clone(),
                stream: queue.stream.clone(),
                consumer: naming::consumer_name(&name),
                subscriber,
                subscriber_audience: trigger
                    .spec
                    .subscriber
                    .as_ref()
                    .and_then(|d| d.audience.clone()),
                subscriber_ca_certs: trigger
                    .spec
                    .subscriber
                    .as_ref()
                    .and_then(|d| d.ca_certs.clone()),
                dead_letter_sink: status.dead_letter_sink_uri.clone(),
                accepts_replies: spec.accepts_replies,
                delivery: effective,
                filter: filter.clone(),
                filter_version: version.clone(),
                transform,
                job,
            })
        }
        _ => None,
    };
    Some(TriggerLoops {
        key,
        events_stream: naming::stream_name(&namespace, &trigger.spec.broker),
        route: Route {
            trigger: name.clone(),
            subject: queue.subject.clone(),
            routed_after: queue.routed_after,
            filter_version: version,
        },
        filter,
        backfill: queue
            .backfilling
            .then(|| naming::backfill_consumer_name(&name)),
        delivery,
    })
}

/// What is wrong with a sidecar's [`SidecarConfig`].
#[derive(Debug, thiserror::Error)]
pub enum SidecarConfigError {
    #[error(transparent)]
    Delivery(herald_api::delivery::DeliveryError),
    #[error("invalid filter: {0}")]
    Filter(#[source] herald_filter::FilterError),
    #[error("invalid transform: {0}")]
    Transform(#[source] herald_transform::TransformError),
}

/// The delivery of a consumer Deployment's sidecar: the operator's [`SidecarConfig`] and
/// the local address of the user's container.
pub fn from_sidecar_config(
    spec: &SidecarConfig,
    subscriber: String,
) -> Result<TriggerDelivery, SidecarConfigError> {
    let mut delivery = delivery::resolve(spec.delivery.as_ref(), spec.broker_delivery.as_ref())
        .map_err(SidecarConfigError::Delivery)?;
    // This pod's share: the consumer's pods together keep to the Trigger's rate.
    delivery.rate_limit = delivery
        .rate_limit
        .map(|rate| rate.share(spec.rate_sharers.unwrap_or(1)));
    let (attributes, filters) = spec.filter_parts();
    let compiled = CompiledFilter::from_parts(attributes.iter().copied(), &filters)
        .map_err(SidecarConfigError::Filter)?;
    Ok(TriggerDelivery {
        stream: spec.queue_stream(),
        consumer: naming::consumer_name(&spec.trigger),
        broker: spec.broker.clone(),
        trigger: spec.trigger.clone(),
        namespace: spec.namespace.clone(),
        subscriber,
        // Sidecars have no API access to mint tokens; only the shared dispatcher sends them.
        subscriber_audience: None,
        subscriber_ca_certs: None,
        dead_letter_sink: spec.dead_letter_sink_uri.clone(),
        accepts_replies: spec.accepts_replies,
        delivery,
        filter: Arc::new(compiled),
        filter_version: filter_version(spec.filter.as_ref(), &spec.filters),
        transform: crate::transforming::CompiledTransform::compile(spec.transform.as_ref())
            .map_err(SidecarConfigError::Transform)?,
        job: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_api::TriggerStatus;
    use herald_api::conditions::{Condition, ConditionStatus};
    use herald_api::trigger::QueueStatus;

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
            queue: Some(QueueStatus {
                broker: "b".into(),
                stream: "HERALDQ_ns_b".into(),
                subject: "heraldq.ns.b.t".into(),
                routed_after: 7,
                backfilling: false,
            }),
            ..TriggerStatus::default()
        });
        t
    }

    fn desired_of(t: &Trigger) -> Option<TriggerLoops> {
        desired(t, None, &mut FilterCache::default())
    }

    #[test]
    fn only_ready_triggers_with_a_queue_are_planned() {
        assert!(desired_of(&trigger("broker: b\nsubscriber: {uri: http://sub}", false)).is_none());
        let mut no_queue = trigger("broker: b\nsubscriber: {uri: http://sub}", true);
        no_queue.status.as_mut().unwrap().queue = None;
        assert!(
            desired_of(&no_queue).is_none(),
            "the operator has not made the queue yet"
        );
        let mut moved = trigger("broker: other\nsubscriber: {uri: http://sub}", true);
        moved.status.as_mut().unwrap().subscriber_uri = Some("http://sub".into());
        assert!(
            desired_of(&moved).is_none(),
            "its queue is still the old Broker's"
        );

        let p = desired_of(&trigger("broker: b\nsubscriber: {uri: http://sub}", true)).unwrap();
        assert_eq!(p.key, "ns/t");
        assert_eq!(p.events_stream, "HERALD_ns_b");
        assert_eq!(p.route.subject, "heraldq.ns.b.t");
        assert_eq!(p.route.routed_after, 7);
        assert!(p.backfill.is_none());
        let d = p.delivery.unwrap();
        assert_eq!(
            (d.stream.as_str(), d.consumer.as_str()),
            ("HERALDQ_ns_b", "trigger_t")
        );
        assert_eq!(d.subscriber_audience, None);
        let with_audience = desired_of(&trigger(
            "broker: b\nsubscriber: {uri: http://sub, audience: https://sub.example}",
            true,
        ))
        .unwrap()
        .delivery
        .unwrap();
        assert_eq!(
            with_audience.subscriber_audience.as_deref(),
            Some("https://sub.example")
        );
        assert_ne!(
            d, with_audience,
            "a new audience restarts the Trigger's loop"
        );
    }

    #[test]
    fn consumer_deployments_are_routed_but_not_delivered_here() {
        let p = desired_of(&trigger(
            "broker: b\nconsumer: {template: {spec: {containers: [{name: c, image: i}]}}}",
            true,
        ))
        .unwrap();
        assert!(p.delivery.is_none());
    }

    #[test]
    fn job_triggers_are_delivered_as_jobs_at_most_max_running_at_once() {
        let mut t = trigger(
            "broker: b\njob: {template: {spec: {containers: [{name: c, image: i}]}}, maxRunning: 3}",
            true,
        );
        t.status.as_mut().unwrap().subscriber_uri = None;
        t.metadata.uid = Some("uid-7".into());
        let d = desired_of(&t).unwrap().delivery.unwrap();
        let job = d.job.as_ref().unwrap();
        assert_eq!(job.trigger_uid, "uid-7");
        assert_eq!(d.delivery.max_in_flight, 3);
        assert_eq!(d.subscriber, "job:ns/t");
        let mut more = t.clone();
        more.spec.job.as_mut().unwrap().max_running = Some(4);
        assert_ne!(
            desired_of(&more).unwrap().delivery.unwrap(),
            d,
            "a job change restarts delivery"
        );
    }

    #[test]
    fn a_nats_hiccup_seen_by_the_operator_does_not_stop_delivery() {
        let mut t = trigger("broker: b\nsubscriber: {uri: http://sub}", false);
        t.status.as_mut().unwrap().conditions[0].reason = "NatsUnavailable".into();
        assert!(desired_of(&t).is_some());
        t.status.as_mut().unwrap().conditions[0].reason = "InvalidFilter".into();
        assert!(desired_of(&t).is_none());
    }

    #[test]
    fn filters_compile_once_per_version_and_changes_show() {
        let mut cache = FilterCache::default();
        let t = trigger(
            "broker: b\nsubscriber: {uri: http://s}\nfilters: [{cesql: \"source = 'x'\"}]",
            true,
        );
        let first = desired(&t, None, &mut cache).unwrap();
        let again = desired(&t, None, &mut cache).unwrap();
        assert!(
            Arc::ptr_eq(&first.filter, &again.filter),
            "not compiled again"
        );
        let other = trigger(
            "broker: b\nsubscriber: {uri: http://s}\nfilters: [{cesql: \"source = 'y'\"}]",
            true,
        );
        let changed = desired(&other, None, &mut cache).unwrap();
        assert_ne!(first.route.filter_version, changed.route.filter_version);
        assert_ne!(
            first.delivery, changed.delivery,
            "a filter change restarts delivery"
        );
    }

    #[test]
    fn transforms_are_planned_for_the_shared_dispatcher_and_sidecars() {
        let spec = "broker: b\nsubscriber: {uri: http://s}\ntransform: {jq: '.type = \"u\"'}";
        let t = trigger(spec, true);
        let mut cache = FilterCache::default();
        let d = desired(&t, None, &mut cache).unwrap().delivery.unwrap();
        assert!(d.transform.is_some());
        let other = trigger("broker: b\nsubscriber: {uri: http://s}", true);
        let plain = desired(&other, None, &mut cache).unwrap().delivery.unwrap();
        assert!(plain.transform.is_none());
        assert_ne!(d, plain, "a transform change restarts delivery");
        let sidecar = SidecarConfig::new("ns", "t", &t.spec, None, None);
        let from = from_sidecar_config(&sidecar, "http://localhost:8080".into()).unwrap();
        assert_eq!(from.transform, d.transform);
        let mut broken = sidecar.clone();
        broken.transform.as_mut().unwrap().jq = Some(".type =".into());
        assert!(from_sidecar_config(&broken, "http://x".into()).is_err());
    }

    #[test]
    fn backfilling_triggers_get_their_backfill_consumer() {
        let mut t = trigger(
            "broker: b\nsubscriber: {uri: http://s}\nstartPosition: {from: all}",
            true,
        );
        t.status
            .as_mut()
            .unwrap()
            .queue
            .as_mut()
            .unwrap()
            .backfilling = true;
        assert_eq!(
            desired_of(&t).unwrap().backfill.as_deref(),
            Some("backfill_t")
        );
    }
}
