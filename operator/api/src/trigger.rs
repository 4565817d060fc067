//! `Trigger`: selects events of a Broker and delivers them to a subscriber or to a
//! consumer Deployment that Herald runs and autoscales.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{DeliverySpec, Destination, SecretKeyRef};
use crate::conditions::Condition;

/// A Trigger selects events of a Broker with filters and delivers each matching event,
/// at least once, to a subscriber (`subscriber`), to a Deployment Herald runs for it
/// (`consumer`), or to a Job Herald runs per event (`job`).
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "eventing.herald.dev",
    version = "v1alpha1",
    kind = "Trigger",
    namespaced,
    status = "TriggerStatus",
    shortname = "trg",
    category = "herald",
    doc = "A Trigger selects events of a Broker with filters and delivers each matching event to a subscriber, to a consumer Deployment that Herald autoscales, or to a Job per event.",
    printcolumn(name = "Broker", type_ = "string", json_path = ".spec.broker"),
    printcolumn(
        name = "Subscriber",
        type_ = "string",
        json_path = ".status.subscriberUri"
    ),
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
    printcolumn(name = "Backlog", type_ = "integer", json_path = ".status.backlog"),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.autoscaling.currentReplicas",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct TriggerSpec {
    /// Name of the Broker (in the same namespace) whose events this Trigger selects.
    #[schemars(length(min = 1, max = 253))]
    pub broker: String,
    /// Knative-style attribute filter: every listed attribute must equal the given value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<AttributesFilter>,
    /// Filters that must all match (Knative's subscriptions API, plus content patterns).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<SubscriptionsApiFilter>,
    /// Where matching events are sent (HTTP POST). Set exactly one of `subscriber`,
    /// `consumer` and `job`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber: Option<Destination>,
    /// A Deployment that Herald creates from a pod template and scales with the backlog.
    /// Set exactly one of `subscriber`, `consumer` and `job`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<ConsumerSpec>,
    /// Each matching event runs as a Kubernetes Job made from a pod template, with
    /// the event mounted as a file (see docs/jobs.md). Set exactly one of
    /// `subscriber`, `consumer` and `job`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<crate::job::EventJobSpec>,
    /// Reshapes each event after filtering, right before delivery: a jq program or an
    /// EventBridge-style input template (see docs/transforms.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<TransformSpec>,
    /// Retries, timeouts, dead letters and ordering; defaults come from the Broker's `delivery`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
    /// Which events a new Trigger starts with (default: only events that arrive after it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_position: Option<StartPosition>,
}

impl TriggerSpec {
    /// The Trigger's filters in the form the filter engine compiles: the
    /// `filter.attributes` pairs and the `filters` list as JSON. The operator, the
    /// dispatcher and `herald filter test` all compile from this, so they agree.
    #[must_use]
    pub fn filter_parts(&self) -> (Vec<(&str, &str)>, Vec<serde_json::Value>) {
        filter_parts(self.filter.as_ref(), &self.filters)
    }
}

/// A Trigger's transform. Set exactly one of `jq` and `template`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TransformSpec {
    /// A jq program over the event in the CloudEvents JSON format
    /// (`{"specversion", "id", "type", "source", ..., "data"}`); its one output, an
    /// object, is the event delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jq: Option<String>,
    /// An EventBridge-style input template: values picked by JSON paths fill the
    /// placeholders of a template that becomes the event's `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<InputTemplate>,
}

impl TransformSpec {
    /// The parts the transform engine compiles: the jq program, or the template's
    /// paths and text. The operator, the dispatcher and `herald transform test` all
    /// compile from this, so they agree.
    #[must_use]
    pub fn parts(&self) -> (Option<&str>, Option<TemplateParts<'_>>) {
        (
            self.jq.as_deref(),
            self.template.as_ref().map(|t| (&t.paths, t.data.as_str())),
        )
    }
}

/// A template's `paths` and `data`, as the transform engine compiles them.
pub type TemplateParts<'a> = (&'a BTreeMap<String, String>, &'a str);

/// EventBridge's input transformer: `paths` is its `InputPathsMap`, `data` its
/// `InputTemplate`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InputTemplate {
    /// Placeholder name to a JSON path into the event in the JSON format, in dot
    /// notation with array indices, such as `$.data.order.id` or `$.type`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub paths: BTreeMap<String, String>,
    /// The new `data`, with `<name>` placeholders. A template that starts with `{` or
    /// `[` is JSON: a placeholder outside quotes takes the value as JSON, inside
    /// quotes the text of a string. Any other template gives text (`text/plain`).
    #[schemars(length(min = 1, max = 8192))]
    pub data: String,
}

/// A short, stable digest of a Trigger's filters: routers stamp it on each copy they
/// queue, so a deliverer can tell a copy routed under filters that changed since.
#[must_use]
pub fn filter_version(
    filter: Option<&AttributesFilter>,
    filters: &[SubscriptionsApiFilter],
) -> String {
    use sha2::Digest;
    let (attributes, filters) = filter_parts(filter, filters);
    let canonical = serde_json::json!([attributes, filters]).to_string();
    let digest = sha2::Sha256::digest(canonical.as_bytes());
    digest[..8]
        .iter()
        .fold(String::with_capacity(16), |mut hex, b| {
            use std::fmt::Write;
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// `filter.attributes` as pairs and `filters` as JSON, for the filter engine.
#[must_use]
pub fn filter_parts<'a>(
    filter: Option<&'a AttributesFilter>,
    filters: &[SubscriptionsApiFilter],
) -> (Vec<(&'a str, &'a str)>, Vec<serde_json::Value>) {
    let attributes = filter
        .iter()
        .flat_map(|f| f.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .collect();
    let filters = filters
        .iter()
        .filter_map(|f| serde_json::to_value(f).ok())
        .collect();
    (attributes, filters)
}

/// Knative's `filter.attributes`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AttributesFilter {
    /// CloudEvents attribute name (including extensions) to exact value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

/// One filter expression. Set exactly one dialect.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionsApiFilter {
    /// Every listed attribute equals its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<BTreeMap<String, String>>,
    /// Every listed attribute starts with its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<BTreeMap<String, String>>,
    /// Every listed attribute ends with its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<BTreeMap<String, String>>,
    /// Every nested filter matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::opaque_object_list")]
    pub all: Option<Vec<serde_json::Value>>,
    /// At least one nested filter matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::opaque_object_list")]
    pub any: Option<Vec<serde_json::Value>>,
    /// The nested filter does not match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::opaque_object")]
    pub not: Option<serde_json::Value>,
    /// A CloudEvents SQL (CESQL v1) expression that evaluates to true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cesql: Option<String>,
    /// An EventBridge-style content pattern over the attributes and the JSON `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::opaque_object")]
    pub pattern: Option<serde_json::Value>,
}

/// How a consumer Deployment receives events.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConsumerMode {
    /// A Herald sidecar pulls events and POSTs them to the container on localhost.
    #[default]
    Http,
    /// The container consumes from JetStream itself; Herald injects the connection details.
    Nats,
}

/// A consumer Deployment that Herald creates, owns and autoscales on the backlog.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerSpec {
    /// `http` (default) or `nats`.
    #[serde(default)]
    pub mode: ConsumerMode,
    /// Pod template of the consumer (a standard Kubernetes `PodTemplateSpec`).
    #[schemars(schema_with = "crate::schema::pod_template")]
    pub template: PodTemplateSpec,
    /// In `http` mode: the container port the sidecar POSTs events to (default 8080).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// In `http` mode: the URL path the sidecar POSTs events to (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A Secret key holding NATS credentials (a `.creds` file), mounted for the
    /// sidecar (`http` mode) or the containers (`nats` mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretKeyRef>,
    /// TLS to NATS for the sidecar (`http` mode) or the containers (`nats` mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats_tls: Option<NatsTlsRef>,
    /// How the Deployment scales with the backlog.
    #[serde(default)]
    pub scaling: ScalingSpec,
}

/// Where a consumer's TLS files for NATS are.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NatsTlsRef {
    /// A Secret in the Trigger's namespace with `ca.crt` (the CA of the NATS servers)
    /// and, for mutual TLS, `tls.crt` and `tls.key` (as cert-manager writes them).
    #[schemars(length(min = 1))]
    pub secret_name: String,
    /// Present `tls.crt` / `tls.key` as a client certificate (default false).
    #[serde(default)]
    pub client_certificate: bool,
}

/// Replicas a consumer Deployment scales to at most when `maxReplicas` is unset.
pub const DEFAULT_MAX_REPLICAS: u32 = 10;

/// Autoscaling policy of a consumer Deployment.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ScalingSpec {
    /// Fewest replicas; 0 lets the consumer scale to zero when nothing is waiting (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_replicas: Option<i32>,
    /// Most replicas (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_replicas: Option<i32>,
    /// Backlog (pending + unacknowledged events) one replica should handle (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub target_backlog_per_replica: Option<i64>,
    /// Backlog above which a consumer at zero replicas is activated (default 0: any event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub activation_threshold: Option<i64>,
    /// How often the backlog is measured, e.g. `1s` (default 2s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::duration")]
    pub poll_interval: Option<String>,
    /// How long the backlog must stay empty before scaling to zero, e.g. `5m` (default 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::duration")]
    pub cooldown_period: Option<String>,
    /// Limits on scaling up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up: Option<ScalingRules>,
    /// Limits on scaling down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<ScalingRules>,
}

/// Stabilization and step limits for one scaling direction.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ScalingRules {
    /// The highest (down) or lowest (up) recommendation over this window is used, so replicas do not flap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::duration")]
    pub stabilization_window: Option<String>,
    /// Most replicas added or removed in one step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_step: Option<i32>,
}

/// Where in the Broker's stream a new Trigger starts.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    /// Only events stored after the Trigger was created.
    #[default]
    New,
    /// Every event still in the stream (replay).
    All,
    /// Events stored at or after `time`.
    Time,
    /// Events from stream sequence `sequence` on.
    Sequence,
}

/// Start position of a Trigger's durable consumer.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StartPosition {
    /// `new` (default), `all`, `time` or `sequence`.
    #[serde(default)]
    pub from: StartFrom,
    /// With `from: time`: an RFC 3339 timestamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// With `from: sequence`: the first stream sequence to deliver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub sequence: Option<u64>,
}

/// Observed state of a Trigger.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TriggerStatus {
    /// The `.metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, and `BrokerReady`, `FilterValid`, `TransformValid`, `SubscriberResolved`, `DeadLetterSinkResolved` (and `ConsumerDeployed` with a consumer, `JobValid` with a job) which explain it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Name of the durable JetStream consumer of this Trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_name: Option<String>,
    /// Resolved URI events are delivered to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber_uri: Option<String>,
    /// Resolved URI of the dead-letter sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_sink_uri: Option<String>,
    /// Events waiting for this Trigger (pending + unacknowledged) at the last measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<i64>,
    /// State of the consumer Deployment's autoscaler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingStatus>,
    /// The Trigger's queue: where the events its filters match wait for delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueStatus>,
}

/// Where a Trigger's matching events wait, and from where the Broker's routers fill it.
///
/// Routers copy each Broker event whose stream sequence is above `routedAfter` and that
/// the Trigger's filters match into the queue; the events at or below it that the
/// start position asks for are copied by the backfill while `backfilling` is true.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct QueueStatus {
    /// The Broker whose events fill the queue.
    pub broker: String,
    /// The JetStream stream holding this queue: one of the Broker's queue streams, each
    /// shared by a bounded number of Triggers.
    pub stream: String,
    /// This Trigger's subject in that stream.
    pub subject: String,
    /// The Broker stream's last sequence when the queue was created: later events are
    /// routed live, earlier ones only by the backfill.
    pub routed_after: u64,
    /// Whether the Broker's history (`startPosition`) is still being copied in.
    #[serde(default)]
    pub backfilling: bool,
}

/// What the autoscaler saw and did last.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingStatus {
    /// Replicas the autoscaler wants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i32>,
    /// Replicas the Deployment has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_replicas: Option<i32>,
    /// When the autoscaler last changed the replica count (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<String>,
    /// Why it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_reason: Option<String>,
}

/// Condition types (of [`crate::conditions::ConditionType`]) a Trigger reports.
pub mod condition {
    use crate::conditions::ConditionType;

    /// Events are being delivered.
    pub const READY: &str = ConditionType::Ready.as_str();
    /// The Trigger's Broker exists and is Ready.
    pub const BROKER_READY: &str = ConditionType::BrokerReady.as_str();
    /// The filters compiled.
    pub const FILTER_VALID: &str = ConditionType::FilterValid.as_str();
    /// The transform (if any) compiled.
    pub const TRANSFORM_VALID: &str = ConditionType::TransformValid.as_str();
    /// The subscriber resolved to a URI.
    pub const SUBSCRIBER_RESOLVED: &str = ConditionType::SubscriberResolved.as_str();
    /// The dead-letter sink (if any) resolved to a URI.
    pub const DEAD_LETTER_SINK_RESOLVED: &str = ConditionType::DeadLetterSinkResolved.as_str();
    /// The consumer Deployment (Triggers with `consumer`) is applied.
    pub const CONSUMER_DEPLOYED: &str = ConditionType::ConsumerDeployed.as_str();
    /// The Job template and settings (Triggers with `job`) are valid.
    pub const JOB_VALID: &str = ConditionType::JobValid.as_str();
}
