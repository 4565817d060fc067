//! Chaos under load: events flow producer → ingress → R3 stream on a 3-node JetStream
//! cluster → dispatcher → subscriber while, one at a time, the ingress, the
//! dispatcher, the leading operator and the stream leader's NATS node are killed with
//! SIGKILL and come back. Senders retry 503s and connection errors with the same event
//! id, as the docs tell producers to. A second run does the same on a single
//! nats-server with a file store: the server itself killed and restarted, then the
//! kube-apiserver killed and restarted. Every event the ingress answered 2xx for must be
//! delivered (at least once); duplicates and the longest delivery gap per fault are
//! printed. `HERALD_CHAOS_EVENTS` sets the event count (default 3,000; the figures in
//! docs/reliability.md come from 100,000).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_api::{Broker, TriggerSpec, naming};
use herald_e2e::manifests::{apply, replicated_broker, to_uri};
use herald_e2e::process::{NatsCluster, NatsServer, Operator};
use herald_e2e::stack::Stack;
use herald_e2e::subscriber::Subscriber;
use herald_e2e::{await_ready, eventually, with_temp_ns};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kube::Api;

const WAIT: Duration = Duration::from_secs(60);
const SENDERS: usize = 16;

type Http = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// One attempt; `None` when the ingress could not be reached.
async fn attempt(http: &Http, url: &str, id: &str) -> Option<u16> {
    let request = hyper::Request::post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-type", "com.example.chaos")
        .header("ce-source", "e2e/chaos")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{\"n\":1}")))
        .ok()?;
    let answer = tokio::time::timeout(Duration::from_secs(10), http.request(request))
        .await
        .ok()?
        .ok()?;
    let status = answer.status().as_u16();
    let _ = answer.into_body().collect().await;
    Some(status)
}

/// Sends `id` until the ingress accepts it (same id every time).
async fn send(http: &Http, url: &str, id: &str) {
    let started = Instant::now();
    loop {
        match attempt(http, url, id).await {
            Some(202) => return,
            Some(503) | None => {}
            Some(other) => panic!("event {id}: unexpected status {other}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "event {id} never accepted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn events() -> usize {
    std::env::var("HERALD_CHAOS_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

/// When the last event was accepted (later, nothing more can be accepted).
fn start_of_drain(samples: &[(Instant, usize)], total: usize) -> Instant {
    samples
        .iter()
        .find(|(_, count)| *count >= total)
        .or(samples.last())
        .map_or_else(Instant::now, |(at, _)| *at)
}

/// Longest time without a new delivery between `from` and `to`, from `(when, count)` samples.
fn longest_gap(samples: &[(Instant, usize)], from: Instant, to: Instant) -> Duration {
    let mut gap = Duration::ZERO;
    let mut last_change = from;
    let mut last_count = None;
    for &(at, count) in samples.iter().filter(|(at, _)| *at >= from && *at <= to) {
        if last_count != Some(count) {
            gap = gap.max(at - last_change);
            last_change = at;
            last_count = Some(count);
        }
    }
    gap
}

/// Producers and the delivery monitor of one chaos run.
struct Load {
    total: usize,
    accepted: Arc<AtomicUsize>,
    senders: Vec<tokio::task::JoinHandle<()>>,
    monitor: tokio::task::JoinHandle<()>,
    samples: Arc<Mutex<Vec<(Instant, usize)>>>,
    accepted_samples: Arc<Mutex<Vec<(Instant, usize)>>>,
    started: Instant,
    faults: Vec<(&'static str, Instant)>,
}

impl Load {
    /// Starts `SENDERS` producers sending `total` events (`e-0`...) to `url`, and a
    /// monitor sampling accepted and delivered counts every 20 ms.
    fn start(url: &str, subscriber: Arc<Subscriber>, total: usize) -> Self {
        let url: Arc<str> = url.into();
        let http: Http = Client::builder(TokioExecutor::new()).build_http();
        let next = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let senders = (0..SENDERS)
            .map(|_| {
                let (http, url, next, accepted) =
                    (http.clone(), url.clone(), next.clone(), accepted.clone());
                tokio::spawn(async move {
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= total {
                            break;
                        }
                        send(&http, &url, &format!("e-{n}")).await;
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let accepted_samples = Arc::new(Mutex::new(Vec::new()));
        let monitor = {
            let (samples, accepted_samples, accepted) =
                (samples.clone(), accepted_samples.clone(), accepted.clone());
            tokio::spawn(async move {
                loop {
                    let count = subscriber.count();
                    let now = Instant::now();
                    samples.lock().unwrap().push((now, count));
                    accepted_samples
                        .lock()
                        .unwrap()
                        .push((now, accepted.load(Ordering::Relaxed)));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        Self {
            total,
            accepted,
            senders,
            monitor,
            samples,
            accepted_samples,
            started: Instant::now(),
            faults: Vec::new(),
        }
    }

    /// Waits until `parts` of `of` parts of the events are accepted, then records `fault`
    /// as starting now (the caller then injects it).
    async fn fault_after(&mut self, parts: usize, of: usize, fault: &'static str) {
        while self.accepted.load(Ordering::Relaxed) < self.total * parts / of {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.faults.push((fault, Instant::now()));
    }

    /// Waits for every sender and every delivery; asserts nothing accepted was lost
    /// and prints duplicates and the longest gaps per fault.
    async fn finish(self, subscriber: &Subscriber) {
        let total = self.total;
        for s in self.senders {
            s.await.expect("sender");
        }
        let sent_in = self.started.elapsed();
        assert_eq!(
            self.accepted.load(Ordering::Relaxed),
            total,
            "every event was eventually accepted"
        );
        let drain = Instant::now();
        loop {
            // Counting is cheap; the distinct ids are checked once the count allows it.
            if subscriber.count() >= total
                && subscriber
                    .delivered_ids()
                    .into_iter()
                    .collect::<HashSet<_>>()
                    .len()
                    >= total
            {
                break;
            }
            assert!(
                drain.elapsed() < Duration::from_secs(300),
                "accepted events were not all delivered within 300 s"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let end = Instant::now();
        self.monitor.abort();
        let deliveries = subscriber.deliveries();
        let distinct: HashSet<&str> = deliveries.iter().map(|(e, _)| e.id()).collect();
        let missing = (0..total)
            .filter(|n| !distinct.contains(format!("e-{n}").as_str()))
            .count();
        assert_eq!(missing, 0, "accepted events were lost");
        let samples = self.samples.lock().unwrap().clone();
        let accepted_samples = self.accepted_samples.lock().unwrap().clone();
        println!(
            "chaos: {total} events accepted in {sent_in:?}, all delivered (lost 0), {} duplicate deliveries",
            deliveries.len() - distinct.len()
        );
        println!("| fault | longest gap in acceptance (ingress 2xx) | longest gap in deliveries |");
        println!("|---|---:|---:|");
        for (i, (fault, at)) in self.faults.iter().enumerate() {
            let until = self.faults.get(i + 1).map_or(end, |(_, next)| *next);
            println!(
                "| {fault} | {:.2} s | {:.2} s |",
                longest_gap(
                    &accepted_samples,
                    *at,
                    until.min(start_of_drain(&accepted_samples, total))
                )
                .as_secs_f64(),
                longest_gap(&samples, *at, until).as_secs_f64()
            );
        }
    }
}

/// The chaos runs take turns: one restarts the apiserver every test shares.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The node that leads JetStream stream `name` now; `None` while there is none or the
/// cluster cannot say (mid-election, a node just killed).
async fn stream_leader(js: &async_nats::jetstream::Context, name: &str) -> Option<String> {
    let mut stream = js.get_stream(name).await.ok()?;
    let info = stream.info().await.ok()?;
    info.cluster.clone().and_then(|c| c.leader)
}

/// A Trigger `sink` on `broker` delivering to a new subscriber, Ready.
async fn sink(client: &kube::Client, ns: &str, broker: &str) -> Arc<Subscriber> {
    let subscriber = Arc::new(Subscriber::accepting().await);
    let spec = TriggerSpec {
        broker: broker.to_owned(),
        ..to_uri(&subscriber.url)
    };
    herald_e2e::ready_trigger(client, ns, "sink", spec, WAIT).await;
    subscriber
}

#[tokio::test]
async fn nothing_accepted_is_lost_while_components_and_nodes_die() {
    let _turn = ONE_AT_A_TIME.lock().await;
    with_temp_ns("chaos", |client, ns| async move {
        let mut cluster = NatsCluster::start(&format!("chaos{}", std::process::id())).await;
        let mut stack = Stack::start(client.clone(), &ns, &cluster.url()).await;
        let _standby =
            Operator::start_with_ingress(&ns, &cluster.url(), "standby", &stack.ingress.url())
                .await;
        apply(&client, &ns, &replicated_broker("chaos", 3)).await;
        let brokers: Api<Broker> = Api::namespaced(client.clone(), &ns);
        await_ready(&brokers, "chaos", WAIT).await;
        let subscriber = sink(&client, &ns, "chaos").await;
        let mut load = Load::start(
            &format!("{}/{ns}/chaos", stack.ingress.url()),
            subscriber.clone(),
            events(),
        );

        load.fault_after(1, 6, "ingress killed and restarted").await;
        stack.ingress.restart().await;
        load.fault_after(2, 6, "dispatcher killed and restarted")
            .await;
        if let Some(mut d) = stack.dispatcher.take() {
            d.kill().await;
        }
        stack.start_dispatcher().await;
        load.fault_after(3, 6, "leading operator killed (standby takes over)")
            .await;
        stack.operator.kill().await;
        load.fault_after(
            4,
            6,
            "stream leader's NATS node killed, restarted 5 s later",
        )
        .await;
        let nats = async_nats::connect(cluster.addrs()).await.expect("connect");
        let js = async_nats::jetstream::new(nats);
        let stream_name = naming::stream_name(&ns, "chaos");
        let leader = eventually("the stream has a leader", WAIT, || {
            stream_leader(&js, &stream_name)
        })
        .await;
        let node = cluster
            .nodes
            .iter_mut()
            .find(|n| n.name == leader)
            .expect("leader node");
        node.kill().await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        node.restart().await;
        load.finish(&subscriber).await;
    })
    .await;
}

#[tokio::test]
async fn nothing_accepted_is_lost_when_nats_server_and_the_apiserver_restart() {
    let _turn = ONE_AT_A_TIME.lock().await;
    with_temp_ns("chaos-single", |client, ns| async move {
        // One nats-server with its file store, as a small installation runs it.
        let mut nats = NatsServer::start(&format!("chaos-single{}", std::process::id())).await;
        let stack = Stack::start(client.clone(), &ns, &nats.url()).await;
        let subscriber = sink(&client, &ns, "default").await;
        let mut load = Load::start(&stack.broker_url(), subscriber.clone(), events());

        load.fault_after(
            1,
            3,
            "nats-server (single node, file store) killed, restarted 2 s later",
        )
        .await;
        nats.stop().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        nats.restart().await;
        load.fault_after(2, 3, "kube-apiserver killed and restarted")
            .await;
        restart_apiserver().await;
        load.finish(&subscriber).await;
    })
    .await;
}

/// Kills the control plane's kube-apiserver (SIGKILL) and starts it again through
/// `e2e/controlplane/up.sh`, which brings back what is missing on the same ports.
async fn restart_apiserver() {
    let state = std::env::var("HERALD_CP_STATE")
        .expect("HERALD_CP_STATE is not set: run through e2e/test.sh");
    let pids =
        std::fs::read_to_string(format!("{state}/pids")).expect("the control plane's pids file");
    let pid = pids
        .lines()
        .find_map(|l| {
            l.strip_prefix("kube-apiserver ")?
                .split(' ')
                .next()
                .map(str::to_owned)
        })
        .expect("kube-apiserver is recorded");
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success(), "kill -9 {pid}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let up = format!("{}/../e2e/controlplane/up.sh", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new(up)
        .env("STATE", &state)
        .output()
        .await
        .expect("up.sh runs");
    assert!(
        out.status.success(),
        "up.sh could not bring the apiserver back: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn nothing_accepted_is_lost_when_the_stream_leader_is_cut_off() {
    let _turn = ONE_AT_A_TIME.lock().await;
    with_temp_ns("chaos-partition", |client, ns| async move {
        // Node 2 runs in its own network namespace, joined by a veth link the test cuts.
        let tag = format!("{:06x}", std::process::id() & 0xff_ffff);
        let netns = herald_e2e::partition::Netns::create(&tag);
        let here = || (netns.host_ip.clone(), None);
        let cluster = NatsCluster::start_on(
            &format!("part{tag}"),
            [
                here(),
                here(),
                (netns.inner_ip.clone(), Some(netns.name.clone())),
            ],
        )
        .await;
        let stack = Stack::start(client.clone(), &ns, &cluster.url()).await;
        apply(&client, &ns, &replicated_broker("chaos", 3)).await;
        let brokers: Api<Broker> = Api::namespaced(client.clone(), &ns);
        await_ready(&brokers, "chaos", WAIT).await;
        // Make the node behind the link the stream leader, so the cut costs the most.
        let js = async_nats::jetstream::new(
            async_nats::connect(cluster.addrs()).await.expect("connect"),
        );
        let stream_name = naming::stream_name(&ns, "chaos");
        let isolated = cluster.nodes[2].name.clone();
        for _ in 0..20 {
            let leader = stream_leader(&js, &stream_name).await;
            if leader.as_deref() == Some(isolated.as_str()) {
                println!("stream leader: {isolated} (behind the link)");
                break;
            }
            let _ = js
                .request::<_, _, serde_json::Value>(
                    format!("STREAM.LEADER.STEPDOWN.{stream_name}"),
                    &serde_json::json!({}),
                )
                .await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let subscriber = sink(&client, &ns, "chaos").await;
        let mut load = Load::start(
            &format!("{}/{ns}/chaos", stack.ingress.url()),
            subscriber.clone(),
            events(),
        );
        load.fault_after(
            1,
            3,
            "stream leader's node cut off by a network partition for 20 s",
        )
        .await;
        netns.cut();
        // Longer than JetStream's election timeouts (a few seconds each side), so the
        // majority elects new leaders while the old one is still cut off.
        tokio::time::sleep(Duration::from_secs(20)).await;
        netns.heal();
        load.finish(&subscriber).await;
        drop(stack);
        drop(cluster);
    })
    .await;
}
