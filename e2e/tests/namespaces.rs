//! One operator, ingress and dispatcher serving two namespaces
//! (`--watch-namespace a,b`, as the chart's `watchNamespaces` list sets it): each
//! namespace's Broker and Trigger work, and each keeps its events.

use std::time::Duration;

use herald_api::{Broker, Trigger};
use herald_e2e::http::post;
use herald_e2e::kubectl::{apply, example};
use herald_e2e::manifests::{self, to_uri, trigger};
use herald_e2e::process::{Dispatcher, Ingress, Operator};
use herald_e2e::subscriber::Subscriber;
use herald_e2e::{await_ready, eventually, nats_url, with_temp_ns};
use kube::Api;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn one_set_of_components_serves_two_namespaces() {
    with_temp_ns("multi-a", |_client, a| async move {
        with_temp_ns("multi-b", move |client, b| async move {
            let watch = format!("{a},{b}");
            let ingress = Ingress::start(&watch, &nats_url()).await;
            let _operator =
                Operator::start_with_ingress(&watch, &nats_url(), "multi", &ingress.url()).await;
            let _dispatcher = Dispatcher::start(&watch, &nats_url()).await;
            let broker = std::fs::read_to_string(example("broker.yaml")).expect("example");
            let mut subscribers = Vec::new();
            for ns in [&a, &b] {
                let subscriber = Subscriber::accepting().await;
                apply(ns, &broker);
                manifests::apply(&client, ns, &trigger("all", to_uri(&subscriber.url))).await;
                let brokers: Api<Broker> = Api::namespaced(client.clone(), ns);
                await_ready(&brokers, "default", WAIT).await;
                let triggers: Api<Trigger> = Api::namespaced(client.clone(), ns);
                await_ready(&triggers, "all", WAIT).await;
                subscribers.push(subscriber);
            }
            for ns in [&a, &b] {
                let url = format!("{}/{ns}/default", ingress.url());
                let event = |id: String| {
                    let url = url.clone();
                    async move {
                        post(
                            &url,
                            &[
                                ("ce-specversion", "1.0"),
                                ("ce-id", &id),
                                ("ce-type", "multi.test"),
                                ("ce-source", "/e2e"),
                                ("content-type", "application/json"),
                            ],
                            "{}",
                        )
                        .await
                        .status
                    }
                };
                eventually("the ingress serves the Broker", WAIT, || {
                    let send = event(format!("in-{ns}"));
                    async move { (send.await == 202).then_some(()) }
                })
                .await;
            }
            for (subscriber, ns) in subscribers.iter().zip([&a, &b]) {
                let id = format!("in-{ns}");
                subscriber
                    .wait_for("its namespace's event", WAIT, |d| {
                        d.iter().any(|(e, _)| e.id() == id)
                    })
                    .await;
                assert!(
                    subscriber.deliveries().iter().all(|(e, _)| e.id() == id),
                    "only its own namespace's events"
                );
            }
        })
        .await;
    })
    .await;
}
