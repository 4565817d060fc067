//! Fan-out: what an event costs as a Broker's Triggers grow, side by side in one run —
//! routing (one decision per event, per-Trigger queues; what `herald dispatcher` runs)
//! against the design before it (every Trigger a consumer of the whole Broker stream,
//! its filters evaluated on every event).
//!
//! Each case runs the real ingress (binary mode, in process), the real router and pull
//! loops and a fast local sink, on one nats-server (file storage). N Triggers each
//! select 1/N of the events by (a) exact type, (b) source prefix, (c) a content pattern,
//! (d) CESQL. Printed per case: events/s end to end (first send to last delivery), CPU
//! seconds per 1,000 events of the bench process (ingress + routing + delivery + load
//! generator + sink) and of nats-server, and send → sink latency p50/p99. A case that
//! does not finish within `BENCH_TIMEOUT` seconds (default 60) reports what arrived.
//!
//! `cargo bench -p herald-dispatcher --bench fanout`; `BENCH_EVENTS` (default 10000),
//! `BENCH_TRIGGERS` (default `1,10,100,1000`), `BENCH_DIALECTS` (default `a,b,c,d`),
//! `BENCH_DESIGNS` (default `routed,before`), `BENCH_MANY_BROKERS=0` skips 100 × 10,
//! `BENCH_QUEUES=per-trigger` gives each Trigger a queue stream of its own,
//! `BENCH_TRIGGERS_PER_STREAM` (default the operator's 64) sets how many Triggers share
//! a queue stream (a number ≥ the Triggers gives one queue stream per Broker, as before),
//! `BENCH_RETENTION=interest` and `BENCH_CONSUMER_STORAGE=file` make the queues as
//! they were before work queues (default: as the operator makes them now).

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use herald_api::naming;
use herald_cloudevents::CloudEvent;
use herald_dispatcher::deliver::{Attempts, Deliverer};
use herald_dispatcher::desired::TriggerDelivery;
use herald_dispatcher::pull::Stop;
use herald_dispatcher::routes::{Route, RouteTable};
use herald_filter::CompiledFilter;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::{Http, Received, cpu_seconds, env_list, env_usize, percentile};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    ExactType,
    SourcePrefix,
    ContentPattern,
    Cesql,
}

impl Dialect {
    fn name(self) -> &'static str {
        match self {
            Self::ExactType => "exact type",
            Self::SourcePrefix => "source prefix",
            Self::ContentPattern => "content pattern",
            Self::Cesql => "CESQL",
        }
    }

    /// Trigger `i`'s filter.
    fn filter(self, i: usize) -> serde_json::Value {
        match self {
            Self::ExactType => serde_json::json!({"exact": {"type": format!("bench.t{i}")}}),
            Self::SourcePrefix => serde_json::json!({"prefix": {"source": format!("/s{i}/")}}),
            Self::ContentPattern => {
                serde_json::json!({"pattern": {"data": {"key": [format!("k{i}")]}}})
            }
            Self::Cesql => serde_json::json!({"cesql": format!("tenant = 't{i}'")}),
        }
    }

    /// An event that Trigger `i` (and no other) selects.
    fn event(self, i: usize, id: usize, start: Instant) -> CloudEvent {
        let ty = if self == Self::ExactType {
            format!("bench.t{i}")
        } else {
            "bench.tick".to_owned()
        };
        let mut e = CloudEvent::new(&format!("e{id}"), &format!("/s{i}/x"), &ty);
        e.set("tenant", format!("t{i}"));
        e.set("benchsent", support::clock(start).to_string());
        e.set("datacontenttype", "application/json");
        e.data = Some(Bytes::from(format!(
            "{{\"key\":\"k{i}\",\"pad\":\"{}\"}}",
            "x".repeat(480)
        )));
        e
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Design {
    Routed,
    ConsumerPerTrigger,
}

struct Case {
    dialect: Dialect,
    brokers: usize,
    triggers: usize,
    design: Design,
}

struct Figures {
    delivered: usize,
    elapsed: Duration,
    cpu_bench: f64,
    cpu_nats: f64,
    p50: Duration,
    p99: Duration,
}

struct Env {
    nats_pid: u32,
    client: async_nats::Client,
    js: jetstream::Context,
    http: Http,
    received: Arc<Received>,
    sink: String,
    start: Instant,
    events: usize,
    timeout: Duration,
}

/// Loops and streams of one case, stopped and deleted at the end.
struct Running {
    stop: tokio::sync::watch::Sender<Stop>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    streams: Vec<String>,
}

fn plan(
    ns: &str,
    name: &str,
    stream: &str,
    subscriber: &str,
    filter: CompiledFilter,
    version: &str,
) -> TriggerDelivery {
    TriggerDelivery {
        namespace: ns.to_owned(),
        trigger: name.to_owned(),
        broker: support::BROKER.to_owned(),
        stream: stream.to_owned(),
        consumer: naming::consumer_name(name),
        subscriber: subscriber.to_owned(),
        subscriber_audience: None,
        subscriber_ca_certs: None,
        dead_letter_sink: None,
        accepts_replies: true,
        delivery: herald_api::delivery::resolve(None, None).expect("defaults"),
        filter: Arc::new(filter),
        filter_version: version.to_owned(),
        transform: None,
        job: None,
    }
}

async fn create_stream(js: &jetstream::Context, config: stream::Config) -> stream::Stream {
    js.create_stream(config).await.expect("create stream")
}

fn consumer_config(
    name: &str,
    filter_subject: String,
    policy: consumer::DeliverPolicy,
) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(name.to_owned()),
        ack_policy: consumer::AckPolicy::Explicit,
        deliver_policy: policy,
        ack_wait: herald_api::delivery::ACK_WAIT,
        max_deliver: -1,
        max_ack_pending: 10_000,
        filter_subject,
        ..Default::default()
    }
}

/// Sets up one case's Brokers and Triggers and starts their loops.
async fn set_up(env: &Env, case: &Case, id: usize, registry: &prometheus::Registry) -> Running {
    let (stop, stopped) = tokio::sync::watch::channel(Stop::Running);
    let deliverer = Arc::new(Deliverer {
        rate_sharers: 1,
        http: herald_dispatcher::clients::Clients::new(
            herald_runtime::tls::ClientTls::load(None).unwrap(),
            Client::builder(TokioExecutor::new()),
            // Benchmark subscribers listen on loopback.
            Arc::new(herald_runtime::egress::EgressPolicy::unrestricted()),
        ),
        jetstream: jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(2))
            .build(env.client.clone()),
        metrics: herald_dispatcher::metrics::Metrics::register(registry).expect("metrics"),
        drops: None,
        tokens: None,
        attempts: Attempts::default(),
        slots: herald_dispatcher::slots::Slots::new(4096),
        moves: herald_dispatcher::moves::LeaderMoves::default(),
        jobs: None,
    });
    let mut running = Running {
        stop,
        tasks: Vec::new(),
        streams: Vec::new(),
    };
    for b in 0..case.brokers {
        let ns = support::namespace(id, b);
        let events_name = naming::stream_name(&ns, support::BROKER);
        let events = create_stream(
            &env.js,
            stream::Config {
                name: events_name.clone(),
                subjects: naming::stream_subjects(&ns, support::BROKER),
                max_age: Duration::from_secs(3600),
                ..Default::default()
            },
        )
        .await;
        running.streams.push(events_name.clone());
        match case.design {
            Design::Routed => {
                routed_broker(env, case, &ns, &events, &deliverer, &stopped, &mut running).await;
            }
            Design::ConsumerPerTrigger => {
                baseline_broker(env, case, &ns, &events, &deliverer, &stopped, &mut running).await;
            }
        }
    }
    // Let every pull loop open its consumer before events flow.
    tokio::time::sleep(Duration::from_millis(
        500 + 2 * case.triggers as u64 * case.brokers as u64,
    ))
    .await;
    running
}

/// How the routed design's queues are laid out in streams.
#[derive(Clone, Copy)]
enum QueueLayout {
    /// Streams of this many Triggers each, as the operator makes them
    /// (`BENCH_TRIGGERS_PER_STREAM`, default the operator's; a number at least the
    /// Trigger count gives one stream for all, as before).
    Shards(usize),
    /// A stream per Trigger (`BENCH_QUEUES=per-trigger`).
    PerTrigger,
}

impl QueueLayout {
    fn from_env() -> Self {
        if std::env::var("BENCH_QUEUES").is_ok_and(|v| v == "per-trigger") {
            return Self::PerTrigger;
        }
        let default = naming::DEFAULT_TRIGGERS_PER_QUEUE_STREAM as usize;
        Self::Shards(env_usize("BENCH_TRIGGERS_PER_STREAM", default).max(1))
    }
}

/// One Broker of the routed design: queue stream, router, a queue per Trigger.
async fn routed_broker(
    env: &Env,
    case: &Case,
    ns: &str,
    events: &stream::Stream,
    deliverer: &Arc<Deliverer>,
    stopped: &tokio::sync::watch::Receiver<Stop>,
    running: &mut Running,
) {
    let events_name = naming::stream_name(ns, support::BROKER);
    let layout = QueueLayout::from_env();
    // Work queues, as the operator makes them; BENCH_RETENTION=interest for the queues
    // made before (nats-server then asks every consumer's interest on every ack).
    let retention = match std::env::var("BENCH_RETENTION").as_deref() {
        Ok("interest") => stream::RetentionPolicy::Interest,
        _ => stream::RetentionPolicy::WorkQueue,
    };
    let queue_config = |name: &str, subjects: Vec<String>| stream::Config {
        name: name.to_owned(),
        subjects,
        retention,
        max_age: Duration::from_secs(3600),
        ..Default::default()
    };
    let mut router = consumer_config(
        naming::ROUTER_CONSUMER,
        String::new(),
        consumer::DeliverPolicy::New,
    );
    router.max_ack_pending = 20_000;
    events.create_consumer(router).await.expect("router");
    let mut table = RouteTable::default();
    let mut queues: Vec<stream::Stream> = Vec::new();
    for i in 0..case.triggers {
        let name = format!("t{i}");
        // Where the operator would place the queue: streams of `per_stream` Triggers
        // (shard numbers and subjects as herald_api::naming has them).
        let (queue_name, subject, index) = match layout {
            QueueLayout::Shards(per_stream) => {
                let shard = u32::try_from(i / per_stream).expect("shard");
                (
                    naming::queue_shard_stream_name(ns, support::BROKER, shard),
                    naming::queue_shard_subject(ns, support::BROKER, shard, &name),
                    i / per_stream,
                )
            }
            QueueLayout::PerTrigger => (
                format!("{}_{name}", naming::queue_stream_name(ns, support::BROKER)),
                naming::queue_subject(ns, support::BROKER, &name),
                i,
            ),
        };
        if queues.len() <= index {
            let subjects = match layout {
                QueueLayout::Shards(_) => naming::queue_shard_subjects(
                    ns,
                    support::BROKER,
                    u32::try_from(index).expect("shard"),
                ),
                QueueLayout::PerTrigger => vec![subject.clone()],
            };
            running.streams.push(queue_name.clone());
            queues.push(create_stream(&env.js, queue_config(&queue_name, subjects)).await);
        }
        let queue = queues[index].clone();
        let mut queue_consumer = consumer_config(
            &naming::consumer_name(&name),
            subject.clone(),
            consumer::DeliverPolicy::All,
        );
        // The queues' consumer state in memory, as the operator makes them on a work
        // queue; BENCH_CONSUMER_STORAGE=file rewrites a state file per consumer after
        // its acks, as before (the router's consumer stays on file either way).
        queue_consumer.memory_storage =
            std::env::var("BENCH_CONSUMER_STORAGE").map_or(true, |v| v != "file");
        queue.create_consumer(queue_consumer).await.expect("queue");
        let filter = CompiledFilter::from_filter(&case.dialect.filter(i)).expect("filter");
        let route = Route {
            trigger: name.clone(),
            subject,
            routed_after: 0,
            filter_version: "v".into(),
        };
        table.upsert(&format!("{ns}/{name}"), route, &Arc::new(filter.clone()));
        let p = Arc::new(plan(ns, &name, &queue_name, &env.sink, filter, "v"));
        running
            .tasks
            .push(tokio::spawn(herald_dispatcher::pull::pull_loop(
                p,
                deliverer.clone(),
                stopped.clone(),
            )));
    }
    let table = Arc::new(std::sync::RwLock::new(table));
    running
        .tasks
        .push(tokio::spawn(herald_dispatcher::router::route_loop(
            deliverer.jetstream.clone(),
            events_name.clone(),
            table,
            Arc::new(tokio::sync::Notify::new()),
            (
                deliverer
                    .moves
                    .watch(&events_name, herald_api::naming::ROUTER_CONSUMER),
                support::router_lease(&deliverer.jetstream, &events_name).await,
            ),
            stopped.clone(),
        )));
}

/// One Broker of the design before routing: a consumer of the whole stream per Trigger.
async fn baseline_broker(
    env: &Env,
    case: &Case,
    ns: &str,
    events: &stream::Stream,
    deliverer: &Arc<Deliverer>,
    stopped: &tokio::sync::watch::Receiver<Stop>,
    running: &mut Running,
) {
    let events_name = naming::stream_name(ns, support::BROKER);
    for i in 0..case.triggers {
        let name = format!("t{i}");
        // As before routing: a pure exact-type filter was the subject filter.
        let subject = if case.dialect == Dialect::ExactType {
            naming::event_subject(ns, support::BROKER, &format!("bench.t{i}"))
        } else {
            String::new()
        };
        events
            .create_consumer(consumer_config(
                &naming::consumer_name(&name),
                subject,
                consumer::DeliverPolicy::New,
            ))
            .await
            .expect("consumer");
        let filter = CompiledFilter::from_filter(&case.dialect.filter(i)).expect("filter");
        // No router stamps these messages, so the filters run on each.
        let p = Arc::new(plan(ns, &name, &events_name, &env.sink, filter, "unrouted"));
        running
            .tasks
            .push(tokio::spawn(herald_dispatcher::pull::pull_loop(
                p,
                deliverer.clone(),
                stopped.clone(),
            )));
    }
}

async fn tear_down(env: &Env, running: Running) {
    let _ = running.stop.send(Stop::Now);
    for task in running.tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    for name in running.streams {
        let _ = env.js.delete_stream(&name).await;
    }
}

async fn run(env: &Env, case: &Case, id: usize) -> Figures {
    let registry = prometheus::Registry::new();
    let brokers: Vec<String> = (0..case.brokers)
        .map(|b| support::namespace(id, b))
        .collect();
    let base = support::start_ingress(&env.client, &env.js, &registry, &brokers).await;
    let urls: Arc<Vec<String>> = Arc::new(
        brokers
            .iter()
            .map(|ns| format!("{base}/{ns}/{}", support::BROKER))
            .collect(),
    );
    let running = set_up(env, case, id, &registry).await;
    env.received.reset();
    let (bench0, nats0) = (cpu_seconds("self"), cpu_seconds(&env.nats_pid.to_string()));
    let began = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..64)
        .map(|_| {
            let (http, urls, next, dialect) =
                (env.http.clone(), urls.clone(), next.clone(), case.dialect);
            let (events, brokers, triggers, start) =
                (env.events, case.brokers, case.triggers, env.start);
            tokio::spawn(async move {
                loop {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    if j >= events {
                        break;
                    }
                    let broker = j % brokers;
                    let event = dialect.event((j / brokers) % triggers, j, start);
                    support::send(&http, &urls[broker], &event).await;
                }
            })
        })
        .collect();
    for s in senders {
        s.await.expect("sender");
    }
    let deadline = began + env.timeout;
    while env.received.count() < env.events && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = began.elapsed();
    let (bench1, nats1) = (cpu_seconds("self"), cpu_seconds(&env.nats_pid.to_string()));
    let mut latencies = env.received.latencies();
    latencies.sort_unstable();
    let figures = Figures {
        delivered: env.received.count(),
        elapsed,
        cpu_bench: bench1 - bench0,
        cpu_nats: nats1 - nats0,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
    };
    tear_down(env, running).await;
    figures
}

#[allow(clippy::cast_precision_loss)]
fn print_row(case: &Case, f: &Figures, events: usize) {
    let per_1000 = |cpu: f64| cpu * 1000.0 / f.delivered.max(1) as f64;
    let design = match case.design {
        Design::Routed => "routed (now)",
        Design::ConsumerPerTrigger => "consumer per Trigger (before)",
    };
    let shape = if case.brokers == 1 {
        format!("{}", case.triggers)
    } else {
        format!("{} Brokers × {}", case.brokers, case.triggers)
    };
    println!(
        "| {} | {shape} | {design} | {}/{events} | {:.0} | {:.3} | {:.3} | {:.1} | {:.1} |",
        case.dialect.name(),
        f.delivered,
        f.delivered as f64 / f.elapsed.as_secs_f64(),
        per_1000(f.cpu_bench),
        per_1000(f.cpu_nats),
        f.p50.as_secs_f64() * 1e3,
        f.p99.as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() {
    let events = env_usize("BENCH_EVENTS", 10_000);
    let timeout = Duration::from_secs(env_usize("BENCH_TIMEOUT", 60) as u64);
    let triggers: Vec<usize> = env_list("BENCH_TRIGGERS", "1,10,100,1000", |n| n.parse().ok());
    let dialects = env_list("BENCH_DIALECTS", "a,b,c,d", |d| match d {
        "a" => Some(Dialect::ExactType),
        "b" => Some(Dialect::SourcePrefix),
        "c" => Some(Dialect::ContentPattern),
        "d" => Some(Dialect::Cesql),
        _ => None,
    });
    let designs = env_list("BENCH_DESIGNS", "routed,before", |d| match d {
        "routed" => Some(Design::Routed),
        "before" => Some(Design::ConsumerPerTrigger),
        _ => None,
    });
    let nats = herald_runtime::testing::NatsServer::start("bench-fanout").await;
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = jetstream::ContextBuilder::new()
        .max_ack_inflight(16_384)
        .backpressure_on_inflight(true)
        .build(client.clone());
    let start = Instant::now();
    let received = Arc::new(Received::default());
    let sink = support::start_subscriber(received.clone(), start).await;
    let env = Env {
        nats_pid: nats.pid().expect("nats-server runs"),
        client,
        js,
        http: Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .build_http(),
        received,
        sink,
        start,
        events,
        timeout,
    };
    println!(
        "fan-out benchmark: {events} events of ~0.5 KiB per case, 64 senders, binary mode, one nats-server (file storage); CPU in seconds per 1,000 delivered events"
    );
    println!();
    println!(
        "| filter | Triggers | design | delivered | events/s | CPU bench process | CPU nats-server | p50 ms | p99 ms |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|");
    let mut id = 0;
    let mut cases: Vec<Case> = Vec::new();
    for &dialect in &dialects {
        for &n in &triggers {
            for &design in &designs {
                cases.push(Case {
                    dialect,
                    brokers: 1,
                    triggers: n,
                    design,
                });
            }
        }
    }
    if std::env::var("BENCH_MANY_BROKERS").map_or(true, |v| v != "0") {
        for &design in &designs {
            cases.push(Case {
                dialect: Dialect::SourcePrefix,
                brokers: 100,
                triggers: 10,
                design,
            });
        }
    }
    for case in &cases {
        id += 1;
        let figures = run(&env, case, id).await;
        print_row(case, &figures, events);
    }
}
