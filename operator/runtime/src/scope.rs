//! The namespaces a component serves (`--watch-namespace`: all when empty, else the
//! listed ones), and caches of a resource kind over them.
//!
//! RBAC limited to some namespaces forbids cluster-wide watches, so with a list each
//! namespace gets its own watch and its own store; [`Stores`] reads them as one.

use std::sync::Arc;

use futures::StreamExt;
use kube::core::NamespaceResourceScope;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};

/// Drops what a cache never reads but would hold for every object: the field
/// managers (a tree of small allocations per object, several per Herald object) and
/// kubectl's copy of the last applied manifest. With 1,000 Triggers this is megabytes.
pub fn trim_for_cache<K: Resource>(object: &mut K) {
    object.managed_fields_mut().clear();
    if let Some(annotations) = &mut object.meta_mut().annotations {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// One `Api` per watched namespace, or a single cluster-wide one.
#[must_use]
pub fn apis<K>(client: &Client, namespaces: &[String]) -> Vec<Api<K>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    scopes(namespaces)
        .into_iter()
        .map(|scope| match scope {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        })
        .collect()
}

/// The namespaces to watch one by one, or `[None]` for all at once.
#[must_use]
pub fn scopes(namespaces: &[String]) -> Vec<Option<&str>> {
    if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().map(|ns| Some(ns.as_str())).collect()
    }
}

/// Read handles on the caches of one kind, one per watched namespace.
pub struct Stores<K: Resource<DynamicType = ()> + 'static>(Vec<Store<K>>);

impl<K: Resource<DynamicType = ()> + 'static> Clone for Stores<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<K> Stores<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    /// The object, from whichever cache holds it.
    #[must_use]
    pub fn get(&self, key: &ObjectRef<K>) -> Option<Arc<K>> {
        self.0.iter().find_map(|s| s.get(key))
    }

    /// Every cached object.
    #[must_use]
    pub fn state(&self) -> Vec<Arc<K>> {
        self.0.iter().flat_map(Store::state).collect()
    }

    /// Resolves once every cache holds a first complete list.
    pub async fn wait_until_ready(&self) {
        for store in &self.0 {
            let _ = store.wait_until_ready().await;
        }
    }

    /// Stores over fixed writers' caches (tests, benchmarks).
    #[must_use]
    pub fn from_stores(stores: Vec<Store<K>>) -> Self {
        Self(stores)
    }
}

/// Watches every `api` into its own cache; `on_change` runs after each watch event
/// (and each watch error, which is logged and retried with backoff). Returns the
/// caches and the future that keeps them current (run it for the life of the process).
pub fn reflect<K>(
    apis: Vec<Api<K>>,
    on_change: impl Fn() + Clone + Send + 'static,
) -> (Stores<K>, impl Future<Output = ()> + Send + 'static)
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let mut stores = Vec::with_capacity(apis.len());
    let mut watches = Vec::with_capacity(apis.len());
    for api in apis {
        let (store, writer) = reflector::store();
        stores.push(store);
        let on_change = on_change.clone();
        watches.push(
            reflector::reflector(
                writer,
                watcher(api, watcher::Config::default()).modify(trim_for_cache),
            )
            .default_backoff()
            .for_each(move |event| {
                if let Err(e) = &event {
                    tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying");
                }
                on_change();
                futures::future::ready(())
            }),
        );
    }
    let run = async move {
        futures::future::join_all(watches).await;
    };
    (Stores(stores), run)
}
