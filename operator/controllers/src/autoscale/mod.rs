//! Autoscaling of Trigger consumer Deployments from the backlog and event rates of
//! their durable JetStream consumer. [`policy`] is the pure decision logic; this module
//! measures, decides and acts, in the leader operator only.
//!
//! ```text
//!  every 100 ms: Triggers with a deployed consumer ──▶ due for a poll? (pollInterval)
//!     poll: CONSUMER.INFO (pending, ack pending, sequences) + Deployment scale
//!        ──▶ policy::State::decide ──▶ apply spec.replicas, Event, metrics, status.autoscaling
//!  at zero replicas: a NATS subscription on the Trigger's subjects (activation.rs)
//!     first event ──▶ policy::State::activate ──▶ apply spec.replicas (no waiting for a poll)
//! ```
//!
//! Only the autoscaler changes replicas once a Deployment exists, and its field
//! manager ([`FIELD_MANAGER`]) owns `spec.replicas`: the Trigger reconcile sets them
//! only when it creates the Deployment (from the autoscaler's last decision, kept in
//! the [`Context`]) and then hands them over (`Scaler::adopt`). When the autoscaler
//! finds the replicas changed by someone else it sets them back and says so in an
//! Event.

mod activation;
pub mod policy;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull;
use herald_api::trigger::{AutoscalingStatus, condition};
use herald_api::{Trigger, TriggerStatus, conditions, naming};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use kube::{Api, Resource, ResourceExt};
use tokio::sync::{mpsc, watch};

use self::policy::{Decision, Policy, Sample, State};
use crate::context::Context;
use crate::reconcile::ObjectKey;

/// Field manager of the autoscaler's writes: replicas and its part of the status.
pub const FIELD_MANAGER: &str = herald_api::field_manager::AUTOSCALER;
const TICK: Duration = Duration::from_millis(100);
/// Longest one poll or activation may take before it is abandoned.
const STEP_DEADLINE: Duration = Duration::from_secs(10);

/// What the autoscaler keeps per consumer Trigger.
struct Scaled {
    trigger: Arc<Trigger>,
    policy: Policy,
    state: State,
    next_poll: Instant,
    /// The replicas the autoscaler last set or adopted.
    replicas: Option<i32>,
    /// Subjects that hold the Trigger's events (for activation).
    subjects: Vec<String>,
    /// While at zero: the subscription that wakes the autoscaler.
    activation: Option<activation::Watch>,
    status: Option<AutoscalingStatus>,
    backlog: Option<i64>,
}

/// Runs the autoscaler until `stop` fires.
pub async fn run(ctx: Arc<Context>, triggers: Store<Trigger>, mut stop: watch::Receiver<bool>) {
    let origin = Instant::now();
    let (wake, mut woken) = mpsc::channel::<String>(64);
    let mut scaled: HashMap<String, Scaled> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(key) = woken.recv() => {
                // Then on to the regular polls: messages on a Trigger's queue subject
                // (a route retried, a copy JetStream drops as a duplicate) must never
                // keep the autoscaler from measuring every Trigger.
                if let Some(entry) = scaled.get_mut(&key)
                    && tokio::time::timeout(STEP_DEADLINE, activate(&ctx, &key, entry, origin)).await.is_err()
                {
                    tracing::warn!(trigger = %key, "activation took longer than {STEP_DEADLINE:?}; abandoned");
                }
            }
            _ = stop.changed() => break,
        }
        sync(&ctx, &triggers, &mut scaled);
        let now = Instant::now();
        for (key, entry) in &mut scaled {
            if entry.next_poll <= now {
                entry.next_poll = now + entry.policy.poll_interval;
                // A request that hangs (an apiserver or NATS connection gone quiet)
                // must not stop the autoscaling of every other Trigger.
                match tokio::time::timeout(STEP_DEADLINE, poll(&ctx, key, entry, origin, &wake))
                    .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(trigger = %key, error = %e, "autoscaler poll failed");
                    }
                    Err(_) => {
                        tracing::warn!(trigger = %key, "autoscaler poll took longer than {STEP_DEADLINE:?}; abandoned");
                    }
                }
            }
        }
    }
}

fn key_of(trigger: &Trigger) -> String {
    format!(
        "{}/{}",
        trigger.namespace().unwrap_or_default(),
        trigger.name_any()
    )
}

/// Tracks exactly the Triggers whose consumer Deployment is applied.
fn sync(ctx: &Context, triggers: &Store<Trigger>, scaled: &mut HashMap<String, Scaled>) {
    let mut seen = Vec::new();
    for trigger in triggers.state() {
        let Some(consumer) = &trigger.spec.consumer else {
            continue;
        };
        let deployed = trigger
            .status
            .as_ref()
            .and_then(|s| conditions::find(&s.conditions, condition::CONSUMER_DEPLOYED))
            .is_some_and(conditions::Condition::is_true);
        let Ok(policy) = Policy::from_spec(&consumer.scaling) else {
            continue;
        };
        let key = key_of(&trigger);
        // Start with a Deployment that exists; keep going while the Trigger has a
        // consumer, whatever its conditions say for a moment (a reconcile that failed
        // once must not leave a Deployment unscaled and unwatched).
        if !deployed && !scaled.contains_key(&key) {
            continue;
        }
        seen.push(key.clone());
        match scaled.get_mut(&key) {
            Some(entry) => {
                if entry.policy != policy {
                    entry.next_poll = Instant::now();
                }
                entry.policy = policy;
                entry.trigger = trigger;
            }
            None => {
                scaled.insert(
                    key,
                    Scaled {
                        trigger,
                        policy,
                        state: State::default(),
                        next_poll: Instant::now(),
                        replicas: None,
                        subjects: Vec::new(),
                        activation: None,
                        status: None,
                        backlog: None,
                    },
                );
            }
        }
    }
    scaled.retain(|key, entry| {
        let keep = seen.contains(key);
        if !keep {
            tracing::info!(trigger = %key, "no longer autoscaled (deleted, or no consumer)");
            let labels = [
                entry.trigger.namespace().unwrap_or_default(),
                entry.trigger.name_any(),
            ];
            let labels = [labels[0].as_str(), labels[1].as_str()];
            let _ = ctx.metrics.desired_replicas.remove_label_values(&labels);
            let _ = ctx.metrics.backlog.remove_label_values(&labels);
            ctx.set_decided_replicas(key, None);
        }
        keep
    });
}

/// Measures the Trigger's durable consumer.
async fn measure(
    ctx: &Context,
    trigger: &Trigger,
    origin: Instant,
) -> anyhow::Result<(Sample, Vec<String>)> {
    let namespace = trigger.namespace().unwrap_or_default();
    let queue = trigger
        .status
        .as_ref()
        .and_then(|s| s.queue.as_ref())
        .filter(|q| q.broker == trigger.spec.broker);
    let stream = queue.map_or_else(
        || naming::queue_stream_name(&namespace, &trigger.spec.broker),
        |q| q.stream.clone(),
    );
    let name = naming::consumer_name(&trigger.name_any());
    // Getting the consumer is one CONSUMER.INFO request; its answer is the measurement.
    let consumer = ctx
        .jetstream
        .get_consumer_from_stream::<pull::Config, _, _>(&name, &stream)
        .await?;
    let info = consumer.cached_info();
    let mut subjects = info.config.filter_subjects.clone();
    if !info.config.filter_subject.is_empty() {
        subjects.push(info.config.filter_subject.clone());
    }
    if subjects.is_empty() {
        subjects.push(queue.map_or_else(
            || naming::queue_subject(&namespace, &trigger.spec.broker, &trigger.name_any()),
            |q| q.subject.clone(),
        ));
    }
    let sample = Sample {
        at: origin.elapsed(),
        pending: info.num_pending,
        ack_pending: u64::try_from(info.num_ack_pending).unwrap_or(u64::MAX),
        delivered_seq: info.delivered.consumer_sequence,
        ack_floor_seq: info.ack_floor.consumer_sequence,
    };
    Ok((sample, subjects))
}

/// One regular poll: measure, decide, act.
async fn poll(
    ctx: &Context,
    key: &str,
    entry: &mut Scaled,
    origin: Instant,
    wake: &mpsc::Sender<String>,
) -> anyhow::Result<()> {
    let (sample, subjects) = measure(ctx, &entry.trigger, origin).await?;
    entry.subjects = subjects;
    let scaler = Scaler::new(ctx, &entry.trigger);
    let mut current = scaler.current().await?;
    if let Some(ours) = entry.replicas.filter(|ours| *ours != current) {
        ctx.event(
            &*entry.trigger,
            EventType::Warning,
            "ReplicasOverridden",
            "Autoscale",
            format!(
                "replicas of Deployment {} were set to {current} outside Herald; Herald manages them from spec.consumer.scaling and set them back to {ours}",
                scaler.name
            ),
        )
        .await;
        scaler.set(ours).await?;
        current = ours;
    }
    entry.replicas = Some(current);
    ctx.set_decided_replicas(key, Some((current, true)));
    let decision = entry.state.decide(&entry.policy, current, sample);
    apply(ctx, key, entry, &scaler, current, decision).await?;
    // At zero, watch the Trigger's subjects so the first event activates it at once.
    if entry.replicas == Some(0) {
        if entry.activation.is_none() {
            entry.activation =
                Some(activation::Watch::start(ctx, key, &entry.subjects, wake.clone()).await?);
        }
    } else {
        entry.activation = None;
    }
    Ok(())
}

/// Fast activation after an event was seen for a Trigger at zero replicas.
async fn activate(ctx: &Context, key: &str, entry: &mut Scaled, origin: Instant) {
    if entry.replicas != Some(0) {
        return;
    }
    let seen = Instant::now();
    let scaler = Scaler::new(ctx, &entry.trigger);
    // The stream stores the event as the subscription receives it; give the consumer's
    // counters a moment to show it.
    for attempt in 0..5u32 {
        let sample = match measure(ctx, &entry.trigger, origin).await {
            Ok((sample, _)) => sample,
            Err(e) => {
                tracing::debug!(trigger = %key, error = %e, "activation: cannot read the consumer");
                return;
            }
        };
        if let Some(decision) = entry.state.activate(&entry.policy, 0, sample) {
            match apply(ctx, key, entry, &scaler, 0, decision).await {
                Ok(()) => {
                    entry.activation = None;
                    ctx.metrics.activation.observe(seen.elapsed().as_secs_f64());
                }
                Err(e) => tracing::warn!(trigger = %key, error = %e, "activation failed"),
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
    }
}

/// Acts on a decision: scale, Event, metrics, status.
async fn apply(
    ctx: &Context,
    key: &str,
    entry: &mut Scaled,
    scaler: &Scaler,
    current: i32,
    decision: Decision,
) -> anyhow::Result<()> {
    let trigger = entry.trigger.clone();
    let labels = [trigger.namespace().unwrap_or_default(), trigger.name_any()];
    let labels = [labels[0].as_str(), labels[1].as_str()];
    let backlog = i64::try_from(decision.backlog).unwrap_or(i64::MAX);
    ctx.metrics
        .desired_replicas
        .with_label_values(&labels)
        .set(i64::from(decision.desired));
    ctx.metrics.backlog.with_label_values(&labels).set(backlog);
    let mut status = entry.status.clone().unwrap_or_default();
    status.desired_replicas = Some(decision.desired);
    status.current_replicas = Some(current);
    if decision.desired != current {
        ctx.set_decided_replicas(key, Some((decision.desired, false)));
        scaler.set(decision.desired).await?;
        ctx.set_decided_replicas(key, Some((decision.desired, true)));
        entry.replicas = Some(decision.desired);
        status.current_replicas = Some(decision.desired);
        status.last_scale_time = Some(k8s_openapi::jiff::Timestamp::now().to_string());
        status.last_scale_reason = Some(decision.reason.as_str().to_owned());
        ctx.metrics
            .scalings
            .with_label_values(&[labels[0], labels[1], decision.reason.as_str()])
            .inc();
        let note = format!(
            "scaled {} from {current} to {} replicas: {} (backlog {}, arrivals {:.1}/s, processed {:.1}/s)",
            scaler.name,
            decision.desired,
            decision.reason.as_str(),
            decision.backlog,
            decision.arrival_rate,
            decision.processing_rate
        );
        tracing::info!(trigger = %key, "{note}");
        ctx.event(&*trigger, EventType::Normal, "Scaled", "Autoscale", note)
            .await;
    }
    if entry.status.as_ref() != Some(&status) || entry.backlog != Some(backlog) {
        let patch = herald_api::status_patch::<Trigger, _>(&TriggerStatus {
            autoscaling: Some(status.clone()),
            backlog: Some(backlog),
            ..TriggerStatus::default()
        });
        Api::<Trigger>::namespaced(ctx.client.clone(), labels[0])
            .patch_status(
                labels[1],
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        entry.status = Some(status);
        entry.backlog = Some(backlog);
    }
    Ok(())
}

/// The replicas of a Trigger's consumer Deployment: read from its scale
/// subresource, written with server-side apply as [`FIELD_MANAGER`].
pub(crate) struct Scaler {
    api: Api<Deployment>,
    name: String,
}

impl Scaler {
    fn new(ctx: &Context, trigger: &Trigger) -> Self {
        Self::of(ctx, &ObjectKey::of(trigger))
    }

    /// The Scaler of Trigger `key`'s consumer Deployment.
    pub(crate) fn of(ctx: &Context, key: &ObjectKey) -> Self {
        Scaler {
            api: key.api(ctx),
            name: naming::consumer_deployment_name(&key.name),
        }
    }

    async fn current(&self) -> kube::Result<i32> {
        let scale = self.api.get_scale(&self.name).await?;
        Ok(scale.spec.and_then(|s| s.replicas).unwrap_or(0))
    }

    /// Sets the replicas, taking ownership of them.
    pub(crate) async fn set(&self, replicas: i32) -> kube::Result<()> {
        let patch = serde_json::json!({
            "apiVersion": Deployment::api_version(&()),
            "kind": Deployment::kind(&()),
            "metadata": { "name": self.name },
            "spec": { "replicas": replicas },
        });
        self.api
            .patch(
                &self.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        Ok(())
    }

    /// Makes the autoscaler the owner of `deployment`'s replicas, keeping their value
    /// (`otherwise` when it has none), unless it already is: the reconcile calls this
    /// before it applies the Deployment without them, which would otherwise drop them
    /// back to the default of 1.
    pub(crate) async fn adopt(&self, deployment: &Deployment, otherwise: i32) -> kube::Result<()> {
        if owns_replicas(deployment) {
            return Ok(());
        }
        self.set(deployment.spec.replicas.unwrap_or(otherwise))
            .await
    }
}

/// Whether [`FIELD_MANAGER`] owns `spec.replicas` of `deployment` (by its managed fields).
fn owns_replicas(deployment: &Deployment) -> bool {
    deployment
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref() == Some(FIELD_MANAGER))
        .filter_map(|m| m.fields_v1.as_ref())
        .any(|f| f.0.pointer("/f:spec/f:replicas").is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_are_owned_by_the_autoscalers_field_manager_only() {
        let deployment = |manager: &str| -> Deployment {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "t-consumer", "managedFields": [{
                    "manager": manager, "operation": "Apply", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:replicas": {}}}
                }]}
            }))
            .unwrap()
        };
        assert!(owns_replicas(&deployment(FIELD_MANAGER)));
        assert!(!owns_replicas(&deployment(
            herald_api::field_manager::OPERATOR
        )));
        assert!(!owns_replicas(&Deployment::default()));
    }
}
