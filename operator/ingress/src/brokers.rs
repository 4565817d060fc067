//! Which Brokers exist and whether they are Ready, from a reflector cache, so the
//! request path never waits for the apiserver.

use std::sync::Arc;

use herald_api::Broker;
use herald_api::conditions;
use herald_runtime::scope::{self, Stores};
use kube::Client;
use kube::runtime::reflector::ObjectRef;

/// What the ingress knows about a Broker address.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// No such Broker (or it is being deleted).
    Unknown,
    /// The Broker exists but cannot take events; the reason is its Ready condition's.
    NotReady(String),
    /// The Broker takes events.
    Ready(Arc<Broker>),
}

/// A read handle on the Broker cache.
#[derive(Clone)]
pub struct BrokerIndex {
    store: Stores<Broker>,
}

impl BrokerIndex {
    /// Looks a Broker up by namespace and name.
    #[must_use]
    pub fn lookup(&self, namespace: &str, name: &str) -> Lookup {
        let Some(broker) = self.store.get(&ObjectRef::new(name).within(namespace)) else {
            return Lookup::Unknown;
        };
        if broker.metadata.deletion_timestamp.is_some() {
            return Lookup::Unknown;
        }
        let list = broker
            .status
            .as_ref()
            .map(|s| &s.conditions[..])
            .unwrap_or_default();
        match conditions::served(list) {
            Ok(()) => Lookup::Ready(broker),
            Err(conditions::NotServed(reason)) => Lookup::NotReady(reason),
        }
    }

    /// An index over a fixed set of Brokers, without a watch (benchmarks, tests).
    #[cfg(any(test, feature = "testing"))]
    #[must_use]
    pub fn fixed(brokers: Vec<Broker>) -> Self {
        use kube::runtime::{reflector, watcher};
        let (store, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Init);
        for broker in brokers {
            writer.apply_watcher_event(&watcher::Event::InitApply(broker));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        Self {
            store: Stores::from_stores(vec![store]),
        }
    }

    /// Resolves once the cache holds a first complete list.
    pub async fn wait_until_ready(&self) {
        self.store.wait_until_ready().await;
    }
}

/// Starts watching Brokers (all namespaces, or the listed ones); returns the index
/// and the future that keeps it current (run it for the life of the process).
pub fn watch(
    client: &Client,
    namespaces: &[String],
) -> (BrokerIndex, impl Future<Output = ()> + Send + 'static) {
    let (store, run) = scope::reflect(scope::apis::<Broker>(client, namespaces), || {});
    (BrokerIndex { store }, run)
}
