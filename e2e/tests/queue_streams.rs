//! A Broker's Trigger queues spread over several queue streams, each holding a bounded
//! number of Triggers (nats-server's work per acknowledgement grows with the consumers
//! of a stream): every Trigger still gets exactly its events wherever its queue is —
//! subscriber Triggers through the dispatcher, a consumer Deployment through its
//! sidecar and the autoscaler — a freed place is reused, and deleting the Broker
//! removes every queue stream.

use std::time::Duration;

use herald_api::{Trigger, TriggerSpec, naming};
use herald_e2e::manifests::{consumer, exact, scaling, to_consumer, to_uri};
use herald_e2e::pods::PodWatch;
use herald_e2e::stack::Stack;
use herald_e2e::subscriber::Subscriber;
use herald_e2e::{delete_and_await_gone, eventually, field, nats_url, with_temp_ns};
use kube::api::DeleteParams;
use kube::{Api, Client};

const WAIT: Duration = Duration::from_secs(60);

async fn ready_trigger(client: &Client, ns: &str, name: &str, spec: TriggerSpec) -> Trigger {
    herald_e2e::ready_trigger(client, ns, name, spec, WAIT).await
}

fn queue_of(trigger: &Trigger) -> (String, String) {
    let queue = trigger
        .status
        .as_ref()
        .and_then(|s| s.queue.clone())
        .expect("a Ready Trigger records its queue");
    (queue.stream, queue.subject)
}

/// Names of the JetStream streams whose name starts with `prefix`.
async fn streams_named(js: &async_nats::jetstream::Context, prefix: &str) -> Vec<String> {
    use futures::TryStreamExt;
    let names: Vec<String> = js.stream_names().try_collect().await.expect("stream names");
    names
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// `spec` for events of `source` only.
fn only_from(source: &str, spec: TriggerSpec) -> TriggerSpec {
    TriggerSpec {
        filters: vec![exact([("source", source)])],
        ..spec
    }
}

/// Triggers `t0`..`t3` to `subscribers` and `t4`, a consumer Deployment at zero, each
/// for events of source `/t<i>`; returns where their queues were placed.
async fn five_triggers(
    client: &Client,
    ns: &str,
    subscribers: &[Subscriber],
) -> Vec<(String, String)> {
    let mut placed = Vec::new();
    // One at a time, so each is placed after the one before is counted.
    for (i, subscriber) in subscribers.iter().enumerate() {
        let spec = only_from(&format!("/t{i}"), to_uri(&subscriber.url));
        placed.push(queue_of(
            &ready_trigger(client, ns, &format!("t{i}"), spec).await,
        ));
    }
    // The fifth is a consumer Deployment at zero, in the third stream.
    let consumer = ready_trigger(
        client,
        ns,
        "t4",
        only_from(
            "/t4",
            to_consumer(consumer(&["herald", "display", "--json"], scaling(0, 2))),
        ),
    )
    .await;
    placed.push(queue_of(&consumer));
    placed
}

#[tokio::test]
async fn queues_spread_over_bounded_streams_and_every_trigger_gets_its_events() {
    with_temp_ns("queue-shards", |client, ns| async move {
        // Two Triggers per queue stream, so five Triggers take three streams.
        let stack = Stack::start_with_operator_flags(
            client.clone(),
            &ns,
            &nats_url(),
            &["--triggers-per-queue-stream", "2"],
        )
        .await;
        let pods = PodWatch::start(client.clone(), &ns, "app.kubernetes.io/managed-by=herald");
        let subscribers = [
            Subscriber::accepting().await,
            Subscriber::accepting().await,
            Subscriber::accepting().await,
            Subscriber::accepting().await,
        ];
        let placed = five_triggers(&client, &ns, &subscribers).await;
        let expected: Vec<(String, String)> = (0..5u32)
            .map(|i| {
                let shard = i / 2;
                (
                    naming::queue_shard_stream_name(&ns, "default", shard),
                    naming::queue_shard_subject(&ns, "default", shard, &format!("t{i}")),
                )
            })
            .collect();
        assert_eq!(placed, expected, "two queues per stream, in order");

        for i in 0..5 {
            for n in 0..3 {
                stack
                    .send(
                        &format!("t{i}-{n}"),
                        "order.created",
                        &format!("/t{i}"),
                        "{}",
                    )
                    .await;
            }
        }
        for (i, subscriber) in subscribers.iter().enumerate() {
            subscriber
                .wait_for(&format!("t{i}'s three events"), WAIT, |d| d.len() >= 3)
                .await;
            let mut ids = subscriber.accepted_ids();
            ids.sort();
            assert_eq!(
                ids,
                (0..3).map(|n| format!("t{i}-{n}")).collect::<Vec<_>>(),
                "t{i} got exactly its own"
            );
        }
        eventually(
            "the consumer at zero wakes and its worker gets its events",
            WAIT,
            || async {
                let lines = pods.lines().await;
                (0..3)
                    .all(|n| {
                        let id = format!("t4-{n}");
                        lines.iter().any(|l| l.text.contains(&id))
                    })
                    .then_some(())
            },
        )
        .await;
        assert!(
            pods.first_line_with("\"t0-").await.is_none(),
            "the consumer got another Trigger's event"
        );

        // A freed place is taken by the next queue; the other queues stay where they are.
        let triggers: Api<Trigger> = Api::namespaced(client.clone(), &ns);
        delete_and_await_gone(&triggers, "t1", WAIT).await;
        let late = Subscriber::accepting().await;
        let t5 = ready_trigger(&client, &ns, "t5", only_from("/t5", to_uri(&late.url))).await;
        assert_eq!(
            queue_of(&t5).0,
            naming::queue_shard_stream_name(&ns, "default", 0)
        );
        stack.send("t5-0", "order.created", "/t5", "{}").await;
        late.wait_for("t5's event", WAIT, |d| !d.is_empty()).await;
        assert_eq!(field(&t5, "/status/queue/broker"), "default");

        // The Broker takes all of its queue streams with it.
        let js = async_nats::jetstream::new(async_nats::connect(nats_url()).await.expect("NATS"));
        let prefix = naming::queue_stream_name(&ns, "default");
        assert_eq!(streams_named(&js, &prefix).await.len(), 3);
        stack
            .brokers
            .delete("default", &DeleteParams::default())
            .await
            .expect("delete the Broker");
        eventually("every queue stream of the Broker is gone", WAIT, || async {
            streams_named(&js, &prefix).await.is_empty().then_some(())
        })
        .await;
    })
    .await;
}
