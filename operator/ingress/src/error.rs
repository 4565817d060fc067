//! Every way a request can be refused, and the answer each gets: a status code, a
//! JSON body naming the problem, and `Retry-After` where retrying helps.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald_cloudevents::EventError;
use herald_cloudevents::http::RequestError;

/// Why a request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// No Broker at this address.
    #[error(
        "no Broker {namespace}/{broker} (check the namespace and name, and that the Broker exists)"
    )]
    UnknownBroker {
        /// Namespace from the path.
        namespace: String,
        /// Broker from the path.
        broker: String,
    },
    /// The Broker exists but is not Ready.
    #[error("Broker {namespace}/{broker} is not Ready ({reason}); retry later")]
    BrokerNotReady {
        namespace: String,
        broker: String,
        /// The Broker's Ready reason.
        reason: String,
    },
    /// The request is not a valid CloudEvent (or batch of them).
    #[error("{0}")]
    InvalidEvent(RequestError),
    /// The content type names an event format the ingress does not read.
    #[error("{0}")]
    UnsupportedFormat(RequestError),
    /// An event's `type` makes a subject longer than NATS allows.
    #[error("event type is too long ({0} bytes; at most 1000)")]
    TypeTooLong(usize),
    /// The body, or one event, is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// NATS/JetStream could not take the event; nothing was stored (or, for a batch,
    /// possibly a part: resend the whole batch, duplicates are dropped by id).
    #[error("the event was not stored: {0}; retry with the same event id")]
    NatsUnavailable(String),
    /// The Broker requires authentication and the request has none, or a bad token.
    #[error("{0}")]
    Unauthenticated(String),
    /// The sender is authenticated but not allowed to send to this Broker.
    #[error("{0}")]
    Forbidden(String),
    /// The sender's token cannot be checked right now (the apiserver is unreachable).
    #[error("cannot check the sender's token: {0}; retry later")]
    AuthUnavailable(String),
    /// The Broker has as many requests in flight as allowed.
    #[error("this Broker already has {0} requests in flight, the most allowed; retry shortly")]
    TooManyRequests(usize),
    /// The ingress holds as many bytes of requests in flight as allowed.
    #[error(
        "the ingress already holds {0} bytes of requests in flight, the most allowed; retry shortly"
    )]
    Overloaded(usize),
    /// The client did not send the body in time.
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(std::time::Duration),
    /// Neither POST nor OPTIONS.
    #[error("send events with POST (OPTIONS answers what is allowed)")]
    MethodNotAllowed,
    /// Not a Broker address.
    #[error("not a Broker address: POST events to /<namespace>/<broker>")]
    NotFound,
}

impl From<RequestError> for Rejection {
    fn from(e: RequestError) -> Self {
        if matches!(e.error, EventError::UnsupportedFormat(_)) {
            Self::UnsupportedFormat(e)
        } else {
            Self::InvalidEvent(e)
        }
    }
}

impl Rejection {
    /// Short reason for the body and the metric label.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownBroker { .. } => "UnknownBroker",
            Self::BrokerNotReady { .. } => "BrokerNotReady",
            Self::InvalidEvent(_) => "InvalidEvent",
            Self::UnsupportedFormat(_) => "UnsupportedMediaType",
            Self::TypeTooLong(_) => "TypeTooLong",
            Self::TooLarge(_) => "PayloadTooLarge",
            Self::NatsUnavailable(_) => "NatsUnavailable",
            Self::TooManyRequests(_) => "TooManyRequests",
            Self::Overloaded(_) => "Overloaded",
            Self::BodyTimeout(_) => "RequestTimeout",
            Self::Unauthenticated(_) => "Unauthenticated",
            Self::Forbidden(_) => "Forbidden",
            Self::AuthUnavailable(_) => "AuthUnavailable",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::NotFound => "NotFound",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::UnknownBroker { .. } | Self::NotFound => StatusCode::NOT_FOUND,
            Self::BrokerNotReady { .. }
            | Self::NatsUnavailable(_)
            | Self::AuthUnavailable(_)
            | Self::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::InvalidEvent(_) | Self::TypeTooLong(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            // The CloudEvents webhook spec (2.2) asks for 415 when the format is not understood.
            Self::UnsupportedFormat(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.reason(), "message": self.to_string() });
        if let Self::InvalidEvent(e) = &self
            && let Some(index) = e.index
        {
            body["index"] = index.into();
        }
        let mut response = (self.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        match self {
            Self::MethodNotAllowed => {
                headers.insert(
                    header::ALLOW,
                    HeaderValue::from_static(herald_cloudevents::webhook::ALLOWED_METHODS),
                );
            }
            Self::NatsUnavailable(_)
            | Self::AuthUnavailable(_)
            | Self::TooManyRequests(_)
            | Self::Overloaded(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::BrokerNotReady { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            Self::Unauthenticated(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"herald\""),
                );
            }
            _ => {}
        }
        response
    }
}
