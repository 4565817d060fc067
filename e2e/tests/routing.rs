//! Routing, end to end: each event is matched once against all of a Broker's Triggers
//! and copied into the queue of each Trigger that wants it. What the queues promise:
//! a consumer at zero stays at zero while its Broker carries only events it does not
//! match; a Trigger created `from: all` gets the matching history and then the live
//! events, nothing missed or doubled at the seam; a filter change applies from the
//! change on; a standby router takes over from a killed one without losing anything;
//! a queue consumer lost by nats-server is restored and delivers what was queued.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use herald_api::common::Ordering;
use herald_api::trigger::ScalingSpec;
use herald_api::{DeliverySpec, Trigger, TriggerSpec};
use herald_e2e::manifests::{
    consumer, exact, from_all, pattern, prefix, scaling, to_consumer, to_uri,
};
use herald_e2e::pods::PodWatch;
use herald_e2e::process::Dispatcher;
use herald_e2e::stack::Stack;
use herald_e2e::subscriber::Subscriber;
use herald_e2e::{eventually, field, nats_url, with_temp_ns};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

async fn ready_trigger(client: &Client, ns: &str, name: &str, spec: TriggerSpec) -> Trigger {
    herald_e2e::ready_trigger(client, ns, name, spec, WAIT).await
}

/// Sends `ids` as one batch of events with `source` and data `{"amount": amount}`.
async fn send_batch(stack: &Stack, ids: &[String], source: &str, amount: u32) {
    for chunk in ids.chunks(100) {
        let batch: Vec<_> = chunk
            .iter()
            .map(|id| serde_json::json!({"specversion": "1.0", "id": id, "type": "order.created", "source": source, "datacontenttype": "application/json", "data": {"amount": amount}}))
            .collect();
        stack.send_batch(&batch).await;
    }
}

/// An ordered Trigger delivering to `url`.
fn ordered_to(url: &str) -> TriggerSpec {
    TriggerSpec {
        delivery: Some(DeliverySpec {
            ordering: Some(Ordering::Ordered),
            ..DeliverySpec::default()
        }),
        ..to_uri(url)
    }
}

/// The ids `subscriber` accepted, each at its first delivery (at least once: an event
/// in flight at a kill may come again).
fn first_deliveries(subscriber: &Subscriber) -> Vec<String> {
    let mut seen = HashSet::new();
    subscriber
        .accepted_ids()
        .into_iter()
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

fn ids(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|n| format!("{prefix}-{n}")).collect()
}

#[tokio::test]
async fn a_consumer_at_zero_stays_at_zero_for_events_it_does_not_match() {
    with_temp_ns("route-zero", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let pods = PodWatch::start(client.clone(), &ns, "app.kubernetes.io/managed-by=herald");
        let trigger = ready_trigger(
            &client,
            &ns,
            "wanted",
            TriggerSpec {
                filters: vec![prefix([("source", "/wanted/")])],
                ..to_consumer(consumer(
                    &["herald", "display", "--json"],
                    ScalingSpec {
                        target_backlog_per_replica: Some(10),
                        ..scaling(0, 5)
                    },
                ))
            },
        )
        .await;
        assert_eq!(
            field(&trigger, "/status/queue/subject"),
            format!("heraldq.{ns}.default.wanted").as_str()
        );
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let replicas = || async {
            deployments
                .get_scale("wanted-consumer")
                .await
                .ok()
                .and_then(|s| s.spec?.replicas)
                .unwrap_or(0)
        };
        send_batch(&stack, &ids("other", 300), "/other/", 1).await;
        // Several autoscaler polls and routing rounds: nothing may wake the consumer.
        let triggers: Api<Trigger> = Api::namespaced(client.clone(), &ns);
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(replicas().await, 0, "woken by events its filter drops");
        }
        let t = triggers.get("wanted").await.expect("trigger");
        assert!(
            matches!(field(&t, "/status/backlog").as_i64(), None | Some(0)),
            "backlog counts unwanted events: {}",
            field(&t, "/status/backlog")
        );
        // The first event it wants wakes it and is delivered.
        send_batch(&stack, &["wanted-0".to_owned()], "/wanted/shop", 1).await;
        eventually("the consumer scales up", WAIT, || async {
            (replicas().await >= 1).then_some(())
        })
        .await;
        eventually("the wanted event reaches the worker", WAIT, || async {
            pods.first_line_with("wanted-0").await.map(|_| ())
        })
        .await;
        assert!(
            pods.first_line_with("other-").await.is_none(),
            "an unwanted event was delivered"
        );
    })
    .await;
}

#[tokio::test]
async fn from_all_with_a_content_filter_backfills_then_goes_live() {
    with_temp_ns("route-backfill", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let subscriber = Subscriber::accepting().await;
        // History: big and small orders, before the Trigger exists.
        send_batch(&stack, &ids("old-big", 40), "/shop", 500).await;
        send_batch(&stack, &ids("old-small", 40), "/shop", 5).await;
        let trigger = ready_trigger(
            &client,
            &ns,
            "big",
            TriggerSpec {
                start_position: from_all(),
                filters: vec![pattern(
                    json!({"data": {"amount": [{"numeric": [">", 100]}]}}),
                )],
                ..to_uri(&subscriber.url)
            },
        )
        .await;
        assert!(
            field(&trigger, "/status/queue/routedAfter")
                .as_u64()
                .unwrap_or(0)
                >= 80
        );
        // Live events right after Ready: the seam.
        send_batch(&stack, &ids("new-big", 40), "/shop", 900).await;
        send_batch(&stack, &ids("new-small", 40), "/shop", 1).await;
        subscriber
            .wait_for("history and live big orders", WAIT, |d| d.len() >= 80)
            .await;
        // Anything doubled or late would show now.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let got = subscriber.accepted_ids();
        let unique: BTreeSet<&String> = got.iter().collect();
        assert_eq!(unique.len(), got.len(), "an event was delivered twice");
        let want: BTreeSet<String> = ids("old-big", 40)
            .into_iter()
            .chain(ids("new-big", 40))
            .collect();
        assert_eq!(unique.into_iter().cloned().collect::<BTreeSet<_>>(), want);
        // The backfill is done and gone.
        let triggers: Api<Trigger> = Api::namespaced(client.clone(), &ns);
        eventually("the backfill completes", WAIT, || async {
            let t = triggers.get("big").await.ok()?;
            (field(&t, "/status/queue/backfilling") == false).then_some(())
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_filter_change_applies_from_the_change_on() {
    with_temp_ns("route-change", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let subscriber = Subscriber::accepting().await;
        let spec = TriggerSpec {
            filters: vec![exact([("source", "/a")])],
            ..to_uri(&subscriber.url)
        };
        ready_trigger(&client, &ns, "t", spec).await;
        send_batch(&stack, &["a-0".to_owned()], "/a", 1).await;
        subscriber.wait_for("a-0", WAIT, |d| !d.is_empty()).await;
        let triggers: Api<Trigger> = Api::namespaced(client.clone(), &ns);
        triggers
            .patch(
                "t",
                &PatchParams::default(),
                &Patch::Merge(
                    serde_json::json!({"spec": {"filters": [{"exact": {"source": "/b"}}]}}),
                ),
            )
            .await
            .expect("patch");
        // Probe until the new filter is in effect everywhere.
        let mut probe = 0;
        eventually("the new filter applies", WAIT, || {
            probe += 1;
            let id = format!("b-probe-{probe}");
            let (stack, subscriber) = (&stack, &subscriber);
            async move {
                send_batch(stack, std::slice::from_ref(&id), "/b", 1).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
                subscriber.accepted_ids().contains(&id).then_some(())
            }
        })
        .await;
        send_batch(&stack, &["a-late".to_owned()], "/a", 1).await;
        send_batch(&stack, &["b-late".to_owned()], "/b", 1).await;
        subscriber
            .wait_for("b-late", WAIT, |d| {
                d.iter().any(|(e, _)| e.id() == "b-late")
            })
            .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !subscriber.accepted_ids().contains(&"a-late".to_owned()),
            "the old filter still applies"
        );
    })
    .await;
}

#[tokio::test]
async fn a_standby_router_takes_over_from_a_killed_one_and_nothing_is_lost() {
    with_temp_ns("route-failover", |client, ns| async move {
        let mut stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let mut standby = Dispatcher::start(&ns, &nats_url()).await;
        let subscriber = Subscriber::accepting().await;
        ready_trigger(
            &client,
            &ns,
            "all",
            TriggerSpec {
                filters: vec![prefix([("source", "/shop")])],
                ..to_uri(&subscriber.url)
            },
        )
        .await;
        let first = ids("before", 200);
        send_batch(&stack, &first, "/shop", 1).await;
        subscriber
            .wait_for("the first events", WAIT, |d| d.len() >= 200)
            .await;
        // Kill whichever routes; the other takes the pin over.
        stack.dispatcher.as_mut().expect("dispatcher").kill().await;
        let second = ids("after", 200);
        send_batch(&stack, &second, "/shop", 1).await;
        subscriber
            .wait_for("every event", WAIT, |d| {
                let got: HashSet<&str> = d.iter().map(|(e, _)| e.id()).collect();
                first
                    .iter()
                    .chain(&second)
                    .all(|id| got.contains(id.as_str()))
            })
            .await;
        // And the standby, now alone, keeps going after the first one is gone for good.
        standby.kill().await;
        stack.start_dispatcher().await;
        send_batch(&stack, &["last".to_owned()], "/shop", 1).await;
        subscriber
            .wait_for("routing resumes", WAIT, |d| {
                d.iter().any(|(e, _)| e.id() == "last")
            })
            .await;
    })
    .await;
}

#[tokio::test]
async fn a_lost_queue_consumer_is_restored_with_its_seam_and_delivers_what_was_queued() {
    with_temp_ns("route-restore", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let subscriber = Subscriber::accepting().await;
        let before = ready_trigger(&client, &ns, "t", to_uri(&subscriber.url)).await;
        send_batch(&stack, &["first".to_owned()], "/a", 1).await;
        subscriber.wait_for("first", WAIT, |d| !d.is_empty()).await;

        // The queue consumer's state is kept in memory: a nats-server that loses it
        // (a restarted cluster) is played by deleting it behind the operator's back.
        let js = async_nats::jetstream::new(async_nats::connect(nats_url()).await.expect("NATS"));
        let queue_stream = herald_api::naming::queue_stream_name(&ns, "default");
        // The subscriber answers before the dispatcher acks: wait for the ack to land.
        let durable = herald_api::naming::consumer_name("t");
        herald_e2e::nats::await_consumer_drained(&js, &queue_stream, &durable, WAIT).await;
        js.get_stream(&queue_stream)
            .await
            .expect("queue stream")
            .delete_consumer(&durable)
            .await
            .expect("delete the queue consumer");
        // Routed while the consumer is gone: the work queue keeps them.
        let queued: Vec<String> = (0..20).map(|i| format!("queued-{i}")).collect();
        send_batch(&stack, &queued, "/a", 1).await;

        // The operator finds the consumer gone at its next reconcile (a NATS
        // reconnection, or here a change of the Trigger's labels).
        let triggers: Api<Trigger> = Api::namespaced(client.clone(), &ns);
        triggers
            .patch(
                "t",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"metadata": {"labels": {"poke": "1"}}})),
            )
            .await
            .expect("label the Trigger");
        subscriber
            .wait_for(
                "every event queued while the consumer was gone",
                WAIT,
                |d| {
                    let ids: HashSet<&str> = d.iter().map(|(e, _)| e.id()).collect();
                    queued.iter().all(|id| ids.contains(id.as_str()))
                },
            )
            .await;
        let after = triggers.get("t").await.expect("Trigger");
        let seam = |t: &Trigger| {
            t.status
                .as_ref()
                .and_then(|s| s.queue.as_ref())
                .map(|q| q.routed_after)
        };
        assert_eq!(
            seam(&after),
            seam(&before),
            "the restored queue kept its seam"
        );
        let firsts = subscriber
            .accepted_ids()
            .iter()
            .filter(|id| *id == "first")
            .count();
        assert_eq!(firsts, 1, "an event acknowledged before the loss came back");
    })
    .await;
}

#[tokio::test]
async fn an_ordered_trigger_keeps_broker_order_across_two_dispatchers_and_a_failover() {
    with_temp_ns("route-ordered", |client, ns| async move {
        let mut stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let _second = Dispatcher::start(&ns, &nats_url()).await;
        let subscriber = Subscriber::accepting().await;
        ready_trigger(&client, &ns, "ordered", ordered_to(&subscriber.url)).await;
        // Batches: each is stored in order, and two routers pulling the same Broker
        // would take neighbouring parts of it at the same moment.
        let sent = ids("e", 600);
        for chunk in sent[..300].chunks(100) {
            send_batch(&stack, chunk, "/shop", 1).await;
        }
        subscriber
            .wait_for("the first half", WAIT, |d| d.len() >= 150)
            .await;
        // Kill one of the two (whichever routes or not) in the middle of it all.
        stack.dispatcher.as_mut().expect("dispatcher").kill().await;
        for chunk in sent[300..].chunks(100) {
            send_batch(&stack, chunk, "/shop", 1).await;
        }
        subscriber
            .wait_for("every event", WAIT, |d| {
                let got: HashSet<&str> = d.iter().map(|(e, _)| e.id()).collect();
                sent.iter().all(|id| got.contains(id.as_str()))
            })
            .await;
        // At least once: an event in flight at the kill may come again, but the first
        // delivery of each is in Broker order.
        let firsts = first_deliveries(&subscriber);
        assert_eq!(firsts, sent, "deliveries out of Broker order");
    })
    .await;
}

#[tokio::test]
async fn an_ordered_trigger_created_while_events_flow_gets_them_in_broker_order() {
    with_temp_ns("route-late", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let _second = Dispatcher::start(&ns, &nats_url()).await;
        let subscriber = Subscriber::accepting().await;
        let sent = ids("e", 1000);
        // The Trigger arrives while the router is busy: the events stored before the
        // router knows it (past its seam) are owed to it, and must reach its queue
        // before anything routed after. The second half goes only once the Trigger is
        // Ready, so some events surely come after its seam however slow the operator.
        let (during, after) = sent.split_at(500);
        let sending = async {
            for chunk in during.chunks(25) {
                send_batch(&stack, chunk, "/shop", 1).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let creating = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            ready_trigger(&client, &ns, "late", ordered_to(&subscriber.url)).await
        };
        tokio::join!(sending, creating);
        for chunk in after.chunks(25) {
            send_batch(&stack, chunk, "/shop", 1).await;
        }
        subscriber
            .wait_for("the last event", WAIT, |d| {
                d.iter().any(|(e, _)| e.id() == "e-999")
            })
            .await;
        let firsts = first_deliveries(&subscriber);
        let from = sent
            .iter()
            .position(|id| Some(id) == firsts.first())
            .expect("the first delivery is a sent event");
        assert!(
            from <= 500,
            "the Trigger missed events sent after it was Ready"
        );
        assert_eq!(
            firsts,
            sent[from..],
            "everything past the seam, in Broker order"
        );
    })
    .await;
}
