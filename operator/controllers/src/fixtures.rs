//! Test fixtures: a [`Context`] whose Kubernetes client talks to a mocked apiserver
//! (a `tower-test` mock pair), and whose NATS client never connects. A test calls a
//! reconcile and, beside it, walks the apiserver through the requests it expects
//! ([`ApiServer::expect`]), checking each and answering as the apiserver would.
//! Objects more than one module's tests start from live here as well.

use std::sync::Arc;
use std::time::Duration;

use herald_runtime::nats::NatsConnection;
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use kube::runtime::events::Reporter;
use tokio::sync::watch;

use crate::context::Context;
use crate::metrics::Metrics;
use crate::trigger::deployment::WorkloadSettings;

/// The apiserver's end of the mock pair.
pub struct ApiServer(tower_test::mock::Handle<Request<Body>, Response<Body>>);

/// One request the reconcile made.
pub struct Seen {
    /// `PATCH`, `POST`, ...
    pub method: http::Method,
    /// Path and query.
    pub uri: String,
    /// The JSON body (`Null` when there is none).
    pub body: serde_json::Value,
}

impl ApiServer {
    /// Waits (at most a second) for the next request, checks that it is `method` on a
    /// path starting with `path`, and answers it with `answer(&seen)` as JSON.
    pub async fn expect(
        &mut self,
        method: &str,
        path: &str,
        answer: impl FnOnce(&Seen) -> serde_json::Value,
    ) -> Seen {
        let (request, respond) =
            tokio::time::timeout(Duration::from_secs(1), self.0.next_request())
                .await
                .unwrap_or_else(|_| panic!("no {method} {path} came"))
                .expect("the client is gone");
        let method_seen = request.method().clone();
        let uri = request.uri().to_string();
        let bytes = request.into_body().collect_bytes().await.expect("body");
        let body = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("a JSON body")
        };
        let seen = Seen {
            method: method_seen,
            uri,
            body,
        };
        assert_eq!(seen.method.as_str(), method, "{}", seen.uri);
        assert!(
            seen.uri.starts_with(path),
            "expected {path}, got {}",
            seen.uri
        );
        let reply = serde_json::to_vec(&answer(&seen)).expect("JSON");
        respond.send_response(
            Response::builder()
                .body(Body::from(reply))
                .expect("response"),
        );
        seen
    }
}

/// A context over a mocked apiserver, and that apiserver. NATS is never reachable.
pub async fn context() -> (Arc<Context>, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    // Connects in the background to a port nothing listens on: never connected.
    let nats = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect("nats://127.0.0.1:1")
        .await
        .expect("a NATS client");
    let (_, state_changes) = watch::channel(0);
    let metrics = Metrics::register(&prometheus::Registry::new()).expect("metrics");
    let ctx = Context::new(
        client,
        NatsConnection {
            client: nats,
            state_changes,
        },
        metrics,
        "http://ingress".into(),
        "http://sources".into(),
        WorkloadSettings {
            sidecar_image: "herald:test".into(),
            nats_url: "nats://127.0.0.1:1".into(),
        },
        Reporter {
            controller: "herald-operator".into(),
            instance: None,
        },
    );
    (Arc::new(ctx), ApiServer(handle))
}

/// Trigger `shop/orders` of Broker `b`, delivering to a URI, whose status records
/// the queue `stream`/`subject` of `broker`.
pub fn trigger_with_queue(
    broker: &str,
    stream: &str,
    subject: &str,
    routed_after: u64,
) -> herald_api::Trigger {
    use herald_api::trigger::{QueueStatus, TriggerStatus};
    let mut t = herald_api::Trigger::new(
        "orders",
        serde_yaml::from_str("broker: b\nsubscriber: {uri: http://x}").unwrap(),
    );
    t.metadata.namespace = Some("shop".into());
    t.status = Some(TriggerStatus {
        queue: Some(QueueStatus {
            broker: broker.into(),
            stream: stream.into(),
            subject: subject.into(),
            routed_after,
            backfilling: false,
        }),
        ..TriggerStatus::default()
    });
    t
}
