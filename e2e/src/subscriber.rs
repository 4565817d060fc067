//! An HTTP subscriber inside the test: it records every CloudEvent it receives and
//! answers as the test scripts it to (fail N times, always fail, reply with an event).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use herald_cloudevents::CloudEvent;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// How the subscriber answers one delivery.
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// A CloudEvent to send back (a reply).
    pub reply: Option<CloudEvent>,
    /// How long to take before answering.
    pub delay: Duration,
    /// `Retry-After` seconds to send with the answer.
    pub retry_after: Option<u64>,
}

impl Answer {
    /// A plain answer with `status`.
    #[must_use]
    pub fn status(status: u16) -> Self {
        Self {
            status,
            reply: None,
            delay: Duration::ZERO,
            retry_after: None,
        }
    }

    /// `status` asking to be retried after `seconds` (`Retry-After`).
    #[must_use]
    pub fn retry_after(status: u16, seconds: u64) -> Self {
        Self {
            retry_after: Some(seconds),
            ..Self::status(status)
        }
    }

    /// `status`, after taking `delay` (a slow subscriber).
    #[must_use]
    pub fn after(status: u16, delay: Duration) -> Self {
        Self {
            delay,
            ..Self::status(status)
        }
    }
}

type Script = dyn Fn(&CloudEvent, u32) -> Answer + Send + Sync;

/// A running subscriber.
pub struct Subscriber {
    /// Its URL.
    pub url: String,
    received: Arc<Mutex<Vec<(CloudEvent, u16)>>>,
    /// When every request arrived, and its headers, in arrival order.
    requests: Arc<Mutex<Vec<(std::time::Instant, hyper::HeaderMap)>>>,
    _server: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    /// A subscriber that accepts everything (202).
    pub async fn accepting() -> Self {
        Self::scripted(|_, _| Answer::status(202)).await
    }

    /// A subscriber whose answer depends on the event and on how many times this
    /// event id was delivered to it before (1 on the first delivery).
    pub async fn scripted(
        script: impl Fn(&CloudEvent, u32) -> Answer + Send + Sync + 'static,
    ) -> Self {
        Self::serving("127.0.0.1", None, script).await
    }

    /// A subscriber that accepts everything (202), listening on `ip` (another
    /// loopback address than 127.0.0.1, say, which the egress policy refuses).
    pub async fn accepting_at(ip: &str) -> Self {
        Self::serving(ip, None, |_, _| Answer::status(202)).await
    }

    /// A subscriber at `https://127.0.0.1:<port>/events` that accepts everything,
    /// presenting the test PKI's `server.crt`.
    pub async fn https_accepting(pki: &crate::certs::TestPki) -> Self {
        let certificate = herald_runtime::tls::ReloadingCertificate::load(
            &pki.file("server.crt"),
            &pki.file("server.key"),
        )
        .expect("the test PKI's server certificate");
        let acceptor = certificate.acceptor().expect("a TLS acceptor");
        Self::serving("127.0.0.1", Some(acceptor), |_, _| Answer::status(202)).await
    }

    /// [`Self::scripted`], over TLS with `tls`.
    async fn serving(
        ip: &str,
        tls: Option<tokio_rustls::TlsAcceptor>,
        script: impl Fn(&CloudEvent, u32) -> Answer + Send + Sync + 'static,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind((ip, 0))
            .await
            .expect("bind subscriber");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!(
            "{scheme}://{}/events",
            listener.local_addr().expect("address")
        );
        let received: Arc<Mutex<Vec<(CloudEvent, u16)>>> = Arc::default();
        let seen: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
        let script: Arc<Script> = Arc::new(script);
        let recorder = received.clone();
        let requests: Arc<Mutex<Vec<(std::time::Instant, hyper::HeaderMap)>>> = Arc::default();
        let request_log = requests.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let (received, seen, script) = (recorder.clone(), seen.clone(), script.clone());
                let requests = request_log.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (received, seen, script) =
                            (received.clone(), seen.clone(), script.clone());
                        let requests = requests.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            requests
                                .lock()
                                .unwrap()
                                .push((std::time::Instant::now(), parts.headers.clone()));
                            let body = body
                                .collect()
                                .await
                                .map(http_body_util::Collected::to_bytes)
                                .unwrap_or_default();
                            let response =
                                match herald_cloudevents::http::decode(&parts.headers, body) {
                                    Ok((_, mut events)) => {
                                        let event = events.remove(0);
                                        let nth = {
                                            let mut seen = seen.lock().unwrap();
                                            let n = seen.entry(event.id().to_owned()).or_insert(0);
                                            *n += 1;
                                            *n
                                        };
                                        let answer = script(&event, nth);
                                        received.lock().unwrap().push((event, answer.status));
                                        tokio::time::sleep(answer.delay).await;
                                        respond(&answer)
                                    }
                                    Err(e) => Response::builder()
                                        .status(400)
                                        .body(Full::new(Bytes::from(e.to_string())))
                                        .unwrap(),
                                };
                            Ok::<_, Infallible>(response)
                        }
                    });
                    match tls {
                        None => {
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(socket), service)
                                .await;
                        }
                        // A client that does not trust the certificate ends here.
                        Some(tls) => {
                            if let Ok(socket) = tls.accept(socket).await {
                                let _ = http1::Builder::new()
                                    .serve_connection(TokioIo::new(socket), service)
                                    .await;
                            }
                        }
                    }
                });
            }
        });
        Self {
            url,
            received,
            requests,
            _server: server,
        }
    }

    /// Every `Authorization` header the deliveries carried.
    #[must_use]
    pub fn authorizations(&self) -> Vec<String> {
        self.header_values(hyper::header::AUTHORIZATION.as_str())
    }

    /// Every value of header `name` the requests carried, in arrival order.
    #[must_use]
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, headers)| headers.get(name))
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect()
    }

    /// When each request arrived, in arrival order.
    #[must_use]
    pub fn arrivals(&self) -> Vec<std::time::Instant> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|(at, _)| *at)
            .collect()
    }

    /// How many requests carried header `name` with `value`.
    #[must_use]
    pub fn requests_with(&self, name: &str, value: &str) -> usize {
        self.header_values(name)
            .iter()
            .filter(|v| *v == value)
            .count()
    }

    /// How many deliveries so far (cheap: no copy).
    #[must_use]
    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// Every delivery so far, with the status answered.
    #[must_use]
    pub fn deliveries(&self) -> Vec<(CloudEvent, u16)> {
        self.received.lock().unwrap().clone()
    }

    /// Ids of every delivery, whatever the answer, in the order they arrived.
    #[must_use]
    pub fn delivered_ids(&self) -> Vec<String> {
        self.deliveries()
            .into_iter()
            .map(|(e, _)| e.id().to_owned())
            .collect()
    }

    /// Ids of the events answered with 2xx, in the order they arrived.
    #[must_use]
    pub fn accepted_ids(&self) -> Vec<String> {
        self.deliveries()
            .into_iter()
            .filter(|(_, s)| (200..300).contains(s))
            .map(|(e, _)| e.id().to_owned())
            .collect()
    }

    /// Waits until `check` holds for the deliveries, or panics after `timeout`.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&[(CloudEvent, u16)]) -> bool,
    ) {
        crate::eventually(what, timeout, || {
            let ok = check(&self.deliveries());
            async move { ok.then_some(()) }
        })
        .await;
    }
}

fn respond(answer: &Answer) -> Response<Full<Bytes>> {
    let mut builder = Response::builder().status(answer.status);
    if let Some(seconds) = answer.retry_after {
        builder = builder.header(hyper::header::RETRY_AFTER, seconds.to_string());
    }
    let body = match &answer.reply {
        Some(reply) => {
            let (headers, body) = herald_cloudevents::http::encode_binary(reply);
            for (name, value) in &headers {
                builder = builder.header(name, value);
            }
            body
        }
        None => Bytes::new(),
    };
    builder.body(Full::new(body)).unwrap()
}
