//! Broker → JetStream stream, against a real apiserver and nats-server.

use std::time::Duration;

use async_nats::jetstream;
use herald_api::{Broker, naming};
use herald_e2e::kubectl::{apply, apply_refused, example, kubectl};
use herald_e2e::process::{NatsServer, Operator};
use herald_e2e::{
    await_not_ready, await_ready, delete_and_await_gone, eventually, field, nats_url, with_temp_ns,
};
use kube::Api;

const WAIT: Duration = Duration::from_secs(30);

async fn stream_config(nats: &str, name: &str) -> Option<jetstream::stream::Config> {
    let client = async_nats::connect(nats).await.expect("connect to NATS");
    let js = jetstream::new(client);
    let mut stream = js.get_stream(name).await.ok()?;
    Some(stream.info().await.ok()?.config.clone())
}

#[tokio::test]
async fn crds_are_installed_with_printer_columns_and_category() {
    for crd in ["brokers", "triggers", "eventsources"] {
        let out = kubectl(
            &[
                "get",
                "crd",
                &format!("{crd}.eventing.herald.dev"),
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
            ],
            None,
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "True",
            "{crd} not established"
        );
    }
    with_temp_ns("category", |_, ns| async move {
        apply(
            &ns,
            &std::fs::read_to_string(example("broker.yaml")).unwrap(),
        );
        let out = kubectl(&["get", "herald", "-n", &ns], None);
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(
            table.contains("broker.eventing.herald.dev/default"),
            "{table}"
        );
        let out = kubectl(&["get", "brk", "-n", &ns], None);
        let header = String::from_utf8_lossy(&out.stdout);
        for column in ["READY", "REASON", "URL", "AGE"] {
            assert!(header.contains(column), "missing column {column}: {header}");
        }
        let explain = kubectl(&["explain", "brokers.spec.stream.maxAge"], None);
        assert!(String::from_utf8_lossy(&explain.stdout).contains("Oldest event kept"));
    })
    .await;
}

#[tokio::test]
async fn broker_gets_a_stream_with_its_limits_and_follows_updates_and_deletion() {
    with_temp_ns("lifecycle", |client, ns| async move {
        let _operator = Operator::start(&ns, &nats_url(), "solo").await;
        apply(
            &ns,
            &std::fs::read_to_string(example("broker.yaml")).unwrap(),
        );
        let brokers: Api<Broker> = Api::namespaced(client, &ns);
        let broker = await_ready(&brokers, "default", WAIT).await;
        assert_eq!(
            field(&broker, "/status/address/url"),
            format!("http://ingress.test/{ns}/default").as_str()
        );
        let stream = naming::stream_name(&ns, "default");
        assert_eq!(field(&broker, "/status/streamName"), stream.as_str());

        let config = stream_config(&nats_url(), &stream)
            .await
            .expect("stream exists");
        assert_eq!(config.max_age, Duration::from_secs(24 * 3600));
        assert_eq!(config.max_bytes, 1 << 30);
        assert_eq!(config.subjects, [format!("herald.{ns}.default.>")]);
        assert_eq!(config.duplicate_window, Duration::from_secs(120));

        // Updating maxAge updates the stream in place.
        apply(
            &ns,
            &std::fs::read_to_string(example("broker.yaml"))
                .unwrap()
                .replace("maxAge: 24h", "maxAge: 2h"),
        );
        eventually("stream maxAge becomes 2h", WAIT, || async {
            let c = stream_config(&nats_url(), &stream).await?;
            (c.max_age == Duration::from_secs(7200)).then_some(())
        })
        .await;

        // A change JetStream cannot make in place is reported and changes nothing.
        apply(
            &ns,
            &std::fs::read_to_string(example("broker.yaml"))
                .unwrap()
                .replace("storage: file", "storage: memory"),
        );
        let broker = await_not_ready(&brokers, "default", "StreamChangeNotAllowed", WAIT).await;
        assert!(
            field(&broker, "/status/conditions/1/message")
                .as_str()
                .unwrap_or_default()
                .contains("storage file -> memory")
        );
        assert_eq!(
            stream_config(&nats_url(), &stream)
                .await
                .expect("still there")
                .storage,
            jetstream::stream::StorageType::File
        );

        // Deleting the Broker deletes its stream (finalizer).
        delete_and_await_gone(&brokers, "default", WAIT).await;
        assert!(
            stream_config(&nats_url(), &stream).await.is_none(),
            "stream {stream} survived its Broker"
        );
    })
    .await;
}

#[tokio::test]
async fn invalid_brokers_are_refused_by_the_apiserver_with_clear_messages() {
    with_temp_ns("invalid", |_, ns| async move {
        // YAML on purpose: these are documents a user could write and the typed
        // objects cannot (a storage of `disk`, a duration in words).
        let message = apply_refused(
            &ns,
            "apiVersion: eventing.herald.dev/v1alpha1\nkind: Broker\nmetadata: {name: bad}\nspec:\n  stream: {maxAge: ten minutes, replicas: 9, storage: disk}\n",
        );
        for expected in ["spec.stream.maxAge", "spec.stream.replicas", "less than or equal to 5", "spec.stream.storage", "\"file\", \"memory\""] {
            assert!(message.contains(expected), "missing {expected:?} in: {message}");
        }
        let message = apply_refused(
            &ns,
            "apiVersion: eventing.herald.dev/v1alpha1\nkind: EventSource\nmetadata: {name: two}\nspec:\n  sink: {uri: http://x}\n  cron: {schedule: '* * * * *'}\n  nats: {subject: a}\n",
        );
        assert!(message.contains("oneOf") || message.contains("must validate one and only one"), "{message}");
    })
    .await;
}

#[tokio::test]
async fn a_stream_herald_did_not_create_is_never_touched() {
    with_temp_ns("foreign", |client, ns| async move {
        let stream = naming::stream_name(&ns, "default");
        let js = jetstream::new(async_nats::connect(nats_url()).await.unwrap());
        js.create_stream(jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![format!("foreign.{ns}.>")],
            ..Default::default()
        })
        .await
        .unwrap();
        let _operator = Operator::start(&ns, &nats_url(), "solo").await;
        apply(
            &ns,
            &std::fs::read_to_string(example("broker.yaml")).unwrap(),
        );
        let brokers: Api<Broker> = Api::namespaced(client, &ns);
        await_not_ready(&brokers, "default", "StreamNotOwned", WAIT).await;
        delete_and_await_gone(&brokers, "default", WAIT).await;
        let config = stream_config(&nats_url(), &stream)
            .await
            .expect("foreign stream must survive");
        assert_eq!(config.subjects, [format!("foreign.{ns}.>")]);
        js.delete_stream(&stream).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn nats_outage_turns_the_broker_not_ready_and_it_heals() {
    with_temp_ns("outage", |client, ns| async move {
        let mut nats = NatsServer::start("outage").await;
        let _operator = Operator::start(&ns, &nats.url(), "solo").await;
        apply(
            &ns,
            &std::fs::read_to_string(example("broker.yaml")).unwrap(),
        );
        let brokers: Api<Broker> = Api::namespaced(client, &ns);
        await_ready(&brokers, "default", WAIT).await;

        nats.stop().await;
        let broker = await_not_ready(&brokers, "default", "NatsUnavailable", WAIT).await;
        println!(
            "while NATS is down: {}",
            field(&broker, "/status/conditions/1/message")
        );

        nats.restart().await;
        await_ready(&brokers, "default", WAIT).await;
        let stream = naming::stream_name(&ns, "default");
        assert!(
            stream_config(&nats.url(), &stream).await.is_some(),
            "stream survives the restart (file storage)"
        );
    })
    .await;
}
