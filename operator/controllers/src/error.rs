//! What can go wrong in a reconcile, and what each failure means for the user
//! (a condition reason) and for the controller (retry soon, or wait for a change).

use std::time::Duration;

use herald_api::conditions::Reason;

/// A reconcile failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// NATS or JetStream cannot be reached; retried with backoff.
    #[error("NATS is unavailable: {}", with_source(what, source.as_deref()))]
    NatsUnavailable {
        /// What could not be done, e.g. `cannot read stream S`.
        what: String,
        /// The client's error, when there is one.
        #[source]
        source: Option<Source>,
    },
    /// The spec holds a value Herald cannot use; waits for the user to fix it.
    #[error("{0}")]
    InvalidSpec(String),
    /// A stream with the Broker's name exists but Herald did not create it.
    #[error(
        "stream {stream} exists but was not created by Herald for this Broker ({found}); Herald leaves it alone: delete or rename it, or rename the Broker"
    )]
    StreamNotOwned {
        /// Stream name.
        stream: String,
        /// What marks the stream, for the message.
        found: String,
    },
    /// A consumer with the Trigger's name exists but Herald did not create it for this Trigger.
    #[error(
        "consumer {consumer} on stream {stream} was not created by Herald for this Trigger; Herald leaves it alone: delete it or rename the Trigger"
    )]
    ConsumerNotOwned {
        /// Stream name.
        stream: String,
        /// Consumer name.
        consumer: String,
    },
    /// The spec asks for a stream change JetStream cannot make in place.
    #[error(
        "stream {stream} cannot change in place: {changes}; the stream was left as it is (delete and recreate the Broker to apply this, which drops its events)"
    )]
    ImmutableStreamChange {
        /// Stream name.
        stream: String,
        /// The fields that would change, e.g. `storage file -> memory`.
        changes: String,
    },
    /// JetStream refused the stream configuration.
    #[error("JetStream rejected the configuration of stream {stream}: {message}")]
    StreamRejected {
        /// Stream name.
        stream: String,
        /// JetStream's explanation.
        message: String,
    },
    /// `spec.consumer` cannot be turned into a Deployment; waits for a fix.
    #[error("{0}")]
    InvalidConsumer(#[source] crate::trigger::deployment::ConsumerError),
    /// An EventSource's spec cannot be run; waits for a fix.
    #[error("{0}")]
    InvalidSource(#[source] crate::source::validate::SourceSpecError),
    /// A Broker's `spec.auth` cannot be enforced; waits for a fix.
    #[error("{0}")]
    InvalidAuth(#[source] herald_api::auth::AuthError),
    /// A Trigger's filters do not compile; waits for a fix.
    #[error("{0}")]
    InvalidFilter(#[source] herald_filter::FilterError),
    /// A Trigger's transform does not compile; waits for a fix.
    #[error("{0}")]
    InvalidTransform(#[source] herald_transform::TransformError),
    /// A Trigger's `job` cannot run; waits for a fix.
    #[error("{0}")]
    InvalidJob(#[source] herald_api::job::JobError),
    /// A Trigger's effective delivery policy has a bad field; waits for a fix.
    #[error("{0}")]
    InvalidDelivery(#[source] herald_api::delivery::DeliveryError),
    /// The apiserver refused the consumer Deployment (e.g. an invalid pod template).
    #[error("the consumer Deployment was rejected: {0}")]
    DeploymentRejected(String),
    /// A Deployment with the consumer Deployment's name exists and is not this Trigger's.
    #[error(
        "Deployment {0} exists but does not belong to this Trigger; Herald leaves it alone: delete or rename it, or rename the Trigger"
    )]
    DeploymentNotOwned(String),
    /// The NATS servers cannot hold as many copies of the stream as the Broker asks.
    #[error(
        "the NATS servers cannot place the replicas of stream {stream} ({message}); lower spec.stream.replicas or add JetStream servers"
    )]
    ReplicasUnplaceable {
        /// Stream name.
        stream: String,
        /// JetStream's explanation.
        message: String,
    },
    /// The Secret holding a Broker's static bearer token is missing or lacks the key;
    /// retried, since the Secret may be created or fixed at any time.
    #[error("the bearer token cannot be read: {0}")]
    BearerTokenUnavailable(String),
    /// A Broker's static bearer token is too short to be safe; retried like a missing one.
    #[error("{0}")]
    BearerTokenTooShort(String),
    /// The Kubernetes API failed.
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    /// The finalizer helper failed around the reconcile (adding or removing the
    /// finalizer); boxed, as it wraps this type.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

/// An error kept as the source of one of ours.
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `what: source`, or either alone.
fn with_source(what: &str, source: Option<&(dyn std::error::Error + Send + Sync)>) -> String {
    match source {
        None => what.to_owned(),
        Some(e) if what.is_empty() => e.to_string(),
        Some(e) => format!("{what}: {e}"),
    }
}

impl Error {
    /// NATS failed while doing `what` (may be empty), with the client's error.
    pub fn nats(what: impl Into<String>, source: impl Into<Source>) -> Self {
        Self::NatsUnavailable {
            what: what.into(),
            source: Some(source.into()),
        }
    }

    /// NATS cannot be used for `what` (not connected, JetStream off).
    pub fn nats_down(what: impl Into<String>) -> Self {
        Self::NatsUnavailable {
            what: what.into(),
            source: None,
        }
    }

    /// The condition reason (and metric label) for this error: the one place a
    /// failure becomes a word users and dashboards see.
    #[must_use]
    pub fn reason(&self) -> Reason {
        match self {
            Self::NatsUnavailable { .. } => Reason::NatsUnavailable,
            Self::InvalidSpec(_) | Self::InvalidSource(_) | Self::InvalidAuth(_) => {
                Reason::InvalidSpec
            }
            Self::StreamNotOwned { .. } => Reason::StreamNotOwned,
            Self::ConsumerNotOwned { .. } => Reason::ConsumerNotOwned,
            Self::ImmutableStreamChange { .. } => Reason::StreamChangeNotAllowed,
            Self::StreamRejected { .. } => Reason::StreamRejected,
            Self::ReplicasUnplaceable { .. } => Reason::ReplicasUnplaceable,
            Self::InvalidConsumer(_) => Reason::InvalidConsumer,
            Self::InvalidFilter(_) => Reason::InvalidFilter,
            Self::InvalidTransform(_) => Reason::InvalidTransform,
            Self::InvalidJob(_) => Reason::InvalidJob,
            Self::InvalidDelivery(_) => Reason::InvalidDelivery,
            Self::DeploymentRejected(_) => Reason::DeploymentRejected,
            Self::DeploymentNotOwned(_) => Reason::DeploymentNotOwned,
            Self::BearerTokenUnavailable(_) => Reason::BearerTokenUnavailable,
            Self::BearerTokenTooShort(_) => Reason::BearerTokenTooShort,
            Self::Kube(_) => Reason::KubernetesError,
            Self::Finalizer(_) => Reason::FinalizerError,
        }
    }

    /// Whether retrying without a spec change can help.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::NatsUnavailable { .. }
                | Self::Kube(_)
                | Self::Finalizer(_)
                | Self::BearerTokenUnavailable(_)
                | Self::BearerTokenTooShort(_)
        )
    }
}

impl From<kube::runtime::finalizer::Error<Error>> for Error {
    /// The reconcile's own error when apply or cleanup failed; otherwise the
    /// finalizer bookkeeping failed.
    fn from(e: kube::runtime::finalizer::Error<Error>) -> Self {
        use kube::runtime::finalizer::Error as Finalizer;
        match e {
            Finalizer::ApplyFailed(e) | Finalizer::CleanupFailed(e) => e,
            other => Self::Finalizer(Box::new(other)),
        }
    }
}

/// Delay before retry number `failures` (1-based) of a transient error:
/// 500 ms doubling up to 30 s.
#[must_use]
pub fn retry_delay(failures: u32) -> Duration {
    herald_api::backoff::Backoff::exponential(Duration::from_millis(500), Duration::from_secs(30))
        .delay(failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_and_caps() {
        assert_eq!(retry_delay(1), Duration::from_millis(500));
        assert_eq!(retry_delay(2), Duration::from_secs(1));
        assert_eq!(retry_delay(4), Duration::from_secs(4));
        assert_eq!(retry_delay(7), Duration::from_secs(30));
        assert_eq!(retry_delay(100), Duration::from_secs(30));
    }

    #[test]
    fn spec_problems_are_permanent() {
        assert!(!Error::InvalidSpec("x".into()).is_transient());
        assert!(Error::nats_down("x").is_transient());
        let e = Error::nats("cannot read stream S", std::io::Error::other("timed out"));
        assert_eq!(
            e.to_string(),
            "NATS is unavailable: cannot read stream S: timed out"
        );
        assert!(std::error::Error::source(&e).is_some());
        let e = Error::ImmutableStreamChange {
            stream: "S".into(),
            changes: "storage file -> memory".into(),
        };
        assert_eq!(e.reason(), "StreamChangeNotAllowed");
        assert!(e.to_string().contains("storage file -> memory"));
    }
}
