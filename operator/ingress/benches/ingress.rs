//! Ingress throughput against its physical limit, side by side in one run:
//!
//! - (a) raw JetStream publish of the same 1 KiB events (same headers, same
//!   concurrency): what a Broker can take at most;
//! - (b) the ingress in binary mode, over keep-alive HTTP/1.1 connections;
//! - (c) the ingress in batch mode (100 events per request);
//!
//! then request latency at a fixed 1,000 events/s in binary mode. It starts its own
//! nats-server (`HERALD_NATS_SERVER_BIN`, else `nats-server` on PATH) with a file
//! store in a temporary directory. Run: `cargo bench -p herald-ingress`.
//! `BENCH_EVENTS` (default 20000 per mode and round), `BENCH_CONCURRENCY` (default
//! 64) and `BENCH_ROUNDS` (default 3) tune it. The modes run interleaved, round after
//! round, and the table shows each mode's median: on a small machine one run alone
//! varies by a third.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use herald_api::conditions::{Condition, ConditionStatus};
use herald_api::{Broker, BrokerSpec, BrokerStatus, naming};
use herald_cloudevents::CloudEvent;
use herald_ingress::brokers::BrokerIndex;
use herald_ingress::metrics::Metrics;
use herald_ingress::server::AppState;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NAMESPACE: &str = "bench";
const BROKER: &str = "default";
const BATCH: usize = 100;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A 1 KiB JSON event; ids never repeat within a run, so no mode and no round hits
/// JetStream's duplicate detection.
fn event(run: &str) -> CloudEvent {
    static NEXT_ID: AtomicUsize = AtomicUsize::new(0);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut e = CloudEvent::new(
        &format!("{run}-{id}"),
        "/bench/producer",
        "com.example.bench.tick",
    );
    e.set("datacontenttype", "application/json");
    e.data = Some(Bytes::from(format!("{{\"pad\":\"{}\"}}", "x".repeat(1012))));
    e
}

fn ready_broker() -> Broker {
    let mut b = Broker::new(BROKER, BrokerSpec::default());
    b.metadata.namespace = Some(NAMESPACE.into());
    b.status = Some(BrokerStatus {
        conditions: vec![Condition::new("Ready", ConditionStatus::True, "Ready", "")],
        ..BrokerStatus::default()
    });
    b
}

/// Runs `total` units of work on `concurrency` tasks; returns the elapsed time.
async fn closed_loop<F, Fut>(total: usize, concurrency: usize, work: F) -> Duration
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let work = Arc::new(work);
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, work) = (next.clone(), work.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    work(i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

type Http = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn post(client: &Http, url: &str, headers: hyper::HeaderMap, body: Bytes) -> Duration {
    let started = Instant::now();
    let mut req = hyper::Request::post(url).body(Full::new(body)).unwrap();
    *req.headers_mut() = headers;
    let resp = client.request(req).await.expect("ingress answers");
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    assert_eq!(status.as_u16(), 202, "the ingress refused an event");
    started.elapsed()
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

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[allow(clippy::cast_precision_loss)]
fn rate(events: usize, d: Duration) -> f64 {
    events as f64 / d.as_secs_f64()
}

async fn raw_publish(js: &jetstream::Context, total: usize, concurrency: usize) -> Duration {
    let subject = naming::event_subject(NAMESPACE, BROKER, "com.example.bench.tick");
    let js = js.clone();
    closed_loop(total, concurrency, move |_| {
        let (js, subject) = (js.clone(), subject.clone());
        async move {
            let (headers, payload) = herald_cloudevents::nats::encode(&event("raw"));
            js.publish_with_headers(subject, headers, payload)
                .await
                .unwrap()
                .await
                .unwrap();
        }
    })
    .await
}

/// Starts the ingress in process, serving one Ready Broker; returns its Broker URL.
async fn start_ingress(client: &async_nats::Client, js: &jetstream::Context) -> Arc<str> {
    let registry = prometheus::Registry::new();
    let state = Arc::new(AppState {
        brokers: BrokerIndex::fixed(vec![ready_broker()]),
        nats: herald_runtime::nats::NatsConnection {
            client: client.clone(),
            state_changes: tokio::sync::watch::channel(1).1,
        },
        jetstream: js.clone(),
        metrics: Metrics::register(&registry).unwrap(),
        max_body_bytes: 4 << 20,
    });
    let addr = herald_ingress::server::spawn_local(state).await.unwrap();
    format!("http://{addr}/{NAMESPACE}/{BROKER}").into()
}

async fn binary_mode(http: &Http, url: &Arc<str>, total: usize, concurrency: usize) -> Duration {
    let (http, url) = (http.clone(), url.clone());
    closed_loop(total, concurrency, move |_| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let (headers, body) = herald_cloudevents::http::encode_binary(&event("bin"));
            post(&http, &url, headers, body).await;
        }
    })
    .await
}

async fn batch_mode(http: &Http, url: &Arc<str>, batches: usize, concurrency: usize) -> Duration {
    let (http, url) = (http.clone(), url.clone());
    closed_loop(batches, concurrency.min(batches).max(1), move |_| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let items: Vec<String> = (0..BATCH)
                .map(|_| {
                    String::from_utf8(herald_cloudevents::json::to_structured(&event("batch")))
                        .unwrap()
                })
                .collect();
            let mut headers = hyper::HeaderMap::new();
            headers.insert(
                "content-type",
                herald_cloudevents::http::BATCH_JSON.parse().unwrap(),
            );
            post(
                &http,
                &url,
                headers,
                Bytes::from(format!("[{}]", items.join(","))),
            )
            .await;
        }
    })
    .await
}

/// Request latencies (sorted) at a fixed 1,000 events/s: one request every millisecond.
async fn fixed_rate_latencies(http: &Http, url: &Arc<str>, samples: usize) -> Vec<Duration> {
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    let mut pending = Vec::with_capacity(samples);
    for _ in 0..samples {
        ticker.tick().await;
        let (http, url) = (http.clone(), url.clone());
        pending.push(tokio::spawn(async move {
            let (headers, body) = herald_cloudevents::http::encode_binary(&event("lat"));
            post(&http, &url, headers, body).await
        }));
    }
    let mut latencies = Vec::with_capacity(samples);
    for p in pending {
        latencies.push(p.await.unwrap());
    }
    latencies.sort_unstable();
    latencies
}

#[tokio::main]
async fn main() {
    let total = env_usize("BENCH_EVENTS", 20_000);
    let concurrency = env_usize("BENCH_CONCURRENCY", 64);
    let nats = herald_runtime::testing::NatsServer::start();
    let client = async_nats::connect(&nats.url).await.expect("connect");
    let js = jetstream::ContextBuilder::new()
        .max_ack_inflight(16_384)
        .backpressure_on_inflight(true)
        .build(client.clone());
    js.create_stream(jetstream::stream::Config {
        name: naming::stream_name(NAMESPACE, BROKER),
        subjects: naming::stream_subjects(NAMESPACE, BROKER),
        max_age: Duration::from_secs(3600),
        ..Default::default()
    })
    .await
    .expect("create stream");

    let rounds = env_usize("BENCH_ROUNDS", 3).max(1);
    let url = start_ingress(&client, &js).await;
    let http: Http = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build_http();
    let batches = total / BATCH;
    let (mut raw, mut binary, mut batch) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        raw.push(rate(total, raw_publish(&js, total, concurrency).await));
        binary.push(rate(
            total,
            binary_mode(&http, &url, total, concurrency).await,
        ));
        batch.push(rate(
            batches * BATCH,
            batch_mode(&http, &url, batches, concurrency).await,
        ));
    }
    let samples = 3000;
    let latencies = fixed_rate_latencies(&http, &url, samples).await;

    let (a, b, c) = (median(&mut raw), median(&mut binary), median(&mut batch));
    println!(
        "ingress benchmark: {total} events of 1 KiB per mode and round, median of {rounds} interleaved rounds, concurrency {concurrency}, file storage, one nats-server"
    );
    println!("| mode | events/s | ratio to raw JetStream |");
    println!("|---|---:|---:|");
    println!("| (a) raw JetStream publish | {a:.0} | 1.00 |");
    println!("| (b) ingress, binary mode | {b:.0} | {:.2} |", b / a);
    println!(
        "| (c) ingress, batch mode ({BATCH}/request) | {c:.0} | {:.2} |",
        c / a
    );
    println!();
    println!(
        "binary mode at a fixed 1,000 events/s ({samples} requests): p50 {:.2} ms, p99 {:.2} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3
    );
}
