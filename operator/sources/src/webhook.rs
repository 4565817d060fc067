//! The shared webhook endpoint: `POST /<namespace>/<source>`, signed with the
//! source's key (HMAC-SHA256, GitHub style), turned into one event for its sink.
//!
//! Answers: 202 when the sink took the event; 401 unsigned or wrongly signed; 404 no
//! such webhook source; 405 other methods; 408 the body did not arrive within the read
//! timeout; 413 over the source's body limit; 502 the sink refused or could not be
//! reached after retries; 503 the signing key cannot be read, or the adapter holds as
//! many bytes of requests as allowed (with `Retry-After`). Every error has a JSON body
//! `{"error": reason, "message": ...}`. Headers and connections are bounded before a
//! request gets here ([`herald_runtime::http_server`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use herald_runtime::budget::{ByteBudget, Reservation};

use crate::resolved::{Kind, ResolvedSource, extension_name};
use crate::signature;
use crate::sink::Sender;

/// A webhook source the server answers for.
pub struct Route {
    pub plan: Arc<ResolvedSource>,
    /// The signing key, or why it could not be read.
    pub key: Result<Vec<u8>, crate::SecretError>,
}

/// Webhook sources by `(namespace, name)`; replaced by the adapter's loop on change.
pub type Routes = Arc<RwLock<HashMap<(String, String), Arc<Route>>>>;

/// What one request may cost the adapter.
#[derive(Clone, Debug)]
pub struct RequestLimits {
    /// Time a client has to send the body (408 after).
    pub body_timeout: Duration,
    /// Bytes of request bodies held at once across all requests, from reading until
    /// the sink took the event (503 when spent).
    pub in_flight_bytes: ByteBudget,
}

struct ServerState {
    routes: Routes,
    sender: Sender,
    limits: RequestLimits,
}

fn refuse(sender: &Sender, status: StatusCode, reason: &str, message: &str) -> Response {
    sender.metrics().refused.with_label_values(&[reason]).inc();
    let body = serde_json::json!({"error": reason, "message": message});
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::METHOD_NOT_ALLOWED {
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

async fn receive(
    State(state): State<Arc<ServerState>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let route = state
        .routes
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&(namespace.clone(), name.clone()))
        .cloned();
    let sender = &state.sender;
    let Some(route) = route else {
        return refuse(
            sender,
            StatusCode::NOT_FOUND,
            "UnknownSource",
            &format!("no webhook EventSource {namespace}/{name} is Ready"),
        );
    };
    let Kind::Webhook {
        signature_header,
        event_type,
        headers: copied,
        max_body,
        ..
    } = &route.plan.kind
    else {
        return refuse(
            sender,
            StatusCode::NOT_FOUND,
            "UnknownSource",
            "not a webhook source",
        );
    };
    let key = match &route.key {
        Ok(key) => key,
        Err(e) => {
            return refuse(
                sender,
                StatusCode::SERVICE_UNAVAILABLE,
                "KeyUnavailable",
                &e.to_string(),
            );
        }
    };
    // Held until the sink took the event (retries included): the body is in memory
    // until then.
    let (_bytes, body) = match read_body(&state, &headers, body, *max_body).await {
        Ok(read) => read,
        Err(refusal) => return refusal,
    };
    let signature = headers
        .get(signature_header.as_str())
        .and_then(|v| v.to_str().ok());
    if let Err(e) = signature::verify(key, &body, signature) {
        return refuse(
            sender,
            StatusCode::UNAUTHORIZED,
            "BadSignature",
            &format!("{e} (header {signature_header})"),
        );
    }
    let plan = &route.plan;
    let id = headers
        .get("x-github-delivery")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let mut event = plan.new_event(&id, event_type);
    if let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        event.set("datacontenttype", content_type);
    }
    for name in copied {
        if let Some(value) = headers.get(name.as_str()).and_then(|v| v.to_str().ok()) {
            event.set(&extension_name(name), value);
        }
    }
    event.data = Some(body);
    match sender
        .send(&plan.namespace, &plan.name, &plan.sink, &event)
        .await
    {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => refuse(
            sender,
            StatusCode::BAD_GATEWAY,
            "SinkFailed",
            &e.to_string(),
        ),
    }
}

/// Reads a webhook body of at most `max_body` bytes within the body timeout, holding
/// its size in the adapter's byte budget (its `Content-Length`, which hyper holds the
/// body to, or `max_body` without one); the refusal to answer otherwise.
async fn read_body(
    state: &ServerState,
    headers: &HeaderMap,
    body: Body,
    max_body: usize,
) -> Result<(Reservation, axum::body::Bytes), Response> {
    let sender = &state.sender;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        refuse(
            sender,
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            &format!("the body is larger than {max_body} bytes"),
        )
    };
    if declared.is_some_and(|n| n > u64::try_from(max_body).unwrap_or(u64::MAX)) {
        return Err(too_large());
    }
    let wanted = declared
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(max_body);
    let Some(reservation) = state.limits.in_flight_bytes.try_reserve(wanted) else {
        return Err(refuse(
            sender,
            StatusCode::SERVICE_UNAVAILABLE,
            "Overloaded",
            &format!(
                "the adapter already holds {} bytes of webhook requests, the most allowed; retry shortly",
                state.limits.in_flight_bytes.capacity()
            ),
        ));
    };
    let timeout = state.limits.body_timeout;
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, max_body)).await {
        Ok(Ok(body)) => Ok((reservation, body)),
        Ok(Err(_)) => Err(too_large()),
        Err(_) => Err(refuse(
            sender,
            StatusCode::REQUEST_TIMEOUT,
            "RequestTimeout",
            &format!("the body did not arrive within {timeout:?}"),
        )),
    }
}

async fn method_not_allowed(State(state): State<Arc<ServerState>>) -> Response {
    refuse(
        &state.sender,
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "only POST is accepted",
    )
}

async fn not_found(State(state): State<Arc<ServerState>>) -> Response {
    refuse(
        &state.sender,
        StatusCode::NOT_FOUND,
        "NotFound",
        "webhooks are at /<namespace>/<eventsource>",
    )
}

/// The webhook routes.
pub fn router(routes: Routes, sender: Sender, limits: RequestLimits) -> Router {
    Router::new()
        .route(
            "/{namespace}/{name}",
            post(receive).fallback(method_not_allowed),
        )
        .fallback(not_found)
        .with_state(Arc::new(ServerState {
            routes,
            sender,
            limits,
        }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use herald_api::common::SecretKeyRef;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;

    use super::*;
    use crate::metrics::Metrics;

    /// The webhook server with source `ns/hook` (64-byte body limit) on a loopback port.
    async fn server(limits: RequestLimits) -> std::net::SocketAddr {
        let plan = ResolvedSource {
            namespace: "ns".into(),
            name: "hook".into(),
            sink: "http://127.0.0.1:1/".into(),
            extensions: std::collections::BTreeMap::new(),
            kind: Kind::Webhook {
                secret: SecretKeyRef::default(),
                signature_header: "x-hub-signature-256".into(),
                event_type: "t".into(),
                headers: Vec::new(),
                max_body: 64,
            },
        };
        let route = Route {
            plan: Arc::new(plan),
            key: Ok(b"key".to_vec()),
        };
        let routes: Routes = Arc::default();
        routes
            .write()
            .unwrap()
            .insert(("ns".into(), "hook".into()), Arc::new(route));
        let sender = Sender::new(
            &herald_runtime::tls::ClientTls::load(None).unwrap(),
            &Arc::new(herald_runtime::egress::EgressPolicy::unrestricted()),
            Metrics::register(&prometheus::Registry::new()).unwrap(),
            None,
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(routes, sender, limits)).await });
        addr
    }

    fn limits(budget: &ByteBudget) -> RequestLimits {
        RequestLimits {
            body_timeout: Duration::from_millis(300),
            in_flight_bytes: budget.clone(),
        }
    }

    /// Sends `head` (request line and headers, without the blank line) and `body`,
    /// keeps the connection open, and returns the answer's status line and body.
    async fn send(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(format!("{head}\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        stream.write_all(body).await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer))
            .await
            .expect("an answer")
            .unwrap();
        answer
    }

    #[tokio::test]
    async fn a_declared_body_over_the_limit_is_refused_unread() {
        let budget = ByteBudget::new(1024);
        let addr = server(limits(&budget)).await;
        let answer = send(addr, "POST /ns/hook HTTP/1.1\r\ncontent-length: 65", b"").await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        let chunked = send(
            addr,
            "POST /ns/hook HTTP/1.1\r\ntransfer-encoding: chunked",
            format!("41\r\n{}\r\n0\r\n\r\n", "x".repeat(65)).as_bytes(),
        )
        .await;
        assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test]
    async fn a_body_slower_than_the_timeout_is_408() {
        let budget = ByteBudget::new(1024);
        let addr = server(limits(&budget)).await;
        let answer = send(addr, "POST /ns/hook HTTP/1.1\r\ncontent-length: 10", b"ab").await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("RequestTimeout"), "{answer}");
        assert_eq!(budget.held(), 0, "the bytes came back");
    }

    #[tokio::test]
    async fn a_spent_byte_budget_is_503_with_retry_after() {
        let budget = ByteBudget::new(1024);
        let addr = server(limits(&budget)).await;
        let others = budget.try_reserve(1020).unwrap();
        let refused = send(
            addr,
            "POST /ns/hook HTTP/1.1\r\ncontent-length: 10",
            &[b'x'; 10],
        )
        .await;
        assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
        assert!(refused.contains("retry-after: 1"), "{refused}");
        assert!(refused.contains("Overloaded"), "{refused}");
        drop(others);
        let unsigned = send(
            addr,
            "POST /ns/hook HTTP/1.1\r\ncontent-length: 10",
            &[b'x'; 10],
        )
        .await;
        assert!(
            unsigned.starts_with("HTTP/1.1 401"),
            "past the budget: {unsigned}"
        );
        assert_eq!(budget.held(), 0);
    }
}
