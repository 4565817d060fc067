//! A hostile namespace beside a victim's: every attempt to reach the victim's events
//! or Herald's identity through what a namespace may create must fail with a clear
//! condition, while the victim's events keep flowing.

use std::time::Duration;

use herald_api::conditions::ConditionStatus::False;
use herald_api::eventsource::{NatsJetStreamSource, NatsSource};
use herald_api::{
    BrokerSpec, DeliverySpec, Destination, EventSource, EventSourceSpec, TriggerSpec,
};
use herald_e2e::http::post;
use herald_e2e::kubectl::{apply, example};
use herald_e2e::manifests::{
    self, broker, broker_with, event_source, service_account, source_to, to, to_uri, trigger,
    uri_destination,
};
use herald_e2e::nats::publish_until_delivered;
use herald_e2e::process::{Dispatcher, Ingress, Operator, Sources};
use herald_e2e::stack::Stack;
use herald_e2e::subscriber::Subscriber;
use herald_e2e::{
    await_condition, await_not_ready, await_ready, field, has_condition, nats_url, with_temp_ns,
};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{Api, Client};

const WAIT: Duration = Duration::from_secs(30);

/// Creates the attacker's namespace beside the victim's (deleted by the caller).
async fn attacker_namespace(client: &Client, victim: &str) -> String {
    let attacker = format!("{victim}-x");
    let mut object = Namespace::default();
    object.metadata.name = Some(attacker.clone());
    object.metadata.labels =
        Some([(herald_e2e::TEST_NS_LABEL.to_owned(), "true".to_owned())].into());
    Api::<Namespace>::all(client.clone())
        .create(&kube::api::PostParams::default(), &object)
        .await
        .expect("attacker namespace");
    attacker
}

fn nats_source(name: &str, sink: &str, nats: NatsSource) -> EventSource {
    let spec = EventSourceSpec {
        nats: Some(nats),
        ..source_to(uri_destination(sink))
    };
    event_source(name, spec)
}

fn subject(subject: &str) -> NatsSource {
    NatsSource {
        subject: subject.to_owned(),
        ..NatsSource::default()
    }
}

/// Sends `count` events with ids `secret-<n>` to `broker`; each must be stored.
async fn send_secrets(broker: &str, count: usize) {
    for n in 0..count {
        let id = format!("secret-{n}");
        let headers = [
            ("ce-specversion", "1.0"),
            ("ce-id", &*id),
            ("ce-type", "t"),
            ("ce-source", "bank"),
        ];
        assert_eq!(post(broker, &headers, "{}").await.status, 202);
    }
}

/// A namespace the platform team lets use Herald's own NATS connection still cannot
/// read the victim's Broker subjects, Herald's streams, or join another namespace's
/// queue group; what it may read, it reads.
#[tokio::test]
async fn a_nats_source_on_herald_s_connection_cannot_reach_another_namespace_s_events() {
    with_temp_ns("nats-tenant", |client, victim| async move {
        let attacker = attacker_namespace(&client, &victim).await;
        let watched = format!("{victim},{attacker}");
        let ingress = Ingress::start(&watched, &nats_url()).await;
        let _operator = Operator::start_with_flags(
            &watched,
            &nats_url(),
            "solo",
            &ingress.url(),
            &["--shared-nats-namespaces", &attacker],
        )
        .await;
        let _dispatcher = Dispatcher::start(&watched, &nats_url()).await;
        let _adapter = Sources::start(&watched, &nats_url()).await;
        apply(
            &victim,
            &std::fs::read_to_string(example("broker.yaml")).expect("example"),
        );
        let victims_subscriber = Subscriber::accepting().await;
        herald_e2e::ready_trigger(
            &client,
            &victim,
            "all",
            to_uri(&victims_subscriber.url),
            WAIT,
        )
        .await;
        let loot = Subscriber::accepting().await;

        let sources: Api<EventSource> = Api::namespaced(client.clone(), &attacker);
        let attempts = [
            (
                "broker-subjects",
                subject(&format!("herald.{victim}.default.>")),
                "Herald's Brokers",
            ),
            ("everything", subject(">"), "literal token"),
            ("jetstream-api", subject("$JS.API.>"), "server's own"),
            (
                "broker-stream",
                NatsSource {
                    jet_stream: Some(NatsJetStreamSource {
                        stream: format!("HERALD_{victim}_default"),
                        durable: None,
                    }),
                    ..subject("legacy.>")
                },
                "Herald's streams",
            ),
            (
                "queue-share",
                NatsSource {
                    queue_group: Some(format!("herald_{victim}_legacy-orders")),
                    ..subject("legacy.orders.>")
                },
                "queueGroup",
            ),
        ];
        for (name, nats, _) in &attempts {
            manifests::apply(
                &client,
                &attacker,
                &nats_source(name, &loot.url, nats.clone()),
            )
            .await;
        }
        for (name, _, why) in &attempts {
            let refused = await_not_ready(&sources, name, "InvalidSpec", WAIT).await;
            let conditions = field(&refused, "/status/conditions").to_string();
            assert!(conditions.contains(why), "{name}: {conditions}");
        }
        // What the attacker may read through Herald's connection works.
        let own = subject(&format!("legacy.{attacker}.>"));
        manifests::apply(&client, &attacker, &nats_source("own", &loot.url, own)).await;
        await_ready(&sources, "own", WAIT).await;
        publish_until_delivered(&format!("legacy.{attacker}"), "mine", &loot).await;
        loot.wait_for("the attacker's own subject", WAIT, |d| !d.is_empty())
            .await;

        // The victim's events flow to the victim only.
        send_secrets(&format!("{}/{victim}/default", ingress.url()), 5).await;
        victims_subscriber
            .wait_for("the victim's events", WAIT, |d| d.len() >= 5)
            .await;
        let stolen = loot
            .deliveries()
            .iter()
            .filter(|(e, _)| e.id().starts_with("secret-"))
            .count();
        assert_eq!(stolen, 0, "the attacker read the victim's events");
        let _ = Api::<Namespace>::all(client.clone())
            .delete(&attacker, &kube::api::DeleteParams::background())
            .await;
    })
    .await;
}

/// A Trigger cannot make the dispatcher hand its ServiceAccount token to a URL the
/// Trigger chose for an audience someone else accepts: not another namespace's
/// service's, not the apiserver's.
#[tokio::test]
async fn a_trigger_cannot_borrow_the_dispatcher_s_token_for_another_audience() {
    with_temp_ns("token-tenant", |client, ns| async move {
        let mut herald = Stack::without_dispatcher(client.clone(), &ns, &nats_url(), &[]).await;
        manifests::apply(&client, &ns, &service_account("herald-dispatcher")).await;
        let account = format!("{ns}/herald-dispatcher");
        herald.dispatcher = Some(
            Dispatcher::start_with(&ns, &nats_url(), &["--token-service-account", &account]).await,
        );
        let (loot, dead_letters) = (Subscriber::accepting().await, Subscriber::accepting().await);

        // Another namespace's service's audience, delivered to the attacker: refused
        // when the Trigger is resolved, so nothing is ever sent.
        let subscriber = Destination {
            audience: Some("https://billing.bank.svc/events".to_owned()),
            ..uri_destination(&loot.url)
        };
        manifests::apply(&client, &ns, &trigger("borrow", to(subscriber))).await;
        let triggers: Api<herald_api::Trigger> = Api::namespaced(client.clone(), &ns);
        let refused = await_condition(
            &triggers,
            "borrow",
            WAIT,
            has_condition("SubscriberResolved", False, Some("SubscriberNotResolved")),
        )
        .await;
        let conditions = field(&refused, "/status/conditions").to_string();
        assert!(
            conditions.contains("only sent to the host its audience names"),
            "{conditions}"
        );

        // The apiserver's own audience for a subscriber on the apiserver's host name:
        // bound, but the dispatcher's TokenReview says the apiserver would accept the
        // token, so it is never sent; the event is dead-lettered saying why.
        let apiserver = "https://kubernetes.default.svc";
        herald_e2e::ready_trigger(
            &client,
            &ns,
            "apiserver",
            TriggerSpec {
                delivery: Some(DeliverySpec {
                    retry: Some(0),
                    dead_letter_sink: Some(uri_destination(&dead_letters.url)),
                    ..DeliverySpec::default()
                }),
                ..to(Destination {
                    audience: Some(apiserver.to_owned()),
                    ..uri_destination(&format!("{apiserver}/api/v1/namespaces"))
                })
            },
            WAIT,
        )
        .await;
        herald.send("t-1", "token.attack", "/e2e", "{}").await;
        dead_letters
            .wait_for("the dead-lettered event", WAIT, |d| !d.is_empty())
            .await;
        let (dead, _) = &dead_letters.deliveries()[0];
        let why = dead.get("heralderror").unwrap_or_default().to_owned();
        assert!(
            why.contains("accepted by the Kubernetes apiserver"),
            "{why}"
        );
        assert!(
            loot.deliveries().is_empty(),
            "the unbound Trigger delivered"
        );
    })
    .await;
}

/// What one namespace may take of the JetStream store every Broker shares is capped
/// by the platform team: a Broker asking for more is refused, one asking for nothing
/// gets the ceiling, and sending more than it keeps drops the oldest events of that
/// Broker only.
#[tokio::test]
async fn a_broker_cannot_take_more_of_jetstream_than_the_platform_allows() {
    with_temp_ns("stream-ceiling", |client, ns| async move {
        let ingress = Ingress::start(&ns, &nats_url()).await;
        let _operator = Operator::start_with_flags(
            &ns,
            &nats_url(),
            "solo",
            &ingress.url(),
            &["--max-stream-bytes", "1Mi", "--max-stream-age", "1h"],
        )
        .await;
        let mut greedy = BrokerSpec::default();
        greedy.stream.max_bytes = Some(Quantity("10Gi".to_owned()));
        manifests::apply(&client, &ns, &broker_with("greedy", greedy)).await;
        manifests::apply(&client, &ns, &broker("plain")).await;
        let brokers: Api<herald_api::Broker> = Api::namespaced(client.clone(), &ns);
        let greedy = await_not_ready(&brokers, "greedy", "InvalidSpec", WAIT).await;
        let conditions = field(&greedy, "/status/conditions").to_string();
        assert!(conditions.contains("--max-stream-bytes"), "{conditions}");
        let plain = await_ready(&brokers, "plain", WAIT).await;
        let stream_name = plain
            .status
            .and_then(|s| s.stream_name)
            .expect("stream name");
        let js =
            async_nats::jetstream::new(async_nats::connect(nats_url()).await.expect("connect"));
        let config = js
            .get_stream(&stream_name)
            .await
            .expect("stream")
            .cached_info()
            .config
            .clone();
        assert_eq!(
            (config.max_bytes, config.max_age),
            (1 << 20, Duration::from_secs(3600))
        );

        // 3 MiB into a Broker that keeps 1 MiB: every send is stored (202), the
        // oldest are dropped, the stream stays within its share.
        let url = format!("{}/{ns}/plain", ingress.url());
        let chunk = format!("\"{}\"", "x".repeat(100 * 1024));
        herald_e2e::eventually("the ingress serves the Broker", WAIT, || async {
            (post(&url, &[("ce-specversion", "1.0")], "").await.status == 400).then_some(())
        })
        .await;
        for n in 0..30 {
            let id = format!("big-{n}");
            let headers = [
                ("ce-specversion", "1.0"),
                ("ce-id", &*id),
                ("ce-type", "t"),
                ("ce-source", "s"),
                ("content-type", "application/json"),
            ];
            assert_eq!(post(&url, &headers, chunk.clone()).await.status, 202);
        }
        let state = js
            .get_stream(&stream_name)
            .await
            .expect("stream")
            .cached_info()
            .state
            .clone();
        assert!(
            state.bytes <= 1 << 20,
            "the stream holds {} bytes",
            state.bytes
        );
        assert!(
            state.messages < 30 && state.last_sequence >= 30,
            "{state:?}"
        );
    })
    .await;
}
