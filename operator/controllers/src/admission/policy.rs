//! What the requesting user must be allowed to do before Herald does something on
//! their behalf, and the verdict from the apiserver's answers. Pure: the webhook
//! ([`super::review`]) asks the questions.
//!
//! Herald's own ServiceAccount may create Deployments and read what kubernetes
//! sources watch; without this check, anyone who may create a Trigger or an
//! EventSource could borrow those rights. So each object is held to what its
//! *requester* could do directly:
//!
//! | object                                | Herald does                        | the requester must be able to |
//! |---------------------------------------|------------------------------------|-------------------------------|
//! | Trigger with `consumer`               | runs its pod template (Deployment) | `create deployments.apps` in the namespace |
//! | Trigger with `job`                    | runs its pod template (a Job per event) and stores each event in a Secret | `create jobs.batch` and `create secrets` in the namespace |
//! | EventSource `kubernetes`              | watches each listed kind and namespace | `list` and `watch` them there (cluster-wide for cluster-scoped kinds) |
//! |                                       | runs the adapter as `serviceAccountName` | `create deployments.apps` in the namespace |
//! | EventSource `sinkBinding`             | patches the selected Deployments   | `patch deployments.apps` in the namespace |
//! | Broker `auth.bearerTokenSecretRef`, EventSource `webhook.secretRef`, `nats.credentialsSecretRef` | reads that Secret and uses it (a Broker publishes its token's SHA-256) | `get` that Secret |
//!
//! Running pods as a ServiceAccount needs nothing but the right to create those pods
//! (or a Deployment) in its namespace: Kubernetes has no "use" verb for accounts. So
//! the right to name one is the right to create the Deployment that runs as it.

use herald_api::broker::BrokerSpec;
use herald_api::eventsource::{EventSourceSpec, KubernetesResource};
use herald_api::job::EventJobSpec;
use herald_api::trigger::{ConsumerSpec, ScalingSpec, TriggerSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;

/// One permission the requester must hold, and why Herald asks for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// `create`, `list`, `watch`, `patch`.
    pub verb: &'static str,
    /// API group (`""` for the core group).
    pub group: String,
    /// Plural resource name, e.g. `deployments`.
    pub resource: String,
    /// Namespace; `None` asks for the right in every namespace (cluster-wide).
    pub namespace: Option<String>,
    /// One object by name (a Secret); `None`: any.
    pub name: Option<String>,
    /// What Herald would do with it, for the denial message.
    pub because: &'static str,
}

impl Access {
    fn deployments(verb: &'static str, namespace: &str, because: &'static str) -> Self {
        Self {
            verb,
            group: "apps".into(),
            resource: "deployments".into(),
            namespace: Some(namespace.to_owned()),
            name: None,
            because,
        }
    }

    fn create(group: &str, resource: &str, namespace: &str, because: &'static str) -> Self {
        Self {
            verb: "create",
            group: group.into(),
            resource: resource.into(),
            namespace: Some(namespace.to_owned()),
            name: None,
            because,
        }
    }

    fn secret(namespace: &str, name: &str, because: &'static str) -> Self {
        Self {
            verb: "get",
            group: String::new(),
            resource: "secrets".into(),
            namespace: Some(namespace.to_owned()),
            name: Some(name.to_owned()),
            because,
        }
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.verb, self.resource)?;
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        if let Some(name) = &self.name {
            write!(f, " {name}")?;
        }
        match &self.namespace {
            Some(ns) => write!(f, " in namespace {ns}"),
            None => f.write_str(" cluster-wide"),
        }
    }
}

/// A kind as the apiserver serves it: its plural, and whether it lives in namespaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedKind {
    /// The API group of the kind (`""` for the core group).
    pub group: String,
    /// The plural resource name, e.g. `configmaps`.
    pub plural: String,
    /// `false` for cluster-scoped kinds (Nodes, Namespaces, ...).
    pub namespaced: bool,
}

/// What the request needs: nothing, some permissions, or a refusal outright.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Needs {
    /// Herald runs nothing on the requester's behalf (or nothing that changed).
    Nothing,
    /// Every one of these must be allowed.
    All(Vec<Access>),
    /// Refused without asking: nothing the requester holds can be checked.
    Refuse(Denied),
}

/// Why a request is denied; the text is what the requester reads.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// A kind the EventSource would watch is not served, so no right to it can be checked.
    #[error(
        "the apiserver serves no {kind} in {api_version}, so Herald cannot check that you may list and watch it; create the EventSource once it is served"
    )]
    Unserved { kind: String, api_version: String },
    /// `user` lacks `permissions`, needed for `reasons`.
    #[error(
        "{user} may not {}; Herald does that on your behalf ({}), so you need that permission yourself",
        permissions.join(", "),
        reasons.join("; ")
    )]
    Missing {
        user: String,
        permissions: Vec<String>,
        reasons: Vec<&'static str>,
    },
}

/// Why Herald runs a Trigger's consumer template.
const CONSUMER: &str = "a Trigger's consumer runs pods from its template";
/// Why Herald runs a Trigger's Job template.
const JOB: &str =
    "a Trigger's job runs a Job from its template for each event, with the event in a Secret";
/// Why Herald runs a kubernetes source's adapter as the named account.
const ADAPTER: &str = "a kubernetes source runs its adapter as the named ServiceAccount";
/// Why Herald reads what a kubernetes source watches.
const WATCH: &str = "a kubernetes source sends what it watches to its sink";
/// Why Herald patches a sink binding's Deployments.
const BINDING: &str = "a sinkBinding source patches the Deployments it selects";
/// Why Herald reads a Secret an object names.
const SECRET: &str = "Herald reads the Secrets an object names and uses them (a Broker's token hash is public in its status)";

/// `get` for each Secret named in `new` that `old` did not name already: naming a
/// Secret makes Herald read it for you, so you must be able to read it yourself.
fn secret_reads(namespace: &str, new: &[&str], old: &[&str]) -> Vec<Access> {
    new.iter()
        .filter(|name| !old.contains(name))
        .map(|name| Access::secret(namespace, name, SECRET))
        .collect()
}

/// The Secrets an EventSource names.
fn source_secrets(spec: &EventSourceSpec) -> Vec<&str> {
    let webhook = spec.webhook.as_ref().map(|w| w.secret_ref.name.as_str());
    let nats = spec
        .nats
        .as_ref()
        .and_then(|n| n.credentials_secret_ref.as_ref())
        .map(|r| r.name.as_str());
    webhook.into_iter().chain(nats).collect()
}

/// What creating (`old: None`) or updating a Broker in `namespace` needs: reading the
/// Secret of its static bearer token.
#[must_use]
pub fn broker(namespace: &str, new: &BrokerSpec, old: Option<&BrokerSpec>) -> Needs {
    let token = |spec: &BrokerSpec| -> Vec<String> {
        spec.auth
            .as_ref()
            .and_then(|a| a.bearer_token_secret_ref.as_ref())
            .map(|r| r.name.clone())
            .into_iter()
            .collect()
    };
    let (new, old) = (token(new), old.map(token).unwrap_or_default());
    let new: Vec<&str> = new.iter().map(String::as_str).collect();
    let old: Vec<&str> = old.iter().map(String::as_str).collect();
    match secret_reads(namespace, &new, &old) {
        reads if reads.is_empty() => Needs::Nothing,
        reads => Needs::All(reads),
    }
}

/// A consumer as far as what runs is concerned: scaling only changes how many.
fn what_runs(consumer: &ConsumerSpec) -> ConsumerSpec {
    ConsumerSpec {
        scaling: ScalingSpec::default(),
        ..consumer.clone()
    }
}

/// A job as far as what runs is concerned: how many at once and how long finished
/// Jobs are kept change nothing about what runs.
fn job_runs(job: &EventJobSpec) -> (&PodTemplateSpec, Option<i64>) {
    (&job.template, job.active_deadline_seconds)
}

/// What creating (`old: None`) or updating a Trigger in `namespace` needs.
#[must_use]
pub fn trigger(namespace: &str, new: &TriggerSpec, old: Option<&TriggerSpec>) -> Needs {
    if let Some(job) = &new.job {
        let unchanged = old
            .and_then(|o| o.job.as_ref())
            .is_some_and(|before| job_runs(before) == job_runs(job));
        if unchanged {
            return Needs::Nothing;
        }
        return Needs::All(vec![
            Access::create("batch", "jobs", namespace, JOB),
            Access::create("", "secrets", namespace, JOB),
        ]);
    }
    let Some(consumer) = &new.consumer else {
        return Needs::Nothing;
    };
    // The template, mode and mounted Secrets of an existing consumer are what its
    // creator was allowed to run; only a change to them is someone's new request.
    let unchanged = old
        .and_then(|o| o.consumer.as_ref())
        .is_some_and(|before| what_runs(before) == what_runs(consumer));
    if unchanged {
        return Needs::Nothing;
    }
    Needs::All(vec![Access::deployments("create", namespace, CONSUMER)])
}

/// What creating (`old: None`) or updating an EventSource in `namespace` needs;
/// `served` tells how the apiserver serves a watched kind (`None`: not at all).
#[must_use]
pub fn event_source(
    namespace: &str,
    new: &EventSourceSpec,
    old: Option<&EventSourceSpec>,
    served: impl Fn(&KubernetesResource) -> Option<ServedKind>,
) -> Needs {
    let mut needs = secret_reads(
        namespace,
        &source_secrets(new),
        &old.map(source_secrets).unwrap_or_default(),
    );
    // Any change counts: a new sink sends what the source reads, or what the bound
    // Deployments emit, somewhere else, and that is the new requester's doing.
    if (new.kubernetes.is_none() && new.sink_binding.is_none()) || old == Some(new) {
        return if needs.is_empty() {
            Needs::Nothing
        } else {
            Needs::All(needs)
        };
    }
    if let Some(kubernetes) = &new.kubernetes {
        needs.push(Access::deployments("create", namespace, ADAPTER));
        for resource in &kubernetes.resources {
            let Some(kind) = served(resource) else {
                return Needs::Refuse(Denied::Unserved {
                    kind: resource.kind.clone(),
                    api_version: resource.api_version.clone(),
                });
            };
            let namespaces: Vec<Option<String>> = if !kind.namespaced {
                vec![None]
            } else if resource.namespaces.is_empty() {
                vec![Some(namespace.to_owned())]
            } else {
                // An empty name would be every namespace: ask for exactly that.
                resource
                    .namespaces
                    .iter()
                    .map(|ns| (!ns.is_empty()).then(|| ns.clone()))
                    .collect()
            };
            for ns in namespaces {
                for verb in ["list", "watch"] {
                    needs.push(Access {
                        verb,
                        group: kind.group.clone(),
                        resource: kind.plural.clone(),
                        namespace: ns.clone(),
                        name: None,
                        because: WATCH,
                    });
                }
            }
        }
    }
    if new.sink_binding.is_some() {
        needs.push(Access::deployments("patch", namespace, BINDING));
    }
    needs.dedup();
    Needs::All(needs)
}

/// The verdict once the apiserver answered whether `user` may do each of `needed`
/// (`allowed[i]` for `needed[i]`): `Ok` or the denial message, naming every
/// missing permission.
pub fn verdict(user: &str, needed: &[Access], allowed: &[bool]) -> Result<(), Denied> {
    // A question left unanswered is a no: never allow by omission.
    let missing: Vec<&Access> = needed
        .iter()
        .enumerate()
        .filter(|(i, _)| !allowed.get(*i).copied().unwrap_or(false))
        .map(|(_, access)| access)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut reasons: Vec<&'static str> = missing.iter().map(|a| a.because).collect();
    reasons.dedup();
    Err(Denied::Missing {
        user: user.to_owned(),
        permissions: missing.iter().map(ToString::to_string).collect(),
        reasons,
    })
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
