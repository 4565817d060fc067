//! The Trigger controller: one queue per Trigger (a durable JetStream consumer on its
//! Broker's queue stream that routers fill with the events its filters match), and a
//! status that explains whether events can flow.
//!
//! `apply` reads the Broker, checks the spec against it ([`validate`]: filters and
//! transform compile? job and effective delivery policy valid? Broker Ready? scaling
//! policy valid?), resolves the subscriber and dead-letter sink, builds the queue purely
//! ([`consumer::desired_config`]), creates, updates or — when JetStream requires it —
//! recreates it ([`queue::ensure`], with a backfill for a past start position), and
//! writes `FilterValid`, `TransformValid`, `BrokerReady`, `SubscriberResolved`, `DeadLetterSinkResolved`
//! and `Ready` plus `subscriberUri`, `consumerName` and `queue`. A finalizer deletes
//! the queue with the Trigger. Broker changes re-check the Triggers that name them
//! through a watch mapping ([`triggers_of`]); `backlog` is written by the autoscaler
//! (consumer Triggers) and [`crate::backlog`] (the others), not here.

pub mod consumer;
pub mod deployment;
pub mod placement;
pub mod queue;
pub mod resolve;
pub mod status;
pub mod validate;

use std::time::Duration;

use herald_api::workload::SidecarConfig;
use herald_api::{Broker, OPERATOR_FIELD_MANAGER, Trigger, naming};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};

use crate::autoscale::Scaler;
use crate::autoscale::policy::Policy;
use crate::context::Context;
use crate::error::Error;
use crate::reconcile::{ObjectKey, Reconciled, write_status};
pub use status::{BrokerState, Observed, desired_conditions};
pub use validate::{Checked, ValidTrigger, compile_filters, compile_transform};

/// Finalizer held while the Trigger's consumer may exist.
pub const FINALIZER: &str = "eventing.herald.dev/consumer";
/// Resync period: re-creates what went missing outside Herald (a consumer deleted by
/// hand, NATS state lost). `status.backlog` is kept fresh elsewhere (the autoscaler
/// and [`crate::backlog`]), so a Trigger at rest costs nothing between resyncs.
const RESYNC: Duration = Duration::from_secs(300);
/// While a Trigger replays history: how often its backfill is checked for completion.
const BACKFILL_RESYNC: Duration = Duration::from_secs(5);

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

impl Reconciled for Trigger {
    const KIND: &'static str = "Trigger";
    const FINALIZER: &'static str = FINALIZER;

    /// Reconciles a living Trigger, phase by phase: read its Broker, validate the spec
    /// against it (pure), resolve where events go, make the queue and the consumer
    /// Deployment match, then build the status (pure) and write it.
    async fn apply(&self, key: &ObjectKey, ctx: &Context) -> Result<Action, Error> {
        let trigger = self;
        let broker = key.api::<Broker>(ctx).get_opt(&trigger.spec.broker).await?;
        let checked = validate::validate(&trigger.spec, broker.as_ref());
        let subscriber = match &trigger.spec.subscriber {
            Some(dest) => Some(resolve::resolve(&ctx.client, &key.namespace, dest).await),
            None => None,
        };
        let dead_letter_sink = match checked
            .delivery
            .as_ref()
            .ok()
            .and_then(|d| d.dead_letter_sink.as_ref())
        {
            Some(dest) => Some(resolve::resolve(&ctx.client, &key.namespace, dest).await),
            None => None,
        };

        let previous_queue = trigger.status.as_ref().and_then(|s| s.queue.clone());
        if let Some(old) = previous_queue
            .as_ref()
            .filter(|q| q.broker != trigger.spec.broker)
        {
            // The Trigger moved to another Broker: its old queue must stop filling.
            queue::delete(trigger, key, &old.broker, ctx).await?;
        }
        if trigger.spec.consumer.is_none() {
            remove_deployment(trigger, key, ctx).await?;
        }
        let consumer = match checked.valid() {
            Some(valid) => Some(queue::ensure(trigger, key, valid.delivery, ctx).await),
            None => None,
        };
        let deployment = match (&checked.scaling, &consumer) {
            (Some(scaling), Some(Ok(queue))) => Some(match scaling {
                Ok(policy) => {
                    let wiring = Wiring {
                        broker: broker.as_ref(),
                        dead_letter_sink: dead_letter_sink
                            .as_ref()
                            .and_then(|r| r.as_ref().ok().cloned()),
                        queue_stream: &queue.stream,
                    };
                    ensure_deployment(trigger, key, policy, wiring, ctx).await
                }
                Err(e) => Err(Error::InvalidConsumer(e.clone().into())),
            }),
            _ => None,
        };

        let queue_status = match &consumer {
            Some(Ok(status)) => Some(status.clone()),
            _ => previous_queue.filter(|q| q.broker == trigger.spec.broker),
        };
        let resync = if queue_status.as_ref().is_some_and(|q| q.backfilling) {
            BACKFILL_RESYNC
        } else {
            RESYNC
        };
        let observed = Observed {
            filters: checked.filters,
            transform: checked.transform,
            broker: checked.broker,
            delivery: checked.delivery,
            subscriber,
            dead_letter_sink,
            consumer: consumer.map(|r| r.map(|_| ())),
            deployment,
            job: checked.job,
        };
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let status = status::build_status(trigger, &observed, queue_status, &now);
        write_status::<Trigger, _>(key, &status, ctx).await?;
        match (observed.consumer, observed.deployment) {
            (Some(Err(e)), _) | (_, Some(Err(e))) if e.is_transient() => Err(e),
            _ => Ok(Action::requeue(resync)),
        }
    }

    async fn cleanup(&self, key: &ObjectKey, ctx: &Context) -> Result<Action, Error> {
        let trigger = self;
        let mut brokers = vec![trigger.spec.broker.clone()];
        if let Some(queue) = trigger.status.as_ref().and_then(|s| s.queue.as_ref()) {
            if queue.broker != trigger.spec.broker {
                brokers.push(queue.broker.clone());
            }
        }
        for broker in brokers {
            if queue::delete(trigger, key, &broker, ctx).await? {
                ctx.event(
                    trigger,
                    EventType::Normal,
                    "ConsumerDeleted",
                    "DeleteConsumer",
                    format!("deleted the queue of Broker {broker}"),
                )
                .await;
            }
        }
        Ok(Action::await_change())
    }
}

/// What a consumer Deployment is connected to besides its Trigger.
struct Wiring<'a> {
    broker: Option<&'a Broker>,
    dead_letter_sink: Option<String>,
    /// The queue stream holding the Trigger's queue.
    queue_stream: &'a str,
}

/// Applies the consumer Deployment; returns the replicas it was applied with: the
/// autoscaler's last decision, else what the Deployment has, else `minReplicas`.
async fn ensure_deployment(
    trigger: &Trigger,
    key: &ObjectKey,
    policy: &Policy,
    wiring: Wiring<'_>,
    ctx: &Context,
) -> Result<i32, Error> {
    let Wiring {
        broker,
        dead_letter_sink,
        queue_stream,
    } = wiring;
    let (namespace, name) = (&key.namespace, &key.name);
    let api: Api<Deployment> = key.api(ctx);
    let deployment_name = naming::consumer_deployment_name(name);
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
    // Replicas are the autoscaler's (its field manager owns them): its decision, else
    // what the Deployment has (an operator restart), else minReplicas. The reconcile
    // sets them only when it creates the Deployment, and hands them over before it
    // applies one without them.
    let decided = ctx.decided_replicas(&key.to_string());
    let found = existing.as_ref().and_then(|d| d.spec.replicas);
    let replicas = decided.map(|(n, _)| n).or(found).unwrap_or(policy.min);
    let scaler = Scaler::of(ctx, key);
    if let Some(existing) = &existing {
        scaler.adopt(existing, replicas).await?;
    }
    let mut sidecar = SidecarConfig::new(
        namespace,
        name,
        &trigger.spec,
        broker.map(|b| &b.spec),
        dead_letter_sink,
    );
    sidecar.queue_stream = Some(queue_stream.to_owned());
    let initial = existing.is_none().then_some(replicas);
    let desired = deployment::desired_deployment(trigger, &sidecar, &ctx.workload, initial)
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
        scaler.set(replicas).await?;
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

/// Deletes the consumer Deployment of a Trigger that no longer has a `consumer`.
async fn remove_deployment(trigger: &Trigger, key: &ObjectKey, ctx: &Context) -> Result<(), Error> {
    let api: Api<Deployment> = key.api(ctx);
    let name = naming::consumer_deployment_name(&key.name);
    let Some(existing) = api.get_opt(&name).await? else {
        return Ok(());
    };
    let ours = existing
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == trigger.metadata.uid.as_ref());
    if ours {
        api.delete(&name, &kube::api::DeleteParams::background())
            .await?;
        ctx.event(
            trigger,
            EventType::Normal,
            "DeploymentDeleted",
            "ReconcileDeployment",
            format!("deleted consumer Deployment {name}: the Trigger now delivers to a subscriber"),
        )
        .await;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
