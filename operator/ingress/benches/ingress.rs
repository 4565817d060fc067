//! Ingress throughput against its physical limit, side by side in one run:
//!
//! - (a) raw JetStream publish of the same 1 KiB events (same headers, same
//!   concurrency): what a Broker can take at most;
//! - (b) the ingress in binary mode, over keep-alive HTTP/1.1 connections;
//! - (c) the ingress in batch mode (100 events per request);
//!
//! (b) and (c) are driven by a lean wrk-like generator (`LeanConnection`) and, for
//! comparison, by hyper's pooled client;
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

/// A lean HTTP/1.1 keep-alive load generator, as `wrk` is: it writes each request
/// straight to its own TCP connection and reads the answer's status line and
/// `content-length`, so on this 2-core machine the generator takes little of the CPU
/// the ingress is measured on (hyper's pooled client costs about as much as the
/// server it drives).
struct LeanConnection {
    stream: tokio::net::TcpStream,
    request: Vec<u8>,
    answer: Vec<u8>,
}

impl LeanConnection {
    async fn open(addr: std::net::SocketAddr) -> Self {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connect to the ingress");
        stream.set_nodelay(true).expect("nodelay");
        Self {
            stream,
            request: Vec::with_capacity(2048),
            answer: Vec::with_capacity(512),
        }
    }

    /// POSTs `body` with `headers` to `path`; asserts the answer is 202.
    async fn post(&mut self, path: &str, headers: &hyper::HeaderMap, body: &[u8]) {
        use std::io::Write as _;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.request.clear();
        let _ = write!(
            self.request,
            "POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            self.request.extend_from_slice(name.as_str().as_bytes());
            self.request.extend_from_slice(b": ");
            self.request.extend_from_slice(value.as_bytes());
            self.request.extend_from_slice(b"\r\n");
        }
        self.request.extend_from_slice(b"\r\n");
        self.request.extend_from_slice(body);
        self.stream
            .write_all(&self.request)
            .await
            .expect("send a request");
        self.answer.clear();
        loop {
            if let Some(end) = self.answer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.answer[..end]).expect("ASCII head");
                assert!(
                    head.starts_with("HTTP/1.1 202"),
                    "the ingress refused an event: {head}"
                );
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while self.answer.len() < end + 4 + length {
                    let n = self.stream.read_buf(&mut self.answer).await.expect("read");
                    assert!(n > 0, "the ingress closed the connection");
                }
                return;
            }
            let n = self.stream.read_buf(&mut self.answer).await.expect("read");
            assert!(n > 0, "the ingress closed the connection");
        }
    }
}

/// Binary mode through the lean generator: `concurrency` connections, closed loop.
async fn binary_mode_lean(url: &Arc<str>, total: usize, concurrency: usize) -> Duration {
    let (addr, path) = split_url(url);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, path) = (next.clone(), path.clone());
            tokio::spawn(async move {
                let mut conn = LeanConnection::open(addr).await;
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    let (headers, body) = herald_cloudevents::http::encode_binary(&event("lean"));
                    conn.post(&path, &headers, &body).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

/// Batch mode through the lean generator.
async fn batch_mode_lean(url: &Arc<str>, batches: usize, concurrency: usize) -> Duration {
    let (addr, path) = split_url(url);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency.min(batches).max(1))
        .map(|_| {
            let (next, path) = (next.clone(), path.clone());
            tokio::spawn(async move {
                let mut conn = LeanConnection::open(addr).await;
                let mut headers = hyper::HeaderMap::new();
                headers.insert(
                    "content-type",
                    herald_cloudevents::http::BATCH_JSON.parse().unwrap(),
                );
                while next.fetch_add(1, Ordering::Relaxed) < batches {
                    conn.post(&path, &headers, &batch_body()).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

fn split_url(url: &str) -> (std::net::SocketAddr, Arc<str>) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (authority, path) = rest.split_once('/').expect("a path");
    (
        authority.parse().expect("ip:port"),
        format!("/{path}").into(),
    )
}

fn batch_body() -> Bytes {
    let items: Vec<String> = (0..BATCH)
        .map(|_| {
            String::from_utf8(herald_cloudevents::json::to_structured(&event("batch"))).unwrap()
        })
        .collect();
    Bytes::from(format!("[{}]", items.join(",")))
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
        auth: herald_ingress::auth::Authenticator::new(None),
        nats: herald_runtime::nats::NatsConnection {
            client: client.clone(),
            state_changes: tokio::sync::watch::channel(1).1,
        },
        jetstream: js.clone(),
        metrics: Metrics::register(&registry).unwrap(),
        max_body_bytes: 4 << 20,
        body_timeout: std::time::Duration::from_secs(15),
        per_broker: herald_ingress::limits::BrokerConcurrency::new(1024),
        in_flight_bytes: herald_runtime::budget::ByteBudget::new(0),
    });
    let addr = herald_ingress::server::spawn_local(
        state,
        herald_ingress::limits::ConnectionLimits::default(),
    )
    .await
    .unwrap();
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
            let mut headers = hyper::HeaderMap::new();
            headers.insert(
                "content-type",
                herald_cloudevents::http::BATCH_JSON.parse().unwrap(),
            );
            post(&http, &url, headers, batch_body()).await;
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
    let nats = herald_runtime::testing::NatsServer::start("bench-ingress").await;
    let client = async_nats::connect(nats.url()).await.expect("connect");
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
    let (mut binary_hyper, mut batch_hyper) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        raw.push(rate(total, raw_publish(&js, total, concurrency).await));
        binary.push(rate(
            total,
            binary_mode_lean(&url, total, concurrency).await,
        ));
        batch.push(rate(
            batches * BATCH,
            batch_mode_lean(&url, batches, concurrency).await,
        ));
        binary_hyper.push(rate(
            total,
            binary_mode(&http, &url, total, concurrency).await,
        ));
        batch_hyper.push(rate(
            batches * BATCH,
            batch_mode(&http, &url, batches, concurrency).await,
        ));
    }
    let samples = 3000;
    let latencies = fixed_rate_latencies(&http, &url, samples).await;

    let (a, b, c) = (median(&mut raw), median(&mut binary), median(&mut batch));
    let (bh, ch) = (median(&mut binary_hyper), median(&mut batch_hyper));
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
    println!(
        "| (b) with hyper's pooled client as the generator | {bh:.0} | {:.2} |",
        bh / a
    );
    println!(
        "| (c) with hyper's pooled client as the generator | {ch:.0} | {:.2} |",
        ch / a
    );
    println!();
    println!(
        "binary mode at a fixed 1,000 events/s ({samples} requests): p50 {:.2} ms, p99 {:.2} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3
    );
}
