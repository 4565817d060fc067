//! Consumer Deployments and their autoscaler, end to end: the operator creates the
//! Deployment of `examples/consumer-trigger.yaml`, the node's kubelet runs its pods
//! (sidecar dispatcher + `herald display` as the worker), and the autoscaler
//! scales on the real backlog: from zero on the first event, up under a burst, down
//! and to zero when idle, back on a new event; a hand-made replica change is undone.

use std::time::{Duration, Instant};

use herald_api::Trigger;
use herald_api::conditions::ConditionStatus::False;
use herald_api::trigger::condition;
use herald_api::trigger::{ConsumerSpec, ScalingSpec};
use herald_e2e::kubectl::{self, example};
use herald_e2e::manifests::{apply, container, pod_of, to_consumer, trigger};
use herald_e2e::pods::PodWatch;
use herald_e2e::stack::Stack;
use herald_e2e::{
    await_condition, await_not_ready, await_ready, eventually, field, has_condition, nats_url,
    with_temp_ns,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};

const WAIT: Duration = Duration::from_secs(60);
/// How long pods may take to go once scaled away: 7–9 s on an idle node, even for
/// pods deleted while starting (herald handles SIGTERM from its first moment), but the
/// kubelet's work waits for two cores shared with the whole suite.
const PODS_GONE: Duration = Duration::from_secs(120);
const TYPE: &str = "com.example.order.created";

/// The Deployment's `spec.replicas` (the scale subresource omits it when 0); -1 if
/// there is no Deployment.
async fn replicas(deployments: &Api<Deployment>) -> i32 {
    match deployments.get_scale("orders-worker-consumer").await {
        Ok(scale) => scale.spec.and_then(|s| s.replicas).unwrap_or(0),
        Err(_) => -1,
    }
}

async fn wait_replicas(deployments: &Api<Deployment>, what: &str, ok: impl Fn(i32) -> bool) -> i32 {
    eventually(what, WAIT, || async {
        let n = replicas(deployments).await;
        ok(n).then_some(n)
    })
    .await
}

/// Sends `count` events with ids `<prefix>-<n>` in batches of 100.
async fn burst(stack: &Stack, prefix: &str, count: usize) {
    let ids: Vec<String> = (0..count).map(|n| format!("{prefix}-{n}")).collect();
    for chunk in ids.chunks(100) {
        let batch: Vec<_> = chunk
            .iter()
            .map(|id| serde_json::json!({"specversion": "1.0", "id": id, "type": TYPE, "source": "e2e", "data": {"n": 1}}))
            .collect();
        stack.send_batch(&batch).await;
    }
}

/// The ids the workers printed (each event's JSON line has `"id":"<id>"`).
async fn delivered(pods: &PodWatch, prefix: &str) -> std::collections::HashSet<String> {
    pods.lines()
        .await
        .iter()
        .filter(|l| l.container == "worker")
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l.text).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .filter(|id| id.starts_with(prefix))
        .collect()
}

async fn events_with_reason(client: &Client, ns: &str, reason: &str) -> usize {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_or(0, |l| {
            l.items
                .iter()
                .filter(|e| e.reason.as_deref() == Some(reason))
                // Repeats of an Event are counted on one object (a series).
                .map(|e| {
                    let series = e.series.as_ref().and_then(|s| s.count);
                    usize::try_from(series.or(e.count).unwrap_or(1).max(1)).unwrap_or(1)
                })
                .sum()
        })
}

/// Sends one event and returns (time to the scale-up, time to its delivery).
async fn from_zero(
    stack: &Stack,
    pods: &PodWatch,
    deployments: &Api<Deployment>,
    id: &str,
) -> (Duration, Duration) {
    assert_eq!(replicas(deployments).await, 0);
    let (sent, sent_at) = (Instant::now(), chrono::Utc::now());
    stack.send(id, TYPE, "e2e", "{}").await;
    let mut scaled = None;
    loop {
        if scaled.is_none() && replicas(deployments).await >= 1 {
            scaled = Some(sent.elapsed());
        }
        // The worker's line carries the kubelet's timestamp of when it was printed.
        if let Some(line) = pods.first_line_with(id).await {
            let delivered = (line.at - sent_at).to_std().unwrap_or_default();
            return (scaled.unwrap_or(delivered), delivered);
        }
        if sent.elapsed() >= WAIT {
            // What each container printed (the sidecar says what became of the event).
            let printed: Vec<String> = pods
                .lines()
                .await
                .iter()
                .map(|l| format!("{} {}/{}: {}", l.at, l.pod, l.container, l.text))
                .collect();
            panic!(
                "event {id} was not delivered from zero within {WAIT:?}; scaled after {scaled:?}; the pods printed:\n{}",
                printed.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one scenario, told in order
async fn consumer_deployment_scales_with_the_backlog_to_zero_and_back() {
    with_temp_ns("autoscale", |client, ns| async move {
        // The shared dispatcher routes the Broker's events into the Trigger's queue;
        // the consumer Deployment's sidecars deliver them.
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let pods = PodWatch::start(client.clone(), &ns, "app.kubernetes.io/managed-by=herald");
        kubectl::apply(
            &ns,
            &std::fs::read_to_string(example("consumer-trigger.yaml")).expect("example"),
        );
        let triggers: Api<Trigger> = Api::namespaced(client.clone(), &ns);
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        await_ready(&triggers, "orders-worker", WAIT).await;
        let deployment = deployments
            .get("orders-worker-consumer")
            .await
            .expect("the consumer Deployment");
        let containers = &deployment
            .spec
            .template
            .spec
            .as_ref()
            .expect("pod spec")
            .containers;
        assert_eq!(
            containers
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            ["worker", "herald-dispatcher"]
        );
        assert_eq!(
            replicas(&deployments).await,
            0,
            "minReplicas 0 and nothing waiting: starts at zero"
        );

        // First event: scaled from zero by the activation watch, then delivered.
        let (scaled, first) = from_zero(&stack, &pods, &deployments, "wake-1").await;
        println!(
            "scale from zero: first event -> scale patch {scaled:?}, -> first delivery {first:?}"
        );

        // A burst builds a backlog: more replicas, all drained.
        burst(&stack, "burst", 400).await;
        let peak = wait_replicas(&deployments, "scale-up under the burst", |n| n >= 2).await;
        let all = eventually("every burst event delivered", WAIT, || async {
            let got = delivered(&pods, "burst-").await;
            (got.len() == 400).then_some(got.len())
        })
        .await;
        println!("burst of 400: scaled to at least {peak} replicas, {all} delivered");
        let status = triggers.get("orders-worker").await.expect("trigger");
        assert!(
            field(&status, "/status/autoscaling/lastScaleTime").is_string(),
            "{:?}",
            status.status
        );

        // Idle: down, then to zero after the cooldown.
        wait_replicas(&deployments, "scale to zero when idle", |n| n == 0).await;
        eventually("the kubelet stops the pods", PODS_GONE, || async {
            (pods.existing_pods() == 0).then_some(())
        })
        .await;
        // The status is written just after the scale: wait for it, do not race it.
        eventually("the last scale is reported as Idle", WAIT, || async {
            let status = triggers.get("orders-worker").await.ok()?;
            (field(&status, "/status/autoscaling/lastScaleReason") == "Idle").then_some(())
        })
        .await;

        // Replicas changed by hand are set back, with an Event.
        deployments
            .patch_scale(
                "orders-worker-consumer",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"replicas": 3}})),
            )
            .await
            .expect("scale by hand");
        eventually("the autoscaler reports the override", WAIT, || async {
            (events_with_reason(&client, &ns, "ReplicasOverridden").await > 0).then_some(())
        })
        .await;
        wait_replicas(&deployments, "replicas set back to zero", |n| n == 0).await;
        eventually("the kubelet stops the pods again", PODS_GONE, || async {
            (pods.existing_pods() == 0).then_some(())
        })
        .await;

        // A new event brings it back.
        let (scaled, first) = from_zero(&stack, &pods, &deployments, "wake-2").await;
        println!("scale from zero again: -> scale patch {scaled:?}, -> first delivery {first:?}");
        assert!(events_with_reason(&client, &ns, "Scaled").await >= 3);

        // Deleting the Trigger removes its Deployment.
        triggers
            .delete("orders-worker", &DeleteParams::default())
            .await
            .expect("delete trigger");
        eventually("the Deployment is garbage-collected", WAIT, || async {
            deployments
                .get_opt("orders-worker-consumer")
                .await
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn unusable_consumers_are_reported_in_conditions() {
    with_temp_ns("consumer-bad", |client, ns| async move {
        let _stack = Stack::without_dispatcher(client.clone(), &ns, &nats_url(), &[]).await;
        let triggers: Api<Trigger> = Api::namespaced(client.clone(), &ns);
        let consumer_of = |container_name: &str, min: i32| {
            to_consumer(ConsumerSpec {
                template: pod_of(container(container_name, "x", &["x"])),
                scaling: ScalingSpec {
                    min_replicas: Some(min),
                    max_replicas: Some(2),
                    ..ScalingSpec::default()
                },
                ..ConsumerSpec::default()
            })
        };
        // The apiserver refuses the pod template: reported with its message.
        let bad_template = to_consumer(ConsumerSpec {
            template: pod_of(container("Not_Valid", "x", &["x"])),
            ..ConsumerSpec::default()
        });
        apply(&client, &ns, &trigger("bad-template", bad_template)).await;
        let bad = await_condition(
            &triggers,
            "bad-template",
            WAIT,
            has_condition(
                condition::CONSUMER_DEPLOYED,
                False,
                Some("DeploymentRejected"),
            ),
        )
        .await;
        let ready = field(&bad, "/status/conditions").to_string();
        assert!(ready.contains("Not_Valid"), "{ready}");
        // A scaling policy that cannot hold.
        apply(&client, &ns, &trigger("bad-scaling", consumer_of("a", 5))).await;
        let bad = await_not_ready(&triggers, "bad-scaling", "InvalidConsumer", WAIT).await;
        assert!(
            field(&bad, "/status/conditions")
                .to_string()
                .contains("maxReplicas")
        );
        // Fixing it deploys.
        apply(&client, &ns, &trigger("bad-scaling", consumer_of("a", 0))).await;
        await_ready(&triggers, "bad-scaling", WAIT).await;
    })
    .await;
}
