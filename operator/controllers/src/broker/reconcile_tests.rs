//! The Broker reconcile against a mocked apiserver: the I/O around the pure
//! `build_status`, in the order the apiserver sees it.

use std::sync::Arc;

use herald_api::{BROKER_FINALIZER, Broker, BrokerSpec};

use crate::error::Error;
use crate::fixtures;
use crate::reconcile::{self, Reconciled};

fn broker() -> Broker {
    let mut b = Broker::new("default", BrokerSpec::default());
    b.metadata.namespace = Some("team".into());
    b.metadata.generation = Some(2);
    b.metadata.resource_version = Some("1".into());
    b.metadata.finalizers = Some(vec![BROKER_FINALIZER.into()]);
    b
}

/// The Broker as the apiserver returns it after a change.
fn answer(change: impl FnOnce(&mut serde_json::Value)) -> serde_json::Value {
    let mut broker = serde_json::to_value(broker()).unwrap();
    change(&mut broker);
    broker
}

#[tokio::test]
async fn without_nats_the_status_says_why_an_event_tells_it_once_and_the_reconcile_retries() {
    let (ctx, mut apiserver) = fixtures::context().await;
    let reconcile = tokio::spawn(reconcile::reconcile(Arc::new(broker()), ctx.clone()));

    let status = apiserver
        .expect(
            "PATCH",
            "/apis/eventing.herald.dev/v1alpha1/namespaces/team/brokers/default/status?",
            |seen| answer(|b| b["status"] = seen.body["status"].clone()),
        )
        .await;
    assert!(
        status.uri.contains("fieldManager=herald-operator") && status.uri.contains("force=true"),
        "{}",
        status.uri
    );
    let patch = &status.body;
    assert_eq!(patch["apiVersion"], "eventing.herald.dev/v1alpha1");
    assert_eq!(patch["kind"], "Broker");
    assert_eq!(patch["status"]["observedGeneration"], 2);
    assert_eq!(
        patch["status"]["address"]["url"],
        "http://ingress/team/default"
    );
    let ready = patch["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&"False".into(), &"NatsUnavailable".into())
    );

    let event = apiserver
        .expect(
            "POST",
            "/apis/events.k8s.io/v1/namespaces/team/events",
            |seen| seen.body.clone(),
        )
        .await;
    assert_eq!(event.body["reason"], "NatsUnavailable");
    assert_eq!(event.body["type"], "Warning");

    let result = reconcile.await.unwrap();
    let error = result.expect_err("NATS trouble is retried");
    assert!(matches!(error, Error::NatsUnavailable { .. }), "{error}");
    assert!(error.is_transient());
    let retry = reconcile::error_policy(Arc::new(broker()), &error, ctx);
    assert_eq!(
        retry,
        kube::runtime::controller::Action::requeue(crate::error::retry_delay(1))
    );
    assert_eq!(<Broker as Reconciled>::KIND, "Broker");
}

#[tokio::test]
async fn a_broker_without_the_finalizer_gets_it_before_anything_else() {
    let (ctx, mut apiserver) = fixtures::context().await;
    let mut fresh = broker();
    fresh.metadata.finalizers = None;
    let reconcile = tokio::spawn(reconcile::reconcile(Arc::new(fresh.clone()), ctx));
    let added = apiserver
        .expect(
            "PATCH",
            "/apis/eventing.herald.dev/v1alpha1/namespaces/team/brokers/default?",
            |_| answer(|b| b["metadata"]["resourceVersion"] = "2".into()),
        )
        .await;
    assert!(
        added.body.to_string().contains(BROKER_FINALIZER),
        "{}",
        added.body
    );
    // The finalizer's own change brings the object back; this run ends here.
    assert!(reconcile.await.unwrap().is_ok());
}
