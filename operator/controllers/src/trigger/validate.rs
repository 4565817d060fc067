//! The Trigger's spec checked against its Broker, in one pure step: everything a
//! reconcile can know to be wrong without asking JetStream. The queue and the consumer
//! Deployment are built only from a [`ValidTrigger`].

use herald_api::delivery::{self, EffectiveDelivery};
use herald_api::job::EffectiveJob;
use herald_api::{Broker, TriggerSpec};
use herald_filter::CompiledFilter;

use super::status::BrokerState;
use crate::autoscale::policy::{Policy, PolicyError};
use crate::error::Error;

/// Each check's outcome; the status reports every one of them, each failure with
/// the reason [`Error::reason`] gives it.
#[derive(Debug)]
pub struct Checked {
    /// Filters compiled, or [`Error::InvalidFilter`].
    pub filters: Result<CompiledFilter, Error>,
    /// The transform compiled (or there is none), or [`Error::InvalidTransform`].
    pub transform: Result<(), Error>,
    /// The `job` resolved (`None`: the Trigger has none), or [`Error::InvalidJob`].
    pub job: Option<Result<EffectiveJob, Error>>,
    /// The effective delivery policy (the Trigger's over its Broker's), or
    /// [`Error::InvalidDelivery`].
    pub delivery: Result<EffectiveDelivery, Error>,
    /// The Broker.
    pub broker: BrokerState,
    /// The consumer Deployment's scaling policy (`None`: no `consumer`).
    pub scaling: Option<Result<Policy, PolicyError>>,
}

/// A Trigger whose queue may be made: every check passed and its Broker is Ready.
#[derive(Clone, Copy, Debug)]
pub struct ValidTrigger<'a> {
    /// The compiled filters.
    pub filters: &'a CompiledFilter,
    /// The effective delivery policy.
    pub delivery: &'a EffectiveDelivery,
}

impl Checked {
    /// The valid Trigger, if it is one.
    #[must_use]
    pub fn valid(&self) -> Option<ValidTrigger<'_>> {
        match (
            &self.filters,
            &self.transform,
            &self.delivery,
            &self.broker,
            &self.job,
        ) {
            (Ok(filters), Ok(()), Ok(delivery), BrokerState::Ready, None | Some(Ok(_))) => {
                Some(ValidTrigger { filters, delivery })
            }
            _ => None,
        }
    }
}

/// Checks `spec` against its Broker (`None`: it does not exist).
#[must_use]
pub fn validate(spec: &TriggerSpec, broker: Option<&Broker>) -> Checked {
    Checked {
        filters: compile_filters(spec),
        transform: compile_transform(spec),
        job: spec
            .job
            .as_ref()
            .map(|job| herald_api::job::resolve(job).map_err(Error::InvalidJob)),
        delivery: delivery::resolve(
            spec.delivery.as_ref(),
            broker.and_then(|b| b.spec.delivery.as_ref()),
        )
        .map_err(Error::InvalidDelivery),
        broker: BrokerState::of(broker),
        scaling: spec
            .consumer
            .as_ref()
            .map(|c| Policy::from_spec(&c.scaling)),
    }
}

/// Compiles the Trigger's filters; `Err` carries the compiler's error (path and reason).
pub fn compile_filters(spec: &TriggerSpec) -> Result<CompiledFilter, Error> {
    let (attributes, filters) = spec.filter_parts();
    CompiledFilter::from_parts(attributes, &filters).map_err(Error::InvalidFilter)
}

/// Compiles the Trigger's transform (the check the dispatcher repeats); `Err`
/// carries the compiler's error (where and why).
pub fn compile_transform(spec: &TriggerSpec) -> Result<(), Error> {
    let Some(transform) = &spec.transform else {
        return Ok(());
    };
    let (jq, template) = transform.parts();
    herald_transform::Transform::from_parts(jq, template)
        .map(|_| ())
        .map_err(Error::InvalidTransform)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> TriggerSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn ready_broker() -> Broker {
        let mut b = Broker::new("b", herald_api::BrokerSpec::default());
        b.status = Some(herald_api::BrokerStatus {
            conditions: vec![herald_api::Condition::new(
                herald_api::conditions::ConditionType::Ready,
                herald_api::ConditionStatus::True,
                herald_api::conditions::Reason::Ready,
                "",
            )],
            ..herald_api::BrokerStatus::default()
        });
        b
    }

    #[test]
    fn only_a_trigger_with_every_check_passed_and_a_ready_broker_is_valid() {
        let ok = spec("broker: b\nsubscriber: {uri: http://x}\ndelivery: {timeout: 3s}");
        let broker = ready_broker();
        let checked = validate(&ok, Some(&broker));
        let valid = checked.valid().expect("valid");
        assert_eq!(valid.delivery.timeout, std::time::Duration::from_secs(3));
        assert!(validate(&ok, None).valid().is_none(), "no Broker");
        let bad = spec("broker: b\nsubscriber: {uri: http://x}\nfilters: [{cesql: 'type = '}]");
        assert!(validate(&bad, Some(&broker)).valid().is_none());
    }

    #[test]
    fn the_consumer_scaling_policy_is_checked_with_the_rest() {
        let consumer = spec(
            "broker: b\nconsumer:\n  scaling: {minReplicas: 3, maxReplicas: 1}\n  template: {spec: {containers: [{name: a, image: a}]}}\n",
        );
        let checked = validate(&consumer, Some(&ready_broker()));
        assert!(
            matches!(checked.scaling, Some(Err(_))),
            "{:?}",
            checked.scaling
        );
        assert!(checked.valid().is_some(), "the queue does not depend on it");
        let plain = spec("broker: b\nsubscriber: {uri: http://x}");
        assert!(validate(&plain, None).scaling.is_none());
    }
}
