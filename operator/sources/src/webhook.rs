//! The shared webhook endpoint: `POST /<namespace>/<source>`, signed with the
//! source's key (HMAC-SHA256, GitHub style), turned into one event for its sink.
//!
//! Answers: 202 when the sink took the event; 401 unsigned or wrongly signed; 404 no
//! such webhook source; 405 other methods; 413 over the source's body limit; 502 the
//! sink refused or could not be reached after retries; 503 the signing key cannot be
//! read. Every error has a JSON body `{"error": reason, "message": ...}`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::plan::{Kind, SourcePlan, extension_name};
use crate::signature;
use crate::sink::Sender;

/// A webhook source the server answers for.
pub struct Route {
    /// Its plan.
    pub plan: Arc<SourcePlan>,
    /// The signing key, or why it could not be read.
    pub key: Result<Vec<u8>, String>,
}

/// Webhook sources by `(namespace, name)`; replaced by the adapter's loop on change.
pub type Routes = Arc<RwLock<HashMap<(String, String), Arc<Route>>>>;

struct ServerState {
    routes: Routes,
    sender: Sender,
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
        Err(e) => return refuse(sender, StatusCode::SERVICE_UNAVAILABLE, "KeyUnavailable", e),
    };
    let Ok(body) = axum::body::to_bytes(body, *max_body).await else {
        return refuse(
            sender,
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            &format!("the body is larger than {max_body} bytes"),
        );
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
pub fn router(routes: Routes, sender: Sender) -> Router {
    Router::new()
        .route(
            "/{namespace}/{name}",
            post(receive).fallback(method_not_allowed),
        )
        .fallback(not_found)
        .with_state(Arc::new(ServerState { routes, sender }))
}
