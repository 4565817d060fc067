//! A whole Herald for one test namespace: operator, ingress and dispatcher, with the
//! example Broker Ready and served by the ingress.

use std::time::Duration;

use herald_api::Broker;
use kube::{Api, Client};

use crate::http::{post, try_post};
use crate::kubectl::{apply, example};
use crate::process::{Dispatcher, Ingress, Operator};
use crate::{await_ready, eventually};

const WAIT: Duration = Duration::from_secs(30);

/// Operator, ingress and (optionally) dispatcher for a namespace.
pub struct Stack {
    /// The operator.
    pub operator: Operator,
    /// The ingress.
    pub ingress: Ingress,
    /// The dispatcher, when started.
    pub dispatcher: Option<Dispatcher>,
    /// Brokers of the namespace.
    pub brokers: Api<Broker>,
    namespace: String,
    nats: String,
}

impl Stack {
    /// Starts operator and ingress (with extra ingress flags), applies the example
    /// Broker and waits until the ingress serves it.
    pub async fn without_dispatcher(
        client: Client,
        ns: &str,
        nats: &str,
        ingress_flags: &[&str],
    ) -> Self {
        Self::build(client, ns, nats, ingress_flags, &[]).await
    }

    /// Everything, dispatcher included, with extra operator flags.
    pub async fn start_with_operator_flags(
        client: Client,
        ns: &str,
        nats: &str,
        operator_flags: &[&str],
    ) -> Self {
        let mut stack = Self::build(client, ns, nats, &[], operator_flags).await;
        stack.dispatcher = Some(Dispatcher::start(ns, nats).await);
        stack
    }

    async fn build(
        client: Client,
        ns: &str,
        nats: &str,
        ingress_flags: &[&str],
        operator_flags: &[&str],
    ) -> Self {
        let ingress = Ingress::start_with(ns, nats, ingress_flags).await;
        // Broker addresses as pods reach them too (a source adapter sends there).
        let operator = Operator::start_with_flags(
            ns,
            nats,
            "solo",
            &crate::pods::pod_facing(&ingress.url()),
            operator_flags,
        )
        .await;
        apply(
            ns,
            &std::fs::read_to_string(example("broker.yaml")).expect("examples/broker.yaml"),
        );
        let brokers: Api<Broker> = Api::namespaced(client, ns);
        await_ready(&brokers, "default", WAIT).await;
        let stack = Self {
            operator,
            ingress,
            dispatcher: None,
            brokers,
            namespace: ns.to_owned(),
            nats: nats.to_owned(),
        };
        // The ingress learns of the Ready Broker through its own watch, a moment after
        // the apiserver: until then it rightly answers 503. An event without an id
        // passes the Broker lookup (then 400) and stores nothing, so it is a safe probe.
        let url = stack.broker_url();
        // Its listener may also open a moment after its metrics port: a refused
        // connection is "not yet" too.
        eventually("the ingress serves the Broker", WAIT, || async {
            let answer = try_post(&url, &[("ce-specversion", "1.0")], "")
                .await
                .ok()?;
            (answer.status == 400).then_some(())
        })
        .await;
        stack
    }

    /// Everything, dispatcher included.
    pub async fn start(client: Client, ns: &str, nats: &str) -> Self {
        let mut stack = Self::without_dispatcher(client, ns, nats, &[]).await;
        stack.dispatcher = Some(Dispatcher::start(ns, nats).await);
        stack
    }

    /// Starts a (new) dispatcher.
    pub async fn start_dispatcher(&mut self) {
        self.dispatcher = Some(Dispatcher::start(&self.namespace, &self.nats).await);
    }

    /// Starts another dispatcher beside the first and hands it over.
    pub async fn extra_dispatcher(&self) -> Dispatcher {
        Dispatcher::start(&self.namespace, &self.nats).await
    }

    /// Where this machine sends to Broker `default`.
    #[must_use]
    pub fn broker_url(&self) -> String {
        format!("{}/{}/default", self.ingress.url(), self.namespace)
    }

    /// The address Broker `default`'s status gives (and sinks get): [`Stack::broker_url`]
    /// as pods reach it.
    #[must_use]
    pub fn broker_address(&self) -> String {
        crate::pods::pod_facing(&self.broker_url())
    }

    /// Sends a binary-mode event with `id`, `type_`, `source` and JSON `data`; asserts 202.
    pub async fn send(&self, id: &str, type_: &str, source: &str, data: &str) {
        let answer = post(
            &self.broker_url(),
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", id),
                ("ce-type", type_),
                ("ce-source", source),
                ("content-type", "application/json"),
            ],
            data.to_owned(),
        )
        .await;
        assert_eq!(answer.status, 202, "sending {id}: {}", answer.body);
    }

    /// Sends `events` (CloudEvents in the JSON format) as one batch; asserts 202.
    pub async fn send_batch(&self, events: &[serde_json::Value]) {
        let answer = post(
            &self.broker_url(),
            &[("content-type", "application/cloudevents-batch+json")],
            serde_json::to_vec(events).expect("events as JSON"),
        )
        .await;
        assert_eq!(answer.status, 202, "batch refused: {}", answer.body);
    }
}
