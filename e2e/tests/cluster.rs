//! Herald on a 3-node JetStream cluster: every component gets all three URLs, a
//! Broker with `replicas: 3` gets an R3 stream, a replica count the cluster cannot
//! place is explained, and events keep flowing when the stream's leader node dies.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use herald_api::conditions::ConditionStatus::True;
use herald_api::naming;
use herald_api::{Broker, TriggerSpec};
use herald_e2e::http::post;
use herald_e2e::manifests::{apply, replicated_broker, to_uri, trigger};
use herald_e2e::process::NatsCluster;
use herald_e2e::stack::Stack;
use herald_e2e::subscriber::Subscriber;
use herald_e2e::{
    await_condition, await_not_ready, await_ready, field, has_condition, with_temp_ns,
};
use kube::Api;

const WAIT: Duration = Duration::from_secs(60);

/// Sends one event, retrying 503s and connection errors with the same id, as the docs
/// tell producers to; returns how many attempts it took.
async fn send_retrying(url: &str, id: &str) -> u32 {
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let answer = post(
            url,
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", id),
                ("ce-type", "com.example.cluster"),
                ("ce-source", "e2e"),
            ],
            "{}",
        )
        .await;
        if answer.status == 202 {
            return attempts;
        }
        assert!(
            answer.status == 503 || answer.status == 0,
            "unexpected answer {}: {}",
            answer.status,
            answer.body
        );
        assert!(
            started.elapsed() < WAIT,
            "event {id} not accepted within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn r3_brokers_survive_the_loss_of_the_stream_leader() {
    with_temp_ns("cluster", |client, ns| async move {
        let mut cluster = NatsCluster::start(&format!("c{}", std::process::id())).await;
        let stack = Stack::start(client.clone(), &ns, &cluster.url()).await;
        let brokers: Api<Broker> = Api::namespaced(client.clone(), &ns);
        apply(&client, &ns, &replicated_broker("r3", 3)).await;
        await_ready(&brokers, "r3", WAIT).await;
        let nats = async_nats::connect(cluster.addrs()).await.expect("connect");
        let js = async_nats::jetstream::new(nats);
        let stream_name = naming::stream_name(&ns, "r3");
        let mut stream = js.get_stream(&stream_name).await.expect("the R3 stream");
        let info = stream.info().await.expect("stream info").clone();
        assert_eq!(info.config.num_replicas, 3);
        let placement = info.cluster.expect("cluster info");
        assert_eq!(placement.replicas.len(), 2, "a leader and two followers: {placement:?}");

        // More replicas than nodes: explained, not retried forever in silence.
        apply(&client, &ns, &replicated_broker("r5", 5)).await;
        let r5 = await_not_ready(&brokers, "r5", "ReplicasUnplaceable", WAIT)
        .await;
        println!("replicas 5 on 3 nodes: {}", field(&r5, "/status/conditions"));
        assert!(field(&r5, "/status/conditions").to_string().contains("lower spec.stream.replicas"));

        // Deliver through R3, kill the stream leader, deliver more.
        let subscriber = Subscriber::accepting().await;
        let on_r3 = TriggerSpec {
            broker: "r3".to_owned(),
            ..to_uri(&subscriber.url)
        };
        apply(&client, &ns, &trigger("t", on_r3)).await;
        await_condition(
            &Api::<herald_api::Trigger>::namespaced(client.clone(), &ns),
            "t",
            WAIT,
            has_condition("Ready", True, None),
        )
        .await;
        let url = format!("{}/{ns}/r3", stack.ingress.url());
        // The ingress learns of r3 through its watch: the first send may see 503.
        for n in 0..50 {
            send_retrying(&url, &format!("before-{n}")).await;
        }
        let leader = placement.leader.clone().expect("a leader");
        let node = cluster
            .nodes
            .iter_mut()
            .find(|n| Some(n.name.as_str()) == Some(leader.as_str()))
            .expect("the leader is one of ours");
        node.kill().await;
        let killed_at = Instant::now();
        let mut retried = 0;
        for n in 0..50 {
            retried += send_retrying(&url, &format!("after-{n}")).await - 1;
        }
        println!(
            "stream leader {leader} killed: 50 more events accepted in {:?} ({retried} retried sends)",
            killed_at.elapsed()
        );
        subscriber
            .wait_for("all 100 events delivered", WAIT, |d| {
                d.iter().map(|(e, _)| e.id().to_owned()).collect::<HashSet<_>>().len() == 100
            })
            .await;
    })
    .await;
}
