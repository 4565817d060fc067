//! Status conditions, shaped like `metav1.Condition`, and the words they use.
//!
//! [`ConditionType`] and [`Reason`] are the whole vocabulary the operator writes: a
//! condition is built from them ([`Condition::new`]), and they serialise to exactly the
//! strings in the API (`Ready`, `NatsUnavailable`, ...). The wire fields stay strings,
//! so a status written by another version still reads. [`readiness`] is the one rule
//! for reading an object's `Ready` condition, and [`served`] the one rule for whether
//! the data plane serves it.
//!
//! [`set_condition`] replaces a condition of the same type but keeps its
//! `lastTransitionTime` when the status did not change, so a reconcile that finds
//! nothing new does not make every condition look freshly changed.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Declares a closed set of words: an enum whose variants serialise (and print) as
/// their own names.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// Every word, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)*];

            /// The word as it appears in the API.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => stringify!($variant),)*
                }
            }

            /// The word for `text`, if it is one of these.
            #[must_use]
            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|w| w.as_str() == text)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                self == other.as_str()
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.as_str()
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.as_str()
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

vocabulary! {
    /// The condition types Herald objects report (each kind's `condition` module names
    /// its own).
    ConditionType {
        /// The object does its job; the other conditions explain why not.
        Ready,
        /// Broker: the JetStream stream exists with the configured settings.
        StreamReady,
        /// Trigger: its Broker exists and is Ready.
        BrokerReady,
        /// Trigger: the filters compiled.
        FilterValid,
        /// Trigger: the transform (if any) compiled.
        TransformValid,
        /// Trigger: the subscriber resolved to a URI.
        SubscriberResolved,
        /// Trigger: the dead-letter sink (if any) resolved to a URI.
        DeadLetterSinkResolved,
        /// Trigger with `consumer`: the consumer Deployment is applied.
        ConsumerDeployed,
        /// Trigger with `job`: the Job template and settings are valid.
        JobValid,
        /// EventSource: the sink resolved to a URI.
        SinkResolved,
        /// EventSource: the adapter runs.
        Deployed,
    }
}

vocabulary! {
    /// Every condition reason the operator writes: short, stable, CamelCase. A failed
    /// reconcile step maps to one in a single place (`herald_controllers::error`).
    Reason {
        /// All is well.
        Ready,
        /// No `Ready` condition yet (reported by readers, never written).
        NotReconciled,
        /// NATS could not be reached: the operator's own passing trouble.
        NatsUnavailable,
        /// A Kubernetes API call of the operator failed: its own passing trouble.
        KubernetesError,
        /// The finalizer bookkeeping around a reconcile failed.
        FinalizerError,
        /// The spec holds a value Herald cannot use.
        InvalidSpec,
        /// Broker: the stream is there.
        StreamReady,
        /// Broker: a stream of that name exists but is not the Broker's.
        StreamNotOwned,
        /// Broker: the spec asks for a stream change JetStream cannot make in place.
        StreamChangeNotAllowed,
        /// JetStream refused a stream or consumer configuration.
        StreamRejected,
        /// Broker: the NATS servers cannot place the stream's replicas.
        ReplicasUnplaceable,
        /// Broker: the static bearer token cannot be read.
        BearerTokenUnavailable,
        /// Broker: the static bearer token is too short.
        BearerTokenTooShort,
        /// Trigger: a consumer of that name exists but is not the Trigger's.
        ConsumerNotOwned,
        /// Trigger: the durable consumer has not been created yet.
        ConsumerPending,
        /// Trigger: the filters compiled.
        FilterValid,
        /// Trigger: a filter does not compile.
        InvalidFilter,
        /// Trigger: the transform compiled.
        TransformValid,
        /// Trigger: no transform.
        NoTransform,
        /// Trigger: the transform does not compile.
        InvalidTransform,
        /// Trigger: the Job template is valid.
        JobValid,
        /// Trigger: no Job could run from the template.
        InvalidJob,
        /// Trigger: the effective delivery policy is invalid.
        InvalidDelivery,
        /// Trigger: the Broker is Ready.
        BrokerReady,
        /// Trigger: no Broker of that name.
        BrokerNotFound,
        /// Trigger: the Broker is not Ready.
        BrokerNotReady,
        /// Trigger: the subscriber resolved.
        SubscriberResolved,
        /// Trigger: the subscriber does not resolve.
        SubscriberNotResolved,
        /// Trigger: each event runs as a Job (no subscriber).
        JobPerEvent,
        /// Trigger: events go to the consumer Deployment (no subscriber).
        ConsumerDeployment,
        /// Trigger: the dead-letter sink resolved.
        DeadLetterSinkResolved,
        /// Trigger: the dead-letter sink does not resolve.
        DeadLetterSinkNotResolved,
        /// Trigger: no dead-letter sink.
        NoDeadLetterSink,
        /// Trigger: the consumer Deployment is applied.
        Deployed,
        /// A Deployment is created once what it needs is there.
        DeploymentPending,
        /// Trigger: `spec.consumer` cannot be turned into a Deployment.
        InvalidConsumer,
        /// The apiserver refused a Deployment.
        DeploymentRejected,
        /// A Deployment of that name exists and is not Herald's.
        DeploymentNotOwned,
        /// EventSource: the sink resolved.
        SinkResolved,
        /// EventSource: the sink does not resolve.
        SinkNotResolved,
        /// EventSource: runs in the shared adapter.
        SharedAdapter,
        /// EventSource: the sink binding is in place.
        Bound,
        /// EventSource: binding Deployments failed.
        BindingFailed,
        /// EventSource: Deployments are bound once the sink resolves.
        BindingPending,
        /// EventSource: its own adapter Deployment is applied.
        AdapterDeployed,
        /// EventSource: a `kubernetes` source names a kind the apiserver does not serve.
        UnknownKind,
        /// EventSource: a `kubernetes` source's ServiceAccount may not watch what it lists.
        Forbidden,
    }
}

/// Reason of a condition that is False only because NATS could not be reached: a
/// passing state the operator reports and other components ride out.
pub const REASON_NATS_UNAVAILABLE: &str = Reason::NatsUnavailable.as_str();

/// Reason of a condition that is False only because a Kubernetes API call of the
/// operator failed (a timeout, a 5xx, a Secret it could not read just then): like
/// [`REASON_NATS_UNAVAILABLE`], the operator's own trouble, not the object's.
pub const REASON_KUBERNETES_ERROR: &str = Reason::KubernetesError.as_str();

impl Reason {
    /// Whether `reason` is the operator's own passing trouble (NATS or the Kubernetes
    /// API), which the data plane rides out.
    #[must_use]
    pub fn is_operators_own(reason: &str) -> bool {
        reason == Self::NatsUnavailable || reason == Self::KubernetesError
    }
}

/// Whether a condition holds.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known yet, e.g. before the first reconcile finished.
    Unknown,
}

impl ConditionStatus {
    /// `True` when `ok` holds, `False` otherwise.
    #[must_use]
    pub fn from_bool(ok: bool) -> Self {
        if ok { Self::True } else { Self::False }
    }

    /// The string Kubernetes tools show for this status.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

/// One aspect of an object's state: `Ready` plus the sub-conditions that explain it.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Type of the condition, e.g. `Ready` or `StreamReady`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Status of the condition: True, False or Unknown.
    pub status: ConditionStatus,
    /// One-word, CamelCase reason for the last transition, e.g. `NatsUnavailable`.
    pub reason: String,
    /// Human-readable explanation; says what to do when something is wrong.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the status last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// The `.metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    /// A condition with the given type, status, reason and message and no timestamps.
    /// Herald's controllers pass a [`ConditionType`] and a [`Reason`]; a plain string
    /// is for tests and for copying another condition's words.
    #[must_use]
    pub fn new(
        type_: impl AsRef<str>,
        status: ConditionStatus,
        reason: impl AsRef<str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_: type_.as_ref().to_owned(),
            status,
            reason: reason.as_ref().to_owned(),
            message: message.into(),
            last_transition_time: None,
            observed_generation: None,
        }
    }

    /// Whether this condition's status is `True`.
    #[must_use]
    pub fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }
}

/// Finds a condition by type.
#[must_use]
pub fn find(conditions: &[Condition], type_: impl AsRef<str>) -> Option<&Condition> {
    let type_ = type_.as_ref();
    conditions.iter().find(|c| c.type_ == type_)
}

/// A Herald object whose status carries conditions.
pub trait Conditioned {
    /// Its status conditions (none before the operator wrote a status).
    fn conditions(&self) -> &[Condition];

    /// How ready it is ([`readiness`]).
    fn readiness(&self) -> Readiness<'_> {
        readiness(self.conditions())
    }
}

macro_rules! conditioned {
    ($($kind:ty),*) => {$(
        impl Conditioned for $kind {
            fn conditions(&self) -> &[Condition] {
                self.status.as_ref().map(|s| &s.conditions[..]).unwrap_or_default()
            }
        }
    )*};
}

conditioned!(crate::Broker, crate::Trigger, crate::EventSource);

/// What an object's `Ready` condition says: the one reading of it that every
/// component shares (the Trigger controller about its Broker, the data plane,
/// `herald status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness<'a> {
    /// `Ready` is True.
    Ready(&'a Condition),
    /// `Ready` is False or Unknown; the condition says why.
    NotReady(&'a Condition),
    /// No `Ready` condition: the operator has not written a status yet.
    NotReconciled,
}

impl<'a> Readiness<'a> {
    /// The `Ready` reason, or [`Reason::NotReconciled`].
    #[must_use]
    pub fn reason(&self) -> &'a str {
        match self {
            Self::Ready(c) | Self::NotReady(c) => &c.reason,
            Self::NotReconciled => Reason::NotReconciled.as_str(),
        }
    }

    /// The `Ready` status, `Unknown` before the first reconcile.
    #[must_use]
    pub fn status(&self) -> ConditionStatus {
        match self {
            Self::Ready(c) | Self::NotReady(c) => c.status,
            Self::NotReconciled => ConditionStatus::Unknown,
        }
    }
}

/// How ready an object with these conditions is.
#[must_use]
pub fn readiness(conditions: &[Condition]) -> Readiness<'_> {
    match find(conditions, ConditionType::Ready) {
        Some(c) if c.is_true() => Readiness::Ready(c),
        Some(c) => Readiness::NotReady(c),
        None => Readiness::NotReconciled,
    }
}

/// Whether the data plane (ingress, dispatcher) should serve an object with these
/// conditions: `Ready` is True, or False only because of the operator's own trouble
/// with NATS or the Kubernetes API (the data plane has its own connections and finds
/// out itself, and keeps the last status the operator wrote in full); otherwise the
/// reason it is not served (`NotReconciled` before the operator wrote a status). One
/// rule for every component, so a hiccup seen by the operator alone does not stop
/// ingress and delivery.
///
/// # Errors
/// The `Ready` reason when the object must not be served.
pub fn served(conditions: &[Condition]) -> Result<(), NotServed> {
    match readiness(conditions) {
        Readiness::Ready(_) => Ok(()),
        Readiness::NotReady(c) if Reason::is_operators_own(&c.reason) => Ok(()),
        other => Err(NotServed(other.reason().to_owned())),
    }
}

/// Why [`served`] refuses an object: its `Ready` reason, the word the data plane
/// passes on to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotServed(pub String);

/// Merges `desired` conditions into `previous`: the result has the desired conditions,
/// in their order, each stamped with `now` and `generation` — except that a condition
/// whose status did not change keeps its previous `lastTransitionTime`.
#[must_use]
pub fn merge(
    previous: &[Condition],
    desired: Vec<Condition>,
    now: &str,
    generation: Option<i64>,
) -> Vec<Condition> {
    desired
        .into_iter()
        .map(|mut c| {
            let kept = find(previous, &c.type_)
                .filter(|old| old.status == c.status)
                .and_then(|old| old.last_transition_time.clone());
            c.last_transition_time = Some(kept.unwrap_or_else(|| now.to_owned()));
            c.observed_generation = generation;
            c
        })
        .collect()
}

/// Sets one condition inside a list, with the same transition-time rule as [`merge`].
pub fn set_condition(conditions: &mut Vec<Condition>, mut condition: Condition, now: &str) {
    if let Some(old) = conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        condition.last_transition_time = if old.status == condition.status {
            old.last_transition_time.clone()
        } else {
            Some(now.to_owned())
        };
        *old = condition;
    } else {
        condition.last_transition_time = Some(now.to_owned());
        conditions.push(condition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(status: ConditionStatus, reason: &str) -> Condition {
        Condition::new("Ready", status, reason, "")
    }

    #[test]
    fn the_data_plane_serves_ready_objects_and_rides_out_the_operators_own_trouble() {
        let served_with = |status, reason| served(&[ready(status, reason)]);
        assert_eq!(served_with(ConditionStatus::True, "Ready"), Ok(()));
        for operators_own in [REASON_NATS_UNAVAILABLE, REASON_KUBERNETES_ERROR] {
            assert_eq!(served_with(ConditionStatus::False, operators_own), Ok(()));
        }
        assert_eq!(
            served_with(ConditionStatus::False, "BearerTokenUnavailable"),
            Err(NotServed("BearerTokenUnavailable".into()))
        );
        assert_eq!(
            served_with(ConditionStatus::False, "StreamRejected"),
            Err(NotServed("StreamRejected".into()))
        );
        assert_eq!(served(&[]), Err(NotServed("NotReconciled".into())));
    }

    #[test]
    fn the_vocabulary_serialises_to_the_api_strings() {
        assert_eq!(
            serde_json::to_value(Reason::StreamChangeNotAllowed).unwrap(),
            "StreamChangeNotAllowed"
        );
        assert_eq!(Reason::NatsUnavailable.as_str(), REASON_NATS_UNAVAILABLE);
        assert_eq!(
            ConditionType::DeadLetterSinkResolved.to_string(),
            "DeadLetterSinkResolved"
        );
        for reason in Reason::ALL {
            assert_eq!(Reason::parse(reason.as_str()), Some(*reason));
        }
        let c = Condition::new(
            ConditionType::Ready,
            ConditionStatus::False,
            Reason::InvalidSpec,
            "m",
        );
        assert_eq!(
            (c.type_.as_str(), c.reason.as_str()),
            ("Ready", "InvalidSpec")
        );
        assert!(c.reason == Reason::InvalidSpec);
    }

    #[test]
    fn readiness_is_read_one_way() {
        assert_eq!(readiness(&[]), Readiness::NotReconciled);
        assert_eq!(readiness(&[]).reason(), "NotReconciled");
        assert_eq!(readiness(&[]).status(), ConditionStatus::Unknown);
        let not = [ready(ConditionStatus::False, "StreamRejected")];
        assert_eq!(readiness(&not), Readiness::NotReady(&not[0]));
        assert_eq!(readiness(&not).reason(), "StreamRejected");
        let yes = [ready(ConditionStatus::True, "Ready")];
        assert!(matches!(readiness(&yes), Readiness::Ready(_)));
    }

    #[test]
    fn merge_keeps_transition_time_when_status_is_unchanged() {
        let previous = merge(&[], vec![ready(ConditionStatus::True, "A")], "t1", Some(1));
        let again = merge(
            &previous,
            vec![ready(ConditionStatus::True, "B")],
            "t2",
            Some(2),
        );
        assert_eq!(again[0].last_transition_time.as_deref(), Some("t1"));
        assert_eq!(again[0].reason, "B");
        assert_eq!(again[0].observed_generation, Some(2));
    }

    #[test]
    fn merge_stamps_now_when_status_changes() {
        let previous = merge(&[], vec![ready(ConditionStatus::True, "A")], "t1", None);
        let flipped = merge(
            &previous,
            vec![ready(ConditionStatus::False, "A")],
            "t2",
            None,
        );
        assert_eq!(flipped[0].last_transition_time.as_deref(), Some("t2"));
    }

    #[test]
    fn set_condition_appends_then_replaces() {
        let mut list = Vec::new();
        set_condition(&mut list, ready(ConditionStatus::False, "X"), "t1");
        set_condition(&mut list, ready(ConditionStatus::False, "Y"), "t2");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].reason, "Y");
        assert_eq!(list[0].last_transition_time.as_deref(), Some("t1"));
        set_condition(&mut list, ready(ConditionStatus::True, "Z"), "t3");
        assert_eq!(list[0].last_transition_time.as_deref(), Some("t3"));
    }
}
