//! The Job and the event Secret of one attempt, and what a Job's status means:
//! pure, so it is tested without an apiserver.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_api::job::{self, EffectiveJob};
use herald_api::naming;
use herald_cloudevents::CloudEvent;
use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::core::v1::{Container, EnvVar, SecretVolumeSource, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::deliver::Attempt;

/// Shortest time a finished Job is kept, whatever `keepSucceeded`/`keepFailed` say:
/// the dispatcher waiting for it must see it finished before it is gone (a Job gone
/// before it was seen finished counts as a failed attempt).
pub const MIN_KEEP: Duration = Duration::from_secs(5);

/// One attempt at one event, as the Job that runs it.
pub struct Run<'a> {
    /// Namespace of the Trigger (and of its Jobs).
    pub namespace: &'a str,
    pub trigger: &'a str,
    /// The Trigger's uid: its Jobs are its dependents, deleted with it.
    pub trigger_uid: &'a str,
    /// The Trigger's `job`.
    pub job: &'a EffectiveJob,
    /// The event (after the Trigger's transform).
    pub event: &'a CloudEvent,
    /// Which attempt (1 for the first).
    pub attempt: u32,
}

impl Run<'_> {
    /// The name of this attempt's Job and of its event Secret.
    #[must_use]
    pub fn name(&self) -> String {
        job::job_name(
            self.namespace,
            self.trigger,
            self.event.source(),
            self.event.id(),
            self.attempt,
        )
    }

    fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                job::JOB_TRIGGER_LABEL.to_owned(),
                naming::label_value(self.trigger),
            ),
            (job::MANAGED_BY_LABEL.to_owned(), job::MANAGED_BY.to_owned()),
        ])
    }

    /// The Job: the Trigger's template with the event mounted and its attributes in
    /// the environment, no retries of its own (the Trigger's delivery policy retries
    /// with a new Job), owned by the Trigger.
    #[must_use]
    pub fn job(&self) -> Job {
        let name = self.name();
        let mut template = self.job.template.clone();
        let metadata = template.metadata.get_or_insert_with(ObjectMeta::default);
        metadata.labels.get_or_insert_with(BTreeMap::new).insert(
            job::JOB_TRIGGER_LABEL.to_owned(),
            naming::label_value(self.trigger),
        );
        if let Some(pod) = template.spec.as_mut() {
            pod.volumes.get_or_insert_with(Vec::new).push(Volume {
                name: job::EVENT_VOLUME.to_owned(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(name.clone()),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            });
            let env = self.env();
            let containers = pod
                .containers
                .iter_mut()
                .chain(pod.init_containers.iter_mut().flatten());
            for container in containers {
                with_event(container, &env);
            }
        }
        let keep_seconds = |d: Duration| d.as_secs().to_string();
        Job {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(self.namespace.to_owned()),
                labels: Some(self.labels()),
                annotations: Some(BTreeMap::from([
                    (job::ATTEMPT_ANNOTATION.to_owned(), self.attempt.to_string()),
                    (
                        job::EVENT_ID_ANNOTATION.to_owned(),
                        self.event.id().to_owned(),
                    ),
                    (
                        job::KEEP_SUCCEEDED_ANNOTATION.to_owned(),
                        keep_seconds(self.job.keep_succeeded),
                    ),
                    (
                        job::KEEP_FAILED_ANNOTATION.to_owned(),
                        keep_seconds(self.job.keep_failed),
                    ),
                ])),
                owner_references: Some(vec![OwnerReference {
                    api_version: format!("{}/{}", herald_api::GROUP, herald_api::VERSION),
                    kind: "Trigger".into(),
                    name: self.trigger.to_owned(),
                    uid: self.trigger_uid.to_owned(),
                    controller: Some(true),
                    // Blocking the Trigger's deletion would need rights on Triggers'
                    // finalizers; the garbage collector deletes the Jobs either way.
                    block_owner_deletion: None,
                }]),
                ..ObjectMeta::default()
            },
            spec: Some(JobSpec {
                template,
                backoff_limit: Some(0),
                active_deadline_seconds: Some(self.job.active_deadline_seconds),
                ..JobSpec::default()
            }),
            status: None,
        }
    }

    /// `HERALD_EVENT_*`, with `$` written `$$` so that Kubernetes' `$(VAR)` expansion
    /// leaves the event's text as it is.
    fn env(&self) -> Vec<EnvVar> {
        let var = |name: &str, value: &str| EnvVar {
            name: name.to_owned(),
            value: Some(value.replace('$', "$$")),
            value_from: None,
        };
        vec![
            var(
                job::ENV_EVENT_FILE,
                &format!("{}/{}", job::EVENT_MOUNT_PATH, job::EVENT_FILE),
            ),
            var(job::ENV_EVENT_ID, self.event.id()),
            var(job::ENV_EVENT_TYPE, self.event.type_()),
            var(job::ENV_EVENT_SOURCE, self.event.source()),
            var(
                job::ENV_EVENT_SUBJECT,
                self.event.get("subject").unwrap_or_default(),
            ),
            var(job::ENV_EVENT_ATTEMPT, &self.attempt.to_string()),
        ]
    }

    /// The Secret holding the event in the CloudEvents JSON format, owned by the Job
    /// (`job_uid`), so that it goes when the Job goes.
    #[must_use]
    pub fn secret(&self, job_uid: &str) -> Secret {
        let name = self.name();
        Secret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.namespace.to_owned()),
                labels: Some(self.labels()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "batch/v1".into(),
                    kind: "Job".into(),
                    name,
                    uid: job_uid.to_owned(),
                    controller: Some(true),
                    block_owner_deletion: None,
                }]),
                ..ObjectMeta::default()
            },
            immutable: Some(true),
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([(
                job::EVENT_KEY.to_owned(),
                ByteString(herald_cloudevents::json::to_structured(self.event)),
            )])),
            ..Secret::default()
        }
    }
}

/// Mounts the event into `container` and adds the event's environment; a variable
/// the template sets itself keeps the template's value.
fn with_event(container: &mut Container, env: &[EnvVar]) {
    container
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(VolumeMount {
            name: job::EVENT_VOLUME.to_owned(),
            mount_path: job::EVENT_MOUNT_PATH.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    let vars = container.env.get_or_insert_with(Vec::new);
    for var in env {
        if !vars.iter().any(|v| v.name == var.name) {
            vars.push(var.clone());
        }
    }
}

/// Whether `found` is a Job Herald made for Trigger `trigger` (a Job of that name
/// made by someone else is never adopted).
#[must_use]
pub fn is_for(found: &Job, trigger: &str) -> bool {
    let labels = found.metadata.labels.as_ref();
    labels.and_then(|l| l.get(job::JOB_TRIGGER_LABEL)) == Some(&naming::label_value(trigger))
        && labels
            .and_then(|l| l.get(job::MANAGED_BY_LABEL))
            .map(String::as_str)
            == Some(job::MANAGED_BY)
}

/// The Job's outcome once it finished: [`Attempt::Completed`] or a failed attempt
/// with the Job's reason; `None` while it runs.
#[must_use]
pub fn outcome(found: &Job) -> Option<Attempt> {
    let name = found.metadata.name.as_deref().unwrap_or_default();
    let (kind, condition) = finished(found)?;
    Some(match kind {
        Finished::Succeeded => Attempt::Completed,
        Finished::Failed => Attempt::Failed(format!(
            "Job {name} failed ({}): {}",
            condition.reason.as_deref().unwrap_or("Failed"),
            condition.message.as_deref().unwrap_or("no message")
        )),
    })
}

/// How a Job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Finished {
    Succeeded,
    Failed,
}

fn finished(found: &Job) -> Option<(Finished, &k8s_openapi::api::batch::v1::JobCondition)> {
    found
        .status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .filter(|c| c.status == "True")
        .find_map(|c| match c.type_.as_str() {
            "Complete" => Some((Finished::Succeeded, c)),
            "Failed" => Some((Finished::Failed, c)),
            _ => None,
        })
}

/// Whether a finished Job has been kept long enough at `now` (seconds since the
/// epoch): `keepSucceeded` or `keepFailed` as its annotations say (the defaults
/// without them), never less than [`MIN_KEEP`]. A Job still running is never due.
#[must_use]
pub fn due_for_deletion(found: &Job, now: i64) -> bool {
    let Some((kind, condition)) = finished(found) else {
        return false;
    };
    let Some(at) = &condition.last_transition_time else {
        return false;
    };
    let (key, default) = match kind {
        Finished::Succeeded => (job::KEEP_SUCCEEDED_ANNOTATION, job::DEFAULT_KEEP_SUCCEEDED),
        Finished::Failed => (job::KEEP_FAILED_ANNOTATION, job::DEFAULT_KEEP_FAILED),
    };
    let keep = found
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(default, Duration::from_secs)
        .max(MIN_KEEP);
    now.saturating_sub(at.0.as_second()) >= i64::try_from(keep.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
