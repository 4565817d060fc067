//! Where EventSources send: a sink binding injects the Broker's address into the
//! user's Deployments and follows it when it moves; a Broker that requires a token
//! gets one of the adapter's ServiceAccount, and only for the source's own namespace.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_api::{BrokerSpec, EventSource, TriggerSpec};
use herald_e2e::kubectl::{self, example};
use herald_e2e::manifests::{
    apply, broker_with, container, pod_of, service_account, service_account_auth, to_uri,
};
use herald_e2e::process::Sources;
use herald_e2e::stack::Stack;
use herald_e2e::subscriber::Subscriber;
use herald_e2e::{await_ready, nats_url, with_temp_ns};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{Container, EnvVar};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::ObjectMeta;
use kube::{Api, Client};

const WAIT: Duration = Duration::from_secs(30);

/// Broker `guarded` only ServiceAccount `herald-sources` (the adapter's) may send to,
/// and Trigger `ticks` from it to the subscriber returned, Ready.
async fn guarded_broker_and_trigger(client: &Client, ns: &str) -> Subscriber {
    apply(client, ns, &service_account("herald-sources")).await;
    let subscriber = Subscriber::accepting().await;
    let spec = BrokerSpec {
        auth: Some(service_account_auth(&[(ns, "herald-sources")])),
        ..BrokerSpec::default()
    };
    apply(client, ns, &broker_with("guarded", spec)).await;
    let ticks = TriggerSpec {
        broker: "guarded".to_owned(),
        ..to_uri(&subscriber.url)
    };
    herald_e2e::ready_trigger(client, ns, "ticks", ticks, WAIT).await;
    subscriber
}

/// A Deployment at zero replicas labelled `app: order-producer` (what the example's
/// sink binding selects) whose container has a variable of its own.
fn producer(name: &str) -> Deployment {
    let labels = |k: &str, v: &str| Some(BTreeMap::from([(k.to_owned(), v.to_owned())]));
    let mut template = pod_of(Container {
        env: Some(vec![EnvVar {
            name: "OWN".to_owned(),
            value: Some("kept".to_owned()),
            ..EnvVar::default()
        }]),
        ..container("app", "producer:1", &[])
    });
    template.metadata = Some(ObjectMeta {
        labels: labels("run", name),
        ..ObjectMeta::default()
    });
    Deployment {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: labels("app", "order-producer"),
            ..ObjectMeta::default()
        },
        spec: DeploymentSpec {
            replicas: Some(0),
            selector: LabelSelector {
                match_labels: labels("run", name),
                ..LabelSelector::default()
            },
            template,
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

async fn source_ready(client: &Client, ns: &str, name: &str) -> EventSource {
    let sources: Api<EventSource> = Api::namespaced(client.clone(), ns);
    await_ready(&sources, name, WAIT).await
}

fn env_of(deployment: &k8s_openapi::api::apps::v1::Deployment, var: &str) -> Option<String> {
    deployment.spec.template.spec.as_ref()?.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == var)?
        .value
        .clone()
}

#[tokio::test]
async fn sink_binding_injects_and_follows_the_broker_address() {
    use herald_e2e::eventually;
    use herald_e2e::process::Operator;
    with_temp_ns("binding", |client, ns| async move {
        let mut stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        apply(&client, &ns, &producer("producer-a")).await;
        kubectl::apply(
            &ns,
            &std::fs::read_to_string(example("sink-binding.yaml")).expect("example"),
        );
        source_ready(&client, &ns, "order-producers").await;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let broker_url = stack.broker_address();
        let sink_of = |name: &'static str| {
            let deployments = deployments.clone();
            async move {
                deployments
                    .get(name)
                    .await
                    .ok()
                    .and_then(|d| env_of(&d, "K_SINK"))
            }
        };
        eventually("K_SINK injected", WAIT, || async {
            (sink_of("producer-a").await == Some(broker_url.clone())).then_some(())
        })
        .await;
        let a = deployments.get("producer-a").await.expect("deployment");
        assert_eq!(
            env_of(&a, "OWN").as_deref(),
            Some("kept"),
            "the user's own variables stay"
        );
        assert_eq!(
            env_of(&a, "K_CE_OVERRIDES").as_deref(),
            Some(r#"{"extensions":{"team":"shop"}}"#)
        );

        // A Deployment created later is bound too.
        apply(&client, &ns, &producer("producer-b")).await;
        eventually("a new Deployment is bound", WAIT, || async {
            (sink_of("producer-b").await == Some(broker_url.clone())).then_some(())
        })
        .await;

        // The Broker's address changes (a new operator serves another ingress URL).
        stack.operator.kill().await;
        let _second =
            Operator::start_with_ingress(&ns, &nats_url(), "second", "http://moved.test").await;
        let moved = format!("http://moved.test/{ns}/default");
        eventually(
            "K_SINK follows the Broker's address",
            Duration::from_secs(60),
            || async { (sink_of("producer-a").await == Some(moved.clone())).then_some(()) },
        )
        .await;

        // Deleting the EventSource takes back exactly what Herald added.
        let sources: Api<EventSource> = Api::namespaced(client.clone(), &ns);
        sources
            .delete("order-producers", &kube::api::DeleteParams::default())
            .await
            .expect("delete");
        eventually("K_SINK removed", WAIT, || async {
            sink_of("producer-a").await.is_none().then_some(())
        })
        .await;
        let a = deployments.get("producer-a").await.expect("deployment");
        assert_eq!(env_of(&a, "OWN").as_deref(), Some("kept"));
        assert_eq!(env_of(&a, "K_CE_OVERRIDES"), None);
    })
    .await;
}

#[tokio::test]
async fn a_source_sends_to_a_broker_that_requires_a_token() {
    with_temp_ns("cron-auth", |client, ns| async move {
        let _stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        // A Broker only the adapter's ServiceAccount may send to.
        let subscriber = guarded_broker_and_trigger(&client, &ns).await;
        let account = format!("{ns}/herald-sources");
        let _adapter =
            Sources::start_with(&ns, &nats_url(), &["--token-service-account", &account]).await;
        kubectl::apply(
            &ns,
            &std::fs::read_to_string(example("cron-source.yaml"))
                .expect("example")
                .replace("name: default}", "name: guarded}"),
        );
        source_ready(&client, &ns, "heartbeat").await;
        // The first send gets 401 with a Bearer challenge; the adapter answers with a
        // token of its ServiceAccount for the Broker's URL, which the ingress accepts.
        subscriber
            .wait_for("ticks reach the guarded Broker", WAIT, |d| d.len() >= 2)
            .await;
    })
    .await;
}

#[tokio::test]
async fn a_source_cannot_lend_the_adapter_s_token_to_another_namespace_s_broker() {
    with_temp_ns("cron-xns", |client, victim| async move {
        use herald_e2e::process::{Dispatcher, Ingress, Operator};
        use k8s_openapi::api::core::v1::Namespace;
        let attacker = format!("{victim}-x");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let mut object = Namespace::default();
        object.metadata.name = Some(attacker.clone());
        namespaces
            .create(&kube::api::PostParams::default(), &object)
            .await
            .expect("namespace");
        let watched = format!("{victim},{attacker}");
        let ingress = Ingress::start(&watched, &nats_url()).await;
        let _operator =
            Operator::start_with_ingress(&watched, &nats_url(), "solo", &ingress.url()).await;
        let _dispatcher = Dispatcher::start(&watched, &nats_url()).await;
        // The victim's Broker lets the shared adapter in (for the victim's own sources).
        let subscriber = guarded_broker_and_trigger(&client, &victim).await;
        let brokers: Api<herald_api::Broker> = Api::namespaced(client.clone(), &victim);
        let guarded = brokers.get("guarded").await.expect("Broker");
        let url = guarded
            .status
            .and_then(|s| s.address)
            .map(|a| a.url)
            .expect("address");
        let account = format!("{victim}/herald-sources");
        let _adapter = Sources::start_with(
            &watched,
            &nats_url(),
            &["--token-service-account", &account],
        )
        .await;
        let cron = std::fs::read_to_string(example("cron-source.yaml")).expect("example");
        // The attacker names the victim's Broker by its address; the victim's own
        // source sends to it too (so the adapter already presents tokens there).
        kubectl::apply(
            &attacker,
            &cron.replace(
                "ref: {kind: Broker, name: default}",
                &format!("uri: \"{url}\""),
            ),
        );
        kubectl::apply(&victim, &cron.replace("name: default}", "name: guarded}"));
        source_ready(&client, &victim, "heartbeat").await;
        source_ready(&client, &attacker, "heartbeat").await;
        subscriber
            .wait_for("the victim's own ticks", WAIT, |d| {
                d.iter()
                    .filter(|(e, _)| {
                        e.source().contains(&victim) && !e.source().contains(&attacker)
                    })
                    .count()
                    >= 3
            })
            .await;
        let smuggled = subscriber
            .deliveries()
            .iter()
            .filter(|(e, _)| e.source().contains(&attacker))
            .count();
        assert_eq!(
            smuggled, 0,
            "the attacker's source got into the victim's Broker with the adapter's token"
        );
        let _ = namespaces
            .delete(&attacker, &kube::api::DeleteParams::background())
            .await;
    })
    .await;
}
