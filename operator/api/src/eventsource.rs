//! `EventSource`: turns outside happenings (a schedule, Kubernetes objects, webhooks,
//! NATS messages) into CloudEvents sent to a sink.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Destination, SecretKeyRef};
use crate::conditions::Condition;

/// An EventSource emits CloudEvents to its sink from exactly one kind of source:
/// `cron`, `kubernetes`, `webhook`, `nats`, or `sinkBinding` (your own Deployments).
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "eventing.herald.dev",
    version = "v1alpha1",
    kind = "EventSource",
    namespaced,
    status = "EventSourceStatus",
    shortname = "esrc",
    category = "herald",
    doc = "An EventSource emits CloudEvents to its sink from exactly one kind of source: cron, kubernetes, webhook, nats, or sinkBinding (your own Deployments).",
    printcolumn(name = "Sink", type_ = "string", json_path = ".status.sinkUri"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct EventSourceSpec {
    /// Where events go: a Broker (`ref: {kind: Broker, name: ...}`) or a URI.
    pub sink: Destination,
    /// Attributes added to every event this source emits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_overrides: Option<CeOverrides>,
    /// Emit an event on a schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<CronSource>,
    /// Emit an event when Kubernetes objects are added, updated or deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesSource>,
    /// Emit an event for each signed HTTP request to the webhook address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSource>,
    /// Emit an event for each message on a NATS subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsSource>,
    /// Your own Deployments are the source: Herald injects `K_SINK` (the sink's URL) and
    /// `K_CE_OVERRIDES` into every container of the Deployments this selects, and keeps
    /// them current when the sink's address changes (like Knative's sink binding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink_binding: Option<SinkBindingSource>,
}

/// Deployments to bind to the sink.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SinkBindingSource {
    /// Labels a Deployment (in the EventSource's namespace) must have to be bound.
    #[schemars(length(min = 1))]
    pub match_labels: BTreeMap<String, String>,
}

/// Attribute overrides, as Knative's `ceOverrides`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CeOverrides {
    /// Extension attributes (lower-case alphanumeric names) set on every event.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extensions: BTreeMap<String, String>,
}

/// A schedule.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CronSource {
    /// Standard five-field cron expression, e.g. `*/5 * * * *`.
    #[schemars(length(min = 1))]
    pub schedule: String,
    /// IANA time zone the schedule is read in, e.g. `Europe/Berlin` (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Data of each event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Content type of `data` (default `application/json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// What a Kubernetes event carries.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KubernetesEventMode {
    /// A reference to the object (apiVersion, kind, namespace, name, uid).
    #[default]
    Reference,
    /// The whole object.
    Resource,
}

/// Kubernetes objects to watch.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesSource {
    /// Kinds of objects to watch.
    #[schemars(length(min = 1))]
    pub resources: Vec<KubernetesResource>,
    /// `reference` (default) or `resource`.
    #[serde(default)]
    pub event_mode: KubernetesEventMode,
    /// ServiceAccount the adapter runs as; it sees only what this account may list and watch.
    #[schemars(length(min = 1))]
    pub service_account_name: String,
}

/// One kind of Kubernetes object to watch.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesResource {
    /// API version, e.g. `v1` or `apps/v1`.
    pub api_version: String,
    /// Kind, e.g. `ConfigMap`.
    pub kind: String,
    /// Label selector in kubectl syntax, e.g. `app=web,tier!=db`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    /// Namespaces to watch; the EventSource's own namespace when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}

/// `(group, version)` of an `apiVersion` such as `apps/v1` or `v1`.
#[must_use]
pub fn group_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

/// An HTTP endpoint for signed webhooks.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSource {
    /// Secret key holding the HMAC-SHA256 signing key.
    pub secret_ref: SecretKeyRef,
    /// Header carrying the signature, `sha256=<hex>` (default `X-Hub-Signature-256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_header: Option<String>,
    /// CloudEvents `type` of the events (default `dev.herald.webhook.received`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Request headers copied into the event as extension attributes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
    /// Largest accepted request body (default 1Mi, at most 8Mi); larger requests get 413.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::byte_size")]
    pub max_body_bytes: Option<Quantity>,
}

/// The largest `webhook.maxBodyBytes` allowed. Each webhook body is held in memory
/// until the sink took it (retries included), and a Broker sink stores at most NATS'
/// largest payload (1 MiB by default) anyway; a larger value is refused (`InvalidSpec`).
pub const WEBHOOK_MAX_BODY_BYTES_LIMIT: u64 = 8 << 20;

/// A NATS subject to forward.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NatsSource {
    /// NATS URL(s), comma-separated. Without it and without `credentialsSecretRef`
    /// the source reads through Herald's own NATS connection, which only namespaces the
    /// platform team allows may do, confined away from Herald's subjects and streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Subject to subscribe to; wildcards allowed.
    #[schemars(length(min = 1))]
    pub subject: String,
    /// Queue group shared by the adapter's replicas (default: `herald_<namespace>_<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_group: Option<String>,
    /// Consume from a JetStream stream with a durable consumer instead of core NATS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jet_stream: Option<NatsJetStreamSource>,
    /// Secret key holding NATS credentials (a `.creds` file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretKeyRef>,
}

/// JetStream consumption settings of a NATS source.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NatsJetStreamSource {
    /// Stream to consume from.
    pub stream: String,
    /// Durable consumer name (default: `herald_<namespace>_<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durable: Option<String>,
}

/// Observed state of an EventSource.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventSourceStatus {
    /// The `.metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, and `SinkResolved`, `Deployed` which explain it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Resolved URI events are sent to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink_uri: Option<String>,
    /// For a webhook source: the URL to configure in the sending system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// For a sink binding: the Deployments that carry `K_SINK`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bound_deployments: Vec<String>,
}

/// Condition types (of [`crate::conditions::ConditionType`]) an EventSource reports.
pub mod condition {
    use crate::conditions::ConditionType;

    /// Events are being emitted.
    pub const READY: &str = ConditionType::Ready.as_str();
    /// The sink resolved to a URI.
    pub const SINK_RESOLVED: &str = ConditionType::SinkResolved.as_str();
    /// The adapter runs.
    pub const DEPLOYED: &str = ConditionType::Deployed.as_str();
}
