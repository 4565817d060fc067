//! `kubernetes` sources: `herald sources --kubernetes-plan JSON` runs one EventSource in
//! its own Deployment, as the ServiceAccount the user named, so it sees exactly what
//! that account may list and watch. Each resource kind is found through discovery and
//! watched in each listed namespace (with the label selector); after the initial list,
//! every change becomes an event:
//!
//! * `type`: `dev.herald.kubernetes.resource.add` / `.update` / `.delete`;
//! * `subject`: `<namespace>/<name>` of the object;
//! * `id`: `<uid>/<resourceVersion>` (a replica or a restart re-emitting the same change
//!   is stored once by a Broker);
//! * `data` (JSON): a reference (`apiVersion`, `kind`, `namespace`, `name`, `uid`,
//!   `resourceVersion`) or, with `eventMode: resource`, the whole object.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use herald_api::eventsource::{KubernetesEventMode, KubernetesResource, group_version};
use herald_api::workload::KubernetesSourceConfig;
use herald_cloudevents::CloudEvent;
use kube::api::DynamicObject;
use kube::core::GroupVersionKind;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use crate::sink::Sender;

/// Event types of a kubernetes source.
pub const TYPE_PREFIX: &str = "dev.herald.kubernetes.resource";

/// The event for a change of `object` (pure).
#[must_use]
pub fn change_event(
    plan: &KubernetesSourceConfig,
    change: &str,
    object: &DynamicObject,
) -> CloudEvent {
    let uid = object.uid().unwrap_or_default();
    let version = object.resource_version().unwrap_or_default();
    let id = if change == "delete" {
        format!("{uid}/{version}/delete")
    } else {
        format!("{uid}/{version}")
    };
    let mut event = crate::resolved::new_event(
        &plan.namespace,
        &plan.name,
        &plan.extensions,
        &id,
        &format!("{TYPE_PREFIX}.{change}"),
    );
    event.set(
        "subject",
        format!(
            "{}/{}",
            object.namespace().unwrap_or_default(),
            object.name_any()
        ),
    );
    event.set("datacontenttype", "application/json");
    let types = object.types.clone().unwrap_or_default();
    let data = match plan.event_mode {
        KubernetesEventMode::Resource => serde_json::to_vec(object).unwrap_or_default(),
        KubernetesEventMode::Reference => serde_json::to_vec(&serde_json::json!({
            "apiVersion": types.api_version,
            "kind": types.kind,
            "namespace": object.namespace(),
            "name": object.name_any(),
            "uid": uid,
            "resourceVersion": version,
        }))
        .unwrap_or_default(),
    };
    event.data = Some(Bytes::from(data));
    event
}

async fn watch_one(
    client: Client,
    plan: Arc<KubernetesSourceConfig>,
    resource: KubernetesResource,
    namespace: String,
    sender: Sender,
) {
    let (group, version) = group_version(&resource.api_version);
    let gvk = GroupVersionKind::gvk(group, version, &resource.kind);
    let api_resource = loop {
        match kube::discovery::pinned_kind(&client, &gvk).await {
            Ok((ar, _)) => break ar,
            Err(e) => {
                tracing::warn!(kind = %resource.kind, error = %e, "cannot discover the kind; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
        }
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client, &namespace, &api_resource);
    let mut config = watcher::Config::default();
    if let Some(selector) = &resource.label_selector {
        config = config.labels(selector);
    }
    let mut seen: HashSet<String> = HashSet::new();
    let mut listed = false;
    let mut changes = std::pin::pin!(watcher(api, config).default_backoff());
    while let Some(change) = changes.next().await {
        let (kind, object) = match change {
            Ok(watcher::Event::Init) => {
                seen.clear();
                continue;
            }
            Ok(watcher::Event::InitApply(object)) => {
                seen.insert(object.uid().unwrap_or_default());
                continue;
            }
            Ok(watcher::Event::InitDone) => {
                if !listed {
                    tracing::info!(kind = %resource.kind, %namespace, objects = seen.len(), "watching");
                }
                listed = true;
                continue;
            }
            Ok(watcher::Event::Apply(object)) => {
                let uid = object.uid().unwrap_or_default();
                let kind = if seen.insert(uid) { "add" } else { "update" };
                (kind, object)
            }
            Ok(watcher::Event::Delete(object)) => {
                seen.remove(&object.uid().unwrap_or_default());
                ("delete", object)
            }
            Err(e) => {
                tracing::warn!(kind = %resource.kind, %namespace, error = %e, "watch failed (does the ServiceAccount may list and watch it?); retrying");
                continue;
            }
        };
        let event = change_event(&plan, kind, &object);
        let _ = sender
            .send(&plan.namespace, &plan.name, &plan.sink, &event)
            .await;
    }
}

/// Runs a kubernetes source until SIGTERM/SIGINT.
pub async fn run(
    client: Client,
    plan: KubernetesSourceConfig,
    sender: Sender,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let plan = Arc::new(plan);
    let mut tasks = Vec::new();
    for resource in &plan.resources {
        let namespaces = if resource.namespaces.is_empty() {
            vec![plan.namespace.clone()]
        } else {
            resource.namespaces.clone()
        };
        for namespace in namespaces {
            tasks.push(tokio::spawn(watch_one(
                client.clone(),
                plan.clone(),
                resource.clone(),
                namespace,
                sender.clone(),
            )));
        }
    }
    herald_runtime::fired(shutdown).await;
    for task in tasks {
        task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn events_name_the_change_and_the_object() {
        let plan = KubernetesSourceConfig {
            namespace: "ns".into(),
            name: "cm-watch".into(),
            sink: "http://sink".into(),
            extensions: BTreeMap::from([("team".into(), "a".into())]),
            resources: vec![],
            event_mode: KubernetesEventMode::Reference,
        };
        let object: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "ns", "uid": "u-1", "resourceVersion": "42"},
            "data": {"k": "v"},
        }))
        .unwrap();
        let update = change_event(&plan, "update", &object);
        assert_eq!(update.type_(), "dev.herald.kubernetes.resource.update");
        assert_eq!(update.id(), "u-1/42");
        assert_eq!(update.get("subject"), Some("ns/settings"));
        assert_eq!(update.get("team"), Some("a"));
        let data: serde_json::Value =
            serde_json::from_slice(update.data.as_deref().unwrap()).unwrap();
        assert_eq!(data["kind"], "ConfigMap");
        assert!(data.get("data").is_none(), "a reference, not the object");
        assert_eq!(change_event(&plan, "delete", &object).id(), "u-1/42/delete");
        let whole = change_event(
            &KubernetesSourceConfig {
                event_mode: KubernetesEventMode::Resource,
                ..plan
            },
            "add",
            &object,
        );
        let data: serde_json::Value =
            serde_json::from_slice(whole.data.as_deref().unwrap()).unwrap();
        assert_eq!(data["data"]["k"], "v");
    }

    #[test]
    fn api_versions_split() {
        assert_eq!(group_version("apps/v1"), ("apps", "v1"));
        assert_eq!(group_version("v1"), ("", "v1"));
    }
}
