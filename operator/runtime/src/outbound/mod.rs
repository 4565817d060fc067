//! The one way Herald POSTs a CloudEvent to a subscriber, sink or dead-letter sink
//! (the dispatcher, the source adapters and `herald send`): binary mode, through a
//! client that connects only where the egress policy allows, with a deadline, and
//! one classification of what is worth sending again ([`is_retryable`],
//! [`SendError::is_retryable`]).

pub mod answer;

use std::time::Duration;

use bytes::Bytes;
use herald_cloudevents::CloudEvent;
use http_body_util::Full;
use hyper::StatusCode;
use hyper::body::Incoming;

use crate::tls::HttpClient;

/// The client every outbound CloudEvent goes through.
pub type EventClient = HttpClient<Full<Bytes>>;

/// Whether an answer with `status` is worth sending the event again for, as the
/// Knative data plane has it: the contract (knative/specs `specs/eventing/data-plane.md`,
/// "Event Acknowledgement and Delivery Retry") retries 404 (a recipient that is not
/// ready yet), 409, 429 and every 5xx, and Knative's own sender
/// (knative/eventing `pkg/kncloudevents/retries.go`, `SelectiveRetry`) adds 408.
/// Everything else that is not a 2xx (1xx, 3xx, the other 4xx) is final.
#[must_use]
pub fn is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 404 | 408 | 409 | 429) || status.is_server_error()
}

/// Why a CloudEvent got no answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("bad URL {url}: {source}")]
    InvalidUrl {
        url: String,
        #[source]
        source: hyper::http::Error,
    },
    /// Final: sending again is refused again.
    #[error("cannot send to {url}: {refused}")]
    Refused {
        url: String,
        #[source]
        refused: crate::egress::Refused,
    },
    #[error("cannot reach {url}: {chain}")]
    Unreachable {
        url: String,
        /// The whole chain of causes: the useful one (refused, an untrusted
        /// certificate, ...) is usually deep in it.
        chain: String,
        #[source]
        source: Box<hyper_util::client::legacy::Error>,
    },
    #[error("no answer from {url} within {within:?}")]
    TimedOut { url: String, within: Duration },
}

impl SendError {
    /// Connection failures and timeouts are worth another try; a bad URL and an
    /// egress refusal are not.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::TimedOut { .. })
    }
}

/// A binary-mode POST of `event` to `url`.
pub fn request(url: &str, event: &CloudEvent) -> Result<hyper::Request<Full<Bytes>>, SendError> {
    let (headers, body) = herald_cloudevents::http::encode_binary(event);
    let mut request = hyper::Request::post(url)
        .body(Full::new(body))
        .map_err(|source| SendError::InvalidUrl {
            url: url.to_owned(),
            source,
        })?;
    *request.headers_mut() = headers;
    Ok(request)
}

/// Sends `request` and waits `within` for the answer's status and headers; the body
/// is the caller's to read (bounded: [`answer::read`]).
pub async fn send(
    client: &EventClient,
    request: hyper::Request<Full<Bytes>>,
    within: Duration,
) -> Result<hyper::Response<Incoming>, SendError> {
    let url = request.uri().to_string();
    match tokio::time::timeout(within, client.request(request)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(source)) => Err(match crate::egress::refusal(&source).cloned() {
            Some(refused) => SendError::Refused { url, refused },
            None => SendError::Unreachable {
                url,
                chain: crate::tls::error_chain(&source),
                source: Box::new(source),
            },
        }),
        Err(_) => Err(SendError::TimedOut { url, within }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_knative_retry_classification() {
        for retried in [404, 408, 409, 429, 500, 501, 502, 503, 504, 599] {
            let status = StatusCode::from_u16(retried).unwrap();
            assert!(is_retryable(status), "{retried}");
        }
        for last in [100, 200, 202, 301, 307, 400, 401, 403, 405, 410, 413, 422] {
            let status = StatusCode::from_u16(last).unwrap();
            assert!(!is_retryable(status), "{last}");
        }
    }

    #[test]
    fn bad_urls_are_final() {
        let event = CloudEvent::new("1", "/s", "t");
        let error = request("http://a b", &event).unwrap_err();
        assert!(!error.is_retryable());
        assert!(
            error.to_string().starts_with("bad URL http://a b"),
            "{error}"
        );
    }
}
