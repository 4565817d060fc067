//! The Trigger's status conditions, built purely from what a reconcile observed.

use herald_api::conditions::{
    self, Condition, ConditionStatus, ConditionType as Type, Conditioned, Readiness, Reason,
};
use herald_api::delivery::EffectiveDelivery;
use herald_api::trigger::QueueStatus;
use herald_api::{Broker, Trigger, TriggerSpec, TriggerStatus, naming};
use herald_filter::CompiledFilter;
use kube::ResourceExt;

use crate::error::Error;
use crate::trigger::resolve::ResolveError;

/// What the Trigger's Broker looks like right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerState {
    /// No Broker with that name in the namespace.
    Missing,
    /// The Broker exists but is not Ready; the reason is the Broker's.
    NotReady(String),
    /// The Broker is Ready.
    Ready,
}

impl BrokerState {
    /// The state of the Trigger's Broker (`None`: there is none), read with the one
    /// readiness rule every component shares ([`conditions::readiness`]).
    #[must_use]
    pub fn of(broker: Option<&Broker>) -> Self {
        let Some(broker) = broker else {
            return Self::Missing;
        };
        match broker.readiness() {
            Readiness::Ready(_) => Self::Ready,
            other => Self::NotReady(other.reason().to_owned()),
        }
    }
}

/// Everything one reconcile found out, from which the status is built.
#[derive(Debug)]
pub struct Observed {
    /// Filters compiled, or why not.
    pub filters: Result<CompiledFilter, Error>,
    /// The transform compiled (or there is none), or why not.
    pub transform: Result<(), Error>,
    /// The Broker.
    pub broker: BrokerState,
    /// The effective delivery policy, or the bad field.
    pub delivery: Result<EffectiveDelivery, Error>,
    /// The subscriber URL, or why it does not resolve (`None` for a consumer
    /// Deployment or a Job per event).
    pub subscriber: Option<Result<String, ResolveError>>,
    /// The dead-letter sink URL, or why it does not resolve (`None`: no sink).
    pub dead_letter_sink: Option<Result<String, ResolveError>>,
    /// The consumer was made to match (`Ok`), could not be (`Err`), or was not tried yet (`None`).
    pub consumer: Option<Result<(), Error>>,
    /// The consumer Deployment was applied with this many replicas, could not be, or
    /// was not tried (no `consumer`, or the durable consumer is not there yet).
    pub deployment: Option<Result<i32, Error>>,
    /// The `job` checked (`None`: the Trigger has none), or what is wrong with it.
    pub job: Option<Result<herald_api::job::EffectiveJob, Error>>,
}

/// The reconcile's part of the Trigger's status for what was observed (pure):
/// `backlog` and `autoscaling` have writers of their own and stay unset here.
#[must_use]
pub fn build_status(
    trigger: &Trigger,
    observed: &Observed,
    queue: Option<QueueStatus>,
    now: &str,
) -> TriggerStatus {
    let previous = trigger.conditions();
    let generation = trigger.metadata.generation;
    let resolved = |r: &Option<Result<String, ResolveError>>| {
        r.as_ref().and_then(|r| r.as_ref().ok().cloned())
    };
    TriggerStatus {
        observed_generation: generation,
        conditions: conditions::merge(
            previous,
            desired_conditions(&trigger.spec, observed),
            now,
            generation,
        ),
        consumer_name: Some(naming::consumer_name(&trigger.name_any())),
        subscriber_uri: resolved(&observed.subscriber),
        dead_letter_sink_uri: resolved(&observed.dead_letter_sink),
        queue,
        backlog: None,
        autoscaling: None,
    }
}

/// The conditions for what was observed (pure). `Ready` names the first problem.
#[must_use]
pub fn desired_conditions(spec: &TriggerSpec, o: &Observed) -> Vec<Condition> {
    let [filter_valid, broker_ready, subscriber, dead_letter] = inputs(spec, o);
    let deployed = spec.consumer.as_ref().map(|_| deployment_condition(o));
    let not_ready = |reason: &dyn AsRef<str>, message: &str| {
        Condition::new(
            Type::Ready,
            ConditionStatus::False,
            reason.as_ref(),
            message,
        )
    };
    let transform_valid = transform_condition(spec, o);
    let job_valid = o.job.as_ref().map(job_condition);
    let ready = if !filter_valid.is_true() {
        not_ready(&filter_valid.reason, &filter_valid.message)
    } else if !transform_valid.is_true() {
        not_ready(&transform_valid.reason, &transform_valid.message)
    } else if let Some(Err(e)) = &o.job {
        not_ready(&e.reason(), &e.to_string())
    } else if let Err(e) = &o.delivery {
        not_ready(&e.reason(), &e.to_string())
    } else if !broker_ready.is_true() {
        not_ready(&broker_ready.reason, &broker_ready.message)
    } else if let Some(Err(e)) = &o.consumer {
        not_ready(&e.reason(), &e.to_string())
    } else if !subscriber.is_true() {
        not_ready(&subscriber.reason, &subscriber.message)
    } else if !dead_letter.is_true() {
        not_ready(&dead_letter.reason, &dead_letter.message)
    } else if o.consumer.is_none() {
        not_ready(
            &Reason::ConsumerPending,
            "the durable consumer has not been created yet",
        )
    } else if let Some(deployed) = deployed.as_ref().filter(|c| !c.is_true()) {
        not_ready(&deployed.reason, &deployed.message)
    } else {
        Condition::new(
            Type::Ready,
            ConditionStatus::True,
            Reason::Ready,
            "events are delivered",
        )
    };
    let mut list = vec![
        filter_valid,
        transform_valid,
        broker_ready,
        subscriber,
        dead_letter,
    ];
    list.extend(deployed);
    list.extend(job_valid);
    list.push(ready);
    list
}

/// `FilterValid`, `BrokerReady`, `SubscriberResolved`, `DeadLetterSinkResolved`.
fn inputs(spec: &TriggerSpec, o: &Observed) -> [Condition; 4] {
    use ConditionStatus::{False, True};
    let filter_valid = match &o.filters {
        Ok(_) => Condition::new(
            Type::FilterValid,
            True,
            Reason::FilterValid,
            "filters compiled",
        ),
        Err(e) => Condition::new(Type::FilterValid, False, e.reason(), e.to_string()),
    };
    let broker = &spec.broker;
    let broker_ready = match &o.broker {
        BrokerState::Ready => Condition::new(
            Type::BrokerReady,
            True,
            Reason::BrokerReady,
            format!("Broker {broker} is Ready"),
        ),
        BrokerState::Missing => Condition::new(
            Type::BrokerReady,
            False,
            Reason::BrokerNotFound,
            format!("Broker {broker} does not exist in this namespace"),
        ),
        // A Broker that is not Ready only because the operator could not reach NATS
        // passes that reason on: the data plane rides it out for the Trigger as it
        // does for the Broker, instead of stopping its delivery.
        BrokerState::NotReady(r) => Condition::new(
            Type::BrokerReady,
            False,
            if *r == Reason::NatsUnavailable {
                Reason::NatsUnavailable
            } else {
                Reason::BrokerNotReady
            },
            format!("Broker {broker} is not Ready ({r})"),
        ),
    };
    let subscriber = match &o.subscriber {
        Some(Ok(uri)) => Condition::new(
            Type::SubscriberResolved,
            True,
            Reason::SubscriberResolved,
            uri.clone(),
        ),
        Some(Err(e)) => Condition::new(
            Type::SubscriberResolved,
            False,
            Reason::SubscriberNotResolved,
            e.to_string(),
        ),
        None if spec.job.is_some() => Condition::new(
            Type::SubscriberResolved,
            True,
            Reason::JobPerEvent,
            "each event runs as a Job",
        ),
        None => Condition::new(
            Type::SubscriberResolved,
            True,
            Reason::ConsumerDeployment,
            "events go to the consumer Deployment",
        ),
    };
    let dead_letter = match &o.dead_letter_sink {
        Some(Ok(uri)) => Condition::new(
            Type::DeadLetterSinkResolved,
            True,
            Reason::DeadLetterSinkResolved,
            uri.clone(),
        ),
        Some(Err(e)) => Condition::new(
            Type::DeadLetterSinkResolved,
            False,
            Reason::DeadLetterSinkNotResolved,
            e.to_string(),
        ),
        None => Condition::new(
            Type::DeadLetterSinkResolved,
            True,
            Reason::NoDeadLetterSink,
            "no dead-letter sink: events that use up their retries are dropped (logged, counted, and reported in an Event)",
        ),
    };
    [filter_valid, broker_ready, subscriber, dead_letter]
}

/// `TransformValid`: like `FilterValid`, an invalid transform keeps the Trigger
/// from being Ready, with the compiler's message (where and why).
fn transform_condition(spec: &TriggerSpec, o: &Observed) -> Condition {
    use ConditionStatus::{False, True};
    match (&o.transform, &spec.transform) {
        (Err(e), _) => Condition::new(Type::TransformValid, False, e.reason(), e.to_string()),
        (Ok(()), Some(_)) => Condition::new(
            Type::TransformValid,
            True,
            Reason::TransformValid,
            "transform compiled",
        ),
        (Ok(()), None) => Condition::new(
            Type::TransformValid,
            True,
            Reason::NoTransform,
            "events are delivered as they are",
        ),
    }
}

/// `ConsumerDeployed`, for Triggers with a `consumer`.
fn deployment_condition(o: &Observed) -> Condition {
    use ConditionStatus::{False, True};
    match &o.deployment {
        Some(Ok(replicas)) => Condition::new(
            Type::ConsumerDeployed,
            True,
            Reason::Deployed,
            format!("the consumer Deployment is applied ({replicas} replicas wanted)"),
        ),
        Some(Err(e)) => Condition::new(Type::ConsumerDeployed, False, e.reason(), e.to_string()),
        None => Condition::new(
            Type::ConsumerDeployed,
            False,
            Reason::DeploymentPending,
            "the Deployment is created once the Broker and the durable consumer are ready",
        ),
    }
}

/// `JobValid`, for Triggers with a `job`: a template no Job could run from keeps
/// the Trigger from being Ready, with the field and why.
fn job_condition(job: &Result<herald_api::job::EffectiveJob, Error>) -> Condition {
    match job {
        Ok(job) => Condition::new(
            Type::JobValid,
            ConditionStatus::True,
            Reason::JobValid,
            format!(
                "each event runs as a Job, at most {} at once",
                job.max_running
            ),
        ),
        Err(e) => Condition::new(
            Type::JobValid,
            ConditionStatus::False,
            e.reason(),
            e.to_string(),
        ),
    }
}
