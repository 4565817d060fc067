//! End-to-end delivery, side by side in one run: HTTP ingress → stream → router →
//! Trigger queue → dispatcher → a local HTTP subscriber.
//!
//! 1. the ingress alone (binary mode, no consumer): its event rate;
//! 2. the whole pipeline: the same load while the dispatcher delivers, timed until
//!    the subscriber has every event: sustained deliveries/s, and its ratio to (1);
//! 3. end-to-end latency (send → subscriber) at a fixed 1,000 events/s.
//!
//! It starts its own nats-server (`HERALD_NATS_SERVER_BIN`). Run:
//! `cargo bench -p herald-dispatcher`; `BENCH_EVENTS` (default 20000) and
//! `BENCH_CONCURRENCY` (default 64) tune it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use bytes::Bytes;
use herald_api::{Trigger, TriggerStatus, naming};
use herald_cloudevents::CloudEvent;
use herald_dispatcher::deliver::Deliverer;
use herald_dispatcher::metrics::Metrics;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[path = "support/mod.rs"]
mod support;

use support::{BROKER, Http, Received, clock, env_usize, percentile, rate};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NAMESPACE: &str = "bench";

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
    support::send(http, url, &event(start)).await;
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

/// Creates the Broker's queue stream, its router and a Trigger's queue, and runs the
/// dispatcher's router and pull loop for it — the production path — delivering to
/// `subscriber`, until the process ends.
async fn start_dispatcher(
    stream: &jetstream::stream::Stream,
    js: &jetstream::Context,
    registry: &prometheus::Registry,
    subscriber: &str,
) {
    let queue_subject = naming::queue_subject(NAMESPACE, BROKER, "bench");
    let queue_stream = naming::queue_stream_name(NAMESPACE, BROKER);
    let queue = js
        .create_stream(jetstream::stream::Config {
            name: queue_stream.clone(),
            subjects: naming::queue_stream_subjects(NAMESPACE, BROKER),
            retention: jetstream::stream::RetentionPolicy::Interest,
            max_age: Duration::from_secs(3600),
            ..Default::default()
        })
        .await
        .expect("create queue stream");
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(naming::ROUTER_CONSUMER.into()),
            ack_policy: consumer::AckPolicy::Explicit,
            deliver_policy: consumer::DeliverPolicy::New,
            ack_wait: herald_api::delivery::ACK_WAIT,
            max_deliver: -1,
            max_ack_pending: 20_000,
            ..Default::default()
        })
        .await
        .expect("create router");
    queue
        .create_consumer(consumer::pull::Config {
            durable_name: Some(naming::consumer_name("bench")),
            filter_subject: queue_subject.clone(),
            ack_policy: consumer::AckPolicy::Explicit,
            deliver_policy: consumer::DeliverPolicy::All,
            ack_wait: herald_api::delivery::ACK_WAIT,
            max_deliver: -1,
            max_ack_pending: 10_000,
            ..Default::default()
        })
        .await
        .expect("create queue consumer");
    let spec = serde_json::json!({"broker": BROKER, "subscriber": {"uri": subscriber}});
    let mut trigger = Trigger::new("bench", serde_json::from_value(spec).unwrap());
    trigger.metadata.namespace = Some(NAMESPACE.into());
    trigger.status = Some(TriggerStatus {
        subscriber_uri: Some(subscriber.to_owned()),
        conditions: support::ready(),
        queue: Some(herald_api::trigger::QueueStatus {
            broker: BROKER.into(),
            stream: queue_stream,
            subject: queue_subject,
            routed_after: 0,
            backfilling: false,
        }),
        ..TriggerStatus::default()
    });
    let planned = herald_dispatcher::desired::desired(
        &trigger,
        None,
        &mut herald_dispatcher::desired::FilterCache::default(),
    )
    .expect("a Ready Trigger has a plan");
    let mut table = herald_dispatcher::routes::RouteTable::default();
    table.upsert(&planned.key, planned.route.clone(), &planned.filter);
    let table = Arc::new(std::sync::RwLock::new(table));
    let deliverer = Arc::new(Deliverer {
        rate_sharers: 1,
        http: herald_dispatcher::clients::Clients::new(
            herald_runtime::tls::ClientTls::load(None).unwrap(),
            Client::builder(TokioExecutor::new()),
            // Benchmark subscribers listen on loopback.
            Arc::new(herald_runtime::egress::EgressPolicy::unrestricted()),
        ),
        jetstream: js.clone(),
        metrics: Metrics::register(registry).unwrap(),
        drops: None,
        tokens: None,
        attempts: herald_dispatcher::deliver::Attempts::default(),
        slots: herald_dispatcher::slots::Slots::new(4096),
        moves: herald_dispatcher::moves::LeaderMoves::default(),
        jobs: None,
    });
    let plan = Arc::new(planned.delivery.expect("a subscriber"));
    let (stop, stopped) = tokio::sync::watch::channel(herald_dispatcher::pull::Stop::Running);
    let events = naming::stream_name(NAMESPACE, BROKER);
    let moves = deliverer.moves.watch(&events, naming::ROUTER_CONSUMER);
    tokio::spawn(herald_dispatcher::router::route_loop(
        js.clone(),
        events,
        table,
        Arc::new(tokio::sync::Notify::new()),
        (
            moves,
            support::router_lease(js, &naming::stream_name(NAMESPACE, BROKER)).await,
        ),
        stopped.clone(),
    ));
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
    let nats = herald_runtime::testing::NatsServer::start("bench-delivery").await;
    let client = async_nats::connect(nats.url()).await.expect("connect");
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
    let base = support::start_ingress(&client, &js, &registry, &[NAMESPACE.to_owned()]).await;
    let url: Arc<str> = format!("{base}/{NAMESPACE}/{BROKER}").into();
    let http: Http = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build_http();

    // 1. The ingress alone: nothing consumes yet.
    let ingress_rate = rate(total, load(&http, &url, total, concurrency, start).await);

    // 2. The pipeline: a Trigger's consumer from now on, the dispatcher, the subscriber.
    let received = Arc::new(Received::default());
    let subscriber = support::start_subscriber(received.clone(), start).await;
    start_dispatcher(&stream, &js, &registry, &subscriber).await;
    let began = Instant::now();
    load(&http, &url, total, concurrency, start).await;
    received.wait_for(total).await;
    let pipeline_rate = rate(total, began.elapsed());

    // 3. Latency at a fixed 1,000 events/s.
    received.reset();
    let samples = 3000;
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    for _ in 0..samples {
        ticker.tick().await;
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move { send(&http, &url, start).await });
    }
    received.wait_for(samples).await;
    let mut latencies = received.latencies();
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
