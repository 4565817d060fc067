//! Types shared by several resources: destinations and delivery policy.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A reference to a Kubernetes object that receives events, like Knative's `KReference`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KReference {
    /// API version of the referent; `v1` for a Service, `eventing.herald.dev/v1alpha1` for a Broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind of the referent: `Service` or `Broker`.
    pub kind: String,
    /// Name of the referent.
    pub name: String,
    /// Namespace of the referent; defaults to the namespace of the object that refers to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Port of a Service to send to; defaults to the Service's only port, or its port named `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
}

/// Where events go: an object reference, a URI, or both (then the URI is a path
/// relative to the object's address), as in Knative's `Destination`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    /// Object that receives events (a Service, or a Broker for an EventSource's sink).
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<KReference>,
    /// Absolute URI to send to, or a path relative to `ref`'s address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// For a Trigger's subscriber: send each delivery with `Authorization: Bearer` and
    /// a Kubernetes ServiceAccount token (the dispatcher's) for this audience, which
    /// the subscriber can check with a `TokenReview`. No token when unset. The audience
    /// is the subscriber's own URL: it must name the host deliveries go to (a Service's
    /// `name.namespace.svc` counts as its full name), and one the Kubernetes apiserver
    /// accepts is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// For a Trigger's subscriber and dead-letter sink: CA certificates (PEM) trusted
    /// for this `https://` destination besides the dispatcher's (the system's roots and
    /// its `--ca-bundle`), like Knative's `CACerts`. Certificates that do not parse
    /// leave the destination unresolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certs: Option<String>,
}

/// How the delay between retries grows.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackoffPolicy {
    /// Delay is `backoffDelay * attempt`.
    Linear,
    /// Delay is `backoffDelay * 2^attempt`.
    Exponential,
}

/// Whether events of a Trigger may be delivered concurrently.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Ordering {
    /// Several events in flight at once (fastest); a retried event may overtake others.
    Unordered,
    /// One event at a time, in stream order; a failing event blocks the ones after it.
    Ordered,
}

/// Delivery policy of a Trigger (a Broker's `delivery` is the default for its Triggers).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeliverySpec {
    /// How many times a failed delivery is retried before the event goes to the dead-letter sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub retry: Option<i32>,
    /// How the delay between retries grows: `linear` or `exponential` (default `exponential`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_policy: Option<BackoffPolicy>,
    /// Base delay between retries, e.g. `PT0.5S` or `500ms` (default 1s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::duration")]
    pub backoff_delay: Option<String>,
    /// How long one delivery attempt may take before it counts as failed, e.g. `PT30S` (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::duration")]
    pub timeout: Option<String>,
    /// Where events go when every retry failed; without it they are dropped (logged, counted, and reported in an Event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_sink: Option<Destination>,
    /// `unordered` (default) or `ordered` (one event at a time, in stream order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering: Option<Ordering>,
    /// Most deliveries in flight at once for this Trigger per dispatcher (default 100; 1 when ordered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_in_flight: Option<i32>,
    /// Most delivery attempts (retries included) per period for this Trigger, across
    /// all dispatcher replicas, e.g. `{events: 10, per: 1s}` (default: no limit). Events
    /// wait in the Trigger's queue, not in memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Longest wait before a retry that a subscriber's `Retry-After` (on 429 and 503)
    /// may ask for, e.g. `PT5M` (default 5m); a retry never comes sooner than the
    /// backoff says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::duration")]
    pub retry_after_max: Option<String>,
}

/// A delivery rate limit: `events` per `per`, with bursts of up to `burst`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Attempts allowed per period.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub events: i32,
    /// The period, e.g. `1s` (default), `1m` or `PT1H`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::duration")]
    pub per: Option<String>,
    /// Attempts that may go at once after a quiet time (default: `events`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub burst: Option<i32>,
}

/// A key in a Secret in the same namespace.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// Key inside the Secret's data.
    pub key: String,
}

/// The address at which an object receives events.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Addressable {
    /// URL to POST CloudEvents to.
    pub url: String,
}
