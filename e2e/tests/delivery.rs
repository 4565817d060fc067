//! Delivery, end to end: ingress → stream → dispatcher → an HTTP subscriber in the
//! test, on the real control plane and nats-server.

use std::collections::HashSet;
use std::time::Duration;

use herald_api::common::{BackoffPolicy, Ordering};
use herald_api::{DeliverySpec, Trigger, TriggerSpec};
use herald_cloudevents::CloudEvent;
use herald_e2e::manifests::{
    self, attributes, from_all, retries, retries_then_dead_letter, to_uri,
};
use herald_e2e::process::herald_stdout;
use herald_e2e::stack::Stack;
use herald_e2e::subscriber::{Answer, Subscriber};
use herald_e2e::{eventually, field, nats_url, with_temp_ns};
use k8s_openapi::api::core::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// Applies Trigger `name` with `spec` and waits until it is Ready.
async fn trigger(client: &Client, ns: &str, name: &str, spec: TriggerSpec) -> Trigger {
    herald_e2e::ready_trigger(client, ns, name, spec, WAIT).await
}

/// Events of type `type_`, to `url`.
fn typed_to(type_: &str, url: &str) -> TriggerSpec {
    TriggerSpec {
        filter: attributes([("type", type_)]),
        ..to_uri(url)
    }
}

/// Every event to `url`, with `delivery`.
fn delivered_to(url: &str, delivery: DeliverySpec) -> TriggerSpec {
    TriggerSpec {
        delivery: Some(delivery),
        ..to_uri(url)
    }
}

fn ids(list: &[(CloudEvent, u16)]) -> HashSet<String> {
    list.iter().map(|(e, _)| e.id().to_owned()).collect()
}

#[tokio::test]
async fn each_filter_dialect_routes_the_right_events() {
    with_temp_ns("routing", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let (exact, cesql, pattern, all) = (
            Subscriber::accepting().await,
            Subscriber::accepting().await,
            Subscriber::accepting().await,
            Subscriber::accepting().await,
        );
        trigger(&client, &ns, "exact", typed_to("order.created", &exact.url)).await;
        trigger(
            &client,
            &ns,
            "cesql",
            TriggerSpec {
                filters: vec![manifests::cesql("source LIKE 'shop/%'")],
                ..to_uri(&cesql.url)
            },
        )
        .await;
        trigger(
            &client,
            &ns,
            "pattern",
            TriggerSpec {
                filters: vec![manifests::pattern(
                    json!({"data": {"amount": [{"numeric": [">", 100]}]}}),
                )],
                ..to_uri(&pattern.url)
            },
        )
        .await;
        trigger(&client, &ns, "all", to_uri(&all.url)).await;

        stack
            .send("e1", "order.created", "crm", r#"{"amount": 1}"#)
            .await;
        stack
            .send("e2", "order.paid", "shop/eu", r#"{"amount": 5}"#)
            .await;
        stack
            .send("e3", "order.paid", "crm", r#"{"amount": 500}"#)
            .await;
        all.wait_for("the unfiltered Trigger gets all three", WAIT, |d| {
            ids(d).len() == 3
        })
        .await;
        exact
            .wait_for("exact gets e1", WAIT, |d| !d.is_empty())
            .await;
        cesql
            .wait_for("cesql gets e2", WAIT, |d| !d.is_empty())
            .await;
        pattern
            .wait_for("pattern gets e3", WAIT, |d| !d.is_empty())
            .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(ids(&exact.deliveries()), HashSet::from(["e1".to_owned()]));
        assert_eq!(ids(&cesql.deliveries()), HashSet::from(["e2".to_owned()]));
        assert_eq!(ids(&pattern.deliveries()), HashSet::from(["e3".to_owned()]));
        let delivered = &all.deliveries()[0].0;
        assert_eq!(delivered.get("datacontenttype"), Some("application/json"));
    })
    .await;
}

#[tokio::test]
async fn a_subscriber_failing_twice_gets_the_event_three_times_and_it_is_acked_once() {
    with_temp_ns("retry", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let flaky =
            Subscriber::scripted(|_, nth| Answer::status(if nth <= 2 { 503 } else { 200 })).await;
        trigger(
            &client,
            &ns,
            "flaky",
            delivered_to(
                &flaky.url,
                DeliverySpec {
                    backoff_policy: Some(BackoffPolicy::Linear),
                    ..retries(5, "PT0.2S")
                },
            ),
        )
        .await;
        stack.send("r1", "t", "s", "{}").await;
        flaky
            .wait_for("three attempts", WAIT, |d| d.len() >= 3)
            .await;
        // Acked on the third attempt: no fourth delivery comes, even after the ack wait.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let statuses: Vec<u16> = flaky.deliveries().iter().map(|(_, s)| *s).collect();
        assert_eq!(statuses, [503, 503, 200]);
        let triggers: Api<Trigger> = Api::namespaced(client, &ns);
        herald_e2e::eventually("backlog reported 0", WAIT, || async {
            (field(&triggers.get("flaky").await.ok()?, "/status/backlog") == 0).then_some(())
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn an_event_that_always_fails_goes_to_the_dead_letter_sink_with_the_error() {
    with_temp_ns("dead-letter", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let broken = Subscriber::scripted(|_, _| Answer::status(500)).await;
        let dead_letters = Subscriber::accepting().await;
        let delivery = retries_then_dead_letter(2, "PT0.1S", &dead_letters.url);
        let t = trigger(&client, &ns, "broken", delivered_to(&broken.url, delivery)).await;
        assert_eq!(
            field(&t, "/status/deadLetterSinkUri"),
            dead_letters.url.as_str()
        );
        stack.send("d1", "t", "s", r#"{"x": 1}"#).await;
        dead_letters
            .wait_for("the event reaches the dead-letter sink", WAIT, |d| {
                !d.is_empty()
            })
            .await;
        assert_eq!(broken.deliveries().len(), 3, "one attempt and two retries");
        let (dead, _) = &dead_letters.deliveries()[0];
        assert_eq!(dead.id(), "d1");
        assert_eq!(dead.get("knativeerrorcode"), Some("500"));
        assert_eq!(dead.get("knativeerrordest"), Some(broken.url.as_str()));
        assert_eq!(dead.get("heraldattempts"), Some("3"));
        assert_eq!(
            dead.get("heraldtrigger"),
            Some(format!("{ns}/broken").as_str())
        );
        assert_eq!(dead.data.as_deref(), Some(&br#"{"x": 1}"#[..]));
    })
    .await;
}

/// Events dropped (retries used up, no dead-letter sink) are reported on the Trigger,
/// but as one Kubernetes Event per period rather than one per dropped event: a failing
/// subscriber must not turn into a flood on the shared apiserver.
#[tokio::test]
async fn dropped_events_are_reported_in_summaries_not_one_kubernetes_event_each() {
    with_temp_ns("dropped", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let broken = Subscriber::scripted(|_, _| Answer::status(500)).await;
        let never_retried = DeliverySpec {
            retry: Some(0),
            ..DeliverySpec::default()
        };
        trigger(
            &client,
            &ns,
            "broken",
            delivered_to(&broken.url, never_retried),
        )
        .await;
        for n in 0..100 {
            stack.send(&format!("x{n}"), "t", "s", "{}").await;
        }
        broken
            .wait_for("every event is tried once", WAIT, |d| d.len() >= 100)
            .await;
        let events: Api<Event> = Api::namespaced(client.clone(), &ns);
        // Each summary says how many it covers ("an event failed" or "N events failed").
        let reported = || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            let notes: Vec<String> = list
                .items
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some("EventDropped"))
                .filter_map(|e| e.message)
                .collect();
            let covered: u64 = notes
                .iter()
                .map(|n| {
                    n.split(' ')
                        .next()
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(1)
                })
                .sum();
            (covered >= 100).then_some(notes)
        };
        let notes = eventually("every drop is reported", WAIT, reported).await;
        assert!(
            notes.len() <= 3,
            "{} Events for 100 drops: {notes:?}",
            notes.len()
        );
        assert!(notes.iter().all(|n| n.contains("HTTP 500")), "{notes:?}");
    })
    .await;
}

#[tokio::test]
async fn a_reply_reaches_a_second_trigger() {
    with_temp_ns("reply", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let replier = Subscriber::scripted(|event, _| {
            let mut reply = CloudEvent::new(
                &format!("reply-to-{}", event.id()),
                "/replier",
                "order.validated",
            );
            reply.set("datacontenttype", "application/json");
            reply.data = Some(bytes::Bytes::from_static(b"{\"ok\":true}"));
            Answer {
                reply: Some(reply),
                ..Answer::status(200)
            }
        })
        .await;
        let downstream = Subscriber::accepting().await;
        trigger(
            &client,
            &ns,
            "validate",
            typed_to("order.created", &replier.url),
        )
        .await;
        trigger(
            &client,
            &ns,
            "after",
            typed_to("order.validated", &downstream.url),
        )
        .await;
        stack.send("o1", "order.created", "shop", "{}").await;
        downstream
            .wait_for("the reply arrives", WAIT, |d| !d.is_empty())
            .await;
        let (reply, _) = &downstream.deliveries()[0];
        assert_eq!(reply.id(), "reply-to-o1");
        assert_eq!(reply.source(), "/replier");
    })
    .await;
}

/// A subscriber that answers every event with one its own Trigger matches loops;
/// each reply lives one hop less than the event it answers (`knativebrokerttl`, 255
/// by default, as in Knative), so the loop ends after 255 deliveries.
#[tokio::test]
async fn a_reply_loop_ends_after_255_hops() {
    with_temp_ns("reply-loop", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        // Each reply a new id (one more character), so none is a duplicate.
        let looping = Subscriber::scripted(|event, _| Answer {
            reply: Some(CloudEvent::new(
                &format!("{}+", event.id()),
                "/loop",
                "loop.ping",
            )),
            ..Answer::status(200)
        })
        .await;
        trigger(&client, &ns, "loop", typed_to("loop.ping", &looping.url)).await;
        stack.send("l", "loop.ping", "shop", "{}").await;
        looping
            .wait_for("the loop runs its course", Duration::from_secs(120), |d| {
                d.len() >= 255
            })
            .await;
        // Nothing comes after the last hop.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let deliveries = looping.deliveries();
        assert_eq!(deliveries.len(), 255, "the loop did not stop at 255 hops");
        let last = &deliveries[254].0;
        assert_eq!(last.get("knativebrokerttl"), Some("1"));
    })
    .await;
}

#[tokio::test]
async fn ordered_delivery_keeps_stream_order_under_retries() {
    with_temp_ns("ordered", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        // The second event fails twice before it is accepted.
        let sub = Subscriber::scripted(|e, nth| {
            Answer::status(if e.id() == "o2" && nth <= 2 { 500 } else { 200 })
        })
        .await;
        trigger(
            &client,
            &ns,
            "ordered",
            delivered_to(
                &sub.url,
                DeliverySpec {
                    ordering: Some(Ordering::Ordered),
                    ..retries(5, "PT0.2S")
                },
            ),
        )
        .await;
        for i in 1..=5 {
            stack.send(&format!("o{i}"), "t", "s", "{}").await;
        }
        sub.wait_for("five events accepted", WAIT, |d| {
            d.iter().filter(|(_, s)| *s == 200).count() == 5
        })
        .await;
        assert_eq!(sub.accepted_ids(), ["o1", "o2", "o3", "o4", "o5"]);
        assert_eq!(
            sub.delivered_ids(),
            ["o1", "o2", "o2", "o2", "o3", "o4", "o5"],
            "nothing overtakes the failing event"
        );
    })
    .await;
}

#[tokio::test]
async fn a_trigger_starting_from_all_replays_history() {
    with_temp_ns("replay", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        for i in 1..=3 {
            stack.send(&format!("old{i}"), "t", "s", "{}").await;
        }
        let sub = Subscriber::accepting().await;
        trigger(
            &client,
            &ns,
            "replay",
            TriggerSpec {
                start_position: from_all(),
                ..to_uri(&sub.url)
            },
        )
        .await;
        let newcomer = Subscriber::accepting().await;
        trigger(&client, &ns, "new-only", to_uri(&newcomer.url)).await;
        stack.send("fresh", "t", "s", "{}").await;
        sub.wait_for("history and the new event", WAIT, |d| ids(d).len() == 4)
            .await;
        newcomer
            .wait_for("the new event", WAIT, |d| !d.is_empty())
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            ids(&newcomer.deliveries()),
            HashSet::from(["fresh".to_owned()]),
            "from: new skips history"
        );
    })
    .await;
}

#[tokio::test]
async fn killing_the_dispatcher_mid_run_loses_nothing() {
    with_temp_ns("dispatcher-kill", |client, ns| async move {
        let mut stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let sub = Subscriber::accepting().await;
        let delivery = DeliverySpec {
            timeout: Some("PT2S".to_owned()),
            ..DeliverySpec::default()
        };
        trigger(&client, &ns, "bulk", delivered_to(&sub.url, delivery)).await;
        let total = 10_000;
        let url = stack.broker_url();
        let sender = tokio::spawn(async move {
            for batch in 0..total / 100 {
                let events: Vec<String> = (0..100)
                    .map(|i| format!(r#"{{"specversion":"1.0","id":"k{}","source":"/bulk","type":"bulk.item","data":{{}}}}"#, batch * 100 + i))
                    .collect();
                let answer = herald_e2e::http::post(&url, &[("content-type", "application/cloudevents-batch+json")], format!("[{}]", events.join(","))).await;
                assert_eq!(answer.status, 202, "{}", answer.body);
            }
        });
        sub.wait_for("deliveries are under way", WAIT, |d| d.len() >= 1_000).await;
        stack.dispatcher.as_mut().unwrap().kill().await;
        let at_kill = ids(&sub.deliveries()).len();
        stack.start_dispatcher().await;
        sender.await.unwrap();
        sub.wait_for("every event delivered at least once", Duration::from_secs(120), |d| ids(d).len() == total).await;
        let deliveries = sub.deliveries().len();
        println!("killed after {at_kill} distinct events; {total} distinct delivered with {} duplicates", deliveries - total);
    })
    .await;
}

#[tokio::test]
async fn herald_tail_replays_and_filters_a_brokers_events() {
    with_temp_ns("tail", |client, ns| async move {
        let stack = Stack::without_dispatcher(client, &ns, &nats_url(), &[]).await;
        stack
            .send("t1", "order.created", "shop/eu", r#"{"n":1}"#)
            .await;
        stack
            .send("t2", "order.paid", "shop/us", r#"{"n":2}"#)
            .await;
        stack.send("t3", "order.created", "crm", r#"{"n":3}"#).await;
        let tail = |extra: &[&str]| {
            let broker = format!("{ns}/default");
            let nats = nats_url();
            let base = [
                "tail",
                &broker,
                "--from",
                "all",
                "--json",
                "--nats-url",
                &nats,
            ];
            herald_stdout(base.iter().chain(extra))
                .lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(tail(&["--count", "3"]), ["t1", "t2", "t3"]);
        assert_eq!(
            tail(&["--count", "2", "--type", "order.created"]),
            ["t1", "t3"]
        );
        assert_eq!(
            tail(&["--count", "1", "--filter", "source = 'shop/us'"]),
            ["t2"]
        );
        let missing = herald_e2e::process::herald_command()
            .args(["tail", &format!("{ns}/nope"), "--nats-url", &nats_url()])
            .output()
            .unwrap();
        assert_eq!(missing.status.code(), Some(2));
    })
    .await;
}

#[tokio::test]
async fn two_dispatchers_share_one_triggers_work() {
    with_temp_ns("two-dispatchers", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let second = stack.extra_dispatcher().await;
        // A slow subscriber, so that both dispatchers have deliveries in flight.
        let sub = Subscriber::scripted(|_, _| {
            std::thread::sleep(Duration::from_millis(5));
            Answer::status(200)
        })
        .await;
        trigger(
            &client,
            &ns,
            "shared",
            delivered_to(
                &sub.url,
                DeliverySpec {
                    max_in_flight: Some(4),
                    ..DeliverySpec::default()
                },
            ),
        )
        .await;
        for i in 0..200 {
            stack.send(&format!("s{i}"), "t", "s", "{}").await;
        }
        sub.wait_for("all 200 delivered", WAIT, |d| ids(d).len() == 200)
            .await;
        // Counted after the ack, a moment after the subscriber saw the event.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let first = stack.dispatcher.as_ref().unwrap().delivered().await;
        let other = second.delivered().await;
        println!("dispatcher 1 delivered {first}, dispatcher 2 delivered {other}");
        assert!(
            first > 0.0 && other > 0.0,
            "both dispatchers deliver: {first} and {other}"
        );
        assert!(first + other >= 200.0);
    })
    .await;
}

#[tokio::test]
async fn a_delivery_longer_than_the_ack_wait_is_not_redelivered_meanwhile() {
    with_temp_ns("slow-subscriber", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        // 14 s per answer: longer than the consumer's 10 s ack wait, within the timeout.
        let slow = Subscriber::scripted(|_, _| Answer::after(202, Duration::from_secs(14))).await;
        trigger(
            &client,
            &ns,
            "slow",
            delivered_to(
                &slow.url,
                DeliverySpec {
                    timeout: Some("20s".to_owned()),
                    ..DeliverySpec::default()
                },
            ),
        )
        .await;
        stack.send("slow-1", "slow.test", "/e2e", "{}").await;
        slow.wait_for("the first attempt", WAIT, |d| !d.is_empty())
            .await;
        // Without the dispatcher's progress acks JetStream would send it again at 10 s.
        tokio::time::sleep(Duration::from_secs(13)).await;
        assert_eq!(
            slow.count(),
            1,
            "redelivered while the first attempt still ran"
        );
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(slow.count(), 1, "redelivered after a successful answer");
    })
    .await;
}
