//! Typed objects the tests create: Herald's resources built from their spec structs
//! and core Kubernetes objects, sent with server-side apply (create or update, like
//! `kubectl apply`). A misspelt field is a compile error here, not an object the
//! apiserver quietly prunes.
//!
//! A test that is about what a user writes (an invalid document, an example file)
//! keeps its YAML and goes through [`crate::kubectl`].

use std::collections::BTreeMap;
use std::fmt::Debug;

use herald_api::auth::{AllowedSender, BrokerAuth, ServiceAccountAuth};
use herald_api::common::SecretKeyRef;
use herald_api::eventsource::CronSource;
use herald_api::trigger::{
    AttributesFilter, ConsumerSpec, ScalingSpec, StartFrom, StartPosition, SubscriptionsApiFilter,
};
use herald_api::{
    Broker, BrokerSpec, DeliverySpec, Destination, EventSource, EventSourceSpec, KReference,
    Trigger, TriggerSpec,
};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, Secret, ServiceAccount};
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The field manager of everything the tests apply.
const FIELD_MANAGER: &str = "herald-e2e";

/// Creates or updates `obj` in `namespace` (server-side apply) and returns it as stored.
pub async fn apply<K>(client: &Client, namespace: &str, obj: &K) -> K
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let name = obj.name_any();
    Api::<K>::namespaced(client.clone(), namespace)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {} {namespace}/{name}: {e}", K::kind(&())))
}

fn named(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    }
}

/// Broker `name` with every setting at its default.
#[must_use]
pub fn broker(name: &str) -> Broker {
    Broker::new(name, BrokerSpec::default())
}

/// Broker `name` with `spec`.
#[must_use]
pub fn broker_with(name: &str, spec: BrokerSpec) -> Broker {
    Broker::new(name, spec)
}

/// Broker `name` keeping `replicas` copies of its stream.
#[must_use]
pub fn replicated_broker(name: &str, replicas: i32) -> Broker {
    let mut spec = BrokerSpec::default();
    spec.stream.replicas = replicas;
    Broker::new(name, spec)
}

/// `spec.auth` letting in the `ServiceAccounts` `allowed` (`(namespace, name)`).
#[must_use]
pub fn service_account_auth(allowed: &[(&str, &str)]) -> BrokerAuth {
    BrokerAuth {
        service_accounts: Some(ServiceAccountAuth {
            allowed: allowed
                .iter()
                .map(|(namespace, name)| AllowedSender {
                    namespace: (*namespace).to_owned(),
                    name: Some((*name).to_owned()),
                })
                .collect(),
        }),
        ..BrokerAuth::default()
    }
}

/// Key `key` of Secret `name`.
#[must_use]
pub fn secret_key(name: &str, key: &str) -> SecretKeyRef {
    SecretKeyRef {
        name: name.to_owned(),
        key: key.to_owned(),
    }
}

/// Trigger `name` with `spec`.
#[must_use]
pub fn trigger(name: &str, spec: TriggerSpec) -> Trigger {
    Trigger::new(name, spec)
}

/// A Trigger spec on Broker `default` delivering every event to `uri`; change the
/// rest with struct update syntax (`TriggerSpec { filter, ..to_uri(url) }`).
#[must_use]
pub fn to_uri(uri: &str) -> TriggerSpec {
    to(uri_destination(uri))
}

/// A Trigger spec on Broker `default` delivering every event to `subscriber`.
#[must_use]
pub fn to(subscriber: Destination) -> TriggerSpec {
    TriggerSpec {
        broker: "default".to_owned(),
        subscriber: Some(subscriber),
        ..TriggerSpec::default()
    }
}

/// A destination at `uri`.
#[must_use]
pub fn uri_destination(uri: &str) -> Destination {
    Destination {
        uri: Some(uri.to_owned()),
        ..Destination::default()
    }
}

/// A destination at Broker `name` of the same namespace.
#[must_use]
pub fn broker_destination(name: &str) -> Destination {
    Destination {
        reference: Some(KReference {
            kind: "Broker".to_owned(),
            name: name.to_owned(),
            ..KReference::default()
        }),
        ..Destination::default()
    }
}

/// `filter.attributes`: every pair must equal.
#[must_use]
pub fn attributes<const N: usize>(pairs: [(&str, &str); N]) -> Option<AttributesFilter> {
    Some(AttributesFilter {
        attributes: string_map(pairs),
    })
}

/// A `prefix` filter: every attribute starts with its value.
#[must_use]
pub fn prefix<const N: usize>(pairs: [(&str, &str); N]) -> SubscriptionsApiFilter {
    filter(|f| f.prefix = Some(string_map(pairs)))
}

/// An `exact` filter: every attribute equals its value.
#[must_use]
pub fn exact<const N: usize>(pairs: [(&str, &str); N]) -> SubscriptionsApiFilter {
    filter(|f| f.exact = Some(string_map(pairs)))
}

/// A CESQL filter.
#[must_use]
pub fn cesql(expression: &str) -> SubscriptionsApiFilter {
    filter(|f| f.cesql = Some(expression.to_owned()))
}

/// An EventBridge-style content pattern filter.
#[must_use]
pub fn pattern(pattern: serde_json::Value) -> SubscriptionsApiFilter {
    filter(|f| f.pattern = Some(pattern))
}

/// A filter of one dialect, the one `set` fills in.
fn filter(set: impl FnOnce(&mut SubscriptionsApiFilter)) -> SubscriptionsApiFilter {
    let mut filter = SubscriptionsApiFilter::default();
    set(&mut filter);
    filter
}

/// Start with every event the Broker still holds (`startPosition: {from: all}`).
#[must_use]
pub fn from_all() -> Option<StartPosition> {
    Some(StartPosition {
        from: StartFrom::All,
        ..StartPosition::default()
    })
}

/// A delivery policy of `retry` retries `backoff_delay` apart (e.g. `PT0.1S`).
#[must_use]
pub fn retries(retry: i32, backoff_delay: &str) -> DeliverySpec {
    DeliverySpec {
        retry: Some(retry),
        backoff_delay: Some(backoff_delay.to_owned()),
        ..DeliverySpec::default()
    }
}

/// [`retries`], then the event goes to the dead-letter sink at `dead_letter_uri`.
#[must_use]
pub fn retries_then_dead_letter(
    retry: i32,
    backoff_delay: &str,
    dead_letter_uri: &str,
) -> DeliverySpec {
    DeliverySpec {
        dead_letter_sink: Some(uri_destination(dead_letter_uri)),
        ..retries(retry, backoff_delay)
    }
}

/// Container `name` of `image` running `command`. Never pulled: the test node has
/// what it runs (the Herald image, busybox) and reaches no registry.
#[must_use]
pub fn container(name: &str, image: &str, command: &[&str]) -> Container {
    Container {
        name: name.to_owned(),
        image: Some(image.to_owned()),
        image_pull_policy: Some("Never".to_owned()),
        command: Some(command.iter().map(|&a| a.to_owned()).collect()),
        ..Container::default()
    }
}

/// A pod template of `container` alone.
#[must_use]
pub fn pod_of(container: Container) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: None,
        spec: Some(PodSpec {
            containers: vec![container],
            ..PodSpec::default()
        }),
    }
}

/// A consumer Deployment of one container `worker` of the Herald image (in the node's
/// containerd, never pulled) running `command`, scaled by `scaling`.
#[must_use]
pub fn consumer(command: &[&str], scaling: ScalingSpec) -> ConsumerSpec {
    ConsumerSpec {
        template: pod_of(container("worker", &crate::pods::herald_image(), command)),
        scaling,
        ..ConsumerSpec::default()
    }
}

/// Scaling between `min` and `max` replicas, looking at the backlog every second.
#[must_use]
pub fn scaling(min: i32, max: i32) -> ScalingSpec {
    ScalingSpec {
        min_replicas: Some(min),
        max_replicas: Some(max),
        poll_interval: Some("1s".to_owned()),
        ..ScalingSpec::default()
    }
}

/// A Trigger spec on Broker `default` whose events go to `consumer`.
#[must_use]
pub fn to_consumer(consumer: ConsumerSpec) -> TriggerSpec {
    TriggerSpec {
        broker: "default".to_owned(),
        consumer: Some(consumer),
        ..TriggerSpec::default()
    }
}

/// EventSource `name` with `spec`.
#[must_use]
pub fn event_source(name: &str, spec: EventSourceSpec) -> EventSource {
    EventSource::new(name, spec)
}

/// An EventSource spec sending to `sink`; set the source with struct update syntax.
#[must_use]
pub fn source_to(sink: Destination) -> EventSourceSpec {
    EventSourceSpec {
        sink,
        ..EventSourceSpec::default()
    }
}

/// An EventSource spec sending an event to `sink` on `schedule`.
#[must_use]
pub fn cron_to(schedule: &str, sink: Destination) -> EventSourceSpec {
    EventSourceSpec {
        cron: Some(CronSource {
            schedule: schedule.to_owned(),
            ..CronSource::default()
        }),
        ..source_to(sink)
    }
}

/// ServiceAccount `name`.
#[must_use]
pub fn service_account(name: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: named(name),
        ..ServiceAccount::default()
    }
}

/// Secret `name` holding `value` under `key`.
#[must_use]
pub fn secret(name: &str, key: &str, value: &str) -> Secret {
    Secret {
        metadata: named(name),
        string_data: Some(string_map([(key, value)])),
        ..Secret::default()
    }
}

fn string_map<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}
