//! What every reconcile gets: clients, the event recorder, metrics and settings.

use std::collections::HashMap;
use std::sync::Mutex;

use herald_runtime::nats::NatsConnection;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource};

use crate::metrics::Metrics;
use crate::trigger::deployment::WorkloadSettings;

/// Shared state of all controllers of one operator process.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// NATS connection (the client reconnects by itself).
    pub nats: NatsConnection,
    /// JetStream context over `nats`.
    pub jetstream: async_nats::jetstream::Context,
    /// Operator metrics.
    pub metrics: Metrics,
    /// Base URL of the ingress; a Broker's address is `<base>/<namespace>/<name>`.
    pub ingress_url: String,
    /// Base URL of the sources adapter (webhook addresses).
    pub sources_url: String,
    /// What consumer Deployments get (sidecar image, NATS URL).
    pub workload: WorkloadSettings,
    /// Replicas the autoscaler decided per consumer Trigger (`namespace/name`); the
    /// Trigger reconcile applies the Deployment with these so the two never disagree.
    pub replicas: Mutex<HashMap<String, (i32, bool)>>,
    /// Namespaces whose `nats` sources may read through Herald's own connection.
    pub shared_nats: herald_api::nats_source::SharedNats,
    /// The most a Broker's stream may keep (`--max-stream-bytes`, `--max-stream-age`).
    pub stream_ceilings: crate::broker::stream::StreamCeilings,
    /// Triggers per queue stream of a Broker (`--triggers-per-queue-stream`).
    pub triggers_per_queue_stream: u32,
    recorder: Recorder,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// Builds the context; `reporter` names this operator in Kubernetes Events.
    #[must_use]
    pub fn new(
        client: Client,
        nats: NatsConnection,
        metrics: Metrics,
        ingress_url: String,
        sources_url: String,
        workload: WorkloadSettings,
        reporter: Reporter,
    ) -> Self {
        let jetstream = async_nats::jetstream::new(nats.client.clone());
        let recorder = Recorder::new(client.clone(), reporter);
        Self {
            client,
            nats,
            jetstream,
            metrics,
            ingress_url,
            sources_url,
            workload,
            replicas: Mutex::default(),
            shared_nats: herald_api::nats_source::SharedNats::default(),
            stream_ceilings: crate::broker::stream::StreamCeilings::default(),
            triggers_per_queue_stream: herald_api::naming::DEFAULT_TRIGGERS_PER_QUEUE_STREAM,
            recorder,
            failures: Mutex::default(),
        }
    }

    /// Publishes a Kubernetes Event about `obj`; failures are logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not publish a Kubernetes Event");
        }
    }

    /// The replicas the autoscaler last decided for Trigger `key` (`namespace/name`),
    /// and whether the Deployment has been scaled to them (`false` while the change is
    /// on its way, when a different count on the Deployment is not someone else's).
    pub fn decided_replicas(&self, key: &str) -> Option<(i32, bool)> {
        self.replicas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .copied()
    }

    /// Records the autoscaler's decision for Trigger `key`; `None` forgets it.
    pub fn set_decided_replicas(&self, key: &str, decision: Option<(i32, bool)>) {
        let mut map = self
            .replicas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match decision {
            Some(d) => map.insert(key.to_owned(), d),
            None => map.remove(key),
        };
    }

    /// Counts one more consecutive failure of `obj`; returns the count.
    pub fn record_failure<K: Resource<DynamicType = ()>>(&self, obj: &ObjectRef<K>) -> u32 {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = failures.entry(obj.to_string()).or_insert(0);
        *n += 1;
        *n
    }

    /// Forgets the failures of `obj` after a successful reconcile.
    pub fn record_success<K: Resource<DynamicType = ()>>(&self, obj: &ObjectRef<K>) {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        failures.remove(&obj.to_string());
    }
}
