//! Sending events to a sink: binary-mode POST, retried with backoff on connection
//! errors, timeouts and the statuses [`outbound::is_retryable`] names; other answers
//! are final. A sink that answers 401
//! with a `Bearer` challenge (a Broker with `spec.auth`) gets, from then on, a token of
//! the adapter's ServiceAccount for the sink's URL as audience, when the adapter has
//! one (`--token-service-account`) — and only if the sink is a Broker of the source's
//! own namespace ([`token_allowed`]): the adapter is shared, and another namespace's
//! Broker that lets the adapter in must not take events a tenant sends it that way.
//! A sink the egress policy refuses is a final failure, reported like any other.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use herald_api::backoff::Backoff;
use herald_cloudevents::CloudEvent;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};

use herald_runtime::egress::EgressPolicy;
use herald_runtime::outbound::{self, EventClient};
use herald_runtime::tls::ClientTls;
use herald_runtime::token::{TokenError, TokenSource, UnsendableToken};

use crate::metrics::Metrics;

/// Attempts per event before giving up (about 25 s of backoff in all).
pub const ATTEMPTS: u32 = 8;
/// Time a sink has to answer (the status and headers).
const TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes of a sink's answer body read, and the longest wait for them. The body
/// means nothing to the adapter: it is read only so that the connection can be
/// reused, which a short, quick body allows; any other is cut and its connection
/// closed, so a sink cannot hold the adapter with an endless or trickling answer.
const DRAIN_BYTES: usize = 64 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// A shared HTTP client (`http://` and `https://` sinks) for every source.
#[derive(Clone)]
pub struct Sender {
    http: EventClient,
    metrics: Metrics,
    recorder: Option<Recorder>,
    tokens: Option<Arc<TokenSource>>,
    /// Sinks that asked for a token.
    challenged: Arc<Mutex<HashSet<String>>>,
}

/// Why an event could not be delivered to its sink.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Outbound(#[from] outbound::SendError),
    #[error(transparent)]
    NoToken(#[from] TokenError),
    #[error(transparent)]
    UnsendableToken(#[from] UnsendableToken),
    /// See [`token_allowed`].
    #[error(
        "{sink} asks for a token; the adapter presents its own only to Brokers of the source's namespace ({namespace})"
    )]
    TokenNotAllowed { sink: String, namespace: String },
    /// Sent again at once, with a token.
    #[error("{sink} asks for a token")]
    Challenged { sink: String },
    #[error("{sink} answered {status}")]
    Answered {
        sink: String,
        status: hyper::StatusCode,
    },
}

impl SendError {
    fn is_retryable(&self) -> bool {
        match self {
            Self::Outbound(e) => e.is_retryable(),
            Self::NoToken(e) => e.is_retryable(),
            Self::Challenged { .. } => true,
            Self::UnsendableToken(_) | Self::TokenNotAllowed { .. } => false,
            Self::Answered { status, .. } => outbound::is_retryable(*status),
        }
    }
}

/// Delay before retry `attempt` (1-based): 100 ms doubling, at most 5 s.
#[must_use]
pub fn backoff(attempt: u32) -> Duration {
    const BACKOFF: Backoff =
        Backoff::exponential(Duration::from_millis(100), Duration::from_secs(5));
    BACKOFF.delay(attempt)
}

impl Sender {
    /// A sender that trusts `tls` for `https://` sinks, connects only where `egress`
    /// allows, counts into `metrics` and, with a `recorder`, reports events it could
    /// not deliver as Kubernetes Events on their EventSource.
    #[must_use]
    pub fn new(
        tls: &ClientTls,
        egress: &Arc<EgressPolicy>,
        metrics: Metrics,
        recorder: Option<Recorder>,
    ) -> Self {
        Self {
            // The timer evicts idle connections in the background (without it the idle
            // timeout only applies at the next checkout).
            http: tls.http_client(
                Client::builder(TokioExecutor::new())
                    .pool_timer(hyper_util::rt::TokioTimer::new())
                    .pool_idle_timeout(Duration::from_secs(30)),
                egress,
            ),
            metrics,
            recorder,
            tokens: None,
            challenged: Arc::default(),
        }
    }

    /// Answers sinks that ask for a token with tokens from `tokens`.
    #[must_use]
    pub fn with_tokens(mut self, tokens: TokenSource) -> Self {
        self.tokens = Some(Arc::new(tokens));
        self
    }

    fn is_challenged(&self, sink: &str) -> bool {
        self.challenged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(sink)
    }

    async fn report(&self, namespace: &str, name: &str, message: String) {
        let Some(recorder) = &self.recorder else {
            return;
        };
        let reference = ObjectReference {
            api_version: Some("eventing.herald.dev/v1alpha1".into()),
            kind: Some("EventSource".into()),
            namespace: Some(namespace.to_owned()),
            name: Some(name.to_owned()),
            ..ObjectReference::default()
        };
        let event = Event {
            type_: EventType::Warning,
            reason: "DeliveryFailed".into(),
            note: Some(message),
            action: "Send".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::debug!(error = %e, "could not publish a Kubernetes Event");
        }
    }

    /// The metrics it counts into.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    async fn attempt(
        &self,
        namespace: &str,
        sink: &str,
        event: &CloudEvent,
    ) -> Result<(), SendError> {
        let may_present_token = token_allowed(sink, namespace);
        let mut request = outbound::request(sink, event)?;
        if let Some(tokens) = self
            .tokens
            .as_ref()
            .filter(|_| may_present_token && self.is_challenged(sink))
        {
            let token = tokens.token(sink).await?;
            let value = herald_runtime::token::bearer(&token)?;
            request
                .headers_mut()
                .insert(hyper::header::AUTHORIZATION, value);
        }
        let answer = outbound::send(&self.http, request, TIMEOUT).await?;
        let status = answer.status();
        let bearer_challenge = answer
            .headers()
            .get(hyper::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.get(..6).is_some_and(|s| s.eq_ignore_ascii_case("bearer")));
        let drained_by = tokio::time::Instant::now() + DRAIN_TIME.min(TIMEOUT);
        let _ = outbound::answer::read(answer.into_body(), DRAIN_BYTES, drained_by).await;
        if status.is_success() {
            Ok(())
        } else if status == hyper::StatusCode::UNAUTHORIZED
            && bearer_challenge
            && self.tokens.is_some()
            && !may_present_token
        {
            Err(SendError::TokenNotAllowed {
                sink: sink.to_owned(),
                namespace: namespace.to_owned(),
            })
        } else if status == hyper::StatusCode::UNAUTHORIZED
            && bearer_challenge
            && self.tokens.is_some()
            && !self.is_challenged(sink)
        {
            // Retried at once with a token for this sink (and every later event too).
            self.challenged
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(sink.to_owned());
            Err(SendError::Challenged {
                sink: sink.to_owned(),
            })
        } else {
            Err(SendError::Answered {
                sink: sink.to_owned(),
                status,
            })
        }
    }

    /// Sends `event` from source `namespace/name` to `sink`, retrying transient
    /// failures; counts the outcome.
    pub async fn send(
        &self,
        namespace: &str,
        name: &str,
        sink: &str,
        event: &CloudEvent,
    ) -> Result<(), SendError> {
        let started = Instant::now();
        let mut attempt = 1;
        let result = loop {
            match self.attempt(namespace, sink, event).await {
                Ok(()) => break Ok(()),
                Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                    tracing::debug!(source = %format!("{namespace}/{name}"), error = %e, attempt, "sink failed; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => break Err(e),
            }
        };
        let outcome = if result.is_ok() { "sent" } else { "failed" };
        self.metrics
            .events
            .with_label_values(&[namespace, name, outcome])
            .inc();
        self.metrics
            .send_duration
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            tracing::warn!(source = %format!("{namespace}/{name}"), error = %e, attempts = attempt, "event not delivered to the sink");
            self.report(
                namespace,
                name,
                format!(
                    "event {} not delivered after {attempt} attempt(s): {e}",
                    event.id()
                ),
            )
            .await;
        }
        result
    }
}

/// Whether the adapter may answer `sink`'s token challenge for a source in
/// `namespace`: only when the sink is a Broker address of that namespace
/// (`<ingress>/<namespace>/<broker>`). The token's audience is the sink's URL, so it
/// is good only there; this rule keeps it from being good at another namespace's
/// Broker (issue: a tenant naming a Broker it may not send to as its source's sink).
#[must_use]
pub fn token_allowed(sink: &str, namespace: &str) -> bool {
    sink.parse::<hyper::Uri>().is_ok_and(|uri| {
        let mut segments = uri.path().split('/').filter(|s| !s.is_empty());
        segments.next() == Some(namespace) && segments.next().is_some() && segments.next().is_none()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn the_adapter_s_token_goes_only_to_brokers_of_the_source_s_namespace() {
        assert!(token_allowed(
            "http://ingress.herald-system/shop/default",
            "shop"
        ));
        assert!(token_allowed(
            "https://events.example:8443/shop/orders",
            "shop"
        ));
        assert!(!token_allowed(
            "http://ingress.herald-system/bank/default",
            "shop"
        ));
        assert!(!token_allowed("http://ingress.herald-system/shop", "shop"));
        assert!(!token_allowed(
            "http://ingress.herald-system/shop/default/x",
            "shop"
        ));
        assert!(!token_allowed("http://ingress.herald-system/", "shop"));
        assert!(!token_allowed("not a uri", "shop"));
    }

    /// A sink on a loopback port that answers every request 202 with `body`.
    async fn sink(body: fn() -> axum::body::Body) -> String {
        let app = axum::Router::new()
            .fallback(move || async move { (hyper::StatusCode::ACCEPTED, body()) });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/")
    }

    fn sender() -> Sender {
        sender_within(EgressPolicy::unrestricted())
    }

    fn sender_within(egress: EgressPolicy) -> Sender {
        Sender::new(
            &ClientTls::load(None).unwrap(),
            &Arc::new(egress),
            Metrics::register(&prometheus::Registry::new()).unwrap(),
            None,
        )
    }

    #[tokio::test]
    async fn a_refused_sink_fails_at_once_without_retries() {
        let sink = sink(axum::body::Body::empty).await;
        let event = CloudEvent::new("1", "/s", "t");
        let started = Instant::now();
        let sender = sender_within(EgressPolicy::new(&[], &[], &[]));
        let error = sender.send("ns", "src", &sink, &event).await.unwrap_err();
        assert!(
            matches!(
                error,
                SendError::Outbound(outbound::SendError::Refused { .. })
            ),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .contains("the egress policy refuses 127.0.0.1:"),
            "{error}"
        );
        assert!(
            started.elapsed() < backoff(1),
            "no retry: {:?}",
            started.elapsed()
        );
        let failed = sender
            .metrics()
            .events
            .with_label_values(&["ns", "src", "failed"])
            .get();
        assert_eq!(failed, 1);
    }

    #[expect(clippy::unnecessary_wraps, reason = "an item of a body's stream")]
    fn chunk() -> Result<Bytes, std::io::Error> {
        Ok(Bytes::from(vec![b'x'; 64 * 1024]))
    }

    #[tokio::test]
    async fn an_endless_answer_body_is_cut_and_the_event_counts_as_sent() {
        let endless =
            sink(|| axum::body::Body::from_stream(futures::stream::repeat_with(chunk))).await;
        let event = CloudEvent::new("1", "/s", "t");
        let started = Instant::now();
        let sent = tokio::time::timeout(
            Duration::from_secs(5),
            sender().send("ns", "src", &endless, &event),
        )
        .await
        .expect("an endless body is not read to its end");
        assert!(sent.is_ok(), "{sent:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn a_trickling_answer_body_is_waited_for_at_most_a_second() {
        use futures::StreamExt as _;
        let trickle = sink(|| {
            axum::body::Body::from_stream(
                futures::stream::iter([chunk()]).chain(futures::stream::pending()),
            )
        })
        .await;
        let event = CloudEvent::new("1", "/s", "t");
        let started = Instant::now();
        let sent = tokio::time::timeout(
            Duration::from_secs(5),
            sender().send("ns", "src", &trickle, &event),
        )
        .await
        .expect("a trickling body is not waited for past DRAIN_TIME");
        assert!(sent.is_ok(), "{sent:?}");
        assert!(started.elapsed() >= DRAIN_TIME);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(3), Duration::from_millis(400));
        assert_eq!(backoff(8), Duration::from_secs(5));
        let total: Duration = (1..ATTEMPTS).map(backoff).sum();
        assert!(
            total > Duration::from_secs(10) && total < Duration::from_secs(30),
            "{total:?}"
        );
    }
}
