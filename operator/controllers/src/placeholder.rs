//! Controllers for kinds whose behaviour is not built yet (EventSources). They never pretend to work: each object gets `Ready=False` with
//! reason `NotImplemented` and a message saying so.

use std::sync::Arc;
use std::time::Duration;

use herald_api::conditions::{self, Condition, ConditionStatus};
use herald_api::{EventSource, OPERATOR_FIELD_MANAGER};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::context::Context;
use crate::error::{Error, retry_delay};

/// A kind handled by a placeholder controller.
pub trait NotBuiltYet:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
{
    /// The kind, for metrics and the status patch.
    const KIND: &'static str;
    /// What is missing, for the condition message.
    const MESSAGE: &'static str;
    /// The current conditions.
    fn conditions(&self) -> &[Condition];
}

impl NotBuiltYet for EventSource {
    const KIND: &'static str = "EventSource";
    const MESSAGE: &'static str = "Herald does not run EventSource adapters yet; this EventSource is stored but emits nothing";
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions)
    }
}

/// Writes the `NotImplemented` status.
pub async fn reconcile<K: NotBuiltYet>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile(K::KIND);
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let generation = obj.meta().generation;
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let desired = vec![Condition::new(
        "Ready",
        ConditionStatus::False,
        "NotImplemented",
        K::MESSAGE,
    )];
    let patch = serde_json::json!({
        "apiVersion": "eventing.herald.dev/v1alpha1",
        "kind": K::KIND,
        "status": {
            "observedGeneration": generation,
            "conditions": conditions::merge(obj.conditions(), desired, &now, generation),
        },
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(OPERATOR_FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(Action::await_change())
}

/// Retries a failed status write.
#[allow(clippy::needless_pass_by_value)] // signature required by `Controller::run`
pub fn error_policy<K: NotBuiltYet>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failure(K::KIND, error.reason());
    let failures = ctx.record_failure(&kube::runtime::reflector::ObjectRef::from_obj(&*obj));
    tracing::warn!(kind = K::KIND, name = %obj.name_any(), %error, "status write failed");
    Action::requeue(retry_delay(failures).max(Duration::from_secs(1)))
}
