//! EventSources end to end: `herald sources` runs the examples' cron, webhook and NATS
//! sources; their events go through the Broker and a Trigger to a test subscriber.

use std::collections::HashSet;
use std::time::Duration;

use herald_api::eventsource::{
    KubernetesResource, KubernetesSource, NatsJetStreamSource, NatsSource,
};
use herald_api::{EventSource, EventSourceSpec, TriggerSpec};
use herald_e2e::http::post;
use herald_e2e::kubectl::{self, example};
use herald_e2e::manifests::{
    apply, attributes, broker_destination, cron_to, event_source, prefix, source_to, to_uri,
    uri_destination,
};
use herald_e2e::nats::{await_consumer_drained, publish_until_delivered};
use herald_e2e::process::Sources;
use herald_e2e::stack::Stack;
use herald_e2e::subscriber::Subscriber;
use herald_e2e::{await_not_ready, await_ready, field, nats_url, with_temp_ns};
use herald_sources::signature::sign;
use kube::{Api, Client};

const WAIT: Duration = Duration::from_secs(30);

/// A Trigger on the Broker `default` for events of `type_`, delivering to `url`.
async fn trigger_for(client: &Client, ns: &str, type_: &str, url: &str) {
    let spec = TriggerSpec {
        filter: attributes([("type", type_)]),
        ..to_uri(url)
    };
    herald_e2e::ready_trigger(client, ns, "to-test", spec, WAIT).await;
}

/// A NATS subject to forward.
fn subject(subject: &str) -> NatsSource {
    NatsSource {
        subject: subject.to_owned(),
        ..NatsSource::default()
    }
}

/// A NATS source into Broker `default`.
fn nats_to_default(nats: NatsSource) -> EventSourceSpec {
    EventSourceSpec {
        nats: Some(nats),
        ..source_to(broker_destination("default"))
    }
}

/// A source into Broker `default` watching `kind` (of `v1`) as `service_account`.
fn watching(kind: &str, service_account: &str) -> EventSourceSpec {
    let resource = KubernetesResource {
        api_version: "v1".to_owned(),
        kind: kind.to_owned(),
        ..KubernetesResource::default()
    };
    EventSourceSpec {
        kubernetes: Some(KubernetesSource {
            resources: vec![resource],
            service_account_name: service_account.to_owned(),
            ..KubernetesSource::default()
        }),
        ..source_to(broker_destination("default"))
    }
}

/// Applies EventSource `name` with `spec`, waits until it is not Ready for `reason`
/// and returns its conditions.
async fn not_ready(
    client: &Client,
    ns: &str,
    name: &str,
    spec: EventSourceSpec,
    reason: &'static str,
) -> String {
    apply(client, ns, &event_source(name, spec)).await;
    let sources: Api<EventSource> = Api::namespaced(client.clone(), ns);
    let refused = await_not_ready(&sources, name, reason, WAIT).await;
    field(&refused, "/status/conditions").to_string()
}

async fn source_ready(client: &Client, ns: &str, name: &str) -> EventSource {
    let sources: Api<EventSource> = Api::namespaced(client.clone(), ns);
    await_ready(&sources, name, WAIT).await
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
        kubectl::apply(
            &ns,
            &std::fs::read_to_string(example("cron-source.yaml")).expect("example"),
        );
        let source = source_ready(&client, &ns, "heartbeat").await;
        assert_eq!(
            field(&source, "/status/sinkUri"),
            stack.broker_address().as_str()
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
        kubectl::apply(
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

/// JetStream: messages stored before the source existed are forwarded too, and
/// acknowledged once the sink took them.
async fn stored_messages_are_forwarded_and_acked(
    client: &Client,
    ns: &str,
    subscriber: &Subscriber,
) {
    let nats = async_nats::connect(nats_url()).await.expect("connect");
    let js = async_nats::jetstream::new(nats);
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
    let from_stream = NatsSource {
        url: Some(nats_url()),
        jet_stream: Some(NatsJetStreamSource {
            stream: stream.clone(),
            durable: None,
        }),
        ..subject(&format!("legacyjs.{ns}.>"))
    };
    apply(
        client,
        ns,
        &event_source("from-stream", nats_to_default(from_stream)),
    )
    .await;
    source_ready(client, ns, "from-stream").await;
    subscriber
        .wait_for("the stored messages", WAIT, |d| {
            d.iter()
                .filter(|(e, _)| e.data.as_deref().is_some_and(|b| b.starts_with(b"stored")))
                .count()
                >= 3
        })
        .await;
    let durable = format!("herald_{ns}_from-stream");
    await_consumer_drained(&js, &stream, &durable, WAIT).await;
}

#[tokio::test]
async fn nats_messages_are_forwarded_and_bad_sources_explained() {
    with_temp_ns("nats-source", |client, ns| async move {
        let _stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let subscriber = Subscriber::accepting().await;
        Box::pin(trigger_for(
            &client,
            &ns,
            "dev.herald.nats.message",
            &subscriber.url,
        ))
        .await;
        let _sources = Sources::start(&ns, &nats_url()).await;
        let example = std::fs::read_to_string(example("nats-source.yaml")).expect("example");
        kubectl::apply(
            &ns,
            &example.replace("nats://nats.legacy.svc.cluster.local:4222", &nats_url()),
        );
        source_ready(&client, &ns, "legacy-orders").await;
        publish_until_delivered("legacy.orders.eu", "order 42", &subscriber).await;
        subscriber
            .wait_for("a forwarded message", WAIT, |d| !d.is_empty())
            .await;
        let (event, _) = subscriber.deliveries().remove(0);
        assert!(
            event
                .get("subject")
                .is_some_and(|s| s.starts_with("legacy.orders.eu.")),
            "{event:?}"
        );
        assert_eq!(event.data.as_deref(), Some(&b"order 42"[..]));

        stored_messages_are_forwarded_and_acked(&client, &ns, &subscriber).await;

        // Problems are explained in the conditions.
        let bad_cron = cron_to("61 * * * *", broker_destination("default"));
        let conditions = not_ready(&client, &ns, "bad-cron", bad_cron, "InvalidSpec").await;
        assert!(conditions.contains("cron.schedule"), "{conditions}");
        let no_sink = EventSourceSpec {
            nats: Some(NatsSource {
                url: Some("nats://x:4222".to_owned()),
                ..subject("x")
            }),
            ..source_to(broker_destination("missing"))
        };
        not_ready(&client, &ns, "no-sink", no_sink, "SinkNotResolved").await;
        // Herald's own NATS connection is not lent to a namespace the platform team did
        // not allow (this operator allows none).
        let borrowing = nats_to_default(subject("legacy.orders.>"));
        let conditions = not_ready(&client, &ns, "borrowing", borrowing, "InvalidSpec").await;
        assert!(
            conditions.contains("--shared-nats-namespaces"),
            "{conditions}"
        );
        let kube = watching("ConfigMap", "default");
        not_ready(&client, &ns, "kube", kube, "Forbidden").await;

        // A sink that refuses: counted, and reported as an Event on the EventSource.
        let refusing =
            Subscriber::scripted(|_, _| herald_e2e::subscriber::Answer::status(400)).await;
        apply(
            &client,
            &ns,
            &event_source(
                "refused",
                cron_to("* * * * * *", uri_destination(&refusing.url)),
            ),
        )
        .await;
        herald_e2e::eventually("a DeliveryFailed Event", WAIT, || async {
            let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), &ns)
                .list(&kube::api::ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default();
            events
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some("DeliveryFailed")
                        && e.involved_object.name.as_deref() == Some("refused")
                })
                .then_some(())
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn kubernetes_changes_become_events_as_the_named_service_account() {
    use herald_e2e::pods::PodWatch;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Patch, PatchParams, PostParams};
    with_temp_ns("k8s-source", |client, ns| async move {
        let _stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let subscriber = Subscriber::accepting().await;
        let spec = TriggerSpec {
            filters: vec![prefix([("type", "dev.herald.kubernetes.resource.")])],
            ..to_uri(&subscriber.url)
        };
        herald_e2e::ready_trigger(&client, &ns, "to-test", spec, WAIT).await;
        let pods = PodWatch::start(client.clone(), &ns, "app.kubernetes.io/managed-by=herald");
        kubectl::apply(
            &ns,
            &std::fs::read_to_string(example("kubernetes-source.yaml")).expect("example"),
        );
        let source = source_ready(&client, &ns, "settings-changes").await;
        assert!(
            field(&source, "/status/conditions")
                .to_string()
                .contains("configmap-watcher")
        );
        herald_e2e::eventually(
            "the adapter pod runs",
            herald_e2e::pods::POD_START,
            || async { (pods.running_pods() > 0).then_some(()) },
        )
        .await;

        // Change a watched ConfigMap until the change arrives as an update event.
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "settings", "labels": {"herald.dev/watch": "true"}},
            "data": {"mode": "v0"},
        }))
        .expect("configmap");
        configmaps
            .create(&PostParams::default(), &cm)
            .await
            .expect("create");
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
            assert!(
                version < 120,
                "no update event: {:?}",
                subscriber.deliveries()
            );
            let patch = serde_json::json!({"data": {"mode": format!("v{version}")}});
            configmaps
                .patch("settings", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .expect("patch");
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert_eq!(
            update.get("subject"),
            Some(format!("{ns}/settings").as_str())
        );
        let object: serde_json::Value =
            serde_json::from_slice(update.data.as_deref().expect("data")).expect("json");
        assert_eq!(object["kind"], "ConfigMap");
        assert!(
            object["data"]["mode"]
                .as_str()
                .is_some_and(|m| m.starts_with('v')),
            "{object}"
        );

        // The same account may not watch Secrets: reported, nothing deployed.
        apply(
            &client,
            &ns,
            &event_source("secret-watch", watching("Secret", "configmap-watcher")),
        )
        .await;
        let sources: Api<EventSource> = Api::namespaced(client.clone(), &ns);
        let denied = await_not_ready(&sources, "secret-watch", "Forbidden", WAIT).await;
        assert!(
            field(&denied, "/status/conditions")
                .to_string()
                .contains("may not list secrets")
        );
    })
    .await;
}
