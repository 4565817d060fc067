//! The EventSource controller: checks the spec (exactly one kind, a valid schedule,
//! valid extension names), resolves the sink, and writes `SinkResolved`, `Deployed`
//! and `Ready` plus `sinkUri` (and `webhookUrl` for webhooks). `cron`, `webhook` and
//! `nats` sources run in the shared adapter (`herald sources`), which picks up every
//! Ready EventSource; a `sinkBinding` injects the sink into the user's Deployments
//! ([`binding`]); a `kubernetes` source gets a Deployment of its own, as the user's
//! ServiceAccount ([`kubernetes`]). A finalizer unbinds Deployments when a binding goes
//! away.

pub mod binding;
pub mod kubernetes;
pub mod status;
pub mod validate;

use std::time::Duration;

use herald_api::conditions::{self, ConditionType as Type, Conditioned, Readiness};
use herald_api::{Broker, EventSource};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::context::Context;
use crate::error::Error;
use crate::reconcile::{ObjectKey, Reconciled, write_status};
use crate::trigger::resolve;
pub use status::{Observed, build_status, desired_conditions};
pub use validate::{Runner, validate, validate_source};

/// Re-checks the sink now and then (a Service's port may change).
const RESYNC: Duration = Duration::from_secs(60);

/// Re-checks a source that is not Ready sooner: what it waits for (an adapter's
/// `RoleBinding`, a sink Service) is not watched, and a user who just applied a Role
/// with their source should not wait a minute for the apiserver's RBAC cache.
const NOT_READY_RESYNC: Duration = Duration::from_secs(10);

/// Finalizer held so that bound Deployments are unbound when the EventSource goes.
pub const FINALIZER: &str = "eventing.herald.dev/sinkbinding";

/// EventSources whose sink is `broker`, for the watch mapping.
#[must_use]
pub fn sources_of(store: &Store<EventSource>, broker: &Broker) -> Vec<ObjectRef<EventSource>> {
    let (namespace, name) = (broker.namespace(), broker.name_any());
    store
        .state()
        .iter()
        .filter(|s| {
            s.spec.sink.reference.as_ref().is_some_and(|r| {
                r.kind == "Broker"
                    && r.name == name
                    && r.namespace.clone().or_else(|| s.namespace()) == namespace
            })
        })
        .map(|s| ObjectRef::from_obj(&**s))
        .collect()
}

impl Reconciled for EventSource {
    const KIND: &'static str = "EventSource";
    const FINALIZER: &'static str = FINALIZER;

    async fn apply(&self, key: &ObjectKey, ctx: &Context) -> Result<Action, Error> {
        let source = self;
        let (namespace, name) = (&key.namespace, &key.name);
        let sink = resolve::resolve(&ctx.client, namespace, &source.spec.sink).await;
        let runner = validate_source(source, key, &ctx.shared_nats).map_err(Error::InvalidSource);
        let previously = bound_now(source);
        let bound = if let (Some(b), Ok(Runner::Binding), Ok(uri)) =
            (&source.spec.sink_binding, &runner, &sink)
        {
            let extensions = source.spec.ce_overrides.as_ref().map(|o| &o.extensions);
            Some(
                binding::bind(&ctx.client, namespace, b, uri, extensions, &previously)
                    .await
                    .map_err(|e| format!("cannot bind Deployments: {e}")),
            )
        } else {
            // Not (or no longer) a working binding: take back what was injected.
            if !previously.is_empty() {
                binding::unbind(&ctx.client, namespace, &previously).await?;
            }
            None
        };
        let adapter = match (&source.spec.kubernetes, &runner, &sink) {
            (Some(spec), Ok(Runner::Kubernetes), Ok(uri)) => Some(
                kubernetes::ensure(&ctx.client, source, spec, uri, &ctx.workload.sidecar_image)
                    .await?,
            ),
            _ => None,
        };
        let observed = Observed {
            runner,
            sink,
            bound,
            adapter,
            previously_bound: previously,
        };
        let webhook_url = source.spec.webhook.as_ref().map(|_| {
            format!(
                "{}/{namespace}/{name}",
                ctx.sources_url.trim_end_matches('/')
            )
        });
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let status = build_status(source, &observed, webhook_url, &now);
        write_status::<EventSource, _>(key, &status, ctx).await?;
        let was_ready = matches!(source.readiness(), Readiness::Ready(_));
        let ready = conditions::find(&status.conditions, Type::Ready);
        if let Some(ready) = ready.filter(|r| r.is_true() != was_ready) {
            let (kind, reason) = if ready.is_true() {
                (EventType::Normal, "SourceReady")
            } else {
                (EventType::Warning, ready.reason.as_str())
            };
            ctx.event(
                source,
                kind,
                reason,
                "ReconcileSource",
                ready.message.clone(),
            )
            .await;
        }
        let is_ready = ready.is_some_and(herald_api::Condition::is_true);
        Ok(Action::requeue(if is_ready {
            RESYNC
        } else {
            NOT_READY_RESYNC
        }))
    }

    async fn cleanup(&self, key: &ObjectKey, ctx: &Context) -> Result<Action, Error> {
        let source = self;
        let bound = bound_now(source);
        if !bound.is_empty() {
            binding::unbind(&ctx.client, &key.namespace, &bound).await?;
            ctx.event(
                source,
                EventType::Normal,
                "Unbound",
                "DeleteSource",
                format!("removed K_SINK from Deployment(s) {}", bound.join(", ")),
            )
            .await;
        }
        Ok(Action::await_change())
    }
}

fn bound_now(source: &EventSource) -> Vec<String> {
    source
        .status
        .as_ref()
        .map(|s| s.bound_deployments.clone())
        .unwrap_or_default()
}
