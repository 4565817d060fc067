//! `herald sources`: the shared adapter that runs `cron`, `webhook` and `nats`
//! EventSources and sends their events to each source's sink.
//!
//! ```text
//!  EventSources (reflector) ──▶ resolved::resolve per Ready source ──▶ cron task | NATS task
//!                                                          └─▶ webhook route table
//!  POST /<ns>/<source> ──▶ signature check ──▶ event ──▶ sink (retries, backoff)
//! ```
//!
//! Several replicas may run: NATS sources share the work through a queue group,
//! webhooks through the Service, and every replica fires each cron tick with the same
//! event id, which a Broker stores once (its duplicate window).

pub mod config;
pub mod kubernetes;
pub mod metrics;
pub mod resolved;
mod run;
pub mod signature;
pub mod sink;
pub mod webhook;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use herald_api::EventSource;
use herald_runtime::fired;
use herald_runtime::loops::Loops;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use tokio::sync::Notify;

use crate::config::SourcesArgs;
use crate::metrics::Metrics;
use crate::resolved::{Kind, ResolvedSource};
use crate::sink::Sender;
use crate::webhook::{Route, Routes};

/// Runs `herald sources` until SIGTERM/SIGINT.
pub fn run_sources(args: SourcesArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(sources_main(args))
}

/// The running sources by `(namespace, name)`; a `true` stop ends one.
type Running = Loops<(String, String), Arc<ResolvedSource>, bool>;

async fn sources_main(args: SourcesArgs) -> anyhow::Result<()> {
    let shutdown = herald_runtime::listen_for_shutdown()?;
    herald_runtime::telemetry::init(args.log_format);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "starting herald sources"
    );
    // A CA bundle that cannot be used stops the start: every https sink would fail.
    let tls = args.tls.load()?;
    let config = herald_runtime::kube_config(args.kubeconfig.as_deref()).await?;
    let api_server = herald_runtime::egress::api_server_addresses(&config.cluster_url).await;
    let client = Client::try_from(config)?;
    if let Some(json) = &args.kubernetes_plan {
        return kubernetes_main(&args, &tls, client, json, shutdown).await;
    }
    let egress = Arc::new(args.egress.policy(&api_server));
    tracing::info!(policy = %egress.summary(), "egress policy for sinks");
    let nats = herald_runtime::nats::connect(&args.nats, "herald-sources").await?;
    let (metrics, herald_runtime::Component { readiness, admin }) =
        herald_runtime::Component::start(&shutdown, args.metrics_addr, Metrics::register)?;
    let recorder = herald_runtime::event_recorder(client.clone(), "herald-sources");
    let mut sender = Sender::new(&tls, &egress, metrics.clone(), Some(recorder));
    if let Some((namespace, name)) = &args.token_service_account {
        sender = sender.with_tokens(herald_runtime::token::TokenSource::new(
            client.clone(),
            namespace,
            name,
        ));
    }
    let routes: Routes = Arc::default();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(listen = %args.listen, "webhook endpoint ready");
    let server_shutdown = shutdown.clone();
    let request_limits = webhook::RequestLimits {
        body_timeout: args.read_timeout,
        in_flight_bytes: herald_runtime::budget::ByteBudget::new(args.max_in_flight_bytes),
    };
    let connection_limits = herald_runtime::http_server::ConnectionLimits {
        header_read_timeout: args.read_timeout,
        max_connections: args.max_connections,
        ..herald_runtime::http_server::ConnectionLimits::default()
    };
    let server = tokio::spawn(herald_runtime::http_server::serve(
        listener,
        webhook::router(routes.clone(), sender.clone(), request_limits),
        connection_limits,
        fired(server_shutdown),
    ));

    let changed = Arc::new(Notify::new());
    let notify = changed.clone();
    let (store, watch) = herald_runtime::scope::reflect(
        herald_runtime::scope::apis::<EventSource>(&client, &args.watch_namespace),
        move || notify.notify_one(),
    );
    tokio::spawn(watch);
    tokio::select! {
        () = store.wait_until_ready() => {}
        () = fired(shutdown.clone()) => return Ok(()),
    }
    readiness.set(true);

    let defaults = NatsDefaults {
        client: nats.client.clone(),
        url: args.nats.urls.join(","),
    };
    let mut running = Running::new(false);
    loop {
        reconcile(&client, &store, &mut running, &routes, &sender, &defaults).await;
        metrics
            .sources
            .set(i64::try_from(running.len()).unwrap_or(i64::MAX));
        tokio::select! {
            () = changed.notified() => tokio::time::sleep(Duration::from_millis(50)).await,
            () = fired(shutdown.clone()) => break,
        }
    }
    for task in running.stop_all(|_| true) {
        let _ = task.await;
    }
    let _ = server.await;
    let _ = admin.await;
    Ok(())
}

/// One `kubernetes` EventSource in its own Deployment, as the user's ServiceAccount.
async fn kubernetes_main(
    args: &SourcesArgs,
    tls: &herald_runtime::tls::ClientTls,
    client: Client,
    json: &str,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let plan: herald_api::workload::KubernetesSourceConfig = serde_json::from_str(json)
        .map_err(|e| anyhow::anyhow!("--kubernetes-plan is not a valid plan: {e}"))?;
    let (metrics, herald_runtime::Component { readiness, admin }) =
        herald_runtime::Component::start(&shutdown, args.metrics_addr, Metrics::register)?;
    tracing::info!(source = %format!("{}/{}", plan.namespace, plan.name), sink = %plan.sink, "running a kubernetes source");
    readiness.set(true);
    metrics.sources.set(1);
    // The user's ServiceAccount usually may not write Events: failures are logged and counted.
    // The source runs in its own pod as the tenant's ServiceAccount, with the tenant's
    // own network identity: no boundary between tenants, so no egress policy.
    let unrestricted = Arc::new(herald_runtime::egress::EgressPolicy::unrestricted());
    let sender = Sender::new(tls, &unrestricted, metrics, None);
    kubernetes::run(client, plan, sender, shutdown).await;
    let _ = admin.await;
    Ok(())
}

/// Why a source's Secret key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read Secret {name}: {source}")]
    Unreadable {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("Secret {0} does not exist")]
    Missing(String),
    #[error("Secret {name} has no key {key}")]
    NoKey { name: String, key: String },
}

/// Reads one key of a Secret in `namespace`.
pub(crate) async fn secret_value(
    client: &Client,
    namespace: &str,
    secret: &herald_api::common::SecretKeyRef,
) -> Result<Vec<u8>, SecretError> {
    let found = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(&secret.name)
        .await
        .map_err(|source| SecretError::Unreadable {
            name: secret.name.clone(),
            source,
        })?
        .ok_or_else(|| SecretError::Missing(secret.name.clone()))?;
    found
        .data
        .and_then(|mut d| d.remove(&secret.key))
        .map(|b| b.0)
        .ok_or_else(|| SecretError::NoKey {
            name: secret.name.clone(),
            key: secret.key.clone(),
        })
}

/// Starts, restarts and stops sources so that exactly the resolved ones run.
async fn reconcile(
    client: &Client,
    store: &herald_runtime::scope::Stores<EventSource>,
    running: &mut Running,
    routes: &Routes,
    sender: &Sender,
    nats: &NatsDefaults,
) {
    let desired: HashMap<(String, String), ResolvedSource> = store
        .state()
        .iter()
        .filter_map(|s| resolved::resolve(s))
        .map(|p| ((p.namespace.clone(), p.name.clone()), p))
        .collect();
    running.retain(
        |key, plan| {
            let keep = desired.get(key) == Some(&**plan);
            if !keep {
                tracing::info!(source = %format!("{}/{}", key.0, key.1), "stopping source");
            }
            keep
        },
        &true,
    );
    let mut table = HashMap::new();
    for (key, plan) in desired {
        let plan = start(client, running, key.clone(), plan, sender, nats);
        if let Kind::Webhook { secret, .. } = &plan.kind {
            let existing = routes
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&key)
                .filter(|r| Arc::ptr_eq(&r.plan, &plan) && r.key.is_ok())
                .cloned();
            let route = if let Some(route) = existing {
                route
            } else {
                let key_bytes = secret_value(client, &plan.namespace, secret).await;
                if let Err(e) = &key_bytes {
                    tracing::warn!(source = %plan.name, error = %e, "webhook signing key unavailable");
                }
                Arc::new(Route {
                    plan: plan.clone(),
                    key: key_bytes,
                })
            };
            table.insert(key, route);
        }
    }
    *routes
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = table;
}

/// The adapter's own NATS connection and server URL(s), for NATS sources.
struct NatsDefaults {
    client: async_nats::Client,
    url: String,
}

/// The source running under `key`, started with `plan` if it is not running yet.
fn start(
    client: &Client,
    running: &mut Running,
    key: (String, String),
    plan: ResolvedSource,
    sender: &Sender,
    nats: &NatsDefaults,
) -> Arc<ResolvedSource> {
    running
        .get_or_start(
            key,
            || {
                tracing::info!(source = %format!("{}/{}", plan.namespace, plan.name), sink = %plan.sink, "starting source");
                Arc::new(plan)
            },
            |plan, stopped| {
                let access = run::NatsAccess {
                    default: nats.client.clone(),
                    default_url: nats.url.clone(),
                    kube: client.clone(),
                };
                run::spawn(plan.clone(), sender.clone(), access, stopped)
            },
        )
        .clone()
}
