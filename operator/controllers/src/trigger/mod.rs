//! The Trigger controller: one durable JetStream consumer per Trigger, and a status
//! that explains whether events can flow.
//!
//! reconcile observes (filters compile? Broker Ready? subscriber and dead-letter sink
//! resolve? effective delivery policy valid?), builds the consumer purely
//! ([`consumer::desired_config`]), creates, updates or — when JetStream requires it —
//! recreates it, and writes `FilterValid`, `BrokerReady`, `SubscriberResolved`,
//! `DeadLetterSinkResolved` and `Ready` plus `subscriberUri`, `consumerName` and
//! `backlog`. A finalizer deletes the consumer with the Trigger. Broker changes
//! re-check the Triggers that name them through a watch mapping ([`triggers_of`]);
//! a short resync keeps `backlog` fresh.

pub mod consumer;
pub mod deployment;
pub mod resolve;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::{ConsumerInfoErrorKind, GetStreamErrorKind};
use herald_api::conditions;
use herald_api::delivery::{self, EffectiveDelivery};
use herald_api::trigger::ConsumerMode;
use herald_api::workload::DispatcherPlan;
use herald_api::{Broker, OPERATOR_FIELD_MANAGER, Trigger, TriggerSpec, naming};
use herald_filter::CompiledFilter;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, Event as Finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::error::{Error, retry_delay};
pub use status::{BrokerState, Observed, desired_conditions};

const KIND: &str = "Trigger";
/// Finalizer held while the Trigger's consumer may exist.
pub const FINALIZER: &str = "eventing.herald.dev/consumer";
/// Resync period; keeps `status.backlog` fresh.
const RESYNC: Duration = Duration::from_secs(15);

/// Compiles the Trigger's filters; `Err` carries the compiler's message (path and reason).
pub fn compile_filters(spec: &TriggerSpec) -> Result<CompiledFilter, String> {
    let (attributes, filters) = spec.filter_parts();
    CompiledFilter::from_parts(attributes, &filters).map_err(|e| e.to_string())
}

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

/// Reconciles one Trigger.
#[tracing::instrument(skip_all, fields(namespace = trigger.namespace().unwrap_or_default(), name = trigger.name_any()))]
pub async fn reconcile(trigger: Arc<Trigger>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile(KIND);
    let namespace = trigger.namespace().unwrap_or_default();
    let api: Api<Trigger> = Api::namespaced(ctx.client.clone(), &namespace);
    let obj_ref = ObjectRef::from_obj(&*trigger);
    let result = finalizer::finalizer(&api, FINALIZER, trigger, |event| async {
        match event {
            Finalizer::Apply(t) => apply(&t, &api, &ctx).await,
            Finalizer::Cleanup(t) => cleanup(&t, &ctx).await,
        }
    })
    .await
    .map_err(Error::from);
    if result.is_ok() {
        ctx.record_success(&obj_ref);
    }
    result
}

/// Requeues a failed reconcile with per-object backoff.
#[allow(clippy::needless_pass_by_value)] // signature required by `Controller::run`
pub fn error_policy(trigger: Arc<Trigger>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failure(KIND, error.reason());
    let failures = ctx.record_failure(&ObjectRef::from_obj(&*trigger));
    tracing::warn!(name = %trigger.name_any(), reason = error.reason(), %error, "Trigger reconcile failed");
    Action::requeue(retry_delay(failures))
}

async fn broker_state(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<(BrokerState, Option<Broker>), Error> {
    let broker = Api::<Broker>::namespaced(ctx.client.clone(), namespace)
        .get_opt(name)
        .await?;
    let state = match &broker {
        None => BrokerState::Missing,
        Some(b) => {
            let list = b
                .status
                .as_ref()
                .map(|s| &s.conditions[..])
                .unwrap_or_default();
            match conditions::find(list, "Ready") {
                Some(c) if c.is_true() => BrokerState::Ready,
                Some(c) => BrokerState::NotReady(c.reason.clone()),
                None => BrokerState::NotReady("NotReconciled".into()),
            }
        }
    };
    Ok((state, broker))
}

async fn apply(trigger: &Trigger, api: &Api<Trigger>, ctx: &Context) -> Result<Action, Error> {
    let namespace = trigger.namespace().unwrap_or_default();
    let (broker_state, broker) = broker_state(ctx, &namespace, &trigger.spec.broker).await?;
    let filters = compile_filters(&trigger.spec);
    let delivery = delivery::resolve(
        trigger.spec.delivery.as_ref(),
        broker.as_ref().and_then(|b| b.spec.delivery.as_ref()),
    );
    let subscriber = match &trigger.spec.subscriber {
        Some(dest) => Some(resolve::resolve(&ctx.client, &namespace, dest).await),
        None => None,
    };
    let dead_letter_sink = match delivery
        .as_ref()
        .ok()
        .and_then(|d| d.dead_letter_sink.clone())
    {
        Some(dest) => Some(resolve::resolve(&ctx.client, &namespace, &dest).await),
        None => None,
    };
    let consumer = match (&filters, &delivery, &broker_state) {
        (Ok(f), Ok(d), BrokerState::Ready) => {
            Some(ensure_consumer(trigger, d, f.exact_type(), ctx).await)
        }
        _ => None,
    };
    let backlog = match &consumer {
        Some(Ok(backlog)) => Some(*backlog),
        _ => None,
    };
    let deployment = match (&trigger.spec.consumer, &consumer, &filters) {
        (Some(_), Some(Ok(_)), Ok(compiled)) => {
            let dead_letter_sink = match &dead_letter_sink {
                Some(Ok(uri)) => Some(uri.clone()),
                _ => None,
            };
            Some(ensure_deployment(trigger, broker.as_ref(), dead_letter_sink, compiled, ctx).await)
        }
        _ => None,
    };
    let observed = Observed {
        filters,
        broker: broker_state,
        delivery,
        subscriber,
        dead_letter_sink,
        consumer: consumer.map(|r| r.map(|_| ())),
        deployment,
    };

    let previous = trigger
        .status
        .as_ref()
        .map(|s| &s.conditions[..])
        .unwrap_or_default();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let generation = trigger.metadata.generation;
    let patch = serde_json::json!({
        "apiVersion": "eventing.herald.dev/v1alpha1",
        "kind": KIND,
        "status": {
            "observedGeneration": generation,
            "conditions": conditions::merge(previous, desired_conditions(&trigger.spec, &observed), &now, generation),
            "consumerName": naming::consumer_name(&trigger.name_any()),
            "subscriberUri": observed.subscriber.as_ref().and_then(|r| r.as_ref().ok()),
            "deadLetterSinkUri": observed.dead_letter_sink.as_ref().and_then(|r| r.as_ref().ok()),
            "backlog": backlog,
        },
    });
    api.patch_status(
        &trigger.name_any(),
        &PatchParams::apply(OPERATOR_FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    match (observed.consumer, observed.deployment) {
        (Some(Err(e)), _) | (_, Some(Err(e))) if e.is_transient() => Err(e),
        _ => Ok(Action::requeue(RESYNC)),
    }
}

/// Applies the consumer Deployment; returns the replicas it was applied with: the
/// autoscaler's last decision, else what the Deployment has, else `minReplicas`.
async fn ensure_deployment(
    trigger: &Trigger,
    broker: Option<&Broker>,
    dead_letter_sink: Option<String>,
    filters: &CompiledFilter,
    ctx: &Context,
) -> Result<i32, Error> {
    let Some(consumer) = &trigger.spec.consumer else {
        return Err(Error::InvalidConsumer("the Trigger has no consumer".into()));
    };
    let policy = crate::autoscale::policy::Policy::from_spec(&consumer.scaling)
        .map_err(Error::InvalidConsumer)?;
    if consumer.mode == ConsumerMode::Nats
        && filters.exact_type().is_none()
        && !filters.is_match_all()
    {
        return Err(Error::InvalidConsumer(
            "in nats mode the container reads the durable consumer itself, so only a filter on exactly one type (applied by JetStream) can be honoured; use mode http for other filters".into(),
        ));
    }
    let namespace = trigger.namespace().unwrap_or_default();
    let name = trigger.name_any();
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let deployment_name = naming::consumer_deployment_name(&name);
    let existing = api.get_opt(&deployment_name).await?;
    if let Some(existing) = &existing {
        let ours = existing
            .owner_references()
            .iter()
            .any(|o| o.controller == Some(true) && Some(&o.uid) == trigger.metadata.uid.as_ref());
        if !ours {
            return Err(Error::DeploymentNotOwned(deployment_name));
        }
    }
    // Replicas are the autoscaler's: its decision, else what the Deployment has (an
    // operator restart), else minReplicas for a new Deployment.
    let decided = ctx.decided_replicas(&format!("{namespace}/{name}"));
    let found = existing.as_ref().and_then(|d| d.spec.replicas);
    if let (Some((ours, true)), Some(found)) = (decided, found) {
        if found != ours {
            ctx.event(
                trigger,
                EventType::Warning,
                "ReplicasOverridden",
                "Autoscale",
                format!(
                    "replicas of Deployment {deployment_name} were set to {found} outside Herald; Herald manages them from spec.consumer.scaling and set them back to {ours}"
                ),
            )
            .await;
        }
    }
    let replicas = decided.map(|(n, _)| n).or(found).unwrap_or(policy.min);
    let plan = DispatcherPlan::new(
        &namespace,
        &name,
        &trigger.spec,
        broker.and_then(|b| b.spec.delivery.as_ref()),
        dead_letter_sink,
    );
    let desired = deployment::desired_deployment(trigger, &plan, &ctx.workload, replicas)
        .map_err(Error::InvalidConsumer)?;
    api.patch(
        &deployment_name,
        &PatchParams::apply(OPERATOR_FIELD_MANAGER).force(),
        &Patch::Apply(&desired),
    )
    .await
    .map_err(|e| match e {
        kube::Error::Api(status) if matches!(status.code, 400 | 422) => {
            Error::DeploymentRejected(status.message)
        }
        e => Error::Kube(e),
    })?;
    if existing.is_none() {
        ctx.event(
            trigger,
            EventType::Normal,
            "DeploymentCreated",
            "ReconcileDeployment",
            format!("created consumer Deployment {deployment_name} with {replicas} replicas"),
        )
        .await;
    }
    Ok(replicas)
}

/// Makes the consumer match; returns the backlog (pending + unacknowledged).
async fn ensure_consumer(
    trigger: &Trigger,
    delivery: &EffectiveDelivery,
    exact_type: Option<&str>,
    ctx: &Context,
) -> Result<i64, Error> {
    let desired = consumer::desired_config(trigger, delivery, exact_type)?;
    if !ctx.nats.is_connected() {
        return Err(Error::NatsUnavailable(
            "not connected to any NATS server".into(),
        ));
    }
    let namespace = trigger.namespace().unwrap_or_default();
    let stream_name = naming::stream_name(&namespace, &trigger.spec.broker);
    let name = naming::consumer_name(&trigger.name_any());
    let stream =
        ctx.jetstream.get_stream(&stream_name).await.map_err(|e| {
            Error::NatsUnavailable(format!("cannot read stream {stream_name}: {e}"))
        })?;
    let existing = match stream.consumer_info(&name).await {
        Ok(info) => Some(info.config),
        Err(e) if matches!(e.kind(), ConsumerInfoErrorKind::NotFound) => None,
        Err(e) => {
            return Err(Error::NatsUnavailable(format!(
                "cannot read consumer {name}: {e}"
            )));
        }
    };
    let rejected = |e: &dyn std::fmt::Display| Error::StreamRejected {
        stream: stream_name.clone(),
        message: format!("consumer {name}: {e}"),
    };
    match existing {
        None => {
            stream
                .create_consumer(desired)
                .await
                .map_err(|e| rejected(&e))?;
            ctx.event(
                trigger,
                EventType::Normal,
                "ConsumerCreated",
                "ReconcileConsumer",
                format!("created durable consumer {name} on stream {stream_name}"),
            )
            .await;
        }
        Some(existing) => {
            if existing.metadata.get(consumer::OWNER_KEY)
                != desired.metadata.get(consumer::OWNER_KEY)
            {
                return Err(Error::ConsumerNotOwned {
                    stream: stream_name,
                    consumer: name,
                });
            }
            let reasons = consumer::recreate_reasons(&existing, &desired);
            if !reasons.is_empty() {
                stream
                    .delete_consumer(&name)
                    .await
                    .map_err(|e| rejected(&e))?;
                stream
                    .create_consumer(desired)
                    .await
                    .map_err(|e| rejected(&e))?;
                ctx.event(
                    trigger,
                    EventType::Normal,
                    "ConsumerRecreated",
                    "ReconcileConsumer",
                    format!("recreated consumer {name}: {}", reasons.join(", ")),
                )
                .await;
            } else if consumer::needs_update(&existing, &desired) {
                stream
                    .update_consumer(desired)
                    .await
                    .map_err(|e| rejected(&e))?;
                ctx.event(
                    trigger,
                    EventType::Normal,
                    "ConsumerUpdated",
                    "ReconcileConsumer",
                    format!("updated consumer {name}"),
                )
                .await;
            }
        }
    }
    let info = stream
        .consumer_info(&name)
        .await
        .map_err(|e| Error::NatsUnavailable(e.to_string()))?;
    Ok(i64::try_from(info.num_pending)
        .unwrap_or(i64::MAX)
        .saturating_add(i64::try_from(info.num_ack_pending).unwrap_or(0)))
}

async fn cleanup(trigger: &Trigger, ctx: &Context) -> Result<Action, Error> {
    let namespace = trigger.namespace().unwrap_or_default();
    let stream_name = naming::stream_name(&namespace, &trigger.spec.broker);
    let name = naming::consumer_name(&trigger.name_any());
    if !ctx.nats.is_connected() {
        return Err(Error::NatsUnavailable(format!(
            "cannot delete consumer {name}: not connected"
        )));
    }
    let stream = match ctx.jetstream.get_stream(&stream_name).await {
        Ok(s) => s,
        // No stream (the Broker is gone): no consumer either.
        Err(e) if matches!(e.kind(), GetStreamErrorKind::JetStream(js) if js.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            return Ok(Action::await_change());
        }
        Err(e) => {
            return Err(Error::NatsUnavailable(format!(
                "cannot read stream {stream_name}: {e}"
            )));
        }
    };
    match stream.consumer_info(&name).await {
        Ok(info)
            if info.config.metadata.get(consumer::OWNER_KEY)
                == Some(&consumer::owner_value(&namespace, &trigger.name_any())) =>
        {
            stream.delete_consumer(&name).await.map_err(|e| {
                Error::NatsUnavailable(format!("cannot delete consumer {name}: {e}"))
            })?;
            ctx.event(
                trigger,
                EventType::Normal,
                "ConsumerDeleted",
                "DeleteConsumer",
                format!("deleted consumer {name}"),
            )
            .await;
        }
        Ok(_) => {
            tracing::warn!(consumer = %name, "consumer is not owned by this Trigger; leaving it");
        }
        Err(e)
            if matches!(
                e.kind(),
                ConsumerInfoErrorKind::NotFound | ConsumerInfoErrorKind::StreamNotFound
            ) => {}
        Err(e) => {
            return Err(Error::NatsUnavailable(format!(
                "cannot read consumer {name}: {e}"
            )));
        }
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests;
