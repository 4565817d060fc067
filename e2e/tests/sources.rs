//! EventSources end to end: `herald sources` runs the examples' cron, webhook and NATS
//! sources; their events go through the Broker and a Trigger to a test subscriber.

use std::collections::HashSet;
use std::time::Duration;

use herald_api::conditions::ConditionStatus::{False, True};
use herald_api::{EventSource, Trigger};
use herald_e2e::http::post;
use herald_e2e::kubectl::{apply, example};
use herald_e2e::process::Sources;
use herald_e2e::stack::Stack;
use herald_e2e::subscriber::Subscriber;
use herald_e2e::{await_condition, field, has_condition, nats_url, with_temp_ns};
use herald_sources::signature::sign;
use kube::{Api, Client};

const WAIT: Duration = Duration::from_secs(30);

/// A Trigger on the Broker `default` for events of `type_`, delivering to `url`.
async fn trigger_for(client: &Client, ns: &str, type_: &str, url: &str) {
    apply(
        ns,
        &format!(
            "apiVersion: eventing.herald.dev/v1alpha1\nkind: Trigger\nmetadata: {{name: to-test}}\nspec:\n  broker: default\n  filter: {{attributes: {{type: {type_}}}}}\n  subscriber: {{uri: \"{url}\"}}\n"
        ),
    );
    let triggers: Api<Trigger> = Api::namespaced(client.clone(), ns);
    await_condition(
        &triggers,
        "to-test",
        WAIT,
        has_condition("Ready", True, None),
    )
    .await;
}

async fn source_ready(client: &Client, ns: &str, name: &str) -> EventSource {
    let sources: Api<EventSource> = Api::namespaced(client.clone(), ns);
    await_condition(&sources, name, WAIT, has_condition("Ready", True, None)).await
}

#[tokio::test]
async fn cron_fires_each_tick_once_even_with_two_adapters() {
    with_temp_ns("cron", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let subscriber = Subscriber::accepting().await;
        Box::pin(trigger_for(
            &client,
            &ns,
            "dev.herald.cron.tick",
            &subscriber.url,
        ))
        .await;
        // Two replicas of the adapter: both fire every tick.
        let _a = Sources::start(&ns, &nats_url()).await;
        let _b = Sources::start(&ns, &nats_url()).await;
        apply(
            &ns,
            &std::fs::read_to_string(example("cron-source.yaml")).expect("example"),
        );
        let source = source_ready(&client, &ns, "heartbeat").await;
        assert_eq!(
            field(&source, "/status/sinkUri"),
            format!("{}/{ns}/default", stack.ingress.url()).as_str()
        );
        subscriber
            .wait_for("four ticks delivered", WAIT, |d| d.len() >= 4)
            .await;
        let events: Vec<_> = subscriber
            .deliveries()
            .into_iter()
            .map(|(e, _)| e)
            .collect();
        let ids: HashSet<&str> = events
            .iter()
            .map(herald_cloudevents::CloudEvent::id)
            .collect();
        assert_eq!(
            ids.len(),
            events.len(),
            "a tick was delivered twice: {ids:?}"
        );
        let mut ticks: Vec<chrono::DateTime<chrono::Utc>> = ids
            .iter()
            .map(|id| id.parse().expect("the id is the tick's time"))
            .collect();
        ticks.sort();
        for pair in ticks.windows(2) {
            assert_eq!(
                (pair[1] - pair[0]).num_seconds() % 2,
                0,
                "ticks every 2 s: {ticks:?}"
            );
        }
        let first = &events[0];
        assert_eq!(first.get("team"), Some("platform"), "ceOverrides applied");
        assert_eq!(
            first.source(),
            format!("/apis/eventing.herald.dev/v1alpha1/namespaces/{ns}/eventsources/heartbeat")
        );
        assert_eq!(first.data.as_deref(), Some(&br#"{"hello": "world"}"#[..]));
    })
    .await;
}

#[tokio::test]
async fn webhooks_need_a_valid_signature() {
    with_temp_ns("webhook", |client, ns| async move {
        let _stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let subscriber = Subscriber::accepting().await;
        Box::pin(trigger_for(
            &client,
            &ns,
            "com.github.event",
            &subscriber.url,
        ))
        .await;
        let sources = Sources::start(&ns, &nats_url()).await;
        apply(
            &ns,
            &std::fs::read_to_string(example("webhook-source.yaml")).expect("example"),
        );
        let source = source_ready(&client, &ns, "github").await;
        assert!(
            field(&source, "/status/webhookUrl")
                .as_str()
                .is_some_and(|u| u.ends_with(&format!("/{ns}/github")))
        );
        let url = sources.webhook_url(&ns, "github");
        let key = b"change-me-to-a-long-random-secret";
        let body = r#"{"action":"opened","number":7}"#;
        let signed = |body: &str| sign(key, body.as_bytes());
        // The adapter learns of the source through its own watch: retry until it serves it.
        let mut answer = post(&url, &[], "").await;
        for _ in 0..50 {
            answer = post(
                &url,
                &[
                    ("x-hub-signature-256", &signed(body)),
                    ("content-type", "application/json"),
                    ("x-github-event", "pull_request"),
                    ("x-github-delivery", "d-1"),
                ],
                body.to_owned(),
            )
            .await;
            if answer.status != 404 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(answer.status, 202, "{}", answer.body);
        subscriber
            .wait_for("the webhook event", WAIT, |d| !d.is_empty())
            .await;
        let (event, _) = subscriber.deliveries().remove(0);
        assert_eq!((event.id(), event.type_()), ("d-1", "com.github.event"));
        assert_eq!(event.get("xgithubevent"), Some("pull_request"));
        assert_eq!(event.get("datacontenttype"), Some("application/json"));
        assert_eq!(event.data.as_deref(), Some(body.as_bytes()));

        let unsigned = post(&url, &[], body.to_owned()).await;
        assert_eq!(unsigned.status, 401, "{}", unsigned.body);
        assert_eq!(unsigned.json()["error"], "BadSignature");
        let forged = post(
            &url,
            &[("x-hub-signature-256", &sign(b"wrong key", body.as_bytes()))],
            body.to_owned(),
        )
        .await;
        assert_eq!(forged.status, 401);
        let big = "x".repeat(65 * 1024);
        let too_big = post(&url, &[("x-hub-signature-256", &signed(&big))], big.clone()).await;
        assert_eq!(too_big.status, 413, "{}", too_big.body);
        let unknown = post(&sources.webhook_url(&ns, "nope"), &[], "").await;
        assert_eq!(unknown.status, 404);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            subscriber.deliveries().len(),
            1,
            "refused requests emit nothing"
        );
    })
    .await;
}

#[tokio::test]
async fn nats_messages_are_forwarded_and_bad_sources_explained() {
    with_temp_ns("nats-source", |client, ns| async move {
        let _stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let subscriber = Subscriber::accepting().await;
        Box::pin(trigger_for(&client, &ns, "dev.herald.nats.message", &subscriber.url)).await;
        let _sources = Sources::start(&ns, &nats_url()).await;
        let example = std::fs::read_to_string(example("nats-source.yaml")).expect("example");
        apply(&ns, &example.replace("nats://nats.legacy.svc.cluster.local:4222", &nats_url()));
        source_ready(&client, &ns, "legacy-orders").await;
        let nats = async_nats::connect(nats_url()).await.expect("connect");
        // The adapter subscribes through its own watch: publish until one arrives.
        for n in 0..50 {
            nats.publish(format!("legacy.orders.eu.{n}"), "order 42".into()).await.expect("publish");
            nats.flush().await.expect("flush");
            if !subscriber.deliveries().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        subscriber.wait_for("a forwarded message", WAIT, |d| !d.is_empty()).await;
        let (event, _) = subscriber.deliveries().remove(0);
        assert!(event.get("subject").is_some_and(|s| s.starts_with("legacy.orders.eu.")), "{event:?}");
        assert_eq!(event.data.as_deref(), Some(&b"order 42"[..]));

        // JetStream: messages stored before the source existed are forwarded too, and
        // acknowledged once the sink took them.
        let js = async_nats::jetstream::new(nats.clone());
        let stream = format!("LEGACY_{}", ns.replace('-', "_"));
        js.create_stream(async_nats::jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![format!("legacyjs.{ns}.>")],
            ..Default::default()
        })
        .await
        .expect("create stream");
        for n in 0..3 {
            js.publish(format!("legacyjs.{ns}.order"), format!("stored {n}").into())
                .await
                .expect("publish")
                .await
                .expect("stored");
        }
        apply(&ns, &format!("apiVersion: eventing.herald.dev/v1alpha1\nkind: EventSource\nmetadata: {{name: from-stream}}\nspec:\n  sink: {{ref: {{kind: Broker, name: default}}}}\n  nats: {{url: \"{}\", subject: \"legacyjs.{ns}.>\", jetStream: {{stream: {stream}}}}}\n", nats_url()));
        source_ready(&client, &ns, "from-stream").await;
        subscriber
            .wait_for("the stored messages", WAIT, |d| {
                d.iter().filter(|(e, _)| e.data.as_deref().is_some_and(|b| b.starts_with(b"stored"))).count() == 3
            })
            .await;
        let durable = format!("herald_{ns}_from-stream");
        herald_e2e::eventually("the durable consumer has acknowledged everything", WAIT, || {
            let js = js.clone();
            let (stream, durable) = (stream.clone(), durable.clone());
            async move {
                let consumer: async_nats::jetstream::consumer::PullConsumer =
                    js.get_consumer_from_stream(&durable, &stream).await.ok()?;
                let info = consumer.cached_info();
                (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
            }
        })
        .await;

        // Problems are explained in the conditions.
        let sources: Api<EventSource> = Api::namespaced(client.clone(), &ns);
        apply(&ns, "apiVersion: eventing.herald.dev/v1alpha1\nkind: EventSource\nmetadata: {name: bad-cron}\nspec:\n  sink: {ref: {kind: Broker, name: default}}\n  cron: {schedule: '61 * * * *'}\n");
        let bad = await_condition(&sources, "bad-cron", WAIT, has_condition("Ready", False, Some("InvalidSpec"))).await;
        assert!(field(&bad, "/status/conditions").to_string().contains("cron.schedule"));
        apply(&ns, "apiVersion: eventing.herald.dev/v1alpha1\nkind: EventSource\nmetadata: {name: no-sink}\nspec:\n  sink: {ref: {kind: Broker, name: missing}}\n  nats: {url: 'nats://x:4222', subject: x}\n");
        await_condition(&sources, "no-sink", WAIT, has_condition("Ready", False, Some("SinkNotResolved"))).await;
        // Herald's own NATS connection is not lent to a namespace the platform team did
        // not allow (this operator allows none).
        apply(&ns, "apiVersion: eventing.herald.dev/v1alpha1\nkind: EventSource\nmetadata: {name: borrowing}\nspec:\n  sink: {ref: {kind: Broker, name: default}}\n  nats: {subject: legacy.orders.>}\n");
        let borrowing = await_condition(&sources, "borrowing", WAIT, has_condition("Ready", False, Some("InvalidSpec"))).await;
        assert!(field(&borrowing, "/status/conditions").to_string().contains("--shared-nats-namespaces"), "{borrowing:?}");
        apply(&ns, "apiVersion: eventing.herald.dev/v1alpha1\nkind: EventSource\nmetadata: {name: kube}\nspec:\n  sink: {ref: {kind: Broker, name: default}}\n  kubernetes: {resources: [{apiVersion: v1, kind: ConfigMap}], serviceAccountName: default}\n");
        await_condition(&sources, "kube", WAIT, has_condition("Ready", False, Some("Forbidden"))).await;

        // A sink that refuses: counted, and reported as an Event on the EventSource.
        let refusing = Subscriber::scripted(|_, _| herald_e2e::subscriber::Answer::status(400)).await;
        apply(&ns, &format!("apiVersion: eventing.herald.dev/v1alpha1\nkind: EventSource\nmetadata: {{name: refused}}\nspec:\n  sink: {{uri: \"{}\"}}\n  cron: {{schedule: '* * * * * *'}}\n", refusing.url));
        herald_e2e::eventually("a DeliveryFailed Event", WAIT, || async {
            let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), &ns)
                .list(&kube::api::ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default();
            events
                .iter()
                .any(|e| e.reason.as_deref() == Some("DeliveryFailed") && e.involved_object.name.as_deref() == Some("refused"))
                .then_some(())
        })
        .await;
    })
    .await;
}

fn env_of(deployment: &k8s_openapi::api::apps::v1::Deployment, var: &str) -> Option<String> {
    deployment.spec.template.spec.as_ref()?.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == var)?
        .value
        .clone()
}

#[tokio::test]
async fn sink_binding_injects_and_follows_the_broker_address() {
    use herald_e2e::eventually;
    use herald_e2e::process::Operator;
    use k8s_openapi::api::apps::v1::Deployment;
    with_temp_ns("binding", |client, ns| async move {
        let mut stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let producer = |name: &str| {
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, labels: {{app: order-producer}}}}\nspec:\n  replicas: 0\n  selector: {{matchLabels: {{run: {name}}}}}\n  template:\n    metadata: {{labels: {{run: {name}}}}}\n    spec:\n      containers:\n      - {{name: app, image: producer:1, env: [{{name: OWN, value: kept}}]}}\n"
            )
        };
        apply(&ns, &producer("producer-a"));
        apply(&ns, &std::fs::read_to_string(example("sink-binding.yaml")).expect("example"));
        source_ready(&client, &ns, "order-producers").await;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let broker_url = format!("{}/{ns}/default", stack.ingress.url());
        let sink_of = |name: &'static str| {
            let deployments = deployments.clone();
            async move { deployments.get(name).await.ok().and_then(|d| env_of(&d, "K_SINK")) }
        };
        eventually("K_SINK injected", WAIT, || async { (sink_of("producer-a").await == Some(broker_url.clone())).then_some(()) }).await;
        let a = deployments.get("producer-a").await.expect("deployment");
        assert_eq!(env_of(&a, "OWN").as_deref(), Some("kept"), "the user's own variables stay");
        assert_eq!(env_of(&a, "K_CE_OVERRIDES").as_deref(), Some(r#"{"extensions":{"team":"shop"}}"#));

        // A Deployment created later is bound too.
        apply(&ns, &producer("producer-b"));
        eventually("a new Deployment is bound", WAIT, || async { (sink_of("producer-b").await == Some(broker_url.clone())).then_some(()) }).await;

        // The Broker's address changes (a new operator serves another ingress URL).
        stack.operator.kill().await;
        let _second = Operator::start_with_ingress(&ns, &nats_url(), "second", "http://moved.test").await;
        let moved = format!("http://moved.test/{ns}/default");
        eventually("K_SINK follows the Broker's address", Duration::from_secs(60), || async {
            (sink_of("producer-a").await == Some(moved.clone())).then_some(())
        })
        .await;

        // Deleting the EventSource takes back exactly what Herald added.
        let sources: Api<EventSource> = Api::namespaced(client.clone(), &ns);
        sources.delete("order-producers", &kube::api::DeleteParams::default()).await.expect("delete");
        eventually("K_SINK removed", WAIT, || async { sink_of("producer-a").await.is_none().then_some(()) }).await;
        let a = deployments.get("producer-a").await.expect("deployment");
        assert_eq!(env_of(&a, "OWN").as_deref(), Some("kept"));
        assert_eq!(env_of(&a, "K_CE_OVERRIDES"), None);
    })
    .await;
}

#[tokio::test]
async fn kubernetes_changes_become_events_as_the_named_service_account() {
    use herald_e2e::runner::ReplicaRunner;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Patch, PatchParams, PostParams};
    with_temp_ns("k8s-source", |client, ns| async move {
        let _stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let subscriber = Subscriber::accepting().await;
        apply(
            &ns,
            &format!(
                "apiVersion: eventing.herald.dev/v1alpha1\nkind: Trigger\nmetadata: {{name: to-test}}\nspec:\n  broker: default\n  filters: [{{prefix: {{type: dev.herald.kubernetes.resource.}}}}]\n  subscriber: {{uri: \"{}\"}}\n",
                subscriber.url
            ),
        );
        let triggers: Api<Trigger> = Api::namespaced(client.clone(), &ns);
        await_condition(&triggers, "to-test", WAIT, has_condition("Ready", True, None)).await;
        let runner = ReplicaRunner::start(client.clone(), &ns, "app.kubernetes.io/managed-by=herald");
        apply(&ns, &std::fs::read_to_string(example("kubernetes-source.yaml")).expect("example"));
        let source = source_ready(&client, &ns, "settings-changes").await;
        assert!(field(&source, "/status/conditions").to_string().contains("configmap-watcher"));
        herald_e2e::eventually("the adapter pod runs", WAIT, || async { (runner.running_pods() > 0).then_some(()) }).await;

        // Change a watched ConfigMap until the change arrives as an update event.
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "settings", "labels": {"herald.dev/watch": "true"}},
            "data": {"mode": "v0"},
        }))
        .expect("configmap");
        configmaps.create(&PostParams::default(), &cm).await.expect("create");
        let mut version = 0;
        let update = loop {
            let updates: Vec<_> = subscriber
                .deliveries()
                .into_iter()
                .map(|(e, _)| e)
                .filter(|e| e.type_() == "dev.herald.kubernetes.resource.update")
                .collect();
            if let Some(e) = updates.into_iter().last() {
                break e;
            }
            version += 1;
            assert!(version < 60, "no update event: {:?}", subscriber.deliveries());
            let patch = serde_json::json!({"data": {"mode": format!("v{version}")}});
            configmaps.patch("settings", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch");
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert_eq!(update.get("subject"), Some(format!("{ns}/settings").as_str()));
        let object: serde_json::Value = serde_json::from_slice(update.data.as_deref().expect("data")).expect("json");
        assert_eq!(object["kind"], "ConfigMap");
        assert!(object["data"]["mode"].as_str().is_some_and(|m| m.starts_with('v')), "{object}");

        // The same account may not watch Secrets: reported, nothing deployed.
        apply(&ns, "apiVersion: eventing.herald.dev/v1alpha1\nkind: EventSource\nmetadata: {name: secret-watch}\nspec:\n  sink: {ref: {kind: Broker, name: default}}\n  kubernetes: {serviceAccountName: configmap-watcher, resources: [{apiVersion: v1, kind: Secret}]}\n");
        let sources: Api<EventSource> = Api::namespaced(client.clone(), &ns);
        let denied = await_condition(&sources, "secret-watch", WAIT, has_condition("Ready", False, Some("Forbidden"))).await;
        assert!(field(&denied, "/status/conditions").to_string().contains("may not list secrets"));
    })
    .await;
}

#[tokio::test]
async fn a_source_sends_to_a_broker_that_requires_a_token() {
    with_temp_ns("cron-auth", |client, ns| async move {
        let _stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        // A Broker only the adapter's ServiceAccount may send to.
        apply(
            &ns,
            &format!(
                "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: herald-sources}}\n---\napiVersion: eventing.herald.dev/v1alpha1\nkind: Broker\nmetadata: {{name: guarded}}\nspec:\n  auth:\n    serviceAccounts:\n      allowed: [{{namespace: {ns}, name: herald-sources}}]\n"
            ),
        );
        let subscriber = Subscriber::accepting().await;
        apply(
            &ns,
            &format!(
                "apiVersion: eventing.herald.dev/v1alpha1\nkind: Trigger\nmetadata: {{name: ticks}}\nspec:\n  broker: guarded\n  subscriber: {{uri: \"{}\"}}\n",
                subscriber.url
            ),
        );
        let triggers: Api<Trigger> = Api::namespaced(client.clone(), &ns);
        await_condition(&triggers, "ticks", WAIT, has_condition("Ready", True, None)).await;
        let account = format!("{ns}/herald-sources");
        let _adapter =
            Sources::start_with(&ns, &nats_url(), &["--token-service-account", &account]).await;
        apply(
            &ns,
            &std::fs::read_to_string(example("cron-source.yaml"))
                .expect("example")
                .replace("name: default}", "name: guarded}"),
        );
        source_ready(&client, &ns, "heartbeat").await;
        // The first send gets 401 with a Bearer challenge; the adapter answers with a
        // token of its ServiceAccount for the Broker's URL, which the ingress accepts.
        subscriber
            .wait_for("ticks reach the guarded Broker", WAIT, |d| d.len() >= 2)
            .await;
    })
    .await;
}

#[tokio::test]
async fn a_source_cannot_lend_the_adapter_s_token_to_another_namespace_s_broker() {
    with_temp_ns("cron-xns", |client, victim| async move {
        use herald_e2e::process::{Dispatcher, Ingress, Operator};
        use k8s_openapi::api::core::v1::Namespace;
        let attacker = format!("{victim}-x");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let mut object = Namespace::default();
        object.metadata.name = Some(attacker.clone());
        namespaces.create(&kube::api::PostParams::default(), &object).await.expect("namespace");
        let watched = format!("{victim},{attacker}");
        let ingress = Ingress::start(&watched, &nats_url()).await;
        let _operator = Operator::start_with_ingress(&watched, &nats_url(), "solo", &ingress.url()).await;
        let _dispatcher = Dispatcher::start(&watched, &nats_url()).await;
        // The victim's Broker lets the shared adapter in (for the victim's own sources).
        apply(
            &victim,
            &format!(
                "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: herald-sources}}\n---\napiVersion: eventing.herald.dev/v1alpha1\nkind: Broker\nmetadata: {{name: guarded}}\nspec:\n  auth:\n    serviceAccounts:\n      allowed: [{{namespace: {victim}, name: herald-sources}}]\n"
            ),
        );
        let subscriber = Subscriber::accepting().await;
        apply(
            &victim,
            &format!(
                "apiVersion: eventing.herald.dev/v1alpha1\nkind: Trigger\nmetadata: {{name: ticks}}\nspec:\n  broker: guarded\n  subscriber: {{uri: \"{}\"}}\n",
                subscriber.url
            ),
        );
        let triggers: Api<Trigger> = Api::namespaced(client.clone(), &victim);
        await_condition(&triggers, "ticks", WAIT, has_condition("Ready", True, None)).await;
        let brokers: Api<herald_api::Broker> = Api::namespaced(client.clone(), &victim);
        let guarded = brokers.get("guarded").await.expect("Broker");
        let url = guarded.status.and_then(|s| s.address).map(|a| a.url).expect("address");
        let account = format!("{victim}/herald-sources");
        let _adapter =
            Sources::start_with(&watched, &nats_url(), &["--token-service-account", &account]).await;
        let cron = std::fs::read_to_string(example("cron-source.yaml")).expect("example");
        // The attacker names the victim's Broker by its address; the victim's own
        // source sends to it too (so the adapter already presents tokens there).
        apply(&attacker, &cron.replace("ref: {kind: Broker, name: default}", &format!("uri: \"{url}\"")));
        apply(&victim, &cron.replace("name: default}", "name: guarded}"));
        source_ready(&client, &victim, "heartbeat").await;
        source_ready(&client, &attacker, "heartbeat").await;
        subscriber
            .wait_for("the victim's own ticks", WAIT, |d| {
                d.iter().filter(|(e, _)| e.source().contains(&victim) && !e.source().contains(&attacker)).count() >= 3
            })
            .await;
        let smuggled = subscriber
            .deliveries()
            .iter()
            .filter(|(e, _)| e.source().contains(&attacker))
            .count();
        assert_eq!(smuggled, 0, "the attacker's source got into the victim's Broker with the adapter's token");
        let _ = namespaces.delete(&attacker, &kube::api::DeleteParams::background()).await;
    })
    .await;
}
