//! Sink binding: the user's own Deployments are the source. Every container of each
//! Deployment the selector matches gets `K_SINK` (the sink's URL) and, with
//! `ceOverrides`, `K_CE_OVERRIDES` (`{"extensions": {...}}`), as Knative's sink binding
//! does. The operator owns only those two variables (server-side apply with its own
//! field manager), so the user's manifests keep everything else; unbinding applies an
//! empty configuration, which removes exactly what Herald added.

use std::collections::BTreeMap;

use herald_api::EventSource;
use herald_api::eventsource::SinkBindingSource;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

/// Field manager of the injected variables.
pub const FIELD_MANAGER: &str = herald_api::field_manager::SINK_BINDING;
/// The sink's URL.
pub const K_SINK: &str = "K_SINK";
/// The attribute overrides as JSON.
pub const K_CE_OVERRIDES: &str = "K_CE_OVERRIDES";

/// `app=web,tier=api` from the binding's labels.
#[must_use]
pub fn selector(binding: &SinkBindingSource) -> String {
    binding
        .match_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The apply configuration that binds `deployment` (pure): only the two variables, on
/// every container.
#[must_use]
pub fn binding_patch(
    deployment: &Deployment,
    sink: &str,
    extensions: Option<&BTreeMap<String, String>>,
) -> serde_json::Value {
    let mut env = vec![serde_json::json!({"name": K_SINK, "value": sink})];
    if let Some(extensions) = extensions.filter(|e| !e.is_empty()) {
        let overrides = serde_json::json!({"extensions": extensions}).to_string();
        env.push(serde_json::json!({"name": K_CE_OVERRIDES, "value": overrides}));
    }
    let containers: Vec<serde_json::Value> = deployment
        .spec
        .template
        .spec
        .iter()
        .flat_map(|p| p.containers.iter())
        .map(|c| serde_json::json!({"name": c.name, "env": env}))
        .collect();
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment.name_any()},
        "spec": {"template": {"spec": {"containers": containers}}},
    })
}

/// The apply configuration that removes what Herald added to `name`.
#[must_use]
pub fn unbinding_patch(name: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}})
}

/// Binds every Deployment `binding` selects in `namespace` to `sink`, unbinds those
/// in `previously` that no longer match; returns the bound names.
pub async fn bind(
    client: &Client,
    namespace: &str,
    binding: &SinkBindingSource,
    sink: &str,
    extensions: Option<&BTreeMap<String, String>>,
    previously: &[String],
) -> kube::Result<Vec<String>> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let matching = api
        .list(&ListParams::default().labels(&selector(binding)))
        .await?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut bound = Vec::new();
    for deployment in &matching.items {
        let name = deployment.name_any();
        api.patch(
            &name,
            &params,
            &Patch::Apply(binding_patch(deployment, sink, extensions)),
        )
        .await?;
        bound.push(name);
    }
    for name in previously.iter().filter(|n| !bound.contains(n)) {
        unbind_one(&api, name).await?;
    }
    bound.sort();
    Ok(bound)
}

async fn unbind_one(api: &Api<Deployment>, name: &str) -> kube::Result<()> {
    match api
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(unbinding_patch(name)),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Unbinds every Deployment in `names`.
pub async fn unbind(client: &Client, namespace: &str, names: &[String]) -> kube::Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    for name in names {
        unbind_one(&api, name).await?;
    }
    Ok(())
}

/// The binding EventSources a Deployment's change concerns (it may have started or
/// stopped matching), for the watch mapping.
#[must_use]
pub fn bindings_of(
    store: &Store<EventSource>,
    deployment: &Deployment,
) -> Vec<ObjectRef<EventSource>> {
    let namespace = deployment.namespace();
    let name = deployment.name_any();
    let labels = deployment.labels();
    store
        .state()
        .iter()
        .filter(|s| s.namespace() == namespace)
        .filter(|s| {
            s.spec
                .sink_binding
                .as_ref()
                .is_some_and(|b| b.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v)))
                || s.status
                    .as_ref()
                    .is_some_and(|st| st.bound_deployments.contains(&name))
        })
        .map(|s| ObjectRef::from_obj(&**s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_container_gets_the_sink_and_overrides() {
        let deployment: Deployment = serde_yaml::from_str(
            "metadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    spec:\n      containers: [{name: a, image: a}, {name: b, image: b}]\n",
        )
        .unwrap();
        let ext = BTreeMap::from([("team".to_owned(), "shop".to_owned())]);
        let patch = binding_patch(&deployment, "http://broker/ns/default", Some(&ext));
        let containers = patch["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(containers.len(), 2);
        for c in containers {
            assert_eq!(
                c["env"][0],
                serde_json::json!({"name": "K_SINK", "value": "http://broker/ns/default"})
            );
            assert_eq!(c["env"][1]["value"], r#"{"extensions":{"team":"shop"}}"#);
            assert!(c.get("image").is_none(), "only the variables are Herald's");
        }
        let plain = binding_patch(&deployment, "http://x", None);
        assert_eq!(
            plain["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn selectors_are_kubectl_syntax() {
        let binding = SinkBindingSource {
            match_labels: BTreeMap::from([
                ("app".into(), "web".into()),
                ("tier".into(), "api".into()),
            ]),
        };
        assert_eq!(selector(&binding), "app=web,tier=api");
    }
}
