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
pub mod stream;

#[cfg(test)]
mod reconcile_tests;

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind};
use async_nats::jetstream::stream::Config;
use herald_api::auth::BrokerAuthStatus;
use herald_api::common::Addressable;
use herald_api::conditions::{self, Condition, ConditionStatus, ConditionType, Reason};
use herald_api::{BROKER_FINALIZER, Broker, BrokerStatus, naming};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use crate::context::Context;
use crate::error::Error;
use crate::reconcile::{ObjectKey, Reconciled, write_status};

/// Safety-net resync of a healthy Broker.
const RESYNC: Duration = Duration::from_secs(300);
/// Resync of a Broker with a static bearer token, which picks up a rotated Secret.
const BEARER_TOKEN_RESYNC: Duration = Duration::from_secs(30);

impl Reconciled for Broker {
    const KIND: &'static str = "Broker";
    const FINALIZER: &'static str = BROKER_FINALIZER;

    fn apply(
        &self,
        key: &ObjectKey,
        ctx: &Context,
    ) -> impl Future<Output = Result<Action, Error>> + Send {
        apply(self, key, ctx)
    }

    fn cleanup(
        &self,
        key: &ObjectKey,
        ctx: &Context,
    ) -> impl Future<Output = Result<Action, Error>> + Send {
        cleanup(self, key, ctx)
    }
}

async fn apply(broker: &Broker, key: &ObjectKey, ctx: &Context) -> Result<Action, Error> {
    let url = address_url(&ctx.ingress_url, &key.namespace, &key.name);
    // The Broker is Ready only once its events can also be routed to Triggers.
    let stream = match ensure_stream(broker, ctx).await {
        Ok(change) => queue::ensure(broker, change.config(), ctx)
            .await
            .map(|()| change),
        Err(e) => Err(e),
    };
    let auth = auth::resolve(broker, &url, ctx).await;
    let previous = broker.status.clone().unwrap_or_default();
    let status = build_status(broker, &previous, &stream, &auth, &url, &now());
    write_status::<Broker, _>(key, &status, ctx).await?;

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
    if was_ready != Some((ConditionStatus::False, error.reason().as_str().to_owned())) {
        ctx.event(
            broker,
            EventType::Warning,
            error.reason().as_str(),
            "Reconcile",
            error.to_string(),
        )
        .await;
    }
    if error.is_transient() {
        Err(error)
    } else {
        // A spec problem: retrying cannot help; the next spec change triggers a reconcile.
        ctx.metrics.failure(Broker::KIND, error.reason().as_str());
        Ok(Action::requeue(RESYNC))
    }
}

/// Where producers send events for Broker `namespace/name`.
fn address_url(ingress_url: &str, namespace: &str, name: &str) -> String {
    format!("{}/{namespace}/{name}", ingress_url.trim_end_matches('/'))
}

/// What `ensure_stream` did.
enum StreamChange {
    Created(Config),
    Updated(Config),
    Unchanged(Config),
}

impl StreamChange {
    fn config(&self) -> &Config {
        match self {
            Self::Created(c) | Self::Updated(c) | Self::Unchanged(c) => c,
        }
    }

    fn event(&self) -> Option<(&'static str, String)> {
        match self {
            Self::Created(c) => Some(("StreamCreated", format!("created {}", stream::describe(c)))),
            Self::Updated(c) => Some(("StreamUpdated", format!("updated {}", stream::describe(c)))),
            Self::Unchanged(_) => None,
        }
    }
}

async fn ensure_stream(broker: &Broker, ctx: &Context) -> Result<StreamChange, Error> {
    let desired = stream::desired_config(broker, ctx.stream_ceilings)?;
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

async fn cleanup(broker: &Broker, key: &ObjectKey, ctx: &Context) -> Result<Action, Error> {
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

/// The Broker's status after a reconcile with these outcomes (pure).
fn build_status(
    broker: &Broker,
    previous: &BrokerStatus,
    stream: &Result<StreamChange, Error>,
    auth: &Result<BrokerAuthStatus, Error>,
    url: &str,
    now: &str,
) -> BrokerStatus {
    let namespace = broker.namespace().unwrap_or_default();
    let name = broker.name_any();
    let stream_ready = match stream {
        Ok(change) => Condition::new(
            ConditionType::StreamReady,
            ConditionStatus::True,
            Reason::StreamReady,
            stream::describe(change.config()),
        ),
        Err(e) => Condition::new(
            ConditionType::StreamReady,
            ConditionStatus::False,
            e.reason(),
            e.to_string(),
        ),
    };
    let ready = match (stream, auth) {
        (Err(e), _) | (Ok(_), Err(e)) => Condition::new(
            ConditionType::Ready,
            ConditionStatus::False,
            e.reason(),
            e.to_string(),
        ),
        (Ok(_), Ok(_)) => Condition::new(
            ConditionType::Ready,
            ConditionStatus::True,
            Reason::Ready,
            "accepting events",
        ),
    };
    BrokerStatus {
        observed_generation: broker.metadata.generation,
        conditions: conditions::merge(
            &previous.conditions,
            vec![stream_ready, ready],
            now,
            broker.metadata.generation,
        ),
        address: Some(Addressable {
            url: url.to_owned(),
        }),
        stream_name: Some(naming::stream_name(&namespace, &name)),
        subjects: naming::stream_subjects(&namespace, &name),
        auth: match auth {
            Ok(resolved) => Some(resolved.clone()),
            // The operator's own API trouble: the ingress goes on serving the Broker
            // (see `conditions::served`), with the policy it had.
            Err(Error::Kube(_)) => previous.auth.clone(),
            Err(_) => None,
        },
    }
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_api::BrokerSpec;
    use herald_api::broker::condition;

    fn broker() -> Broker {
        let mut b = Broker::new("default", BrokerSpec::default());
        b.metadata.namespace = Some("team".into());
        b.metadata.generation = Some(3);
        b
    }

    fn created() -> StreamChange {
        StreamChange::Created(
            stream::desired_config(&broker(), stream::StreamCeilings::default()).unwrap(),
        )
    }

    fn open() -> BrokerAuthStatus {
        BrokerAuthStatus {
            policy: herald_api::auth::OPEN_POLICY.into(),
            ..BrokerAuthStatus::default()
        }
    }

    #[test]
    fn ready_status_has_address_stream_and_policy() {
        let url = address_url("http://ingress/", "team", "default");
        let status = build_status(
            &broker(),
            &BrokerStatus::default(),
            &Ok(created()),
            &Ok(open()),
            &url,
            "t0",
        );
        assert_eq!(status.address.unwrap().url, "http://ingress/team/default");
        assert_eq!(status.stream_name.as_deref(), Some("HERALD_team_default"));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.auth.unwrap().policy, "Open");
        let ready = conditions::find(&status.conditions, condition::READY).unwrap();
        assert!(ready.is_true());
    }

    #[test]
    fn failure_status_names_the_reason() {
        let status = build_status(
            &broker(),
            &BrokerStatus::default(),
            &Err(Error::nats_down("connection refused")),
            &Ok(open()),
            "http://ingress/team/default",
            "t0",
        );
        for c in &status.conditions {
            assert_eq!(c.status, ConditionStatus::False);
            assert_eq!(c.reason, "NatsUnavailable");
            assert!(c.message.contains("connection refused"));
        }
    }

    #[test]
    fn auth_failure_keeps_the_stream_ready_but_not_the_broker() {
        let status = build_status(
            &broker(),
            &BrokerStatus::default(),
            &Ok(created()),
            &Err(Error::BearerTokenUnavailable(
                "Secret team/t does not exist".into(),
            )),
            "http://ingress/team/default",
            "t0",
        );
        let stream_ready = conditions::find(&status.conditions, condition::STREAM_READY).unwrap();
        assert!(stream_ready.is_true());
        let ready = conditions::find(&status.conditions, condition::READY).unwrap();
        assert_eq!(ready.status, ConditionStatus::False);
        assert_eq!(ready.reason, "BearerTokenUnavailable");
        assert!(
            ready.message.contains("does not exist"),
            "{}",
            ready.message
        );
        assert_eq!(status.auth, None);
    }

    #[test]
    fn the_operator_s_own_api_trouble_keeps_the_policy_and_the_broker_served() {
        let mut previous = build_status(
            &broker(),
            &BrokerStatus::default(),
            &Ok(created()),
            &Ok(open()),
            "http://ingress/team/default",
            "t0",
        );
        previous.auth.as_mut().unwrap().bearer_token_sha256 = Some("abc".into());
        let timeout = kube::core::Status::failure("etcdserver: request timed out", "InternalError")
            .with_code(500);
        let status = build_status(
            &broker(),
            &previous,
            &Ok(created()),
            &Err(Error::Kube(kube::Error::Api(Box::new(timeout)))),
            "http://ingress/team/default",
            "t1",
        );
        assert_eq!(status.auth, previous.auth, "the last policy stays in force");
        let ready = conditions::find(&status.conditions, condition::READY).unwrap();
        assert_eq!(ready.reason, "KubernetesError");
        assert_eq!(conditions::served(&status.conditions), Ok(()));
    }
}
