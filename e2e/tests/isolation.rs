//! Brokers keep their events to themselves, whatever names and types users write:
//! a Broker named `a.b` next to a Broker `a` that receives type `b.x` (the same NATS
//! subject if names were joined naively), and event types or Trigger filters made of
//! NATS wildcards (`>`, `*`) that must match only themselves. A Trigger names its
//! Broker without a namespace, so it cannot reach another namespace's Broker at all.

use std::collections::BTreeSet;
use std::time::Duration;

use herald_api::{Trigger, TriggerSpec};
use herald_e2e::http::post;
use herald_e2e::manifests::{apply, attributes, broker, to_uri, trigger};
use herald_e2e::stack::Stack;
use herald_e2e::subscriber::Subscriber;
use herald_e2e::{await_ready, eventually, nats_url, with_temp_ns};
use kube::Api;

const WAIT: Duration = Duration::from_secs(30);

async fn send(ingress: &str, ns: &str, broker: &str, id: &str, type_: &str) {
    let answer = post(
        &format!("{ingress}/{ns}/{broker}"),
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", id),
            ("ce-type", type_),
            ("ce-source", "/isolation"),
            ("content-type", "application/json"),
        ],
        "{}",
    )
    .await;
    assert_eq!(answer.status, 202, "{broker} {id}: {}", answer.body);
}

fn received(subscriber: &Subscriber) -> BTreeSet<String> {
    subscriber.delivered_ids().into_iter().collect()
}

#[tokio::test]
async fn look_alike_names_and_wildcard_types_stay_apart() {
    with_temp_ns("isolation", |client, ns| async move {
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let (dotted, wildcard, everything_a) = (
            Subscriber::accepting().await,
            Subscriber::accepting().await,
            Subscriber::accepting().await,
        );
        for name in ["a", "a.b"] {
            apply(&client, &ns, &broker(name)).await;
        }
        let on = |broker: &str, spec: TriggerSpec| TriggerSpec {
            broker: broker.to_owned(),
            ..spec
        };
        let wildcard_type = TriggerSpec {
            filter: attributes([("type", ">")]),
            ..to_uri(&wildcard.url)
        };
        for (name, spec) in [
            ("on-a-b", on("a.b", to_uri(&dotted.url))),
            ("on-a-wildcard", on("a", wildcard_type)),
            ("on-a", on("a", to_uri(&everything_a.url))),
        ] {
            apply(&client, &ns, &trigger(name, spec)).await;
        }
        let triggers: Api<Trigger> = Api::namespaced(client.clone(), &ns);
        for name in ["on-a-b", "on-a-wildcard", "on-a"] {
            await_ready(&triggers, name, WAIT).await;
        }
        let dotted_broker = stack.brokers.get_status("a.b").await.unwrap();
        assert_eq!(
            dotted_broker.status.unwrap().subjects,
            vec![format!("herald.{ns}.a_b.>")],
            "a dot in a Broker name must not split the subject"
        );

        let ingress = stack.ingress.url();
        for url in [format!("{ingress}/{ns}/a"), format!("{ingress}/{ns}/a.b")] {
            eventually("the ingress serves the Broker", WAIT, || async {
                (post(&url, &[("ce-specversion", "1.0")], "").await.status == 400).then_some(())
            })
            .await;
        }
        send(&ingress, &ns, "a", "a-b.x", "b.x").await;
        send(&ingress, &ns, "a", "a->", ">").await;
        send(&ingress, &ns, "a", "a-*", "*").await;
        send(&ingress, &ns, "a", "a-b.>", "b.>").await;
        send(&ingress, &ns, "a.b", "ab-x", "x").await;

        everything_a
            .wait_for("Broker a's catch-all Trigger gets all four", WAIT, |d| {
                d.len() >= 4
            })
            .await;
        dotted
            .wait_for("Broker a.b's Trigger gets its event", WAIT, |d| {
                !d.is_empty()
            })
            .await;
        wildcard
            .wait_for("the `>` filter gets the `>` event", WAIT, |d| !d.is_empty())
            .await;
        // Give strays time to arrive before asserting none did.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(received(&dotted), BTreeSet::from(["ab-x".to_owned()]));
        assert_eq!(received(&wildcard), BTreeSet::from(["a->".to_owned()]));
        assert_eq!(
            received(&everything_a),
            ["a-b.x", "a->", "a-*", "a-b.>"].map(str::to_owned).into()
        );
    })
    .await;
}
