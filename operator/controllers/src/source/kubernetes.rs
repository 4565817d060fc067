//! `kubernetes` EventSources: each runs in its own Deployment (`herald sources
//! --kubernetes-plan`) as the ServiceAccount the user named, so it sees only what that
//! account may see. Before deploying, the operator asks the apiserver
//! (a `SubjectAccessReview`) whether the account may list and watch every listed kind in
//! every listed namespace, and reports what it may not as `Forbidden`.

use std::collections::BTreeMap;

use herald_api::conditions::Reason;
use herald_api::eventsource::KubernetesSource;
use herald_api::eventsource::group_version;
use herald_api::workload::{self, KubernetesSourceConfig};
use herald_api::{EventSource, OPERATOR_FIELD_MANAGER, naming};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client, Resource, ResourceExt};

use crate::error::Error;
use crate::trigger::deployment::{env, metrics_env, restricted_security_context};

/// The adapter's admin port (`herald sources`' default).
const ADAPTER_METRICS_PORT: i32 = 9093;

/// Label naming the EventSource on its adapter's Deployment and pods.
pub const SOURCE_LABEL: &str = "eventing.herald.dev/eventsource";

/// Why the adapter Deployment cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The adapter's configuration could not be written (a bug, not the user's spec).
    #[error("{0}")]
    Plan(#[source] serde_json::Error),
    #[error("the EventSource has no uid yet")]
    NoUid,
}

/// The adapter Deployment of `source` (pure).
pub fn desired_deployment(
    source: &EventSource,
    spec: &KubernetesSource,
    plan: &KubernetesSourceConfig,
    image: &str,
) -> Result<Deployment, AdapterError> {
    let name = source.name_any();
    let labels = BTreeMap::from([
        (SOURCE_LABEL.to_owned(), naming::label_value(&name)),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "herald".to_owned(),
        ),
    ]);
    let plan = serde_json::to_string(plan).map_err(AdapterError::Plan)?;
    let owner = source
        .controller_owner_ref(&())
        .ok_or(AdapterError::NoUid)?;
    let container = Container {
        name: "adapter".into(),
        image: Some(image.to_owned()),
        command: Some(vec!["herald".into()]),
        args: Some(vec!["sources".into()]),
        env: Some(
            [env(workload::ENV_KUBERNETES_PLAN, plan)]
                .into_iter()
                .chain(metrics_env(ADAPTER_METRICS_PORT))
                .collect(),
        ),
        security_context: Some(restricted_security_context()),
        ..Container::default()
    };
    Ok(Deployment {
        metadata: ObjectMeta {
            name: Some(naming::source_deployment_name(&name)),
            namespace: source.namespace(),
            labels: Some(labels.clone()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: DeploymentSpec {
            // One watcher: a second would send every change twice (a Broker would
            // store it once, a plain URI sink would not).
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(spec.service_account_name.clone()),
                    containers: vec![container],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        status: None,
    })
}

/// What the account may not do, as readable phrases (empty: everything allowed).
/// `Err` carries `(reason, message)` for kinds that do not exist.
async fn forbidden(
    client: &Client,
    source_namespace: &str,
    spec: &KubernetesSource,
) -> Result<Result<Vec<String>, (Reason, String)>, Error> {
    let user = format!(
        "system:serviceaccount:{source_namespace}:{}",
        spec.service_account_name
    );
    let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
    let mut denied = Vec::new();
    for resource in &spec.resources {
        let (group, version) = group_version(&resource.api_version);
        let gvk = GroupVersionKind::gvk(group, version, &resource.kind);
        let Ok((api_resource, _)) = kube::discovery::pinned_kind(client, &gvk).await else {
            return Ok(Err((
                Reason::UnknownKind,
                format!(
                    "the apiserver serves no {} in {}",
                    resource.kind, resource.api_version
                ),
            )));
        };
        let namespaces = if resource.namespaces.is_empty() {
            vec![source_namespace.to_owned()]
        } else {
            resource.namespaces.clone()
        };
        for namespace in namespaces {
            for verb in ["list", "watch"] {
                let review = SubjectAccessReview {
                    spec: SubjectAccessReviewSpec {
                        user: Some(user.clone()),
                        groups: Some(vec![
                            "system:serviceaccounts".into(),
                            format!("system:serviceaccounts:{source_namespace}"),
                            "system:authenticated".into(),
                        ]),
                        resource_attributes: Some(ResourceAttributes {
                            namespace: Some(namespace.clone()),
                            verb: Some(verb.into()),
                            group: Some(group.to_owned()),
                            resource: Some(api_resource.plural.clone()),
                            ..ResourceAttributes::default()
                        }),
                        ..SubjectAccessReviewSpec::default()
                    },
                    ..SubjectAccessReview::default()
                };
                let answer = reviews.create(&PostParams::default(), &review).await?;
                if !answer.status.is_some_and(|s| s.allowed) {
                    denied.push(format!("{verb} {} in {namespace}", api_resource.plural));
                }
            }
        }
    }
    Ok(Ok(denied))
}

/// Checks access and applies the adapter Deployment. The inner result is the
/// `Deployed` condition: `Ok(message)` or `Err((reason, message))`.
pub async fn ensure(
    client: &Client,
    source: &EventSource,
    spec: &KubernetesSource,
    sink: &str,
    image: &str,
) -> Result<Result<String, (Reason, String)>, Error> {
    let namespace = source.namespace().unwrap_or_default();
    let denied = match forbidden(client, &namespace, spec).await? {
        Ok(denied) => denied,
        Err(problem) => return Ok(Err(problem)),
    };
    if !denied.is_empty() {
        return Ok(Err((
            Reason::Forbidden,
            format!(
                "ServiceAccount {} may not {}; grant it list and watch (a Role and RoleBinding) and Herald deploys the adapter",
                spec.service_account_name,
                denied.join(", ")
            ),
        )));
    }
    let plan = KubernetesSourceConfig {
        namespace: namespace.clone(),
        name: source.name_any(),
        sink: sink.to_owned(),
        extensions: source
            .spec
            .ce_overrides
            .as_ref()
            .map(|o| o.extensions.clone())
            .unwrap_or_default(),
        resources: spec.resources.clone(),
        event_mode: spec.event_mode,
    };
    let deployment = match desired_deployment(source, spec, &plan, image) {
        Ok(d) => d,
        Err(e) => return Ok(Err((Reason::InvalidSpec, e.to_string()))),
    };
    let name = deployment.meta().name.clone().unwrap_or_default();
    let applied = Api::<Deployment>::namespaced(client.clone(), &namespace)
        .patch(
            &name,
            &PatchParams::apply(OPERATOR_FIELD_MANAGER).force(),
            &Patch::Apply(&deployment),
        )
        .await;
    match applied {
        Ok(_) => Ok(Ok(format!(
            "Deployment {name} watches as ServiceAccount {}",
            spec.service_account_name
        ))),
        Err(kube::Error::Api(e)) if matches!(e.code, 400 | 422) => {
            Ok(Err((Reason::DeploymentRejected, e.message)))
        }
        Err(e) => Err(Error::Kube(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_adapter_runs_as_the_named_account_with_its_plan() {
        let mut source = EventSource::new(
            "cm-watch",
            serde_yaml::from_str(
                "sink: {uri: http://x}\nkubernetes: {resources: [{apiVersion: v1, kind: ConfigMap}], serviceAccountName: watcher}",
            )
            .unwrap(),
        );
        source.metadata.namespace = Some("ns".into());
        source.metadata.uid = Some("u".into());
        let spec = source.spec.kubernetes.clone().unwrap();
        let plan = KubernetesSourceConfig {
            namespace: "ns".into(),
            name: "cm-watch".into(),
            sink: "http://sink".into(),
            resources: spec.resources.clone(),
            ..KubernetesSourceConfig::default()
        };
        let d = desired_deployment(&source, &spec, &plan, "herald:1").unwrap();
        assert_eq!(d.metadata.name.as_deref(), Some("cm-watch-source"));
        let pod = d.spec.template.spec.unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("watcher"));
        let env = pod.containers[0].env.clone().unwrap();
        let json = env
            .iter()
            .find(|e| e.name == workload::ENV_KUBERNETES_PLAN)
            .unwrap()
            .value
            .clone()
            .unwrap();
        let back: KubernetesSourceConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, plan);
        assert_eq!(d.spec.replicas, Some(1));
    }
}
