//! `Broker`: a durable event buffer (a JetStream stream) with an HTTP address.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::auth::{BrokerAuth, BrokerAuthStatus};
use crate::common::{Addressable, DeliverySpec};
use crate::conditions::Condition;

/// A Broker receives CloudEvents on its address, stores them durably in a JetStream
/// stream and hands them to the Triggers that name it.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "eventing.herald.dev",
    version = "v1alpha1",
    kind = "Broker",
    namespaced,
    status = "BrokerStatus",
    shortname = "brk",
    category = "herald",
    doc = "A Broker receives CloudEvents on its address, stores them durably in a JetStream stream and hands them to its Triggers.",
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
    printcolumn(name = "URL", type_ = "string", json_path = ".status.address.url"),
    printcolumn(
        name = "Auth",
        type_ = "string",
        json_path = ".status.auth.policy",
        priority = "1"
    ),
    printcolumn(
        name = "Stream",
        type_ = "string",
        json_path = ".status.streamName",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BrokerSpec {
    /// Settings of the JetStream stream that stores this Broker's events.
    #[serde(default)]
    pub stream: StreamSpec,
    /// Default delivery policy for Triggers of this Broker that do not set their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
    /// Who may send events; without it, anyone who can reach the ingress may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<BrokerAuth>,
}

/// Where JetStream keeps the events.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StorageType {
    /// On disk: survives a nats-server restart.
    #[default]
    File,
    /// In memory: faster, lost when nats-server restarts.
    Memory,
}

/// When JetStream may remove events.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RetentionPolicy {
    /// Keep events until a limit (maxAge, maxBytes, maxMessages) removes them; Triggers can replay them.
    #[default]
    Limits,
    /// Remove an event once every Trigger has acknowledged it.
    Interest,
}

/// What happens when the stream is full.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DiscardPolicy {
    /// Drop the oldest events to make room.
    #[default]
    Old,
    /// Refuse new events (the ingress answers 503) until there is room.
    New,
}

/// JetStream stream settings of a Broker.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StreamSpec {
    /// `file` (default) or `memory`. Cannot change once the stream exists.
    #[serde(default)]
    pub storage: StorageType,
    /// Number of copies in a JetStream cluster (1, 3 or 5 are typical; default 1).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas: i32,
    /// `limits` (default) or `interest`.
    #[serde(default)]
    pub retention: RetentionPolicy,
    /// Oldest event kept, e.g. `72h` or `P3D`; unlimited when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::duration")]
    pub max_age: Option<String>,
    /// Most bytes kept, e.g. `10Gi`; unlimited when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::byte_size")]
    pub max_bytes: Option<Quantity>,
    /// Most events kept; unlimited when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_messages: Option<i64>,
    /// `old` (default: drop the oldest events when full) or `new` (refuse new events).
    #[serde(default)]
    pub discard: DiscardPolicy,
    /// Window in which a repeated event (same source and id) is stored once, e.g. `2m` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::duration")]
    pub duplicate_window: Option<String>,
}

fn default_replicas() -> i32 {
    1
}

impl Default for StreamSpec {
    fn default() -> Self {
        Self {
            storage: StorageType::default(),
            replicas: default_replicas(),
            retention: RetentionPolicy::default(),
            max_age: None,
            max_bytes: None,
            max_messages: None,
            discard: DiscardPolicy::default(),
            duplicate_window: None,
        }
    }
}

/// Observed state of a Broker.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BrokerStatus {
    /// The `.metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, and `StreamReady` which explains it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Where producers send events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Addressable>,
    /// Name of the JetStream stream that stores the events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_name: Option<String>,
    /// Subjects of that stream.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    /// The sender authentication in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<BrokerAuthStatus>,
}

/// Condition types (of [`crate::conditions::ConditionType`]) a Broker reports.
pub mod condition {
    use crate::conditions::ConditionType;

    /// The Broker accepts events.
    pub const READY: &str = ConditionType::Ready.as_str();
    /// The JetStream stream exists with the configured settings.
    pub const STREAM_READY: &str = ConditionType::StreamReady.as_str();
}
