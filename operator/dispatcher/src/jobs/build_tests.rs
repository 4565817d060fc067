use super::*;

fn effective(yaml: &str) -> EffectiveJob {
    job::resolve(&serde_yaml::from_str(yaml).unwrap()).unwrap()
}

fn event() -> CloudEvent {
    let mut e = CloudEvent::new("order-$(HOME)-1", "/shop", "com.example.order");
    e.set("subject", "orders/1");
    e.set("datacontenttype", "application/json");
    e.data = Some(bytes::Bytes::from_static(br#"{"n":1}"#));
    e
}

const TEMPLATE: &str = "template: {metadata: {labels: {app: resize}}, spec: {serviceAccountName: worker, initContainers: [{name: init, image: i}], containers: [{name: c, image: i, env: [{name: HERALD_EVENT_TYPE, value: mine}]}]}}\nmaxRunning: 2\nkeepSucceeded: 30s";

fn run<'a>(job: &'a EffectiveJob, event: &'a CloudEvent) -> Run<'a> {
    Run {
        namespace: "shop",
        trigger: "resize",
        trigger_uid: "uid-1",
        job,
        event,
        attempt: 2,
    }
}

#[test]
fn the_job_mounts_the_event_runs_once_and_belongs_to_the_trigger() {
    let (effective, event) = (effective(TEMPLATE), event());
    let run = run(&effective, &event);
    let job = run.job();
    let name = run.name();
    assert_eq!(job.metadata.name.as_deref(), Some(name.as_str()));
    assert_eq!(
        name,
        job::job_name("shop", "resize", "/shop", "order-$(HOME)-1", 2)
    );
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Trigger", "uid-1", Some(true))
    );
    let labels = job.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[job::JOB_TRIGGER_LABEL], "resize");
    assert_eq!(labels[job::MANAGED_BY_LABEL], "herald");
    let annotations = job.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations[job::ATTEMPT_ANNOTATION], "2");
    assert_eq!(annotations[job::KEEP_SUCCEEDED_ANNOTATION], "30");
    assert_eq!(annotations[job::KEEP_FAILED_ANNOTATION], "3600");
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit, Some(0), "retries are the Trigger's");
    assert_eq!(spec.active_deadline_seconds, Some(3600));
    let pod_meta = spec.template.metadata.as_ref().unwrap();
    let pod_labels = pod_meta.labels.as_ref().unwrap();
    assert_eq!(pod_labels["app"], "resize", "the template's labels stay");
    assert_eq!(pod_labels[job::JOB_TRIGGER_LABEL], "resize");
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("worker"));
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    let volume = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == job::EVENT_VOLUME)
        .unwrap();
    assert_eq!(
        volume.secret.as_ref().unwrap().secret_name.as_deref(),
        Some(name.as_str())
    );
    for c in pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
    {
        let mount = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.name == job::EVENT_VOLUME)
            .unwrap();
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            ("/etc/herald/event", Some(true))
        );
        let env: BTreeMap<&str, &str> = c
            .env
            .iter()
            .flatten()
            .map(|v| (v.name.as_str(), v.value.as_deref().unwrap_or_default()))
            .collect();
        assert_eq!(env[job::ENV_EVENT_FILE], "/etc/herald/event/event.json");
        assert_eq!(
            env[job::ENV_EVENT_ID],
            "order-$$(HOME)-1",
            "not expanded by Kubernetes"
        );
        assert_eq!(env[job::ENV_EVENT_SOURCE], "/shop");
        assert_eq!(env[job::ENV_EVENT_SUBJECT], "orders/1");
        assert_eq!(env[job::ENV_EVENT_ATTEMPT], "2");
        let type_ = if c.name == "c" {
            "mine"
        } else {
            "com.example.order"
        };
        assert_eq!(
            env[job::ENV_EVENT_TYPE],
            type_,
            "the template's own value wins"
        );
    }
}

#[test]
fn the_secret_holds_the_event_as_json_and_goes_with_the_job() {
    let (effective, event) = (effective(TEMPLATE), event());
    let run = run(&effective, &event);
    let secret = run.secret("job-uid");
    assert_eq!(secret.metadata.name, Some(run.name()));
    assert_eq!(secret.immutable, Some(true));
    let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Job", "job-uid")
    );
    let data = &secret.data.as_ref().unwrap()[job::EVENT_KEY];
    let json: serde_json::Value = serde_json::from_slice(&data.0).unwrap();
    assert_eq!(json["id"], "order-$(HOME)-1");
    assert_eq!(json["type"], "com.example.order");
    assert_eq!(json["data"]["n"], 1);
}

fn with_condition(type_: &str, reason: &str, finished_at: i64, keep: Option<&str>) -> Job {
    let mut job: Job = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "resize-1", "annotations": {}},
        "status": {"conditions": [{
            "type": type_, "status": "True", "reason": reason, "message": "why",
            "lastTransitionTime": k8s_openapi::jiff::Timestamp::from_second(finished_at).unwrap().to_string(),
        }]},
    }))
    .unwrap();
    if let Some(keep) = keep {
        let key = if type_ == "Complete" {
            job::KEEP_SUCCEEDED_ANNOTATION
        } else {
            job::KEEP_FAILED_ANNOTATION
        };
        job.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(key.into(), keep.into());
    }
    job
}

#[test]
fn a_finished_job_is_an_outcome_and_a_running_one_is_not() {
    assert!(matches!(
        outcome(&with_condition("Complete", "", 0, None)),
        Some(Attempt::Completed)
    ));
    let Some(Attempt::Failed(why)) =
        outcome(&with_condition("Failed", "DeadlineExceeded", 0, None))
    else {
        panic!("a failed Job is a failed attempt");
    };
    assert!(
        why.contains("resize-1") && why.contains("DeadlineExceeded"),
        "{why}"
    );
    assert!(outcome(&Job::default()).is_none());
    let mut pending = with_condition("Failed", "", 0, None);
    pending
        .status
        .as_mut()
        .unwrap()
        .conditions
        .as_mut()
        .unwrap()[0]
        .status = "False".into();
    assert!(outcome(&pending).is_none());
}

#[test]
fn finished_jobs_are_deleted_after_their_keep_and_never_sooner_than_the_floor() {
    let done = with_condition("Complete", "", 1000, Some("60"));
    assert!(!due_for_deletion(&done, 1059));
    assert!(due_for_deletion(&done, 1060));
    let failed = with_condition("Failed", "", 1000, None);
    assert!(
        !due_for_deletion(&failed, 1000 + 3599),
        "failed Jobs stay an hour by default"
    );
    assert!(due_for_deletion(&failed, 1000 + 3600));
    let zero = with_condition("Complete", "", 1000, Some("0"));
    assert!(
        !due_for_deletion(&zero, 1001),
        "the waiter sees it finished first"
    );
    assert!(due_for_deletion(&zero, 1005));
    assert!(
        !due_for_deletion(&Job::default(), i64::MAX),
        "running Jobs stay"
    );
}

#[test]
fn only_jobs_herald_made_for_the_trigger_are_adopted() {
    let (effective, event) = (effective(TEMPLATE), event());
    let made = run(&effective, &event).job();
    assert!(is_for(&made, "resize"));
    assert!(!is_for(&made, "other"));
    assert!(!is_for(&Job::default(), "resize"));
}
