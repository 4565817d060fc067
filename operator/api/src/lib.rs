//! Herald's Kubernetes API: the `eventing.herald.dev/v1alpha1` custom resources.
//!
//! This crate owns the *shape* of Herald's API and nothing that does IO:
//!
//! ```text
//!   Broker ──(stream settings)──▶ JetStream stream  (operator: broker controller)
//!     ▲  address on the shared ingress
//!     │ broker
//!   Trigger ──(filters, delivery)──▶ durable consumer ──▶ subscriber / consumer Deployment
//!   EventSource ──(cron | kubernetes | webhook | nats | sinkBinding)──▶ sink (a Broker or a URI)
//!   EventType ◀──(written by the dispatchers: counts, sources, inferred schema)── a Broker's events
//! ```
//!
//! Besides the types it holds the pure helpers every component agrees on:
//! [`naming`] (stream names and subjects derived from a Broker's namespace and name),
//! [`duration`] and [`quantity`] (parsing the human-friendly values users write),
//! [`conditions`] (status conditions that keep their transition time) and [`crds`]
//! (the generated `CustomResourceDefinition`s that `herald crds` prints).

// kube's `printcolumn(...)` attributes repeat `type_ = ...` per column by design.
#![allow(clippy::duplicated_attributes)]

pub mod audience;
pub mod auth;
pub mod backoff;
pub mod broker;
pub mod common;
pub mod conditions;
pub mod crds;
pub mod delivery;
pub mod duration;
pub mod eventsource;
pub mod eventtype;
pub mod job;
pub mod naming;
pub mod nats_source;
pub mod quantity;
pub mod reference;
pub mod schedule;
mod schema;
pub mod trigger;
pub mod workload;

pub use broker::{Broker, BrokerSpec, BrokerStatus};
pub use common::{DeliverySpec, Destination, KReference};
pub use conditions::{Condition, ConditionStatus};
pub use eventsource::{EventSource, EventSourceSpec, EventSourceStatus};
pub use eventtype::{EventType, EventTypeSpec, EventTypeStatus};
pub use trigger::{Trigger, TriggerSpec, TriggerStatus};

/// API group of every Herald resource.
pub const GROUP: &str = "eventing.herald.dev";
/// API version served by this crate.
pub const VERSION: &str = "v1alpha1";
/// Labels and annotations Herald writes start with this prefix.
pub const LABEL_PREFIX: &str = "eventing.herald.dev";
/// Finalizer the operator puts on a Broker while its JetStream stream exists.
pub const BROKER_FINALIZER: &str = "eventing.herald.dev/stream";
/// Field manager the operator's reconciles use for server-side apply.
pub const OPERATOR_FIELD_MANAGER: &str = field_manager::OPERATOR;

/// The server-side apply field managers of Herald's writers: each field has one
/// owner, and `kubectl get -o yaml --show-managed-fields` shows which.
pub mod field_manager {
    /// The reconciles: every Herald object's status (but `backlog` and
    /// `autoscaling`), and the objects they create, but a consumer Deployment's
    /// `spec.replicas` after its creation.
    pub const OPERATOR: &str = "herald-operator";
    /// The autoscaler: a consumer Deployment's `spec.replicas`, and a consumer
    /// Trigger's `status.autoscaling` and `status.backlog`.
    pub const AUTOSCALER: &str = "herald-autoscaler";
    /// The backlog writer: a subscriber Trigger's `status.backlog`.
    pub const BACKLOG: &str = "herald-backlog";
    /// Sink bindings: `K_SINK` and `K_CE_OVERRIDES` in the user's Deployments.
    pub const SINK_BINDING: &str = "herald-sinkbinding";
}

/// A server-side apply patch of `K`'s status: `apiVersion` and `kind` from the type,
/// so no controller spells them out (or gets them wrong).
#[must_use]
pub fn status_patch<K, S>(status: &S) -> serde_json::Value
where
    K: kube::Resource<DynamicType = ()>,
    S: serde::Serialize + ?Sized,
{
    serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn status_patches_name_the_type_they_patch() {
        let patch = super::status_patch::<super::Trigger, _>(&serde_json::json!({"backlog": 3}));
        assert_eq!(patch["apiVersion"], "eventing.herald.dev/v1alpha1");
        assert_eq!(patch["kind"], "Trigger");
        assert_eq!(patch["status"]["backlog"], 3);
        let broker = super::status_patch::<super::Broker, _>(&super::BrokerStatus::default());
        assert_eq!(broker["kind"], "Broker");
    }
}
