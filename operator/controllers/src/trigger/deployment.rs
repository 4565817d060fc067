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
use herald_api::workload::{self, SidecarConfig};
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

use crate::autoscale::policy::PolicyError;

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
const TLS_VOLUME: &str = "herald-nats-tls";
const TLS_DIR: &str = "/var/run/secrets/herald/nats-tls";

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
            workload::ENV_METRICS_ADDR,
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

/// What in `spec.consumer` cannot become a Deployment.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error(transparent)]
    Scaling(#[from] PolicyError),
    #[error("consumer.path must start with '/', got {0:?}")]
    RelativePath(String),
    /// The sidecar's configuration could not be written (a bug, not the user's spec).
    #[error("{0}")]
    Plan(#[source] serde_json::Error),
    #[error("the Trigger has no consumer")]
    NoConsumer,
    #[error("consumer.template.spec is required (it holds the consumer's containers)")]
    NoPodSpec,
    #[error("consumer.template.spec.containers must name at least one container")]
    NoContainers,
    #[error("container name {SIDECAR} is reserved for Herald's sidecar; rename yours")]
    SidecarName,
    #[error("the Trigger has no uid yet")]
    NoUid,
}

fn sidecar(
    consumer: &ConsumerSpec,
    plan: &SidecarConfig,
    access: &NatsAccess,
    settings: &WorkloadSettings,
) -> Result<Container, ConsumerError> {
    let port = consumer.port.unwrap_or(DEFAULT_PORT);
    let path = consumer.path.as_deref().unwrap_or("/");
    if !path.starts_with('/') {
        return Err(ConsumerError::RelativePath(path.to_owned()));
    }
    let plan = serde_json::to_string(plan).map_err(ConsumerError::Plan)?;
    Ok(Container {
        name: SIDECAR.to_owned(),
        image: Some(settings.sidecar_image.clone()),
        command: Some(vec!["herald".to_owned()]),
        args: Some(vec!["dispatcher".to_owned()]),
        // Later variables may refer to earlier ones as $(NAME), as Kubernetes expands them.
        env: Some(
            access
                .env
                .iter()
                .cloned()
                .chain([
                    env(workload::ENV_TRIGGER_PLAN, plan),
                    env(workload::ENV_CONSUMER_PORT, port.to_string()),
                    env(
                        workload::ENV_SUBSCRIBER,
                        format!("http://127.0.0.1:$({}){path}", workload::ENV_CONSUMER_PORT),
                    ),
                ])
                .chain(metrics_env(SIDECAR_METRICS_PORT))
                .collect(),
        ),
        volume_mounts: (!access.mounts.is_empty()).then(|| access.mounts.clone()),
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

/// What a container needs to reach NATS as the consumer says: the URL, and the
/// credentials and TLS files (environment and mounts), plus the pod volumes behind
/// the mounts. The sidecar gets it in `http` mode, every container in `nats` mode.
struct NatsAccess {
    env: Vec<EnvVar>,
    mounts: Vec<VolumeMount>,
    volumes: Vec<Volume>,
}

fn nats_access(consumer: &ConsumerSpec, settings: &WorkloadSettings) -> NatsAccess {
    let mut access = NatsAccess {
        env: vec![env(workload::ENV_NATS_URL, settings.nats_url.clone())],
        mounts: Vec::new(),
        volumes: Vec::new(),
    };
    let mount = |access: &mut NatsAccess,
                 volume: &str,
                 dir: &str,
                 secret: &str,
                 items: Vec<(&str, &str)>| {
        access.mounts.push(VolumeMount {
            name: volume.to_owned(),
            mount_path: dir.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        access.volumes.push(Volume {
            name: volume.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.to_owned()),
                items: Some(
                    items
                        .into_iter()
                        .map(|(key, path)| KeyToPath {
                            key: key.to_owned(),
                            path: path.to_owned(),
                            ..KeyToPath::default()
                        })
                        .collect(),
                ),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    };
    if let Some(secret) = &consumer.credentials_secret_ref {
        access.env.push(env(
            workload::ENV_NATS_CREDS,
            format!("{CREDENTIALS_DIR}/nats.creds"),
        ));
        mount(
            &mut access,
            CREDENTIALS_VOLUME,
            CREDENTIALS_DIR,
            &secret.name,
            vec![(secret.key.as_str(), "nats.creds")],
        );
    }
    if let Some(tls) = &consumer.nats_tls {
        access
            .env
            .push(env(workload::ENV_NATS_TLS_CA, format!("{TLS_DIR}/ca.crt")));
        access
            .env
            .push(env(workload::ENV_NATS_TLS_REQUIRED, "true".to_owned()));
        let mut items = vec![("ca.crt", "ca.crt")];
        if tls.client_certificate {
            access.env.push(env(
                workload::ENV_NATS_TLS_CERT,
                format!("{TLS_DIR}/tls.crt"),
            ));
            access.env.push(env(
                workload::ENV_NATS_TLS_KEY,
                format!("{TLS_DIR}/tls.key"),
            ));
            items.extend([("tls.crt", "tls.crt"), ("tls.key", "tls.key")]);
        }
        mount(&mut access, TLS_VOLUME, TLS_DIR, &tls.secret_name, items);
    }
    access
}

/// Gives `nats`-mode containers the connection details of the Trigger's consumer.
fn inject_nats(
    spec: &mut PodSpec,
    consumer: &ConsumerSpec,
    plan: &SidecarConfig,
    settings: &WorkloadSettings,
) {
    // The Trigger's queue holds only the events its filters match: the container reads
    // its durable consumer there, whatever the filters are.
    let stream = plan.queue_stream();
    let durable = naming::consumer_name(&plan.trigger);
    let access = nats_access(consumer, settings);
    for container in &mut spec.containers {
        for var in &access.env {
            add_env(container, var.clone());
        }
        add_env(container, env(workload::ENV_STREAM, stream.clone()));
        add_env(container, env(workload::ENV_CONSUMER, durable.clone()));
        container
            .volume_mounts
            .get_or_insert_with(Vec::new)
            .extend(access.mounts.iter().cloned());
    }
    spec.volumes
        .get_or_insert_with(Vec::new)
        .extend(access.volumes);
}

/// The Deployment for `trigger` (which must have a `consumer`); `replicas` only when
/// creating it, as the autoscaler owns them afterwards. `Err` says what in
/// `spec.consumer` cannot be used.
pub fn desired_deployment(
    trigger: &Trigger,
    plan: &SidecarConfig,
    settings: &WorkloadSettings,
    replicas: Option<i32>,
) -> Result<Deployment, ConsumerError> {
    let consumer = trigger
        .spec
        .consumer
        .as_ref()
        .ok_or(ConsumerError::NoConsumer)?;
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
    let spec = template.spec.as_mut().ok_or(ConsumerError::NoPodSpec)?;
    if spec.containers.is_empty() {
        return Err(ConsumerError::NoContainers);
    }
    match consumer.mode {
        ConsumerMode::Http => {
            if spec.containers.iter().any(|c| c.name == SIDECAR) {
                return Err(ConsumerError::SidecarName);
            }
            let port = consumer.port.unwrap_or(DEFAULT_PORT);
            add_env(
                &mut spec.containers[0],
                env(workload::ENV_PORT, port.to_string()),
            );
            let access = nats_access(consumer, settings);
            let sidecar = sidecar(consumer, plan, &access, settings)?;
            spec.containers.push(sidecar);
            spec.volumes
                .get_or_insert_with(Vec::new)
                .extend(access.volumes);
        }
        ConsumerMode::Nats => inject_nats(spec, consumer, plan, settings),
    }
    let owner = trigger
        .controller_owner_ref(&())
        .ok_or(ConsumerError::NoUid)?;
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
            replicas,
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
