//! End-to-end test helpers for Herald, against a real control plane.
//!
//! `e2e/test.sh` starts kube-apiserver, etcd, kube-controller-manager and nats-server
//! on loopback with a real node (`NODE=1 e2e/controlplane/up.sh`), builds `herald` and
//! its image into the node, installs the CRDs and exports where everything is:
//!
//! | variable                 | meaning                                          |
//! |--------------------------|--------------------------------------------------|
//! | `KUBECONFIG`             | admin kubeconfig of the test apiserver           |
//! | `HERALD_NATS_URL`        | the shared nats-server                           |
//! | `HERALD_NATS_SERVER_BIN` | nats-server binary, for tests that run their own |
//! | `HERALD_BIN`             | the `herald` binary (default `target/debug/herald`) |
//! | `HERALD_NODE_HOST_IP`    | where pods reach this machine ([`pods`])         |
//! | `HERALD_IMAGE`           | the Herald image in the node's containerd        |
//!
//! Each test runs in its own namespace ([`with_temp_ns`]) with its own operator
//! process watching only that namespace ([`process::Operator`]), so tests run in
//! parallel without seeing each other.

// Test helpers fail the test by panicking, with a message; that is their contract.
#![allow(clippy::missing_panics_doc)]

pub mod certs;
pub mod http;
pub mod kubectl;
pub mod manifests;
pub mod nats;
pub mod partition;
pub mod pods;
pub mod process;
pub mod secure_nats;
pub mod stack;
pub mod subscriber;

use std::fmt::Debug;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::StreamExt;
use herald_api::conditions::{self, ConditionStatus};
use herald_api::naming::STREAM_PREFIX;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::runtime::wait::{self, Condition};
use kube::{Api, Client, Resource};
use serde_json::Value;

/// Label on every namespace the tests create, for cleaning up after aborted runs.
pub const TEST_NS_LABEL: &str = "e2e.herald.dev/test";

/// A Kubernetes client from `KUBECONFIG`.
pub async fn client() -> Client {
    Client::try_default()
        .await
        .expect("no Kubernetes client: run the e2e tests through e2e/test.sh (KUBECONFIG)")
}

/// The shared NATS URL.
#[must_use]
pub fn nats_url() -> String {
    std::env::var("HERALD_NATS_URL").expect("HERALD_NATS_URL is not set: run through e2e/test.sh")
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{n}", (nanos ^ std::process::id()) & 0xff_ffff)
}

/// Runs `body` in a fresh namespace `herald-e2e-<test>-<suffix>`, then deletes the
/// namespace, also when the body panics (the panic is re-raised afterwards). Set
/// `HERALD_E2E_KEEP_NS=1` to keep it for inspection.
pub async fn with_temp_ns<F, Fut>(test: &str, body: F)
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let client = client().await;
    let name = format!("herald-e2e-{test}-{}", unique_suffix());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some([(TEST_NS_LABEL.to_owned(), "true".to_owned())].into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create test namespace");
    let result = tokio::spawn(body(client, name.clone())).await;
    if std::env::var("HERALD_E2E_KEEP_NS").is_ok_and(|v| v == "1") {
        eprintln!("keeping namespace {name}");
    } else {
        if let Err(e) = namespaces.delete(&name, &DeleteParams::background()).await {
            eprintln!("could not delete namespace {name}: {e}");
        }
        delete_streams_of(&name).await;
        release_finalizers(&name).await;
    }
    if let Err(e) = result {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
        panic!("test task failed: {e}");
    }
}

/// Drops Herald's finalizers from the namespace's objects: the test's operator is gone,
/// and the harness deleted their streams itself. Left behind, every test namespace
/// would stay Terminating for good, and the controller-manager, retrying them all,
/// would delete the namespaces of later tests ever more slowly.
async fn release_finalizers(namespace: &str) {
    let client = client().await;
    release_finalizers_of(Api::<herald_api::Trigger>::namespaced(
        client.clone(),
        namespace,
    ))
    .await;
    release_finalizers_of(Api::<herald_api::Broker>::namespaced(
        client.clone(),
        namespace,
    ))
    .await;
    release_finalizers_of(Api::<herald_api::EventSource>::namespaced(
        client, namespace,
    ))
    .await;
}

async fn release_finalizers_of<K>(api: Api<K>)
where
    K: Resource + Clone + Debug + serde::de::DeserializeOwned,
{
    let release = serde_json::json!({"metadata": {"finalizers": null}});
    let Ok(list) = api.list(&kube::api::ListParams::default()).await else {
        return;
    };
    for obj in list.items {
        let name = kube::ResourceExt::name_any(&obj);
        let _ = api
            .patch(
                &name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&release),
            )
            .await;
    }
}

/// Deletes the namespace's streams from the shared nats-server. The test's operator
/// is gone by now, so the Brokers' finalizers never run; left behind, every stream
/// would keep its `maxBytes` reserved and the server would soon refuse new ones
/// ("insufficient storage resources").
async fn delete_streams_of(namespace: &str) {
    let Ok(nats) = async_nats::connect(nats_url()).await else {
        return;
    };
    let js = async_nats::jetstream::new(nats);
    let prefixes = [
        format!("{STREAM_PREFIX}{namespace}_"),
        format!("{}{namespace}_", herald_api::naming::QUEUE_STREAM_PREFIX),
    ];
    let names: Vec<String> = js
        .stream_names()
        .filter_map(|n| async move { n.ok() })
        .collect()
        .await;
    for stream in names
        .into_iter()
        .filter(|n| prefixes.iter().any(|p| n.starts_with(p.as_str())))
    {
        if let Err(e) = js.delete_stream(&stream).await {
            eprintln!("could not delete stream {stream}: {e}");
        }
    }
}

/// Waits until `condition` holds for object `name`, or fails the test after `timeout`
/// showing the object as last seen.
pub async fn await_condition<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    condition: impl Condition<K>,
) -> K
where
    K: Resource + Clone + Debug + serde::de::DeserializeOwned + Send + 'static,
{
    // Boxed: kube's watch future holds several objects, and every test awaits this.
    let watch = Box::pin(wait::await_condition(api.clone(), name, condition));
    match tokio::time::timeout(timeout, watch).await {
        Ok(Ok(Some(obj))) => obj,
        Ok(Ok(None)) => panic!("{name} was deleted while waiting for a condition"),
        Ok(Err(e)) => panic!("watching {name} failed: {e}"),
        Err(_) => {
            let last = api.get_opt(name).await.ok().flatten();
            panic!("condition on {name} not met within {timeout:?}; last seen: {last:#?}")
        }
    }
}

/// Waits until object `name` is Ready (its `Ready` condition is `True`), or fails the
/// test after `timeout` showing the object as last seen.
pub async fn await_ready<K>(api: &Api<K>, name: &str, timeout: Duration) -> K
where
    K: Resource + Clone + Debug + serde::de::DeserializeOwned + serde::Serialize + Send + 'static,
{
    let ready = has_condition(READY, ConditionStatus::True, None);
    await_condition(api, name, timeout, ready).await
}

/// Waits until object `name` is not Ready for `reason`, or fails the test after
/// `timeout` showing the object as last seen.
pub async fn await_not_ready<K>(
    api: &Api<K>,
    name: &str,
    reason: &'static str,
    timeout: Duration,
) -> K
where
    K: Resource + Clone + Debug + serde::de::DeserializeOwned + serde::Serialize + Send + 'static,
{
    let not_ready = has_condition(READY, ConditionStatus::False, Some(reason));
    await_condition(api, name, timeout, not_ready).await
}

/// The condition type every Herald resource reports readiness with.
const READY: &str = "Ready";

/// A condition on an object's `status.conditions[type]`: status and, if given, reason.
#[must_use]
pub fn has_condition<K>(
    type_: &'static str,
    status: ConditionStatus,
    reason: Option<&'static str>,
) -> impl Condition<K>
where
    K: serde::Serialize,
{
    move |obj: Option<&K>| {
        let Some(obj) = obj else { return false };
        let Ok(json) = serde_json::to_value(obj) else {
            return false;
        };
        let list: Vec<herald_api::Condition> = json
            .pointer("/status/conditions")
            .cloned()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        conditions::find(&list, type_)
            .is_some_and(|c| c.status == status && reason.is_none_or(|r| c.reason == r))
    }
}

/// Deletes object `name` and waits up to `timeout` until it is gone (its finalizers ran).
pub async fn delete_and_await_gone<K>(api: &Api<K>, name: &str, timeout: Duration)
where
    K: Resource + Clone + Debug + serde::de::DeserializeOwned,
{
    api.delete(name, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("delete {name}: {e}"));
    eventually(&format!("{name} is gone"), timeout, || async {
        api.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
}

/// Reads a value at a JSON pointer of an object, e.g. `/status/address/url`.
pub fn field<K: serde::Serialize>(obj: &K, pointer: &str) -> Value {
    serde_json::to_value(obj)
        .ok()
        .and_then(|v| v.pointer(pointer).cloned())
        .unwrap_or(Value::Null)
}

/// Polls `check` every 200 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, Fut>(what: &str, timeout: Duration, mut check: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Applies Trigger `name` with `spec` (see [`manifests::to_uri`]) and waits up to
/// `wait` until it is Ready.
///
/// Boxed: a Trigger with its spec and status is large, and every test awaits this.
#[must_use]
pub fn ready_trigger<'a>(
    client: &'a Client,
    ns: &'a str,
    name: &'a str,
    spec: herald_api::TriggerSpec,
    wait: Duration,
) -> std::pin::Pin<Box<dyn Future<Output = herald_api::Trigger> + Send + 'a>> {
    Box::pin(async move {
        manifests::apply(client, ns, &manifests::trigger(name, spec)).await;
        let triggers: Api<herald_api::Trigger> = Api::namespaced(client.clone(), ns);
        await_ready(&triggers, name, wait).await
    })
}
