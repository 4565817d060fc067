//! The Deployment Herald runs for a Trigger with a `consumer`, built purely from the
//! Trigger (the reconcile only applies it).
//!
//! * `http` mode: the user's pod template plus a `herald-dispatcher` sidecar that pulls
//!   the Trigger's durable consumer and POSTs each event to the user's first container
//!   on `127.0.0.1:<port>`; that container gets `PORT` (Knative's convention). Every
//!   replica pulls its own share of the same consumer.
//! * `nats` mode: the user's containers read the durable consumer themselves; each gets
//!   the NATS URL, stream and consumer names, and credentials mounted from a Secret.
//!
//! The sidecar's plan (filters, delivery, dead-letter sink) is in its environment, so a
//! change to any of them changes the pod template and rolls the Deployment.

use std::collections::BTreeMap;

use herald_api::trigger::{ConsumerMode, ConsumerSpec};
use herald_api::workload::{self, DispatcherPlan};
use herald_api::{Trigger, naming};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, HTTPGetAction, KeyToPath, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SecretVolumeSource, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

/// Label on a consumer Deployment and its pods naming the Trigger.
pub const TRIGGER_LABEL: &str = "eventing.herald.dev/trigger";
/// Name of the dispatcher sidecar container.
pub const SIDECAR: &str = "herald-dispatcher";
/// Port the user's container listens on in `http` mode unless `consumer.port` says.
pub const DEFAULT_PORT: i32 = 8080;
/// The sidecar's admin port (`/metrics`, `/readyz`).
pub const SIDECAR_METRICS_PORT: i32 = 9092;
const CREDENTIALS_VOLUME: &str = "herald-nats-credentials";
const CREDENTIALS_DIR: &str = "/var/run/secrets/herald/nats";

/// What the operator puts into every consumer Deployment, from its own flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadSettings {
    /// Image of the dispatcher sidecar (the `herald` image).
    pub sidecar_image: String,
    /// NATS URL(s) the pods use.
    pub nats_url: String,
}

/// A plain `name=value` environment variable.
pub(crate) fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// The variables that put a `herald` process's admin server on `port` (the runner in
/// e2e remaps `*_PORT` variables, so the address refers to the port variable).
pub(crate) fn metrics_env(port: i32) -> [EnvVar; 2] {
    [
        env(workload::ENV_METRICS_PORT, port.to_string()),
        env(
            "HERALD_METRICS_ADDR",
            format!("0.0.0.0:$({})", workload::ENV_METRICS_PORT),
        ),
    ]
}

/// The security context of every container Herald adds: non-root, read-only root
/// filesystem, no privilege escalation, no capabilities.
pub(crate) fn restricted_security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        ..SecurityContext::default()
    }
}

/// Adds `var` to `container` unless the user set a variable of that name.
fn add_env(container: &mut Container, var: EnvVar) {
    let list = container.env.get_or_insert_with(Vec::new);
    if !list.iter().any(|e| e.name == var.name) {
        list.push(var);
    }
}

/// The labels that select a Trigger's pods.
#[must_use]
pub fn selector_labels(trigger: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(TRIGGER_LABEL.to_owned(), naming::label_value(trigger))])
}

fn sidecar(
    consumer: &ConsumerSpec,
    plan: &DispatcherPlan,
    settings: &WorkloadSettings,
) -> Result<Container, String> {
    let port = consumer.port.unwrap_or(DEFAULT_PORT);
    let path = consumer.path.as_deref().unwrap_or("/");
    if !path.starts_with('/') {
        return Err(format!("consumer.path must start with '/', got {path:?}"));
    }
    let plan = serde_json::to_string(plan).map_err(|e| e.to_string())?;
    Ok(Container {
        name: SIDECAR.to_owned(),
        image: Some(settings.sidecar_image.clone()),
        command: Some(vec!["herald".to_owned()]),
        args: Some(vec!["dispatcher".to_owned()]),
        // Later variables may refer to earlier ones as $(NAME), as Kubernetes expands them.
        env: Some(
            vec![
                env(workload::ENV_NATS_URL, settings.nats_url.clone()),
                env(workload::ENV_TRIGGER_PLAN, plan),
                env(workload::ENV_CONSUMER_PORT, port.to_string()),
                env(
                    workload::ENV_SUBSCRIBER,
                    format!("http://127.0.0.1:$({}){path}", workload::ENV_CONSUMER_PORT),
                ),
            ]
            .into_iter()
            .chain(metrics_env(SIDECAR_METRICS_PORT))
            .collect(),
        ),
        ports: Some(vec![ContainerPort {
            name: Some("herald-metrics".to_owned()),
            container_port: SIDECAR_METRICS_PORT,
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/readyz".to_owned()),
                port: IntOrString::Int(SIDECAR_METRICS_PORT),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(5),
            ..Probe::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity("10m".to_owned())),
                ("memory".to_owned(), Quantity("32Mi".to_owned())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_owned(),
                Quantity("256Mi".to_owned()),
            )])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(restricted_security_context()),
        ..Container::default()
    })
}

/// Gives `nats`-mode containers the connection details of the Trigger's consumer.
fn inject_nats(
    spec: &mut PodSpec,
    consumer: &ConsumerSpec,
    plan: &DispatcherPlan,
    settings: &WorkloadSettings,
) {
    let stream = naming::stream_name(&plan.namespace, &plan.broker);
    let durable = naming::consumer_name(&plan.trigger);
    let credentials = consumer.credentials_secret_ref.as_ref();
    for container in &mut spec.containers {
        add_env(
            container,
            env(workload::ENV_NATS_URL, settings.nats_url.clone()),
        );
        add_env(container, env(workload::ENV_STREAM, stream.clone()));
        add_env(container, env(workload::ENV_CONSUMER, durable.clone()));
        if credentials.is_some() {
            add_env(
                container,
                env(
                    workload::ENV_NATS_CREDS,
                    format!("{CREDENTIALS_DIR}/nats.creds"),
                ),
            );
            container
                .volume_mounts
                .get_or_insert_with(Vec::new)
                .push(VolumeMount {
                    name: CREDENTIALS_VOLUME.to_owned(),
                    mount_path: CREDENTIALS_DIR.to_owned(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                });
        }
    }
    if let Some(secret) = credentials {
        spec.volumes.get_or_insert_with(Vec::new).push(Volume {
            name: CREDENTIALS_VOLUME.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.name.clone()),
                items: Some(vec![KeyToPath {
                    key: secret.key.clone(),
                    path: "nats.creds".to_owned(),
                    ..KeyToPath::default()
                }]),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
}

/// The Deployment for `trigger` (which must have a `consumer`) with `replicas`
/// replicas. `Err` says what in `spec.consumer` cannot be used.
pub fn desired_deployment(
    trigger: &Trigger,
    plan: &DispatcherPlan,
    settings: &WorkloadSettings,
    replicas: i32,
) -> Result<Deployment, String> {
    let consumer = trigger
        .spec
        .consumer
        .as_ref()
        .ok_or("the Trigger has no consumer")?;
    let name = trigger.name_any();
    let selector = selector_labels(&name);
    let mut template: PodTemplateSpec = consumer.template.clone();
    let metadata = template.metadata.get_or_insert_with(ObjectMeta::default);
    let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.extend(selector.clone());
    labels.insert(
        "app.kubernetes.io/managed-by".to_owned(),
        "herald".to_owned(),
    );
    let spec = template
        .spec
        .as_mut()
        .ok_or("consumer.template.spec is required (it holds the consumer's containers)")?;
    if spec.containers.is_empty() {
        return Err("consumer.template.spec.containers must name at least one container".into());
    }
    match consumer.mode {
        ConsumerMode::Http => {
            if spec.containers.iter().any(|c| c.name == SIDECAR) {
                return Err(format!(
                    "container name {SIDECAR} is reserved for Herald's sidecar; rename yours"
                ));
            }
            let port = consumer.port.unwrap_or(DEFAULT_PORT);
            add_env(
                &mut spec.containers[0],
                env(workload::ENV_PORT, port.to_string()),
            );
            let sidecar = sidecar(consumer, plan, settings)?;
            spec.containers.push(sidecar);
        }
        ConsumerMode::Nats => inject_nats(spec, consumer, plan, settings),
    }
    let owner = trigger
        .controller_owner_ref(&())
        .ok_or("the Trigger has no uid yet")?;
    Ok(Deployment {
        metadata: ObjectMeta {
            name: Some(naming::consumer_deployment_name(&name)),
            namespace: trigger.namespace(),
            labels: Some(
                selector
                    .clone()
                    .into_iter()
                    .chain([(
                        "app.kubernetes.io/managed-by".to_owned(),
                        "herald".to_owned(),
                    )])
                    .collect(),
            ),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(selector),
                match_expressions: None,
            },
            template,
            revision_history_limit: Some(3),
            ..DeploymentSpec::default()
        },
        status: None,
    })
}

#[cfg(test)]
#[path = "deployment_tests.rs"]
mod tests;
