//! A Job per event, end to end: the dispatcher makes a Job (and the event's Secret)
//! per event of a `job` Trigger, the real kube-controller-manager's Job controller
//! makes its pod, the node's kubelet runs it (busybox, with the event's Secret
//! mounted) to Succeeded or Failed, the Job controller
//! marks the Job Complete or Failed, and the dispatcher acknowledges, retries with a
//! new Job or dead-letters; finished Jobs are deleted after their keep time.

use std::collections::BTreeSet;
use std::time::Duration;

use herald_api::TriggerSpec;
use herald_api::job::{ATTEMPT_ANNOTATION, EventJobSpec, JOB_TRIGGER_LABEL};
use herald_api::naming;
use herald_e2e::kubectl::{apply, example};
use herald_e2e::manifests::{container, pod_of, retries_then_dead_letter};
use herald_e2e::nats::await_consumer_drained;
use herald_e2e::pods::PodWatch;
use herald_e2e::stack::Stack;
use herald_e2e::subscriber::Subscriber;
use herald_e2e::{eventually, nats_url, ready_trigger, with_temp_ns};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::{Api, Client};

const WAIT: Duration = Duration::from_secs(90);
const TYPE: &str = "com.example.image.uploaded";

/// The Jobs of Trigger `trigger`.
async fn jobs_of(client: &Client, ns: &str, trigger: &str) -> Vec<Job> {
    Api::<Job>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("{JOB_TRIGGER_LABEL}={trigger}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

fn has_condition(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// Waits until the Trigger's queue holds nothing: every event acknowledged.
async fn queue_empties(ns: &str, trigger: &str) {
    let js = async_nats::jetstream::new(async_nats::connect(nats_url()).await.expect("NATS"));
    let stream = naming::queue_stream_name(ns, "default");
    let durable = naming::consumer_name(trigger);
    await_consumer_drained(&js, &stream, &durable, WAIT).await;
}

/// A job Trigger spec on Broker `default` whose container runs `script` with `sh -c`.
fn job_spec(script: &str, job: EventJobSpec) -> TriggerSpec {
    TriggerSpec {
        broker: "default".to_owned(),
        job: Some(EventJobSpec {
            template: pod_of(container("work", "busybox:1.36", &["sh", "-c", script])),
            ..job
        }),
        ..TriggerSpec::default()
    }
}

#[tokio::test]
async fn each_event_runs_as_a_job_that_sees_it_and_completion_acks_it() {
    with_temp_ns("jobs", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let pods = PodWatch::start(client.clone(), &ns, JOB_TRIGGER_LABEL);
        apply(
            &ns,
            &std::fs::read_to_string(example("trigger-job.yaml")).expect("example"),
        );
        herald_e2e::await_condition(
            &Api::<herald_api::Trigger>::namespaced(client.clone(), &ns),
            "thumbnails",
            WAIT,
            herald_e2e::has_condition("Ready", herald_api::ConditionStatus::True, None),
        )
        .await;
        for id in ["img-1", "img-2", "img-3"] {
            stack
                .send(id, TYPE, "/uploads", &format!(r#"{{"image": "{id}.png"}}"#))
                .await;
        }
        stack
            .send("other", "com.example.other", "/uploads", "{}")
            .await;
        eventually("each event's Job ran and printed it", WAIT, || async {
            let lines = pods.lines().await;
            let printed: BTreeSet<String> = lines
                .iter()
                .filter_map(|l| l.text.strip_prefix("resized ").map(str::to_owned))
                .collect();
            (printed.len() == 3).then_some(())
        })
        .await;
        // The container read the event from the mounted file: the CloudEvents JSON.
        for id in ["img-1", "img-2", "img-3"] {
            let line = pods
                .lines()
                .await
                .into_iter()
                .find(|l| l.text.contains(&format!(r#""id":"{id}""#)))
                .unwrap_or_else(|| panic!("the Job of {id} printed its event file"));
            let event: serde_json::Value = serde_json::from_str(&line.text).expect("event JSON");
            assert_eq!(event["type"], TYPE);
            assert_eq!(event["data"]["image"], format!("{id}.png"));
            assert!(
                pods.first_line_with(&format!("resized {id} (attempt 1)"))
                    .await
                    .is_some()
            );
        }
        let jobs = eventually("three Jobs, all Complete", WAIT, || async {
            let jobs = jobs_of(&client, &ns, "thumbnails").await;
            (jobs.len() == 3 && jobs.iter().all(|j| has_condition(j, "Complete"))).then_some(jobs)
        })
        .await;
        for job in &jobs {
            let owner = &job.metadata.owner_references.as_ref().expect("owned")[0];
            assert_eq!(
                (owner.kind.as_str(), owner.name.as_str()),
                ("Trigger", "thumbnails")
            );
            let spec = job.spec.as_ref().expect("spec");
            assert_eq!(spec.backoff_limit, Some(0));
            assert_eq!(spec.active_deadline_seconds, Some(300));
        }
        // Each Job's event is in a Secret the Job owns.
        let secrets = Api::<Secret>::namespaced(client.clone(), &ns)
            .list(&ListParams::default().labels(&format!("{JOB_TRIGGER_LABEL}=thumbnails")))
            .await
            .expect("list Secrets")
            .items;
        assert_eq!(secrets.len(), 3);
        queue_empties(&ns, "thumbnails").await;
        // The Job controller may tell the dispatcher before this test's pod watch.
        pods_finished(&pods, 3).await;
        assert_eq!(pods.finished_pods(), 3, "no event ran twice");
    })
    .await;
}

#[tokio::test]
async fn a_failing_job_is_retried_with_new_jobs_then_dead_lettered() {
    with_temp_ns("jobs-fail", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let pods = PodWatch::start(client.clone(), &ns, JOB_TRIGGER_LABEL);
        let dead_letters = Subscriber::accepting().await;
        let spec = TriggerSpec {
            delivery: Some(retries_then_dead_letter(1, "PT0.2S", &dead_letters.url)),
            ..job_spec(
                "echo \"try $HERALD_EVENT_ATTEMPT of $HERALD_EVENT_ID\"; exit 3",
                EventJobSpec::default(),
            )
        };
        ready_trigger(&client, &ns, "flaky", spec, WAIT).await;
        stack.send("f-1", TYPE, "/uploads", "{}").await;
        dead_letters
            .wait_for("the event is dead-lettered", WAIT, |d| !d.is_empty())
            .await;
        let (dead, _) = &dead_letters.deliveries()[0];
        assert_eq!(dead.id(), "f-1");
        assert_eq!(
            dead.get("heraldattempts"),
            Some("2"),
            "one attempt and one retry"
        );
        assert_eq!(
            dead.get("knativeerrordest"),
            Some(format!("job:{ns}/flaky").as_str())
        );
        let error = dead.get("heralderror").unwrap_or_default();
        assert!(error.contains("failed"), "{error}");
        assert!(pods.first_line_with("try 1 of f-1").await.is_some());
        assert!(pods.first_line_with("try 2 of f-1").await.is_some());
        let jobs = jobs_of(&client, &ns, "flaky").await;
        let attempts: BTreeSet<String> = jobs
            .iter()
            .filter(|j| has_condition(j, "Failed"))
            .filter_map(|j| {
                j.metadata
                    .annotations
                    .as_ref()?
                    .get(ATTEMPT_ANNOTATION)
                    .cloned()
            })
            .collect();
        assert_eq!(
            attempts,
            BTreeSet::from(["1".into(), "2".into()]),
            "a Failed Job per attempt"
        );
        queue_empties(&ns, "flaky").await;
        assert_eq!(dead_letters.deliveries().len(), 1);
    })
    .await;
}

/// Adversarial: 20 events, two dispatchers, `maxRunning: 2` — never more than two
/// Jobs' pods run at once, and every event runs once.
#[tokio::test]
async fn jobs_running_at_once_never_exceed_max_running_across_dispatchers() {
    with_temp_ns("jobs-bound", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let _second = stack.extra_dispatcher().await;
        let pods = PodWatch::start(client.clone(), &ns, JOB_TRIGGER_LABEL);
        let bounded = EventJobSpec {
            max_running: Some(2),
            ..EventJobSpec::default()
        };
        let spec = job_spec("echo \"ran $HERALD_EVENT_ID\"; sleep 3", bounded);
        ready_trigger(&client, &ns, "bounded", spec, WAIT).await;
        for n in 0..20 {
            stack.send(&format!("b-{n}"), TYPE, "/uploads", "{}").await;
        }
        eventually("all 20 Jobs ran", Duration::from_secs(180), || async {
            (pods.finished_pods() >= 20).then_some(())
        })
        .await;
        queue_empties(&ns, "bounded").await;
        let ran: BTreeSet<String> = pods
            .lines()
            .await
            .iter()
            .filter_map(|l| l.text.strip_prefix("ran ").map(str::to_owned))
            .collect();
        assert_eq!(ran.len(), 20, "every event ran: {ran:?}");
        let peak = pods.peak_running_pods();
        assert!(peak <= 2, "{peak} Jobs ran at once; maxRunning is 2");
        assert_eq!(peak, 2, "the bound is used, not just respected");
        assert_eq!(pods.finished_pods(), 20, "no event ran twice");
    })
    .await;
}

#[tokio::test]
async fn finished_jobs_are_deleted_with_their_secrets_after_keep() {
    with_temp_ns("jobs-keep", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let pods = PodWatch::start(client.clone(), &ns, JOB_TRIGGER_LABEL);
        let brief = EventJobSpec {
            keep_succeeded: Some("1s".to_owned()),
            keep_failed: Some("1h".to_owned()),
            ..EventJobSpec::default()
        };
        ready_trigger(&client, &ns, "brief", job_spec("echo done", brief), WAIT).await;
        stack.send("k-1", TYPE, "/uploads", "{}").await;
        eventually("the Job ran", WAIT, || async {
            (pods.finished_pods() == 1).then_some(())
        })
        .await;
        queue_empties(&ns, "brief").await;
        eventually("the finished Job is deleted", WAIT, || async {
            jobs_of(&client, &ns, "brief")
                .await
                .is_empty()
                .then_some(())
        })
        .await;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        eventually("its event Secret goes with it", WAIT, || async {
            let left = secrets
                .list(&ListParams::default().labels(&format!("{JOB_TRIGGER_LABEL}=brief")))
                .await
                .ok()?;
            left.items.is_empty().then_some(())
        })
        .await;
    })
    .await;
}

/// A dispatcher killed while its event's Job runs: the event comes back to the next
/// dispatcher, which finds the Job of that attempt and waits for it — one Job, one run.
#[tokio::test]
async fn a_redelivered_event_adopts_its_running_job_instead_of_starting_another() {
    with_temp_ns("jobs-adopt", |client, ns| async move {
        let mut stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let pods = PodWatch::start(client.clone(), &ns, JOB_TRIGGER_LABEL);
        let spec = job_spec(
            "sleep 4; echo \"done $HERALD_EVENT_ID\"",
            EventJobSpec::default(),
        );
        ready_trigger(&client, &ns, "slow", spec, WAIT).await;
        stack.send("a-1", TYPE, "/uploads", "{}").await;
        eventually("the Job is made", WAIT, || async {
            (jobs_of(&client, &ns, "slow").await.len() == 1).then_some(())
        })
        .await;
        stack.dispatcher.as_mut().expect("dispatcher").kill().await;
        stack.start_dispatcher().await;
        queue_empties(&ns, "slow").await;
        let jobs = jobs_of(&client, &ns, "slow").await;
        assert_eq!(jobs.len(), 1, "no second Job for the same attempt");
        assert!(has_condition(&jobs[0], "Complete"));
        pods_finished(&pods, 1).await;
        assert_eq!(pods.finished_pods(), 1, "the event ran once");
        assert!(pods.first_line_with("done a-1").await.is_some());
    })
    .await;
}

/// Waits until the test's own pod watch has seen `count` pods finish.
async fn pods_finished(pods: &PodWatch, count: usize) {
    eventually("the pod watch sees the pods finish", WAIT, || async {
        (pods.finished_pods() >= count).then_some(())
    })
    .await;
}
