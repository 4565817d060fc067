//! Chaos under load: events flow producer → ingress → R3 stream on a 3-node JetStream
//! cluster → dispatcher → subscriber while, one at a time, the ingress, the
//! dispatcher, the leading operator and the stream leader's NATS node are killed with
//! SIGKILL and come back. Senders retry 503s and connection errors with the same event
//! id, as the docs tell producers to. Every event the ingress answered 2xx for must be
//! delivered (at least once); duplicates and the longest delivery gap per fault are
//! printed. `HERALD_CHAOS_EVENTS` sets the event count (default 3,000; the figures in
//! docs/reliability.md come from 100,000).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_api::{Broker, Trigger, naming};
use herald_e2e::kubectl::apply;
use herald_e2e::process::{NatsCluster, Operator};
use herald_e2e::stack::Stack;
use herald_e2e::subscriber::Subscriber;
use herald_e2e::{await_condition, has_condition, with_temp_ns};
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

#[tokio::test]
#[allow(clippy::too_many_lines)] // one scenario, told in order
async fn nothing_accepted_is_lost_while_components_and_nodes_die() {
    with_temp_ns("chaos", |client, ns| async move {
        let total = events();
        let mut cluster = NatsCluster::start(&format!("chaos{}", std::process::id())).await;
        let mut stack = Stack::start(client.clone(), &ns, &cluster.url()).await;
        let _standby = Operator::start_with_ingress(&ns, &cluster.url(), "standby", &stack.ingress.url()).await;
        apply(&ns, "apiVersion: eventing.herald.dev/v1alpha1\nkind: Broker\nmetadata: {name: chaos}\nspec:\n  stream: {replicas: 3}\n");
        let brokers: Api<Broker> = Api::namespaced(client.clone(), &ns);
        await_condition(&brokers, "chaos", WAIT, has_condition("Ready", herald_api::ConditionStatus::True, None)).await;
        let subscriber = Arc::new(Subscriber::accepting().await);
        apply(&ns, &format!("apiVersion: eventing.herald.dev/v1alpha1\nkind: Trigger\nmetadata: {{name: sink}}\nspec:\n  broker: chaos\n  subscriber: {{uri: \"{}\"}}\n", subscriber.url));
        let triggers: Api<Trigger> = Api::namespaced(client.clone(), &ns);
        await_condition(&triggers, "sink", WAIT, has_condition("Ready", herald_api::ConditionStatus::True, None)).await;

        let url: Arc<str> = format!("{}/{ns}/chaos", stack.ingress.url()).into();
        let http: Http = Client::builder(TokioExecutor::new()).build_http();
        let next = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let senders: Vec<_> = (0..SENDERS)
            .map(|_| {
                let (http, url, next, accepted) = (http.clone(), url.clone(), next.clone(), accepted.clone());
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
        // Samples of the delivery count, for the gaps.
        let samples = Arc::new(Mutex::new(Vec::new()));
        let accepted_samples = Arc::new(Mutex::new(Vec::new()));
        let monitor = {
            let (samples, subscriber) = (samples.clone(), subscriber.clone());
            let (accepted_samples, accepted) = (accepted_samples.clone(), accepted.clone());
            tokio::spawn(async move {
                loop {
                    let count = subscriber.count();
                    let now = Instant::now();
                    samples.lock().unwrap().push((now, count));
                    accepted_samples.lock().unwrap().push((now, accepted.load(Ordering::Relaxed)));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let wait_for_progress = |fraction: usize| {
            let accepted = accepted.clone();
            async move {
                while accepted.load(Ordering::Relaxed) < total * fraction / 6 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };

        let mut faults: Vec<(&str, Instant)> = Vec::new();
        wait_for_progress(1).await;
        faults.push(("ingress killed and restarted", Instant::now()));
        stack.ingress.restart().await;
        wait_for_progress(2).await;
        faults.push(("dispatcher killed and restarted", Instant::now()));
        if let Some(mut d) = stack.dispatcher.take() {
            d.kill().await;
        }
        stack.start_dispatcher().await;
        wait_for_progress(3).await;
        faults.push(("leading operator killed (standby takes over)", Instant::now()));
        stack.operator.kill().await;
        wait_for_progress(4).await;
        faults.push(("stream leader's NATS node killed, restarted 5 s later", Instant::now()));
        let nats = async_nats::connect(cluster.addrs()).await.expect("connect");
        let js = async_nats::jetstream::new(nats);
        let mut stream = js.get_stream(naming::stream_name(&ns, "chaos")).await.expect("stream");
        let leader = stream.info().await.expect("info").cluster.clone().and_then(|c| c.leader).expect("leader");
        let node = cluster.nodes.iter_mut().find(|n| n.name == leader).expect("leader node");
        node.kill().await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        node.restart().await;

        for s in senders {
            s.await.expect("sender");
        }
        let sent_in = started.elapsed();
        let accepted_count = accepted.load(Ordering::Relaxed);
        assert_eq!(accepted_count, total, "every event was eventually accepted");
        let drain = Instant::now();
        loop {
            // Counting is cheap; the distinct ids are checked once the count allows it.
            if subscriber.count() >= total
                && subscriber.deliveries().iter().map(|(e, _)| e.id().to_owned()).collect::<HashSet<_>>().len() >= total
            {
                break;
            }
            assert!(drain.elapsed() < Duration::from_secs(300), "accepted events were not all delivered within 300 s");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let end = Instant::now();
        monitor.abort();
        let deliveries = subscriber.deliveries();
        let distinct: HashSet<&str> = deliveries.iter().map(|(e, _)| e.id()).collect();
        let missing = (0..total).filter(|n| !distinct.contains(format!("e-{n}").as_str())).count();
        assert_eq!(missing, 0, "accepted events were lost");
        let samples = samples.lock().unwrap().clone();
        let accepted_samples = accepted_samples.lock().unwrap().clone();
        println!("chaos: {total} events accepted in {sent_in:?}, all delivered (lost 0), {} duplicate deliveries", deliveries.len() - distinct.len());
        println!("| fault | longest gap in acceptance (ingress 2xx) | longest gap in deliveries |");
        println!("|---|---:|---:|");
        for (i, (fault, at)) in faults.iter().enumerate() {
            let until = faults.get(i + 1).map_or(end, |(_, next)| *next);
            println!(
                "| {fault} | {:.2} s | {:.2} s |",
                longest_gap(&accepted_samples, *at, until.min(start_of_drain(&accepted_samples, total))).as_secs_f64(),
                longest_gap(&samples, *at, until).as_secs_f64()
            );
        }
    })
    .await;
}
