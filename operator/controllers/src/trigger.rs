//! The Trigger controller, as far as it is built: it validates what can be checked
//! without delivery — the filters compile, the Broker exists and is Ready — and says
//! so in `FilterValid` and `BrokerReady`. `Ready` stays `False` with reason
//! `NotImplemented` until the dispatcher delivers events, unless a more specific
//! problem (an invalid filter, a missing Broker) explains it better. A Broker's
//! changes re-check its Triggers through a watch mapping ([`triggers_of`]).

use std::sync::Arc;
use std::time::Duration;

use herald_api::conditions::{self, Condition, ConditionStatus};
use herald_api::trigger::condition;
use herald_api::{Broker, OPERATOR_FIELD_MANAGER, Trigger, TriggerSpec};
use herald_filter::CompiledFilter;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::error::{Error, retry_delay};

const KIND: &str = "Trigger";
/// Safety-net resync; Broker changes reach Triggers through [`triggers_of`].
const RESYNC: Duration = Duration::from_secs(300);

/// The Triggers (from the controller's cache) that name `broker`, for the watch
/// mapping that re-checks them whenever the Broker changes.
#[must_use]
pub fn triggers_of(store: &Store<Trigger>, broker: &Broker) -> Vec<ObjectRef<Trigger>> {
    let namespace = broker.namespace();
    let name = broker.name_any();
    store
        .state()
        .iter()
        .filter(|t| t.namespace() == namespace && t.spec.broker == name)
        .map(|t| ObjectRef::from_obj(&**t))
        .collect()
}

/// Compiles the Trigger's filters; `Err` carries the compiler's message (path and reason).
pub fn compile_filters(spec: &TriggerSpec) -> Result<CompiledFilter, String> {
    let filters = spec
        .filters
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let attributes = spec
        .filter
        .iter()
        .flat_map(|f| f.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    CompiledFilter::from_parts(attributes, &filters).map_err(|e| e.to_string())
}

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

/// The conditions of a Trigger (pure).
#[must_use]
pub fn desired_conditions(
    spec: &TriggerSpec,
    filters: &Result<CompiledFilter, String>,
    broker: &BrokerState,
) -> Vec<Condition> {
    use ConditionStatus::{False, True};
    let filter_valid = match filters {
        Ok(_) => Condition::new(
            condition::FILTER_VALID,
            True,
            "FilterValid",
            "filters compiled",
        ),
        Err(message) => Condition::new(
            condition::FILTER_VALID,
            False,
            "InvalidFilter",
            message.clone(),
        ),
    };
    let broker_ready = match broker {
        BrokerState::Ready => Condition::new(
            condition::BROKER_READY,
            True,
            "BrokerReady",
            format!("Broker {} is Ready", spec.broker),
        ),
        BrokerState::Missing => Condition::new(
            condition::BROKER_READY,
            False,
            "BrokerNotFound",
            format!("Broker {} does not exist in this namespace", spec.broker),
        ),
        BrokerState::NotReady(reason) => Condition::new(
            condition::BROKER_READY,
            False,
            "BrokerNotReady",
            format!("Broker {} is not Ready ({reason})", spec.broker),
        ),
    };
    let ready = if !filter_valid.is_true() {
        Condition::new(
            condition::READY,
            False,
            "InvalidFilter",
            filter_valid.message.clone(),
        )
    } else if !broker_ready.is_true() {
        Condition::new(
            condition::READY,
            False,
            &broker_ready.reason,
            broker_ready.message.clone(),
        )
    } else {
        Condition::new(
            condition::READY,
            False,
            "NotImplemented",
            "Herald does not deliver Trigger events yet (the dispatcher is being built); this Trigger is valid but inactive",
        )
    };
    vec![filter_valid, broker_ready, ready]
}

/// Validates one Trigger and writes its status.
#[tracing::instrument(skip_all, fields(namespace = trigger.namespace().unwrap_or_default(), name = trigger.name_any()))]
pub async fn reconcile(trigger: Arc<Trigger>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile(KIND);
    let namespace = trigger.namespace().unwrap_or_default();
    let brokers: Api<Broker> = Api::namespaced(ctx.client.clone(), &namespace);
    let broker = match brokers.get_opt(&trigger.spec.broker).await? {
        None => BrokerState::Missing,
        Some(b) => {
            let list = b.status.map(|s| s.conditions).unwrap_or_default();
            match conditions::find(&list, "Ready") {
                Some(c) if c.is_true() => BrokerState::Ready,
                Some(c) => BrokerState::NotReady(c.reason.clone()),
                None => BrokerState::NotReady("not reconciled yet".into()),
            }
        }
    };
    let filters = compile_filters(&trigger.spec);
    let generation = trigger.metadata.generation;
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let previous = trigger
        .status
        .as_ref()
        .map_or(&[][..], |s| &s.conditions[..]);
    let patch = serde_json::json!({
        "apiVersion": "eventing.herald.dev/v1alpha1",
        "kind": KIND,
        "status": {
            "observedGeneration": generation,
            "conditions": conditions::merge(previous, desired_conditions(&trigger.spec, &filters, &broker), &now, generation),
        },
    });
    let api: Api<Trigger> = Api::namespaced(ctx.client.clone(), &namespace);
    api.patch_status(
        &trigger.name_any(),
        &PatchParams::apply(OPERATOR_FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    ctx.record_success(&ObjectRef::from_obj(&*trigger));
    Ok(Action::requeue(RESYNC))
}

/// Requeues a failed reconcile with per-object backoff.
#[allow(clippy::needless_pass_by_value)] // signature required by `Controller::run`
pub fn error_policy(trigger: Arc<Trigger>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failure(KIND, error.reason());
    let failures = ctx.record_failure(&ObjectRef::from_obj(&*trigger));
    tracing::warn!(name = %trigger.name_any(), %error, "Trigger reconcile failed");
    Action::requeue(retry_delay(failures))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> TriggerSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn invalid_cesql_is_reported_with_the_compiler_message() {
        let s = spec(
            "broker: default\nfilters:\n  - cesql: \"type = \"\nsubscriber: {uri: http://x}\n",
        );
        let filters = compile_filters(&s);
        let message = filters.clone().unwrap_err();
        assert!(message.starts_with("filters[0].cesql"), "{message}");
        let conds = desired_conditions(&s, &filters, &BrokerState::Ready);
        assert_eq!(
            (conds[0].status, conds[0].reason.as_str()),
            (ConditionStatus::False, "InvalidFilter")
        );
        assert_eq!(conds[2].reason, "InvalidFilter");
        assert_eq!(conds[2].message, message);
    }

    #[test]
    fn valid_trigger_waits_for_its_broker_then_says_not_implemented() {
        let s = spec(
            "broker: default\nfilter: {attributes: {type: a.b}}\nsubscriber: {uri: http://x}\n",
        );
        let filters = compile_filters(&s);
        assert_eq!(filters.as_ref().unwrap().exact_type(), Some("a.b"));
        let missing = desired_conditions(&s, &filters, &BrokerState::Missing);
        assert_eq!(missing[2].reason, "BrokerNotFound");
        let ready = desired_conditions(&s, &filters, &BrokerState::Ready);
        assert!(ready[0].is_true() && ready[1].is_true());
        assert_eq!(
            (ready[2].status, ready[2].reason.as_str()),
            (ConditionStatus::False, "NotImplemented")
        );
    }
}
