//! Churn: one shared operator, ingress and dispatcher while namespaces with up to 50 (or more)
//! Triggers whose subscribers are slow, erroring or gone are created, fed and deleted,
//! round after round. Throughout, a steady Trigger in another namespace keeps receiving
//! its events; afterwards a new Trigger gets its first event quickly, the in-flight
//! gauge is back at zero, the dispatcher's memory is bounded, and SIGTERM ends it
//! within its drain time.
//!
//! `HERALD_CHURN_SECS` (default 45) sets how long the churn lasts and
//! `HERALD_CHURN_SIZES` (default `1,10,50`) the Triggers per round, in turn; the long
//! run (`HERALD_CHURN_SECS=600 HERALD_CHURN_SIZES=1,10,100,300`) and its figures are in
//! docs/reliability.md. Namespaces are reused: a round waits until the namespace it
//! takes is gone, which also tests that a namespace re-created under the same name is
//! served like a new one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_api::{DeliverySpec, Trigger, TriggerSpec};
use herald_e2e::http::try_post;
use herald_e2e::kubectl::{self, example};
use herald_e2e::manifests::{apply, retries, to_uri, trigger};
use herald_e2e::process::{Dispatcher, Ingress, Operator};
use herald_e2e::subscriber::{Answer, Subscriber};
use herald_e2e::{await_ready, eventually, nats_url, with_temp_ns};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};

const WAIT: Duration = Duration::from_secs(60);
/// Churn namespaces, used in turn (all are watched from the start).
const SLOTS: usize = 12;

fn churn_secs() -> u64 {
    std::env::var("HERALD_CHURN_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(45)
}

fn churn_sizes() -> Vec<usize> {
    std::env::var("HERALD_CHURN_SIZES")
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect::<Vec<_>>()
        })
        .filter(|sizes| !sizes.is_empty())
        .unwrap_or_else(|| vec![1, 10, 50])
}

/// Sends one event as a producer would: a connection that breaks before the answer
/// (the machine is saturated during big rounds) or a 503 is retried, and counted in
/// [`RETRIED`].
async fn send(url: &str, id: &str, source: &str) -> u16 {
    let headers = [
        ("ce-specversion", "1.0"),
        ("ce-id", id),
        ("ce-type", "churn.tick"),
        ("ce-source", source),
        ("content-type", "application/json"),
    ];
    for _ in 0..5 {
        match try_post(url, &headers, "{}".to_owned()).await {
            // Backpressure a producer is told to retry (a store that timed out on the
            // loaded machine): sent again with the same id, counted and printed.
            Ok(answer) if answer.status == 503 => {
                RETRIED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                eprintln!("sending {id}: 503 {}; retrying", answer.body);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(answer) => return answer.status,
            Err(e) => {
                RETRIED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                eprintln!("sending {id}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    panic!("the ingress did not answer {id} in 5 tries");
}

/// Sends retried: connections to the ingress that broke before an answer, and 503s.
static RETRIED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

async fn wait_gone(namespaces: &Api<Namespace>, name: &str) {
    eventually(
        &format!("namespace {name} is gone"),
        Duration::from_secs(180),
        || async { namespaces.get_opt(name).await.ok()?.is_none().then_some(()) },
    )
    .await;
}

/// One round in namespace `ns`: a Broker, `count` Triggers to `sinks` in turn, events,
/// then the namespace is deleted (not waited for).
async fn round(client: &Client, ns: &str, count: usize, sinks: &[String], ingress: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut object = Namespace::default();
    object.metadata.name = Some(ns.to_owned());
    namespaces
        .create(&PostParams::default(), &object)
        .await
        .expect("create namespace");
    let broker = std::fs::read_to_string(example("broker.yaml")).expect("example");
    // kubectl blocks; on its own thread, so the steady sender and subscriber (on this
    // runtime) go on meanwhile and their timings stay the dispatcher's.
    let namespace = ns.to_owned();
    tokio::task::spawn_blocking(move || kubectl::apply(&namespace, &broker))
        .await
        .expect("kubectl apply");
    let delivery = DeliverySpec {
        timeout: Some("PT2S".to_owned()),
        ..retries(2, "PT0.2S")
    };
    for i in 0..count {
        let spec = TriggerSpec {
            delivery: Some(delivery.clone()),
            ..to_uri(&sinks[i % sinks.len()])
        };
        apply(client, ns, &trigger(&format!("t{i}"), spec)).await;
    }
    let url = format!("{ingress}/{ns}/default");
    // 503 until the ingress serves the new Broker (part of churning); a round feeds its
    // Triggers, so it waits for that, within reason.
    let created = Instant::now();
    while send(&url, &format!("{ns}-first"), "/churn").await != 202 {
        if created.elapsed() > Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let serving = created.elapsed();
    let mut sent = 0;
    for n in 0..200 {
        if send(&url, &format!("{ns}-{n}"), "/churn").await == 202 {
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "round in {ns}: {count} Triggers, Broker served after {serving:?}, {sent} events accepted"
    );
    let _ = namespaces.delete(ns, &DeleteParams::background()).await;
}

// Several threads: the subscribers and the steady sender must not wait for one another
// (their timings are the figures).
/// p50, p99 and max of a set of durations.
struct Spread {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Spread {
    fn of(mut spans: Vec<Duration>) -> Spread {
        spans.sort_unstable();
        let at = |q: usize| spans[(spans.len() * q / 100).min(spans.len() - 1)];
        Spread {
            p50: at(50),
            p99: at(99),
            max: *spans.last().expect("durations"),
        }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:?} / p99 {:?} / max {:?}",
            self.p50, self.p99, self.max
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[allow(clippy::too_many_lines)] // one scenario, told in order
async fn the_shared_dispatcher_survives_churn() {
    with_temp_ns("churn", |client, steady_ns| async move {
        let slots: Vec<String> = (0..SLOTS).map(|i| format!("{steady_ns}-c{i}")).collect();
        let watched = std::iter::once(steady_ns.clone()).chain(slots.iter().cloned()).collect::<Vec<_>>().join(",");
        let nats = nats_url();
        let ingress = Ingress::start(&watched, &nats).await;
        let _operator = Operator::start_with_ingress(&watched, &nats, "solo", &ingress.url()).await;
        let mut dispatcher = Dispatcher::start(&watched, &nats).await;

        // The steady Trigger and a subscriber that notes when each event arrived.
        let arrived: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let noted = arrived.clone();
        let steady = Subscriber::scripted(move |event, _| {
            noted.lock().unwrap().entry(event.id().to_owned()).or_insert_with(Instant::now);
            Answer::status(202)
        })
        .await;
        kubectl::apply(&steady_ns, &std::fs::read_to_string(example("broker.yaml")).expect("example"));
        apply(&client, &steady_ns, &trigger("steady", to_uri(&steady.url))).await;
        let triggers: Api<Trigger> = Api::namespaced(client.clone(), &steady_ns);
        await_ready(&triggers, "steady", WAIT).await;
        let steady_url = format!("{}/{steady_ns}/default", ingress.url());
        eventually("the steady Trigger receives", WAIT, || async {
            send(&steady_url, "probe", "/steady").await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            arrived.lock().unwrap().contains_key("probe").then_some(())
        })
        .await;
        let rss_before = dispatcher.rss_bytes();

        // The steady sender: one event every 20 ms for the whole churn.
        let churn = Duration::from_secs(churn_secs());
        // Per steady event: when it was sent, and when the ingress answered 202.
        let sent_at: Arc<Mutex<HashMap<String, (Instant, Instant)>>> = Arc::default();
        let sender = {
            let (url, sent_at) = (steady_url.clone(), sent_at.clone());
            tokio::spawn(async move {
                let began = Instant::now();
                let mut n = 0;
                while began.elapsed() < churn {
                    let id = format!("steady-{n}");
                    let sent = Instant::now();
                    assert_eq!(send(&url, &id, "/steady").await, 202, "the steady Broker refused {id}");
                    sent_at.lock().unwrap().insert(id.clone(), (sent, Instant::now()));
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                n
            })
        };

        // Churn: slow, erroring and vanished subscribers, rounds of `sizes` Triggers.
        let slow = Subscriber::scripted(|_, _| Answer::after(202, Duration::from_secs(5))).await;
        let failing = Subscriber::scripted(|_, _| Answer::status(500)).await;
        let gone = format!("http://127.0.0.1:{}/events", herald_e2e::process::free_port());
        let sinks = [slow.url.clone(), failing.url.clone(), gone];
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let began = Instant::now();
        let mut rounds = 0;
        let mut rss_peak = 0;
        let sizes = churn_sizes();
        while began.elapsed() < churn {
            let ns = &slots[rounds % SLOTS];
            if rounds >= SLOTS {
                wait_gone(&namespaces, ns).await;
            }
            let count = sizes[rounds % sizes.len()];
            round(&client, ns, count, &sinks, &ingress.url()).await;
            rss_peak = rss_peak.max(dispatcher.rss_bytes());
            rounds += 1;
        }
        let steady_sent = sender.await.expect("steady sender");
        let deleting = Instant::now();
        for ns in &slots[..rounds.min(SLOTS)] {
            wait_gone(&namespaces, ns).await;
        }
        println!("churn namespaces gone {:?} after the last round", deleting.elapsed());

        // Every steady event arrived; how long they took during the churn.
        // A backlog built during the heaviest rounds may still be draining: up to three
        // minutes, then the missing ones are named.
        let missing = || {
            let got = arrived.lock().unwrap();
            (0..steady_sent).map(|n| format!("steady-{n}")).filter(|id| !got.contains_key(id)).collect::<Vec<_>>()
        };
        let settle = Instant::now();
        while !missing().is_empty() && settle.elapsed() < 3 * WAIT {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let lost = missing();
        assert!(lost.is_empty(), "{} of {steady_sent} steady events never arrived, e.g. {:?}", lost.len(), &lost[..lost.len().min(10)]);
        println!("every steady event arrived; the last {:?} after the churn namespaces were gone", settle.elapsed());
        // End to end (sent → arrived), split into the ingress's answer (sent → 202) and
        // delivery (202 → arrived; the event was stored by then).
        let (end_to_end, ingress_answer, delivery) = {
            let (got, sent) = (arrived.lock().unwrap(), sent_at.lock().unwrap());
            let mut spans = (Vec::new(), Vec::new(), Vec::new());
            for (id, (at, accepted)) in sent.iter() {
                let Some(arrival) = got.get(id) else { continue };
                spans.0.push(arrival.saturating_duration_since(*at));
                spans.1.push(accepted.saturating_duration_since(*at));
                spans.2.push(arrival.saturating_duration_since(*accepted));
            }
            (Spread::of(spans.0), Spread::of(spans.1), Spread::of(spans.2))
        };

        // A new Trigger after the churn gets its first event.
        let fresh = Subscriber::accepting().await;
        apply(&client, &steady_ns, &trigger("fresh", to_uri(&fresh.url))).await;
        await_ready(&triggers, "fresh", WAIT).await;
        let first_sent = Instant::now();
        assert_eq!(send(&steady_url, "fresh-1", "/steady").await, 202);
        fresh.wait_for("the new Trigger's first event", WAIT, |d| !d.is_empty()).await;
        let first = first_sent.elapsed();

        eventually("nothing in flight", WAIT, || async {
            (dispatcher.metric("herald_dispatcher_deliveries_in_flight").await == 0.0).then_some(())
        })
        .await;
        let rss_after = dispatcher.rss_bytes();
        println!("dispatcher open files after the churn: {}", dispatcher.open_files());
        let drain = dispatcher.terminate(Duration::from_secs(30)).await;
        println!(
            "churn: {rounds} rounds in {churn:?}; steady Trigger: {steady_sent} events, end to end {end_to_end}, ingress answer {ingress_answer}, delivery {delivery}; new Trigger's first event after {first:?}; dispatcher RSS {} MiB before, {} MiB peak, {} MiB after; SIGTERM exit after {drain:?}; sends retried (a connection broken before an answer, or 503): {}",
            rss_before >> 20,
            rss_peak >> 20,
            rss_after >> 20,
            RETRIED.load(std::sync::atomic::Ordering::Relaxed)
        );
        // What catches a wedged, unfair or leaking dispatcher: every steady event arrived
        // (above) and, while thousands of churn deliveries waited for the global slots,
        // the steady Trigger was still served in turn (before fair slots and coalesced
        // drop reports its p99 was 15-45 s; now about 0.5 s, see docs/reliability.md; the
        // bound is loose because 2 cores are shared with the whole control plane); a new
        // Trigger is served at once, memory is bounded, SIGTERM ends it.
        assert!(delivery.p99 < Duration::from_secs(10), "the steady Trigger starved during the churn: delivery {delivery}");
        assert!(ingress_answer.p99 < Duration::from_secs(10), "the ingress kept the steady producer waiting during the churn: {ingress_answer}");
        assert!(first < Duration::from_secs(5), "a new Trigger waited {first:?} for its first event");
        assert!(rss_after < 1 << 30, "dispatcher memory grew from {rss_before} to {rss_after} bytes");
        assert!(drain.is_some_and(|d| d < Duration::from_secs(25)), "the dispatcher did not exit within its drain time: {drain:?}");
    })
    .await;
}
