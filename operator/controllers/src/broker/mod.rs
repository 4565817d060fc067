//! The Broker controller: one JetStream stream per Broker.
//!
//! [`crate::reconcile`] wraps `apply` / `cleanup` in the finalizer, so a Broker is
//! only removed from the API after its stream is gone. `apply` builds the desired
//! stream purely ([`stream::desired_config`]), makes JetStream match it, and writes
//! the outcome to the status (`Ready` + `StreamReady`) with server-side apply. Spec
//! problems become a condition and wait for a change; NATS trouble is retried with
//! backoff and healed as soon as NATS reconnects.

pub mod auth;
pub mod queue;
mod status;
pub mod stream;

#[cfg(test)]
mod reconcile_tests;

use std::time::Duration;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind};
use async_nats::jetstream::stream::Config;
use herald_api::conditions::{self, ConditionStatus, ConditionType};
use herald_api::{BROKER_FINALIZER, Broker, naming};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use crate::context::Context;
use crate::error::Error;
use crate::reconcile::{ObjectKey, Reconciled, write_status};
use status::{StreamChange, address_url, build_status, now};

/// Safety-net resync of a healthy Broker.
const RESYNC: Duration = Duration::from_secs(300);
/// Resync of a Broker with a static bearer token, which picks up a rotated Secret.
const BEARER_TOKEN_RESYNC: Duration = Duration::from_secs(30);

impl Reconciled for Broker {
    const KIND: &'static str = "Broker";
    const FINALIZER: &'static str = BROKER_FINALIZER;

    /// Reconciles a living Broker, phase by phase: build the stream its spec asks for
    /// (pure, and the spec's validation), make JetStream match it and route its events to
    /// the Triggers' queues, read the sender policy, then build the status (pure), write
    /// it, and tell what changed.
    async fn apply(&self, key: &ObjectKey, ctx: &Context) -> Result<Action, Error> {
        let broker = self;
        let desired = stream::desired_config(broker, ctx.stream_ceilings);
        let url = address_url(&ctx.ingress_url, &key.namespace, &key.name);
        // The Broker is Ready only once its events can also be routed to Triggers.
        let stream = match desired {
            Ok(desired) => match ensure_stream(desired, ctx).await {
                Ok(change) => queue::ensure(broker, key, change.config(), ctx)
                    .await
                    .map(|()| change),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let auth = auth::resolve(broker, &url, ctx).await;
        let previous = broker.status.clone().unwrap_or_default();
        let status = build_status(broker, key, &previous, &stream, &auth, &url, &now());
        write_status::<Broker, _>(key, &status, ctx).await?;
        report(broker, &previous, stream, auth, ctx).await
    }

    async fn cleanup(&self, key: &ObjectKey, ctx: &Context) -> Result<Action, Error> {
        let broker = self;
        let namespace = &key.namespace;
        let name = naming::stream_name(namespace, &key.name);
        if !ctx.nats.is_connected() {
            return Err(Error::nats_down(format!(
                "cannot delete stream {name}: not connected"
            )));
        }
        // The queue streams first: they are named after the Broker, never the other way
        // round. Later shards before the first, so a retry after a failure finds the rest.
        let broker_name = &key.name;
        for shard in queue::later_shards(namespace, broker_name, ctx)
            .await?
            .into_iter()
            .rev()
        {
            delete_owned_stream(
                &naming::queue_shard_stream_name(namespace, broker_name, shard),
                key,
                ctx,
            )
            .await?;
        }
        delete_owned_stream(&naming::queue_stream_name(namespace, broker_name), key, ctx).await?;
        if delete_owned_stream(&name, key, ctx).await? {
            ctx.event(
                broker,
                EventType::Normal,
                "StreamDeleted",
                "DeleteStream",
                format!("deleted stream {name}"),
            )
            .await;
        }
        Ok(Action::await_change())
    }
}

/// Tells what the reconcile changed or found wrong (an Event when the Broker turns
/// not Ready, or for another reason), and what happens next.
async fn report(
    broker: &Broker,
    previous: &herald_api::BrokerStatus,
    stream: Result<StreamChange, Error>,
    auth: Result<herald_api::auth::BrokerAuthStatus, Error>,
    ctx: &Context,
) -> Result<Action, Error> {
    if let Ok(change) = &stream
        && let Some((reason, note)) = change.event()
    {
        ctx.event(broker, EventType::Normal, reason, "ReconcileStream", note)
            .await;
    }
    let was_ready = conditions::find(&previous.conditions, ConditionType::Ready)
        .map(|c| (c.status, c.reason.clone()));
    let error = match (stream, auth) {
        (Err(e), _) | (Ok(_), Err(e)) => e,
        (Ok(_), Ok(auth)) if auth.bearer_token_sha256.is_some() => {
            // The token Secret is not watched: look again soon so a rotation lands.
            return Ok(Action::requeue(BEARER_TOKEN_RESYNC));
        }
        (Ok(_), Ok(_)) => return Ok(Action::requeue(RESYNC)),
    };
    let reason = error.reason();
    if was_ready != Some((ConditionStatus::False, reason.as_str().to_owned())) {
        ctx.event(
            broker,
            EventType::Warning,
            reason.as_str(),
            "Reconcile",
            error.to_string(),
        )
        .await;
    }
    if error.is_transient() {
        Err(error)
    } else {
        // A spec problem: retrying cannot help; the next spec change triggers a reconcile.
        ctx.metrics.failure(Broker::KIND, reason.as_str());
        Ok(Action::requeue(RESYNC))
    }
}

/// Makes JetStream hold the `desired` stream.
async fn ensure_stream(desired: Config, ctx: &Context) -> Result<StreamChange, Error> {
    if !ctx.nats.is_connected() {
        return Err(Error::nats_down("not connected to any NATS server"));
    }
    apply_stream(desired, ctx).await
}

/// Creates `desired`, or updates the stream of that name in place if it is this
/// Broker's (by its owner metadata) and differs in a field Herald manages.
async fn apply_stream(desired: Config, ctx: &Context) -> Result<StreamChange, Error> {
    match ctx.jetstream.get_stream(&desired.name).await {
        Ok(mut existing) => {
            let existing = existing
                .info()
                .await
                .map_err(|e| Error::nats("", e))?
                .config
                .clone();
            stream::check_owned(&existing, &desired)?;
            let changes = stream::immutable_changes(&existing, &desired);
            if !changes.is_empty() {
                return Err(Error::ImmutableStreamChange {
                    stream: desired.name,
                    changes: changes.join(", "),
                });
            }
            if !stream::needs_update(&existing, &desired) {
                return Ok(StreamChange::Unchanged(desired));
            }
            ctx.jetstream
                .update_stream(&desired)
                .await
                .map_err(|e| create_error(&desired.name, e))?;
            Ok(StreamChange::Updated(desired))
        }
        Err(e) if is_not_found(&e) => {
            ctx.jetstream
                .create_stream(desired.clone())
                .await
                .map_err(|e| create_error(&desired.name, e))?;
            Ok(StreamChange::Created(desired))
        }
        Err(e) => Err(Error::nats(
            format!("cannot read stream {}", desired.name),
            e,
        )),
    }
}

/// Deletes stream `name` if Herald created it for the Broker `key`; `Ok(false)` when there is
/// none, or when it is not the Broker's (never deleted, only logged).
async fn delete_owned_stream(name: &str, key: &ObjectKey, ctx: &Context) -> Result<bool, Error> {
    let owner = stream::owner_value(&key.namespace, &key.name);
    match ctx.jetstream.get_stream(name).await {
        Ok(mut existing) => {
            let info = existing.info().await.map_err(|e| Error::nats("", e))?;
            if info.config.metadata.get(stream::OWNER_KEY) != Some(&owner) {
                tracing::warn!(stream = %name, "stream is not owned by this Broker; leaving it");
                return Ok(false);
            }
            ctx.jetstream
                .delete_stream(name)
                .await
                .map_err(|e| Error::nats(format!("cannot delete stream {name}"), e))?;
            Ok(true)
        }
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(Error::nats(format!("cannot read stream {name}"), e)),
    }
}

pub(crate) fn is_not_found(e: &async_nats::jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), GetStreamErrorKind::JetStream(js) if js.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

fn create_error(stream: &str, e: async_nats::jetstream::context::CreateStreamError) -> Error {
    match e.kind() {
        // No suitable peers for placement, or replicas on a single server.
        CreateStreamErrorKind::JetStream(js)
            if matches!(
                js.error_code(),
                ErrorCode::CLUSTER_NO_PEERS | ErrorCode::STREAM_REPLICAS_NOT_SUPPORTED
            ) =>
        {
            Error::ReplicasUnplaceable {
                stream: stream.to_owned(),
                message: js.to_string(),
            }
        }
        CreateStreamErrorKind::JetStream(js) => Error::StreamRejected {
            stream: stream.to_owned(),
            message: js.to_string(),
        },
        CreateStreamErrorKind::JetStreamUnavailable => {
            Error::nats_down("JetStream is not enabled on the NATS server")
        }
        _ => Error::nats("", e),
    }
}
