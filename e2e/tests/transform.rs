//! Trigger transforms, end to end: a jq program and an input template reshape what the
//! subscriber receives; an invalid transform keeps its Trigger not Ready; a runaway
//! program dead-letters the original event while the Broker's other Triggers deliver.

use std::time::Duration;

use herald_api::conditions::ConditionStatus;
use herald_api::trigger::TransformSpec;
use herald_api::trigger::condition;
use herald_api::{Trigger, TriggerSpec};
use herald_e2e::kubectl::{apply, example};
use herald_e2e::manifests::{self, retries_then_dead_letter, to_uri, trigger};
use herald_e2e::stack::Stack;
use herald_e2e::subscriber::Subscriber;
use herald_e2e::{
    await_condition, await_ready, has_condition, nats_url, ready_trigger, with_temp_ns,
};
use kube::Api;

const WAIT: Duration = Duration::from_secs(30);

fn data(event: &herald_cloudevents::CloudEvent) -> serde_json::Value {
    serde_json::from_slice(event.data.as_deref().unwrap_or_default()).expect("JSON data")
}

fn jq(program: &str) -> TransformSpec {
    TransformSpec {
        jq: Some(program.to_owned()),
        template: None,
    }
}

const ORDER: &str = r#"{"id": "A-1", "tenant": "acme", "customer": {"id": 7, "name": "Ann"}, "items": [{"price": 2}, {"price": 3}]}"#;

#[tokio::test]
async fn the_example_transforms_reshape_what_subscribers_receive() {
    with_temp_ns("transform", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let (crm, chat) = (Subscriber::accepting().await, Subscriber::accepting().await);
        let manifest = std::fs::read_to_string(example("trigger-transform.yaml"))
            .expect("examples/trigger-transform.yaml")
            .replace("http://crm.default.svc.cluster.local/events", &crm.url)
            .replace("http://chat.default.svc.cluster.local/hook", &chat.url);
        apply(&ns, &manifest);
        let triggers: Api<Trigger> = Api::namespaced(client.clone(), &ns);
        for name in ["orders-to-crm", "orders-to-chat"] {
            let t = await_ready(&triggers, name, WAIT).await;
            let conditions = &t.status.as_ref().expect("status").conditions;
            let valid = herald_api::conditions::find(conditions, condition::TRANSFORM_VALID);
            assert_eq!(
                valid.map(|c| c.reason.as_str()),
                Some("TransformValid"),
                "{name}"
            );
        }
        stack
            .send("o1", "com.example.order.created", "shop", ORDER)
            .await;
        crm.wait_for("the jq Trigger delivers", WAIT, |d| !d.is_empty())
            .await;
        chat.wait_for("the template Trigger delivers", WAIT, |d| !d.is_empty())
            .await;
        let (event, _) = &crm.deliveries()[0];
        assert_eq!(event.id(), "o1");
        assert_eq!(event.type_(), "com.example.crm.customer-ordered");
        assert_eq!(event.get("tenant"), Some("acme"));
        assert_eq!(data(event), serde_json::json!({"customer": 7, "total": 5}));
        let (event, _) = &chat.deliveries()[0];
        assert_eq!(
            event.type_(),
            "com.example.order.created",
            "attributes stay"
        );
        assert_eq!(
            data(event),
            serde_json::json!({"text": "Order A-1 from Ann", "order": "A-1"})
        );
    })
    .await;
}

#[tokio::test]
async fn an_invalid_transform_is_reported_and_the_trigger_is_not_ready() {
    with_temp_ns("transform-invalid", |client, ns| async move {
        let _stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let broken = TriggerSpec {
            transform: Some(jq(".type = ")),
            ..to_uri("http://127.0.0.1:9/")
        };
        manifests::apply(&client, &ns, &trigger("broken", broken)).await;
        let triggers: Api<Trigger> = Api::namespaced(client.clone(), &ns);
        let t = await_condition(
            &triggers,
            "broken",
            WAIT,
            has_condition(
                condition::TRANSFORM_VALID,
                ConditionStatus::False,
                Some("InvalidTransform"),
            ),
        )
        .await;
        let conditions = &t.status.as_ref().expect("status").conditions;
        let valid = herald_api::conditions::find(conditions, condition::TRANSFORM_VALID).unwrap();
        assert!(
            valid.message.starts_with("transform.jq: 1:"),
            "{}",
            valid.message
        );
        let ready = herald_api::conditions::find(conditions, condition::READY).unwrap();
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (ConditionStatus::False, "InvalidTransform")
        );
    })
    .await;
}

#[tokio::test]
async fn a_runaway_transform_dead_letters_the_original_while_others_deliver() {
    with_temp_ns("transform-runaway", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let (never, dead_letters, other) = (
            Subscriber::accepting().await,
            Subscriber::accepting().await,
            Subscriber::accepting().await,
        );
        ready_trigger(
            &client,
            &ns,
            "runaway",
            TriggerSpec {
                transform: Some(jq("def f: f; f")),
                delivery: Some(retries_then_dead_letter(3, "PT0.1S", &dead_letters.url)),
                ..to_uri(&never.url)
            },
            WAIT,
        )
        .await;
        ready_trigger(&client, &ns, "plain", to_uri(&other.url), WAIT).await;
        // More than the dispatcher's cores: each run's worker process is killed at the
        // deadline, so runaways do not pile up.
        let events = std::thread::available_parallelism().map_or(2, std::num::NonZero::get) + 2;
        for i in 0..events {
            stack.send(&format!("r{i}"), "t", "s", r#"{"x": 1}"#).await;
        }
        other
            .wait_for("the other Trigger delivers every event", WAIT, |d| {
                d.len() >= events
            })
            .await;
        dead_letters
            .wait_for("each event reaches the dead-letter sink", WAIT, |d| {
                d.len() >= events
            })
            .await;
        assert!(
            never.deliveries().is_empty(),
            "nothing reaches the subscriber"
        );
        for (dead, _) in dead_letters.deliveries() {
            assert!(dead.id().starts_with('r'));
            assert_eq!(dead.type_(), "t", "the original event");
            assert_eq!(dead.data.as_deref(), Some(&br#"{"x": 1}"#[..]));
            let error = dead.get("heralderror").unwrap_or_default();
            assert!(
                error.starts_with("transform failed: the transform ran longer than"),
                "{error}"
            );
            assert_eq!(dead.get("heraldattempts"), Some("1"), "not retried");
        }
    })
    .await;
}

/// A consumer Deployment's sidecar applies the Trigger's transform too (the operator
/// puts it in the sidecar's plan): the worker container receives the reshaped event.
#[tokio::test]
async fn a_consumer_sidecar_transforms_what_its_worker_receives() {
    with_temp_ns("transform-sidecar", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let pods = herald_e2e::pods::PodWatch::start(
            client.clone(),
            &ns,
            "app.kubernetes.io/managed-by=herald",
        );
        let consumer = std::fs::read_to_string(example("consumer-trigger.yaml"))
            .expect("examples/consumer-trigger.yaml")
            .replace("minReplicas: 0", "minReplicas: 1")
            .replace(
                "  delivery:\n",
                "  transform:\n    jq: '.type = \"order.shaped\" | .data = {shaped: .data.n}'\n  delivery:\n",
            );
        apply(&ns, &consumer);
        let triggers: Api<Trigger> = Api::namespaced(client.clone(), &ns);
        let ready = has_condition(condition::READY, ConditionStatus::True, None);
        await_condition(&triggers, "orders-worker", WAIT, ready).await;
        stack.send("side-1", "com.example.order.created", "/e2e", r#"{"n": 5}"#).await;
        let printed = herald_e2e::eventually("the worker prints the event", herald_e2e::pods::POD_START, || async {
            pods.lines()
                .await
                .iter()
                .filter(|l| l.container == "worker")
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l.text).ok())
                .find(|v| v["id"] == "side-1")
        })
        .await;
        assert_eq!(printed["type"], "order.shaped", "{printed}");
        assert_eq!(printed["data"], serde_json::json!({"shaped": 5}), "{printed}");
    })
    .await;
}
