//! The Trigger's status conditions, built purely from what a reconcile observed.

use herald_api::TriggerSpec;
use herald_api::conditions::{self, Condition, ConditionStatus};
use herald_api::delivery::EffectiveDelivery;
use herald_api::trigger::condition;
use herald_filter::CompiledFilter;

use crate::error::Error;

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

/// Everything one reconcile found out, from which the status is built.
#[derive(Debug)]
pub struct Observed {
    /// Filters compiled, or the compiler's message.
    pub filters: Result<CompiledFilter, String>,
    /// The transform compiled (or there is none), or the compiler's message.
    pub transform: Result<(), String>,
    /// The Broker.
    pub broker: BrokerState,
    /// The effective delivery policy, or the bad field.
    pub delivery: Result<EffectiveDelivery, String>,
    /// The subscriber URL, or why it does not resolve (`None` for a consumer
    /// Deployment or a Job per event).
    pub subscriber: Option<Result<String, String>>,
    /// The dead-letter sink URL, or why it does not resolve (`None`: no sink).
    pub dead_letter_sink: Option<Result<String, String>>,
    /// The consumer was made to match (`Ok`), could not be (`Err`), or was not tried yet (`None`).
    pub consumer: Option<Result<(), Error>>,
    /// The consumer Deployment was applied with this many replicas, could not be, or
    /// was not tried (no `consumer`, or the durable consumer is not there yet).
    pub deployment: Option<Result<i32, Error>>,
    /// The `job` checked (`None`: the Trigger has none), or what is wrong with it.
    pub job: Option<Result<herald_api::job::EffectiveJob, String>>,
}

/// The conditions for what was observed (pure). `Ready` names the first problem.
#[must_use]
pub fn desired_conditions(spec: &TriggerSpec, o: &Observed) -> Vec<Condition> {
    let [filter_valid, broker_ready, subscriber, dead_letter] = inputs(spec, o);
    let deployed = spec.consumer.as_ref().map(|_| deployment_condition(o));
    let not_ready = |reason: &str, message: &str| {
        Condition::new(condition::READY, ConditionStatus::False, reason, message)
    };
    let transform_valid = transform_condition(spec, o);
    let job_valid = o.job.as_ref().map(job_condition);
    let ready = if !filter_valid.is_true() {
        not_ready("InvalidFilter", &filter_valid.message)
    } else if !transform_valid.is_true() {
        not_ready("InvalidTransform", &transform_valid.message)
    } else if let Some(Err(m)) = &o.job {
        not_ready("InvalidJob", m)
    } else if let Err(m) = &o.delivery {
        not_ready("InvalidDelivery", m)
    } else if !broker_ready.is_true() {
        not_ready(&broker_ready.reason, &broker_ready.message)
    } else if let Some(Err(e)) = &o.consumer {
        not_ready(e.reason(), &e.to_string())
    } else if !subscriber.is_true() {
        not_ready(&subscriber.reason, &subscriber.message)
    } else if !dead_letter.is_true() {
        not_ready(&dead_letter.reason, &dead_letter.message)
    } else if o.consumer.is_none() {
        not_ready(
            "ConsumerPending",
            "the durable consumer has not been created yet",
        )
    } else if let Some(deployed) = deployed.as_ref().filter(|c| !c.is_true()) {
        not_ready(&deployed.reason, &deployed.message)
    } else {
        Condition::new(
            condition::READY,
            ConditionStatus::True,
            "Ready",
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
            condition::FILTER_VALID,
            True,
            "FilterValid",
            "filters compiled",
        ),
        Err(m) => Condition::new(condition::FILTER_VALID, False, "InvalidFilter", m.clone()),
    };
    let broker = &spec.broker;
    let broker_ready = match &o.broker {
        BrokerState::Ready => Condition::new(
            condition::BROKER_READY,
            True,
            "BrokerReady",
            format!("Broker {broker} is Ready"),
        ),
        BrokerState::Missing => Condition::new(
            condition::BROKER_READY,
            False,
            "BrokerNotFound",
            format!("Broker {broker} does not exist in this namespace"),
        ),
        // A Broker that is not Ready only because the operator could not reach NATS
        // passes that reason on: the data plane rides it out for the Trigger as it
        // does for the Broker, instead of stopping its delivery.
        BrokerState::NotReady(r) => Condition::new(
            condition::BROKER_READY,
            False,
            if r == conditions::REASON_NATS_UNAVAILABLE {
                conditions::REASON_NATS_UNAVAILABLE
            } else {
                "BrokerNotReady"
            },
            format!("Broker {broker} is not Ready ({r})"),
        ),
    };
    let subscriber = match &o.subscriber {
        Some(Ok(uri)) => Condition::new(
            condition::SUBSCRIBER_RESOLVED,
            True,
            "SubscriberResolved",
            uri.clone(),
        ),
        Some(Err(m)) => Condition::new(
            condition::SUBSCRIBER_RESOLVED,
            False,
            "SubscriberNotResolved",
            m.clone(),
        ),
        None if spec.job.is_some() => Condition::new(
            condition::SUBSCRIBER_RESOLVED,
            True,
            "JobPerEvent",
            "each event runs as a Job",
        ),
        None => Condition::new(
            condition::SUBSCRIBER_RESOLVED,
            True,
            "ConsumerDeployment",
            "events go to the consumer Deployment",
        ),
    };
    let dead_letter = match &o.dead_letter_sink {
        Some(Ok(uri)) => Condition::new(
            condition::DEAD_LETTER_SINK_RESOLVED,
            True,
            "DeadLetterSinkResolved",
            uri.clone(),
        ),
        Some(Err(m)) => Condition::new(
            condition::DEAD_LETTER_SINK_RESOLVED,
            False,
            "DeadLetterSinkNotResolved",
            m.clone(),
        ),
        None => Condition::new(
            condition::DEAD_LETTER_SINK_RESOLVED,
            True,
            "NoDeadLetterSink",
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
        (Err(m), _) => Condition::new(
            condition::TRANSFORM_VALID,
            False,
            "InvalidTransform",
            m.clone(),
        ),
        (Ok(()), Some(_)) => Condition::new(
            condition::TRANSFORM_VALID,
            True,
            "TransformValid",
            "transform compiled",
        ),
        (Ok(()), None) => Condition::new(
            condition::TRANSFORM_VALID,
            True,
            "NoTransform",
            "events are delivered as they are",
        ),
    }
}

/// `ConsumerDeployed`, for Triggers with a `consumer`.
fn deployment_condition(o: &Observed) -> Condition {
    use ConditionStatus::{False, True};
    match &o.deployment {
        Some(Ok(replicas)) => Condition::new(
            condition::CONSUMER_DEPLOYED,
            True,
            "Deployed",
            format!("the consumer Deployment is applied ({replicas} replicas wanted)"),
        ),
        Some(Err(e)) => Condition::new(
            condition::CONSUMER_DEPLOYED,
            False,
            e.reason(),
            e.to_string(),
        ),
        None => Condition::new(
            condition::CONSUMER_DEPLOYED,
            False,
            "DeploymentPending",
            "the Deployment is created once the Broker and the durable consumer are ready",
        ),
    }
}

/// `JobValid`, for Triggers with a `job`: a template no Job could run from keeps
/// the Trigger from being Ready, with the field and why.
fn job_condition(job: &Result<herald_api::job::EffectiveJob, String>) -> Condition {
    match job {
        Ok(job) => Condition::new(
            condition::JOB_VALID,
            ConditionStatus::True,
            "JobValid",
            format!(
                "each event runs as a Job, at most {} at once",
                job.max_running
            ),
        ),
        Err(m) => Condition::new(
            condition::JOB_VALID,
            ConditionStatus::False,
            "InvalidJob",
            m.clone(),
        ),
    }
}
