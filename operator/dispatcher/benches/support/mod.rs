//! What the dispatcher's benchmarks share: the ingress in process, a fast sink that
//! records latencies, a sender, clocks and CPU time.

#![allow(dead_code)] // each benchmark uses its own part

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use herald_api::conditions::{Condition, ConditionStatus};
use herald_api::{Broker, BrokerSpec, BrokerStatus};
use herald_cloudevents::CloudEvent;
use herald_ingress::brokers::BrokerIndex;
use herald_ingress::server::AppState;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;

/// Name of every benchmark Broker (one per namespace).
pub const BROKER: &str = "default";

/// The load generator's HTTP client.
pub type Http = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// An environment variable as a number, else `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The comma-separated list in `name` (or `default`), each item read by `parse`;
/// items it does not know are skipped.
pub fn env_list<T>(name: &str, default: &str, parse: impl Fn(&str) -> Option<T>) -> Vec<T> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|item| parse(item.trim()))
        .collect()
}

/// Nanoseconds since the bench started, carried in each event to time it end to end.
pub fn clock(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Namespace of Broker `broker` of case `case`.
pub fn namespace(case: usize, broker: usize) -> String {
    format!("bench{case}-{broker}")
}

/// CPU seconds (user + system) a process has used: `self` or a pid. Linux's
/// `/proc/<pid>/stat` counts in clock ticks of 1/100 s (`USER_HZ` on every Linux
/// architecture Herald runs on).
pub fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after ')'.
    (ticks(11) + ticks(12)) / 100.0
}

/// A sorted sample's percentile (`p` in 0..=1); zero for no sample.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

/// Events per second.
#[allow(clippy::cast_precision_loss)]
pub fn rate(events: usize, d: Duration) -> f64 {
    events as f64 / d.as_secs_f64()
}

/// A Ready condition list.
pub fn ready() -> Vec<Condition> {
    vec![Condition::new("Ready", ConditionStatus::True, "Ready", "")]
}

/// Posts `event` in binary mode; asserts 202.
pub async fn send(http: &Http, url: &str, event: &CloudEvent) {
    let (headers, body) = herald_cloudevents::http::encode_binary(event);
    let mut req = hyper::Request::post(url).body(Full::new(body)).unwrap();
    *req.headers_mut() = headers;
    let resp = http.request(req).await.expect("the ingress answers");
    assert_eq!(resp.status().as_u16(), 202);
    let _ = resp.into_body().collect().await;
}

/// What the sink saw: a count and send → receive latencies.
#[derive(Default)]
pub struct Received {
    count: AtomicUsize,
    latencies: Mutex<Vec<Duration>>,
}

impl Received {
    /// Events received.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// The latencies so far.
    pub fn latencies(&self) -> Vec<Duration> {
        self.latencies.lock().unwrap().clone()
    }

    /// Forgets everything.
    pub fn reset(&self) {
        self.latencies.lock().unwrap().clear();
        self.count.store(0, Ordering::Relaxed);
    }

    /// Waits until `count` events arrived.
    pub async fn wait_for(&self, count: usize) {
        while self.count() < count {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// The sink: answers 202 at once; returns its URL.
pub async fn start_subscriber(received: Arc<Received>, start: Instant) -> String {
    let handler = move |headers: HeaderMap| {
        let received = received.clone();
        async move {
            let sent = headers
                .get("ce-benchsent")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            received
                .latencies
                .lock()
                .unwrap()
                .push(Duration::from_nanos(clock(start).saturating_sub(sent)));
            received.count.fetch_add(1, Ordering::Relaxed);
            StatusCode::ACCEPTED
        }
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            axum::Router::new().route("/", axum::routing::post(handler)),
        )
        .await
    });
    format!("http://{addr}/")
}

/// Runs the ingress in process for a Ready Broker [`BROKER`] in each of `namespaces`;
/// returns its base URL (a Broker's address is `<base>/<namespace>/<BROKER>`).
pub async fn start_ingress(
    client: &async_nats::Client,
    js: &jetstream::Context,
    registry: &prometheus::Registry,
    namespaces: &[String],
) -> String {
    let brokers = namespaces
        .iter()
        .map(|ns| {
            let mut broker = Broker::new(BROKER, BrokerSpec::default());
            broker.metadata.namespace = Some(ns.clone());
            broker.status = Some(BrokerStatus {
                conditions: ready(),
                ..BrokerStatus::default()
            });
            broker
        })
        .collect();
    let ingress = Arc::new(AppState {
        brokers: BrokerIndex::fixed(brokers),
        auth: herald_ingress::auth::Authenticator::new(None),
        nats: herald_runtime::nats::NatsConnection {
            client: client.clone(),
            state_changes: tokio::sync::watch::channel(1).1,
        },
        jetstream: js.clone(),
        metrics: herald_ingress::metrics::Metrics::register(registry).unwrap(),
        max_body_bytes: 1 << 20,
        body_timeout: std::time::Duration::from_secs(15),
        per_broker: herald_ingress::limits::BrokerConcurrency::new(0),
        in_flight_bytes: herald_runtime::budget::ByteBudget::new(0),
    });
    let addr = herald_ingress::server::spawn_local(
        ingress,
        herald_ingress::limits::ConnectionLimits::default(),
    )
    .await
    .unwrap();
    format!("http://{addr}")
}

/// A router's lease on Broker stream `stream`, taken as the dispatcher takes it.
pub async fn router_lease(
    js: &async_nats::jetstream::Context,
    stream: &str,
) -> herald_dispatcher::lease::Keeper {
    let leases = herald_dispatcher::lease::Leases::open(js, "bench")
        .await
        .expect("lease bucket");
    herald_dispatcher::lease::Keeper::new(Some(leases), stream)
}
