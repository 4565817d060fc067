//! The HTTP side: `POST /<namespace>/<broker>` → validate → publish → 202 after the ack;
//! `OPTIONS` on the same path answers what a sender may do (the webhook handshake).
//!
//! Publishing is pipelined: every event of every concurrent request goes to the one
//! shared NATS connection without waiting, and each request then awaits only its own
//! acks. The Broker lookup reads a cache; the only lock on the request path is the
//! short one around the per-Broker in-flight count.

use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use herald_api::naming;
use herald_cloudevents::{http as binding, nats as storage};
use herald_runtime::budget::ByteBudget;
use herald_runtime::nats::NatsConnection;

use crate::auth::Authenticator;
use crate::brokers::{BrokerIndex, Lookup};
use crate::error::Rejection;
use crate::limits::BrokerConcurrency;
use crate::metrics::Metrics;

/// Longest subject the ingress publishes to (NATS' default control line is 4 KiB).
const MAX_TYPE_BYTES: usize = 1000;

/// Everything a request needs.
pub struct AppState {
    /// Broker cache.
    pub brokers: BrokerIndex,
    pub nats: NatsConnection,
    /// JetStream publishing context (pipelined acks).
    pub jetstream: jetstream::Context,
    /// Sender authentication.
    pub auth: Authenticator,
    pub metrics: Metrics,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Time a client has to send the body.
    pub body_timeout: std::time::Duration,
    /// Requests in flight per Broker.
    pub per_broker: BrokerConcurrency,
    /// Bytes of request bodies held, from reading until their events are stored.
    pub in_flight_bytes: ByteBudget,
}

/// The ingress routes: a Broker's address, with or without a trailing slash (as
/// Knative's broker ingress takes it).
pub fn router(state: Arc<AppState>) -> Router {
    let broker = post(receive).options(consent).fallback(method_not_allowed);
    Router::new()
        .route("/{namespace}/{broker}", broker.clone())
        .route("/{namespace}/{broker}/", broker)
        .fallback(not_found)
        .with_state(state)
}

async fn method_not_allowed(State(state): State<Arc<AppState>>) -> Response {
    reject(&state, Rejection::MethodNotAllowed)
}

/// `OPTIONS`: `Allow`, and consent to the CloudEvents webhook handshake, for a Broker
/// that exists (Ready or not: it is the right address either way). No
/// authentication: the handshake only says the address expects events (Knative's
/// broker ingress answers it the same way), and an unknown Broker answers 404 as a
/// POST would.
async fn consent(
    State(state): State<Arc<AppState>>,
    Path((namespace, broker)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Lookup::Unknown = state.brokers.lookup(&namespace, &broker) {
        return reject(&state, Rejection::UnknownBroker { namespace, broker });
    }
    (
        StatusCode::OK,
        herald_cloudevents::webhook::consent(&headers),
    )
        .into_response()
}

async fn not_found(State(state): State<Arc<AppState>>) -> Response {
    reject(&state, Rejection::NotFound)
}

fn reject(state: &AppState, rejection: Rejection) -> Response {
    state
        .metrics
        .rejected
        .with_label_values(&[rejection.reason()])
        .inc();
    tracing::debug!(reason = rejection.reason(), %rejection, "request refused");
    rejection.into_response()
}

/// Counts a request in flight for as long as it lives.
struct InFlight<'a>(&'a Metrics);

impl<'a> InFlight<'a> {
    fn new(metrics: &'a Metrics) -> Self {
        metrics.in_flight.inc();
        Self(metrics)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

async fn receive(
    State(state): State<Arc<AppState>>,
    Path((namespace, broker)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let _in_flight = InFlight::new(&state.metrics);
    let started = Instant::now();
    match accept(&state, &namespace, &broker, &headers, body).await {
        Ok(mode) => {
            state
                .metrics
                .request_duration
                .with_label_values(&[mode.as_str()])
                .observe(started.elapsed().as_secs_f64());
            StatusCode::ACCEPTED.into_response()
        }
        Err(rejection) => reject(&state, rejection),
    }
}

async fn accept(
    state: &AppState,
    namespace: &str,
    broker: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<binding::Mode, Rejection> {
    let _slot = match state.brokers.lookup(namespace, broker) {
        Lookup::Ready(found) => {
            let uid = found.metadata.uid.as_deref().unwrap_or_default();
            let Some(slot) = state.per_broker.acquire(uid) else {
                return Err(Rejection::TooManyRequests(state.per_broker.max()));
            };
            state.auth.check(&found, headers).await?;
            slot
        }
        Lookup::Unknown => {
            return Err(Rejection::UnknownBroker {
                namespace: namespace.to_owned(),
                broker: broker.to_owned(),
            });
        }
        Lookup::NotReady(reason) => {
            return Err(Rejection::BrokerNotReady {
                namespace: namespace.to_owned(),
                broker: broker.to_owned(),
                reason,
            });
        }
    };
    // Held until the acks are in: the events are in memory until then.
    let _bytes = reserve_body(state, headers)?;
    let body = tokio::time::timeout(
        state.body_timeout,
        axum::body::to_bytes(body, state.max_body_bytes),
    )
    .await
    .map_err(|_| Rejection::BodyTimeout(state.body_timeout))?
    .map_err(|_| {
        Rejection::TooLarge(format!(
            "the request body is larger than {} bytes",
            state.max_body_bytes
        ))
    })?;
    let (mode, events) = binding::decode(headers, body)?;
    if events.is_empty() {
        // An empty batch, which the binding allows: stored, trivially, without NATS.
        return Ok(mode);
    }
    if !state.nats.is_connected() {
        return Err(Rejection::NatsUnavailable("not connected to NATS".into()));
    }

    let max_payload = state.nats.client.server_info().max_payload;
    let mut messages = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        if event.type_().len() > MAX_TYPE_BYTES {
            return Err(Rejection::TypeTooLong(event.type_().len()));
        }
        let subject = naming::event_subject(namespace, broker, event.type_());
        let (nats_headers, payload) = storage::encode(event);
        if payload.len() + 1024 > max_payload {
            return Err(Rejection::TooLarge(format!(
                "event {i} has {} bytes of data; the NATS server accepts at most {max_payload} bytes per message",
                payload.len()
            )));
        }
        messages.push((subject, nats_headers, payload));
    }

    // Send everything first (pipelined), then wait for the acks.
    let published = Instant::now();
    let mut acks = Vec::with_capacity(messages.len());
    for (subject, nats_headers, payload) in messages {
        let ack = state
            .jetstream
            .publish_with_headers(subject, nats_headers, payload)
            .await
            .map_err(|e| Rejection::NatsUnavailable(e.to_string()))?;
        acks.push(ack.into_future());
    }
    let mut duplicates = 0u64;
    for result in futures::future::join_all(acks).await {
        let ack = result.map_err(|e| Rejection::NatsUnavailable(e.to_string()))?;
        if ack.duplicate {
            duplicates += 1;
        }
    }
    let labels = [namespace, broker];
    state
        .metrics
        .ack_duration
        .with_label_values(&labels)
        .observe(published.elapsed().as_secs_f64());
    state
        .metrics
        .accepted
        .with_label_values(&labels)
        .inc_by(events.len() as u64);
    if duplicates > 0 {
        state
            .metrics
            .duplicates
            .with_label_values(&labels)
            .inc_by(duplicates);
    }
    Ok(mode)
}

/// A place in the in-flight byte budget for the body `headers` announce: its
/// `Content-Length` (hyper refuses a body longer than that), or, without one, the
/// largest body accepted.
fn reserve_body(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<herald_runtime::budget::Reservation, Rejection> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bytes = match declared {
        Some(n) if n > u64::try_from(state.max_body_bytes).unwrap_or(u64::MAX) => {
            return Err(Rejection::TooLarge(format!(
                "the request body is {n} bytes; at most {} are accepted",
                state.max_body_bytes
            )));
        }
        Some(n) => usize::try_from(n).unwrap_or(state.max_body_bytes),
        None => state.max_body_bytes,
    };
    state
        .in_flight_bytes
        .try_reserve(bytes)
        .ok_or(Rejection::Overloaded(state.in_flight_bytes.capacity()))
}

/// Serves `state` on a free loopback port in the background with `limits`; returns
/// the address (for benchmarks and tests that run the ingress in process).
#[cfg(any(test, feature = "testing"))]
pub async fn spawn_local(
    state: Arc<AppState>,
    limits: crate::limits::ConnectionLimits,
) -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(crate::limits::serve(
        listener,
        router(state),
        limits,
        std::future::pending(),
    ));
    Ok(addr)
}

#[cfg(test)]
mod tests {
    //! The router over a real loopback connection, with a Broker cache and a NATS
    //! client that never connects: whatever needs no NATS is answered for real,
    //! and a request that would publish gets 503.

    use axum::http::{HeaderMap, Method, StatusCode};
    use bytes::Bytes;
    use herald_api::conditions::{Condition, ConditionStatus};
    use herald_api::{Broker, BrokerSpec, BrokerStatus};
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    use super::*;
    use std::fmt::Write as _;

    fn broker(name: &str, ready: bool) -> Broker {
        let mut b = Broker::new(name, BrokerSpec::default());
        b.metadata.namespace = Some("shop".into());
        b.metadata.uid = Some(format!("uid-{name}"));
        let status = if ready {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        };
        b.status = Some(BrokerStatus {
            conditions: vec![Condition::new("Ready", status, "StreamMissing", "")],
            ..BrokerStatus::default()
        });
        b
    }

    /// The ingress with Brokers `shop/orders` (Ready) and `shop/paused` (not Ready).
    async fn ingress() -> std::net::SocketAddr {
        ingress_with(ByteBudget::new(crate::config::DEFAULT_MAX_IN_FLIGHT_BYTES)).await
    }

    /// [`ingress`] with `in_flight_bytes` as its byte budget.
    async fn ingress_with(in_flight_bytes: ByteBudget) -> std::net::SocketAddr {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect("nats://127.0.0.1:1")
            .await
            .expect("a client that connects in the background");
        let state = AppState {
            brokers: BrokerIndex::fixed(vec![broker("orders", true), broker("paused", false)]),
            jetstream: jetstream::new(client.clone()),
            nats: NatsConnection {
                client,
                state_changes: tokio::sync::watch::channel(0).1,
            },
            auth: Authenticator::new(None),
            metrics: Metrics::register(&prometheus::Registry::new()).unwrap(),
            max_body_bytes: 64 * 1024,
            body_timeout: std::time::Duration::from_secs(5),
            per_broker: BrokerConcurrency::new(8),
            in_flight_bytes,
        };
        spawn_local(Arc::new(state), crate::limits::ConnectionLimits::default())
            .await
            .unwrap()
    }

    struct Answer {
        status: StatusCode,
        headers: HeaderMap,
        body: String,
    }

    impl Answer {
        fn error(&self) -> serde_json::Value {
            serde_json::from_str::<serde_json::Value>(&self.body).unwrap_or_default()["error"]
                .clone()
        }
    }

    async fn send(
        addr: std::net::SocketAddr,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &'static str,
    ) -> Answer {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = Client::builder(TokioExecutor::new())
            .build_http()
            .request(
                request
                    .body(Full::new(Bytes::from_static(body.as_bytes())))
                    .unwrap(),
            )
            .await
            .expect("the ingress answers");
        let (parts, body) = response.into_parts();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body.collect().await.unwrap().to_bytes()).into_owned(),
        }
    }

    const BATCH: (&str, &str) = ("content-type", binding::BATCH_JSON);

    #[tokio::test]
    async fn options_answers_allow_and_the_webhook_handshake() {
        let addr = ingress().await;
        let origin = ("WebHook-Request-Origin", "eventemitter.example.com");
        for path in ["/shop/orders", "/shop/paused"] {
            let answer = send(addr, Method::OPTIONS, path, &[origin], "").await;
            assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
            assert_eq!(answer.headers["allow"], "POST, OPTIONS");
            assert_eq!(
                answer.headers["webhook-allowed-origin"],
                "eventemitter.example.com"
            );
            assert_eq!(answer.headers["webhook-allowed-rate"], "*");
        }
        let probe = send(addr, Method::OPTIONS, "/shop/orders", &[], "").await;
        assert_eq!(probe.status, StatusCode::OK);
        assert_eq!(probe.headers["webhook-allowed-origin"], "*");
        let unknown = send(addr, Method::OPTIONS, "/shop/nope", &[origin], "").await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        assert!(!unknown.headers.contains_key("webhook-allowed-origin"));
        let get = send(addr, Method::GET, "/shop/orders", &[], "").await;
        assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(get.headers["allow"], "POST, OPTIONS");
    }

    #[tokio::test]
    async fn a_trailing_slash_is_the_same_address() {
        let addr = ingress().await;
        let post = send(addr, Method::POST, "/shop/orders/", &[BATCH], "[]").await;
        assert_eq!(post.status, StatusCode::ACCEPTED, "{}", post.body);
        let options = send(addr, Method::OPTIONS, "/shop/orders/", &[], "").await;
        assert_eq!(options.status, StatusCode::OK);
        let get = send(addr, Method::GET, "/shop/orders/", &[], "").await;
        assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
        let unknown = send(addr, Method::POST, "/shop/nope/", &[BATCH], "[]").await;
        assert_eq!(unknown.error(), "UnknownBroker");
        for path in ["/shop/orders/more", "/shop/orders//", "/shop"] {
            let answer = send(addr, Method::POST, path, &[BATCH], "[]").await;
            assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(answer.error(), "NotFound", "{path}");
        }
    }

    #[tokio::test]
    async fn an_event_format_the_ingress_does_not_read_is_415() {
        let addr = ingress().await;
        let avro = ("content-type", "application/cloudevents+avro");
        let answer = send(addr, Method::POST, "/shop/orders", &[avro], "x").await;
        assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(answer.error(), "UnsupportedMediaType");
        let broken = send(addr, Method::POST, "/shop/orders", &[BATCH], "[").await;
        assert_eq!(broken.status, StatusCode::BAD_REQUEST);
        assert_eq!(broken.error(), "InvalidEvent");
    }

    #[tokio::test]
    async fn an_empty_batch_is_accepted_and_stores_nothing() {
        let addr = ingress().await;
        let empty = send(addr, Method::POST, "/shop/orders", &[BATCH], "[]").await;
        assert_eq!(empty.status, StatusCode::ACCEPTED, "{}", empty.body);
        // Whatever would be published is refused: NATS is unreachable here.
        let one = r#"[{"specversion":"1.0","id":"1","source":"/s","type":"t"}]"#;
        let full = send(addr, Method::POST, "/shop/orders", &[BATCH], one).await;
        assert_eq!(full.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(full.error(), "NatsUnavailable");
        // The Broker is still looked up first.
        let unknown = send(addr, Method::POST, "/shop/nope", &[BATCH], "[]").await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        assert_eq!(unknown.error(), "UnknownBroker");
    }

    #[tokio::test]
    async fn a_spent_byte_budget_answers_503_until_bytes_come_back() {
        let budget = ByteBudget::new(64 * 1024);
        let addr = ingress_with(budget.clone()).await;
        let others = budget.try_reserve(64 * 1024 - 10).unwrap();
        // `[]` fits in the 10 bytes left; a body without a length would need the
        // largest body accepted.
        let small = send(addr, Method::POST, "/shop/orders", &[BATCH], "[]").await;
        assert_eq!(small.status, StatusCode::ACCEPTED, "{}", small.body);
        let one = r#"[{"specversion":"1.0","id":"1","source":"/s","type":"t"}]"#;
        let refused = send(addr, Method::POST, "/shop/orders", &[BATCH], one).await;
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.error(), "Overloaded");
        assert_eq!(refused.headers["retry-after"], "1");
        drop(others);
        let again = send(addr, Method::POST, "/shop/orders", &[BATCH], one).await;
        assert_eq!(
            again.error(),
            "NatsUnavailable",
            "past the budget: {}",
            again.body
        );
        assert_eq!(budget.held(), 0, "every request gave its bytes back");
    }

    #[tokio::test]
    async fn a_declared_body_over_the_limit_is_refused_before_it_is_read() {
        let addr = ingress().await;
        let big = "x".repeat(64 * 1024 + 1);
        let answer = send(addr, Method::POST, "/shop/orders", &[BATCH], big.leak()).await;
        assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(answer.body.contains("65537 bytes"), "{}", answer.body);
    }

    #[tokio::test]
    async fn an_attribute_bomb_is_400() {
        let addr = ingress().await;
        let extensions: String = (0..5_000).fold(String::new(), |mut members, i| {
            let _ = write!(members, r#","x{i}":1"#);
            members
        });
        let bomb = format!(
            "{}{extensions}}}",
            r#"{"specversion":"1.0","id":"1","source":"/s","type":"t""#
        );
        let structured = ("content-type", binding::STRUCTURED_JSON);
        let answer = send(
            addr,
            Method::POST,
            "/shop/orders",
            &[structured],
            bomb.leak(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        assert_eq!(answer.error(), "InvalidEvent");
        assert!(
            answer.body.contains("at most 100 attributes"),
            "{}",
            answer.body
        );
    }
}
