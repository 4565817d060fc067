//! A Trigger's `job`: each matching event runs as a Kubernetes Job made from a pod
//! template (like Knative's `JobSink` and KEDA's `ScaledJob`), with the event mounted as
//! a file and its main attributes in the environment.
//!
//! This module holds the contract every component agrees on: the spec, its defaults
//! and checks ([`resolve`]), the names of Jobs and their Secrets ([`job_name`]), the
//! labels, and where a Job's containers find the event. The dispatcher creates and
//! watches the Jobs; the operator reports a bad spec in the Trigger's status.

use std::time::Duration;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Jobs running at once for a Trigger when `maxRunning` is unset.
pub const DEFAULT_MAX_RUNNING: u32 = 1;
/// Most Jobs running at once for one Trigger.
pub const MAX_RUNNING_LIMIT: u32 = 1000;
/// How long one Job may run when `activeDeadlineSeconds` is unset.
pub const DEFAULT_ACTIVE_DEADLINE_SECONDS: i64 = 3600;
/// How long a Job that succeeded is kept when `keepSucceeded` is unset.
pub const DEFAULT_KEEP_SUCCEEDED: Duration = Duration::from_secs(600);
/// How long a Job that failed is kept when `keepFailed` is unset: longer, to look
/// into why.
pub const DEFAULT_KEEP_FAILED: Duration = Duration::from_secs(3600);

/// Where each container of a Job finds the event's directory (a read-only mount).
pub const EVENT_MOUNT_PATH: &str = "/etc/herald/event";
/// The event in the CloudEvents JSON format, in [`EVENT_MOUNT_PATH`].
pub const EVENT_FILE: &str = "event.json";
/// The Secret key holding the event (the file name under the mount).
pub const EVENT_KEY: &str = EVENT_FILE;
/// Name of the volume holding the event; a template may not use it.
pub const EVENT_VOLUME: &str = "herald-event";
/// Env: the path of the event file.
pub const ENV_EVENT_FILE: &str = "HERALD_EVENT_FILE";
/// Env: the event's `id`.
pub const ENV_EVENT_ID: &str = "HERALD_EVENT_ID";
/// Env: the event's `type`.
pub const ENV_EVENT_TYPE: &str = "HERALD_EVENT_TYPE";
/// Env: the event's `source`.
pub const ENV_EVENT_SOURCE: &str = "HERALD_EVENT_SOURCE";
/// Env: the event's `subject` (empty when it has none).
pub const ENV_EVENT_SUBJECT: &str = "HERALD_EVENT_SUBJECT";
/// Env: which attempt this Job is (1 for the first).
pub const ENV_EVENT_ATTEMPT: &str = "HERALD_EVENT_ATTEMPT";

/// Label on a Trigger's Jobs, their pods and their event Secrets: the Trigger's name.
/// Not the consumer Deployments' label, so monitors of those do not pick Job pods.
pub const JOB_TRIGGER_LABEL: &str = "eventing.herald.dev/job-trigger";
/// Label on every Job Herald creates for an event (value `herald`), what the
/// dispatcher's watch selects.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`] on event Jobs.
pub const MANAGED_BY: &str = "herald";
/// Annotation on a Job: the attempt it runs.
pub const ATTEMPT_ANNOTATION: &str = "eventing.herald.dev/attempt";
/// Annotation on a Job: seconds to keep it after it succeeded.
pub const KEEP_SUCCEEDED_ANNOTATION: &str = "eventing.herald.dev/keep-succeeded-seconds";
/// Annotation on a Job: seconds to keep it after it failed.
pub const KEEP_FAILED_ANNOTATION: &str = "eventing.herald.dev/keep-failed-seconds";
/// Annotation on a Job: the event's `id`.
pub const EVENT_ID_ANNOTATION: &str = "eventing.herald.dev/event-id";

/// The Job a Trigger runs per event.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventJobSpec {
    /// Pod template of each Job (a standard Kubernetes `PodTemplateSpec`). The event
    /// is mounted read-only at `/etc/herald/event/event.json` in every container, with
    /// `HERALD_EVENT_ID`, `HERALD_EVENT_TYPE`, `HERALD_EVENT_SOURCE`,
    /// `HERALD_EVENT_SUBJECT`, `HERALD_EVENT_ATTEMPT` and `HERALD_EVENT_FILE` in its
    /// environment. `restartPolicy` must be `Never` (the default) or `OnFailure`.
    #[schemars(schema_with = "crate::schema::pod_template")]
    pub template: PodTemplateSpec,
    /// Most Jobs of this Trigger running at once, across all dispatchers (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_running: Option<i32>,
    /// How long one Job may run before it counts as failed (default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,
    /// How long a Job that succeeded is kept before Herald deletes it, e.g. `10m`
    /// (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::duration")]
    pub keep_succeeded: Option<String>,
    /// How long a Job that failed is kept before Herald deletes it, e.g. `1h` (the
    /// default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::duration")]
    pub keep_failed: Option<String>,
}

/// A Trigger's `job` with its defaults filled in and its template checked.
#[derive(Clone, Debug, PartialEq)]
pub struct EffectiveJob {
    /// The pod template, with `restartPolicy` set.
    pub template: PodTemplateSpec,
    /// Jobs running at once.
    pub max_running: u32,
    /// `activeDeadlineSeconds` of each Job.
    pub active_deadline_seconds: i64,
    /// How long a Job that succeeded is kept.
    pub keep_succeeded: Duration,
    /// How long a Job that failed is kept.
    pub keep_failed: Duration,
}

/// A `job` setting Herald cannot use, named by its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("job.maxRunning: must be 1 to {MAX_RUNNING_LIMIT}")]
    MaxRunning,
    #[error("job.activeDeadlineSeconds: must be at least 1")]
    ActiveDeadline,
    #[error("job.{field}: {source}")]
    Duration {
        field: &'static str,
        #[source]
        source: crate::duration::ParseDurationError,
    },
    #[error("job.template.spec: required")]
    NoPodSpec,
    #[error("job.template.spec.containers: at least one container is required")]
    NoContainers,
    #[error("job.template.spec.containers[{index}].{field}: required")]
    ContainerField { index: usize, field: &'static str },
    #[error(
        "job.template.spec.containers[{index}].volumeMounts: {EVENT_MOUNT_PATH} is where the event is mounted (volume {volume})"
    )]
    EventMountTaken { index: usize, volume: String },
    #[error("job.template.spec.volumes: the name {EVENT_VOLUME} is Herald's (the event)")]
    EventVolumeTaken,
    #[error("job.template.spec.restartPolicy: a Job's pods restart Never or OnFailure, not {0}")]
    RestartPolicy(String),
}

/// Checks `spec` and fills in its defaults; `Err` says what is wrong, with the field.
pub fn resolve(spec: &EventJobSpec) -> Result<EffectiveJob, JobError> {
    let max_running = match spec.max_running {
        None => DEFAULT_MAX_RUNNING,
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_RUNNING_LIMIT).contains(n))
            .ok_or(JobError::MaxRunning)?,
    };
    let active_deadline_seconds = match spec.active_deadline_seconds {
        None => DEFAULT_ACTIVE_DEADLINE_SECONDS,
        Some(n) if n >= 1 => n,
        Some(_) => return Err(JobError::ActiveDeadline),
    };
    let keep = |field: &'static str, value: Option<&String>, default: Duration| match value {
        None => Ok(default),
        Some(v) => crate::duration::parse(v).map_err(|source| JobError::Duration { field, source }),
    };
    let keep_succeeded = keep(
        "keepSucceeded",
        spec.keep_succeeded.as_ref(),
        DEFAULT_KEEP_SUCCEEDED,
    )?;
    let keep_failed = keep("keepFailed", spec.keep_failed.as_ref(), DEFAULT_KEEP_FAILED)?;
    Ok(EffectiveJob {
        template: checked_template(&spec.template)?,
        max_running,
        active_deadline_seconds,
        keep_succeeded,
        keep_failed,
    })
}

/// The template with `restartPolicy: Never` when unset; `Err` for what the apiserver
/// would refuse in every Job, or what would clash with the event's mount.
fn checked_template(template: &PodTemplateSpec) -> Result<PodTemplateSpec, JobError> {
    let mut template = template.clone();
    let Some(pod) = template.spec.as_mut() else {
        return Err(JobError::NoPodSpec);
    };
    if pod.containers.is_empty() {
        return Err(JobError::NoContainers);
    }
    for (index, container) in pod.containers.iter().enumerate() {
        if container.name.is_empty() {
            return Err(JobError::ContainerField {
                index,
                field: "name",
            });
        }
        if container.image.as_deref().is_none_or(str::is_empty) {
            return Err(JobError::ContainerField {
                index,
                field: "image",
            });
        }
        let mounted_over = container
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path.trim_end_matches('/') == EVENT_MOUNT_PATH);
        if let Some(m) = mounted_over {
            return Err(JobError::EventMountTaken {
                index,
                volume: m.name.clone(),
            });
        }
    }
    if pod.volumes.iter().flatten().any(|v| v.name == EVENT_VOLUME) {
        return Err(JobError::EventVolumeTaken);
    }
    match pod.restart_policy.as_deref() {
        None => pod.restart_policy = Some("Never".into()),
        Some("Never" | "OnFailure") => {}
        Some(other) => return Err(JobError::RestartPolicy(other.to_owned())),
    }
    Ok(template)
}

/// Longest Job name: Jobs label their pods with their name (a label value, at most
/// 63 characters).
pub const MAX_JOB_NAME: usize = 63;

/// The name of the Job running attempt `attempt` of the event `source`/`id` for
/// Trigger `namespace/trigger`; its event Secret has the same name.
///
/// Deterministic, so a dispatcher that handles an event again (redelivered after a
/// crash, a restart, a Trigger change) finds the Job already running for it instead
/// of starting a second. The CloudEvents identity (`source`, `id`) picks the event:
/// unlike a stream sequence it survives a queue that is recreated, and two copies of
/// one event (a producer's retry) are one Job, as CloudEvents says duplicates are.
#[must_use]
pub fn job_name(namespace: &str, trigger: &str, source: &str, id: &str, attempt: u32) -> String {
    let mut digest = Sha256::new();
    for part in [namespace, trigger, source, id] {
        // Length-prefixed, so no two tuples hash the same text.
        digest.update(part.len().to_le_bytes());
        digest.update(part.as_bytes());
    }
    let hash = digest.finalize()[..6]
        .iter()
        .fold(String::with_capacity(12), |mut hex, b| {
            use std::fmt::Write;
            let _ = write!(hex, "{b:02x}");
            hex
        });
    let tail = format!("-{hash}-{attempt}");
    let head = &trigger[..trigger.len().min(MAX_JOB_NAME - tail.len())];
    format!("{}{tail}", head.trim_end_matches(['-', '.']))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> EventJobSpec {
        serde_yaml::from_str(yaml).expect("job spec")
    }

    const ONE_CONTAINER: &str = "template: {spec: {containers: [{name: c, image: busybox}]}}";

    #[test]
    fn defaults_fill_in_and_restart_policy_becomes_never() {
        let job = resolve(&spec(ONE_CONTAINER)).unwrap();
        assert_eq!(job.max_running, 1);
        assert_eq!(job.active_deadline_seconds, 3600);
        assert_eq!(job.keep_succeeded, Duration::from_secs(600));
        assert_eq!(job.keep_failed, Duration::from_secs(3600));
        let pod = job.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let set = resolve(&spec(&format!(
            "{ONE_CONTAINER}\nmaxRunning: 5\nactiveDeadlineSeconds: 60\nkeepSucceeded: 30s\nkeepFailed: 2h"
        )))
        .unwrap();
        assert_eq!(
            (
                set.max_running,
                set.active_deadline_seconds,
                set.keep_succeeded,
                set.keep_failed
            ),
            (5, 60, Duration::from_secs(30), Duration::from_secs(7200))
        );
    }

    #[test]
    fn templates_jobs_cannot_run_are_refused_with_the_field() {
        for (yaml, field) in [
            ("template: {}", "job.template.spec"),
            ("template: {spec: {containers: []}}", "containers"),
            (
                "template: {spec: {containers: [{name: c}]}}",
                "containers[0].image",
            ),
            (
                "template: {spec: {restartPolicy: Always, containers: [{name: c, image: i}]}}",
                "restartPolicy",
            ),
            (
                "template: {spec: {containers: [{name: c, image: i, volumeMounts: [{name: v, mountPath: /etc/herald/event/}]}]}}",
                "volumeMounts",
            ),
            (
                "template: {spec: {volumes: [{name: herald-event, emptyDir: {}}], containers: [{name: c, image: i}]}}",
                "volumes",
            ),
            (
                "template: {spec: {containers: [{name: c, image: i}]}}\nmaxRunning: 0",
                "maxRunning",
            ),
            (
                "template: {spec: {containers: [{name: c, image: i}]}}\nkeepFailed: soon",
                "keepFailed",
            ),
        ] {
            let err = resolve(&spec(yaml)).expect_err(yaml).to_string();
            assert!(err.contains(field), "{yaml}: {err}");
        }
        let on_failure =
            "template: {spec: {restartPolicy: OnFailure, containers: [{name: c, image: i}]}}";
        assert!(resolve(&spec(on_failure)).is_ok());
    }

    #[test]
    fn job_names_are_deterministic_distinct_and_valid_dns_labels() {
        let a = job_name("ns", "resize", "src", "e-1", 1);
        assert_eq!(a, job_name("ns", "resize", "src", "e-1", 1), "stable");
        assert!(a.starts_with("resize-") && a.ends_with("-1"), "{a}");
        for other in [
            job_name("ns", "resize", "src", "e-1", 2),
            job_name("ns", "resize", "src", "e-2", 1),
            job_name("ns", "resize", "src2", "e-1", 1),
            job_name("ns2", "resize", "src", "e-1", 1),
            // The parts are length-prefixed: moving a boundary changes the name.
            job_name("ns", "resize", "srce", "-1", 1),
        ] {
            assert_ne!(a, other);
        }
        let long = "t".repeat(253);
        let name = job_name("ns", &long, "s", "i", 4_000_000_000);
        assert!(name.len() <= MAX_JOB_NAME, "{name}");
        // A cut that ends on a dash does not leave two in a row.
        let cut = job_name(
            "ns",
            &format!("{}-{}", "a".repeat(47), "b".repeat(10)),
            "s",
            "i",
            1,
        );
        assert!(!cut.contains("--") && cut.starts_with("aaa"), "{cut}");
    }
}
