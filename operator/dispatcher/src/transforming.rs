//! Applying a Trigger's transform to an event, after filtering and right before the
//! first attempt, off the async workers (a jq program runs on its own thread for at
//! most its time budget, see [`herald_transform::run`]).

use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use herald_api::trigger::TransformSpec;
use herald_cloudevents::CloudEvent;
use herald_transform::{RunError, Transform};

use crate::deliver::{Attempt, Deliverer, ack};
use crate::desired::TriggerDelivery;
use crate::metrics::Outcome;

/// Makes jq programs of transforms run in worker processes of this same binary
/// (`herald transform worker`, one per core), so a runaway one can be killed (see
/// [`herald_transform::worker`]). Called once, at start-up.
pub fn install_workers() {
    match std::env::current_exe() {
        Ok(exe) => herald_transform::worker::install(
            exe,
            vec!["transform".into(), "worker".into()],
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
        ),
        Err(e) => tracing::warn!(error = %e, "transforms run in-process: cannot find this binary"),
    }
}

/// What to deliver.
pub enum Transformed {
    /// The event as it is (no transform).
    AsIs,
    /// The transformed event.
    New(CloudEvent),
    /// Nothing: the message was settled (dead-lettered, dropped or postponed).
    Settled,
}

impl Deliverer {
    /// Applies the Trigger's transform to `event`, attempt `number`. The subscriber gets
    /// the transformed event, each retry the same one (the stored original is
    /// transformed again). A failure is final: the original is dead-lettered or
    /// dropped, not retried. Busy workers say nothing about the event: it is
    /// postponed.
    pub(crate) async fn transform(
        &self,
        plan: &TriggerDelivery,
        msg: &jetstream::Message,
        event: &CloudEvent,
        number: u32,
    ) -> Transformed {
        let outcome = |o| self.metrics.outcome(&plan.namespace, &plan.trigger, o);
        match apply(plan.transform.as_ref(), event).await {
            Ok(None) => Transformed::AsIs,
            Ok(Some(e)) => Transformed::New(e),
            Err(e) if e.is_transient() => {
                tracing::debug!(trigger = %plan.trigger, id = event.id(), error = %e, "transform postponed");
                ack(msg, AckKind::Nak(Some(Duration::from_secs(1)))).await;
                outcome(Outcome::Retried);
                Transformed::Settled
            }
            Err(e) => {
                outcome(Outcome::TransformFailed);
                let failed = Attempt::Untransformable(e);
                self.give_up(plan, msg, event, &failed, number).await;
                Transformed::Settled
            }
        }
    }
}

/// A Trigger's compiled transform, with the spec it came from: two are the
/// same when their specs are (a compiled program cannot be compared).
#[derive(Debug, Clone)]
pub struct CompiledTransform {
    /// What the Trigger says.
    pub spec: TransformSpec,
    /// What runs.
    pub transform: Transform,
}

impl PartialEq for CompiledTransform {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
    }
}

impl CompiledTransform {
    /// Compiles `spec`: `Ok(None)` without a transform, `Err` with the compiler's
    /// message (which the operator reports as `TransformValid`).
    pub fn compile(
        spec: Option<&TransformSpec>,
    ) -> Result<Option<CompiledTransform>, herald_transform::TransformError> {
        let Some(spec) = spec else {
            return Ok(None);
        };
        let (jq, template) = spec.parts();
        Ok(
            Transform::from_parts(jq, template)?.map(|transform| CompiledTransform {
                spec: spec.clone(),
                transform,
            }),
        )
    }
}

/// The event to deliver: `Ok(None)` to deliver `event` as it is (no transform).
pub async fn apply(
    planned: Option<&CompiledTransform>,
    event: &CloudEvent,
) -> Result<Option<CloudEvent>, RunError> {
    let Some(planned) = planned else {
        return Ok(None);
    };
    let transform = planned.transform.clone();
    let event = event.clone();
    tokio::task::spawn_blocking(move || transform.apply(&event))
        .await
        .map_err(|e| RunError::Thread(e.to_string()))?
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_transform_delivers_the_event_as_it_is() {
        let event = CloudEvent::new("1", "/s", "t");
        assert_eq!(apply(None, &event).await.unwrap(), None);
        let spec: TransformSpec = serde_json::from_str(r#"{"jq": ".type = \"u\""}"#).unwrap();
        let planned = CompiledTransform::compile(Some(&spec)).unwrap().unwrap();
        let out = apply(Some(&planned), &event).await.unwrap().unwrap();
        assert_eq!(out.type_(), "u");
        let bad: TransformSpec = serde_json::from_str(r#"{"jq": ".type ="}"#).unwrap();
        assert!(CompiledTransform::compile(Some(&bad)).is_err());
    }
}
