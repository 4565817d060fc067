//! The shape every controller shares: one finalizer, one error policy, one key.
//!
//! A controller implements [`Reconciled`] for its kind (its name, its finalizer, and
//! `apply` and `cleanup`), and hands [`reconcile`] and [`error_policy`] to kube's
//! `Controller::run`. [`reconcile`] times the run, wraps `apply` / `cleanup` in kube's
//! finalizer helper (so the object leaves the API only after `cleanup` succeeded),
//! and forgets earlier failures when it succeeds; [`error_policy`] counts the failure
//! under its reason and retries with per-object backoff. See docs/architecture.md,
//! "How a controller is shaped", for the phases inside `apply`.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use kube::api::{Patch, PatchParams};
use kube::core::NamespaceResourceScope;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, Event};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::context::Context;
use crate::error::{Error, retry_delay};

/// Namespace and name of the object being reconciled, derived once per reconcile.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    /// The object's namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
}

impl ObjectKey {
    /// The key of `obj`.
    #[must_use]
    pub fn of(obj: &impl ResourceExt) -> Self {
        Self {
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
        }
    }

    /// An API for `K` in this object's namespace.
    #[must_use]
    pub fn api<K>(&self, ctx: &Context) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
    {
        Api::namespaced(ctx.client.clone(), &self.namespace)
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A kind one of Herald's controllers reconciles.
pub trait Reconciled:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// The kind, as metrics and logs name it.
    const KIND: &'static str;
    /// The finalizer held while the object has something outside the API to remove.
    const FINALIZER: &'static str;

    /// Makes the world match the object and writes its status.
    fn apply(
        &self,
        key: &ObjectKey,
        ctx: &Context,
    ) -> impl Future<Output = Result<Action, Error>> + Send;

    /// Removes what `apply` made, before the object may go.
    fn cleanup(
        &self,
        key: &ObjectKey,
        ctx: &Context,
    ) -> impl Future<Output = Result<Action, Error>> + Send;
}

/// Reconciles one object of kind `K`: `apply` while it lives, `cleanup` once it is
/// being deleted, with `K::FINALIZER` held in between.
pub async fn reconcile<K: Reconciled>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = ObjectKey::of(&*obj);
    let span = tracing::info_span!(
        "reconcile",
        kind = K::KIND,
        namespace = %key.namespace,
        name = %key.name
    );
    async move {
        let _timer = ctx.metrics.reconcile(K::KIND);
        let api: Api<K> = key.api(&ctx);
        let obj_ref = ObjectRef::from_obj(&*obj);
        let result = finalizer::finalizer(&api, K::FINALIZER, obj, |event| async {
            match event {
                Event::Apply(obj) => obj.apply(&key, &ctx).await,
                Event::Cleanup(obj) => obj.cleanup(&key, &ctx).await,
            }
        })
        .await
        .map_err(Error::from);
        if result.is_ok() {
            ctx.record_success(&obj_ref);
        }
        result
    }
    .instrument(span)
    .await
}

/// Requeues a failed reconcile of `K` with per-object exponential backoff, counting
/// the failure under its reason.
#[allow(clippy::needless_pass_by_value)] // signature required by `Controller::run`
pub fn error_policy<K: Reconciled>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let failures = ctx.record_failure(&ObjectRef::from_obj(&*obj));
    let reason = error.reason();
    ctx.metrics.failure(K::KIND, reason.as_str());
    let delay = retry_delay(failures);
    tracing::warn!(
        kind = K::KIND,
        object = %ObjectKey::of(&*obj),
        %reason,
        %error,
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// Writes `status` as `K`'s status with server-side apply, as the operator's field
/// manager (apiVersion and kind come from the type).
pub async fn write_status<K, S>(key: &ObjectKey, status: &S, ctx: &Context) -> Result<(), Error>
where
    K: Reconciled,
    S: Serialize,
{
    let patch = herald_api::status_patch::<K, _>(status);
    key.api::<K>(ctx)
        .patch_status(
            &key.name,
            &PatchParams::apply(herald_api::OPERATOR_FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}
