//! The contract between the operator and the processes it runs in Deployments of
//! its own making (consumer pods, `kubernetes` source adapters): environment variable
//! names and the configs, JSON in those variables, of the dispatcher sidecar and the
//! adapter.
//!
//! The sidecar gets everything it needs from its environment, so it needs no access
//! to the Kubernetes API (no ServiceAccount, no RBAC in the user's namespace): a change
//! to the Trigger's filters or delivery changes the pod template and rolls the
//! Deployment.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::broker::BrokerSpec;
use crate::eventsource::{KubernetesEventMode, KubernetesResource};
use crate::trigger::{AttributesFilter, SubscriptionsApiFilter, TransformSpec};
use crate::{DeliverySpec, TriggerSpec};

/// NATS URL(s) for the pod's processes (`herald dispatcher` reads it too).
pub const ENV_NATS_URL: &str = "HERALD_NATS_URL";
/// The sidecar's [`SidecarConfig`] as JSON.
pub const ENV_TRIGGER_PLAN: &str = "HERALD_TRIGGER_PLAN";
/// Where the sidecar POSTs events (the user's container on localhost).
pub const ENV_SUBSCRIBER: &str = "HERALD_SUBSCRIBER";
/// The user container's port, as the sidecar sees it.
pub const ENV_CONSUMER_PORT: &str = "HERALD_CONSUMER_PORT";
/// The sidecar's admin server port.
pub const ENV_METRICS_PORT: &str = "HERALD_METRICS_PORT";
/// Address of a `herald` process's admin server: the operator sets it in the pods it
/// builds, and every `herald` command reads it.
pub const ENV_METRICS_ADDR: &str = "HERALD_METRICS_ADDR";
/// The port the user's container listens on (Knative's convention).
pub const ENV_PORT: &str = "PORT";
/// `nats` mode: the Broker's stream.
pub const ENV_STREAM: &str = "HERALD_STREAM";
/// `nats` mode: the Trigger's durable consumer.
pub const ENV_CONSUMER: &str = "HERALD_CONSUMER";
/// Path of the mounted NATS credentials file (sidecar, or `nats`-mode containers).
pub const ENV_NATS_CREDS: &str = "HERALD_NATS_CREDS";
/// Path of the mounted CA certificate of the NATS servers.
pub const ENV_NATS_TLS_CA: &str = "HERALD_NATS_TLS_CA";
/// Path of the mounted NATS client certificate.
pub const ENV_NATS_TLS_CERT: &str = "HERALD_NATS_TLS_CERT";
/// Path of the mounted NATS client key.
pub const ENV_NATS_TLS_KEY: &str = "HERALD_NATS_TLS_KEY";
/// `true` when the consumer must use TLS to NATS.
pub const ENV_NATS_TLS_REQUIRED: &str = "HERALD_NATS_TLS_REQUIRED";
/// A `kubernetes` EventSource adapter's [`KubernetesSourceConfig`] as JSON.
pub const ENV_KUBERNETES_PLAN: &str = "HERALD_KUBERNETES_PLAN";

/// What a consumer Deployment's dispatcher sidecar delivers: one Trigger, as the
/// operator resolved it when it built the pod template.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SidecarConfig {
    /// Namespace of the Trigger and its Broker.
    pub namespace: String,
    pub trigger: String,
    pub broker: String,
    /// The Trigger's `filter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<AttributesFilter>,
    /// The Trigger's `filters`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<SubscriptionsApiFilter>,
    /// The Trigger's `transform`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<TransformSpec>,
    /// The Trigger's `delivery`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
    /// The Broker's `delivery` (defaults for the Trigger's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_delivery: Option<DeliverySpec>,
    /// The resolved dead-letter sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_sink_uri: Option<String>,
    /// Whether subscribers' replies are published into the Broker (see
    /// [`crate::auth::accepts_replies`]); a config without it drops them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accepts_replies: bool,
    /// The most pods the consumer scales to: each sidecar lets through this share of
    /// the Trigger's `delivery.rateLimit`, so that all of them together keep to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_sharers: Option<u32>,
    /// The queue stream holding the Trigger's queue (the Trigger's `status.queue.stream`);
    /// a config without it (made before queues were spread over several streams) means the
    /// Broker's first queue stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_stream: Option<String>,
}

impl SidecarConfig {
    /// The config for a Trigger in `namespace` named `trigger`.
    #[must_use]
    pub fn new(
        namespace: &str,
        trigger: &str,
        spec: &TriggerSpec,
        broker: Option<&BrokerSpec>,
        dead_letter_sink_uri: Option<String>,
    ) -> Self {
        SidecarConfig {
            namespace: namespace.to_owned(),
            trigger: trigger.to_owned(),
            broker: spec.broker.clone(),
            filter: spec.filter.clone(),
            filters: spec.filters.clone(),
            transform: spec.transform.clone(),
            delivery: spec.delivery.clone(),
            broker_delivery: broker.and_then(|b| b.delivery.clone()),
            dead_letter_sink_uri,
            accepts_replies: broker.is_some_and(|b| crate::auth::accepts_replies(b.auth.as_ref())),
            rate_sharers: spec.consumer.as_ref().map(|c| {
                c.scaling
                    .max_replicas
                    .and_then(|m| u32::try_from(m).ok())
                    .unwrap_or(crate::trigger::DEFAULT_MAX_REPLICAS)
            }),
            queue_stream: None,
        }
    }

    /// The queue stream holding the Trigger's queue.
    #[must_use]
    pub fn queue_stream(&self) -> String {
        self.queue_stream
            .clone()
            .unwrap_or_else(|| crate::naming::queue_stream_name(&self.namespace, &self.broker))
    }

    /// The filter parts in the form the filter engine compiles (as
    /// [`TriggerSpec::filter_parts`]).
    #[must_use]
    pub fn filter_parts(&self) -> (Vec<(&str, &str)>, Vec<serde_json::Value>) {
        crate::trigger::filter_parts(self.filter.as_ref(), &self.filters)
    }
}

/// What the operator gives a `kubernetes` EventSource's adapter Deployment: the
/// source as resolved when the pod template was built.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesSourceConfig {
    pub namespace: String,
    pub name: String,
    /// The resolved sink URI.
    pub sink: String,
    /// Extension attributes set on every event.
    #[serde(default)]
    pub extensions: BTreeMap<String, String>,
    pub resources: Vec<KubernetesResource>,
    #[serde(default)]
    pub event_mode: KubernetesEventMode,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_round_trips_and_keeps_the_filters() {
        let spec: TriggerSpec = serde_yaml::from_str(
            "broker: b\nfilter: {attributes: {type: t}}\nfilters: [{cesql: \"source = 'x'\"}]\ndelivery: {retry: 2}\ntransform: {jq: .}",
        )
        .unwrap();
        let plan = SidecarConfig::new("ns", "tr", &spec, None, Some("http://dls".into()));
        let json = serde_json::to_string(&plan).unwrap();
        let back: SidecarConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, plan);
        assert_eq!(back.filter_parts(), spec.filter_parts());
        assert_eq!(back.delivery.and_then(|d| d.retry), Some(2));
        assert_eq!(back.transform, spec.transform, "sidecars transform too");
    }
}
