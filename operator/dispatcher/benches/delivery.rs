//! End-to-end delivery, side by side in one run: HTTP ingress → stream → dispatcher →
//! a local HTTP subscriber.
//!
//! 1. the ingress alone (binary mode, no consumer): its event rate;
//! 2. the whole pipeline: the same load while the dispatcher delivers, timed until
//!    the subscriber has every event: sustained deliveries/s, and its ratio to (1);
//! 3. end-to-end latency (send → subscriber) at a fixed 1,000 events/s.
//!
//! It starts its own nats-server (`HERALD_NATS_SERVER_BIN`). Run:
//! `cargo bench -p herald-dispatcher`; `BENCH_EVENTS` (default 20000) and
//! `BENCH_CONCURRENCY` (default 64) tune it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use herald_api::conditions::{Condition, ConditionStatus};
use herald_api::{Broker, BrokerSpec, BrokerStatus, Trigger, TriggerStatus, naming};
use herald_cloudevents::CloudEvent;
use herald_dispatcher::deliver::Deliverer;
use herald_dispatcher::metrics::Metrics;
use herald_ingress::brokers::BrokerIndex;
use herald_ingress::server::AppState;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NAMESPACE: &str = "bench";
const BROKER: &str = "default";

type Http = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Nanoseconds since the bench started, carried in each event to time it end to end.
fn clock(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn event(start: Instant) -> CloudEvent {
    static NEXT_ID: AtomicUsize = AtomicUsize::new(0);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut e = CloudEvent::new(&format!("e{id}"), "/bench", "com.example.bench.tick");
    e.set("benchsent", clock(start).to_string());
    e.set("datacontenttype", "application/json");
    e.data = Some(Bytes::from(format!("{{\"pad\":\"{}\"}}", "x".repeat(1000))));
    e
}

async fn send(http: &Http, url: &str, start: Instant) {
    let (headers, body) = herald_cloudevents::http::encode_binary(&event(start));
    let mut req = hyper::Request::post(url).body(Full::new(body)).unwrap();
    *req.headers_mut() = headers;
    let resp = http.request(req).await.expect("the ingress answers");
    assert_eq!(resp.status().as_u16(), 202);
    let _ = resp.into_body().collect().await;
}

/// Sends `total` events on `concurrency` connections; returns the elapsed time.
async fn load(
    http: &Http,
    url: &Arc<str>,
    total: usize,
    concurrency: usize,
    start: Instant,
) -> Duration {
    let next = Arc::new(AtomicUsize::new(0));
    let began = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (http, url, next) = (http.clone(), url.clone(), next.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    send(&http, &url, start).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    began.elapsed()
}

/// The subscriber: counts events and records send → receive latency.
#[derive(Default)]
struct Received {
    count: AtomicUsize,
    latencies: Mutex<Vec<Duration>>,
}

async fn start_subscriber(received: Arc<Received>, start: Instant) -> String {
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

async fn wait_for(received: &Received, count: usize) {
    while received.count.load(Ordering::Relaxed) < count {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn ready() -> Vec<Condition> {
    vec![Condition::new("Ready", ConditionStatus::True, "Ready", "")]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

#[allow(clippy::cast_precision_loss)]
fn rate(events: usize, d: Duration) -> f64 {
    events as f64 / d.as_secs_f64()
}

/// Runs the ingress in process for one Ready Broker; returns the Broker's URL.
async fn start_ingress(
    client: &async_nats::Client,
    js: &jetstream::Context,
    registry: &prometheus::Registry,
) -> Arc<str> {
    let mut broker = Broker::new(BROKER, BrokerSpec::default());
    broker.metadata.namespace = Some(NAMESPACE.into());
    broker.status = Some(BrokerStatus {
        conditions: ready(),
        ..BrokerStatus::default()
    });
    let ingress = Arc::new(AppState {
        brokers: BrokerIndex::fixed(vec![broker]),
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
    });
    let addr = herald_ingress::server::spawn_local(
        ingress,
        herald_ingress::limits::ConnectionLimits::default(),
    )
    .await
    .unwrap();
    format!("http://{addr}/{NAMESPACE}/{BROKER}").into()
}

/// Creates a Trigger's durable consumer (from now on) and runs the dispatcher's pull
/// loop for it, delivering to `subscriber`, until the process ends.
async fn start_dispatcher(
    stream: &jetstream::stream::Stream,
    js: &jetstream::Context,
    registry: &prometheus::Registry,
    subscriber: &str,
) {
    let spec = serde_json::json!({"broker": BROKER, "subscriber": {"uri": subscriber}});
    let mut trigger = Trigger::new("bench", serde_json::from_value(spec).unwrap());
    trigger.metadata.namespace = Some(NAMESPACE.into());
    trigger.status = Some(TriggerStatus {
        subscriber_uri: Some(subscriber.to_owned()),
        conditions: ready(),
        ..TriggerStatus::default()
    });
    let plan = Arc::new(
        herald_dispatcher::plan::plan(&trigger, None).expect("a Ready Trigger has a plan"),
    );
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(plan.consumer.clone()),
            ack_policy: consumer::AckPolicy::Explicit,
            deliver_policy: consumer::DeliverPolicy::New,
            ack_wait: herald_api::delivery::ACK_WAIT,
            max_deliver: -1,
            max_ack_pending: 10_000,
            ..Default::default()
        })
        .await
        .expect("create consumer");
    let deliverer = Arc::new(Deliverer {
        http: Client::builder(TokioExecutor::new()).build_http(),
        jetstream: js.clone(),
        metrics: Metrics::register(registry).unwrap(),
        recorder: None,
        tokens: None,
    });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        herald_dispatcher::pull::pull_loop(plan, deliverer, stopped).await;
        drop(stop);
    });
}

#[tokio::main]
async fn main() {
    let total = env_usize("BENCH_EVENTS", 20_000);
    let concurrency = env_usize("BENCH_CONCURRENCY", 64);
    let start = Instant::now();
    let nats = herald_runtime::testing::NatsServer::start();
    let client = async_nats::connect(&nats.url).await.expect("connect");
    let js = jetstream::ContextBuilder::new()
        .max_ack_inflight(16_384)
        .backpressure_on_inflight(true)
        .build(client.clone());
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: naming::stream_name(NAMESPACE, BROKER),
            subjects: naming::stream_subjects(NAMESPACE, BROKER),
            max_age: Duration::from_secs(3600),
            ..Default::default()
        })
        .await
        .expect("create stream");
    let registry = prometheus::Registry::new();
    let url = start_ingress(&client, &js, &registry).await;
    let http: Http = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build_http();

    // 1. The ingress alone: nothing consumes yet.
    let ingress_rate = rate(total, load(&http, &url, total, concurrency, start).await);

    // 2. The pipeline: a Trigger's consumer from now on, the dispatcher, the subscriber.
    let received = Arc::new(Received::default());
    let subscriber = start_subscriber(received.clone(), start).await;
    start_dispatcher(&stream, &js, &registry, &subscriber).await;
    let began = Instant::now();
    load(&http, &url, total, concurrency, start).await;
    wait_for(&received, total).await;
    let pipeline_rate = rate(total, began.elapsed());

    // 3. Latency at a fixed 1,000 events/s.
    received.latencies.lock().unwrap().clear();
    let samples = 3000;
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    for _ in 0..samples {
        ticker.tick().await;
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move { send(&http, &url, start).await });
    }
    wait_for(&received, total + samples).await;
    let mut latencies = received.latencies.lock().unwrap().clone();
    latencies.sort_unstable();

    println!(
        "delivery benchmark: {total} events of 1 KiB, concurrency {concurrency}, one nats-server (file storage), one dispatcher"
    );
    println!("| measure | value |");
    println!("|---|---:|");
    println!("| ingress alone, binary mode | {ingress_rate:.0} events/s |");
    println!("| ingress → stream → dispatcher → subscriber | {pipeline_rate:.0} deliveries/s |");
    println!(
        "| ratio pipeline / ingress | {:.2} |",
        pipeline_rate / ingress_rate
    );
    println!(
        "| end-to-end latency at 1,000 events/s ({samples} events) | p50 {:.2} ms, p99 {:.2} ms |",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3
    );
}
