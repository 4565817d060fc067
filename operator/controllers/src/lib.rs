//! The Herald operator: controllers for Brokers, Triggers and EventSources, run by
//! whichever replica holds the leader Lease.
//!
//! ```text
//!  herald operator
//!   ├─ admin server (/metrics /healthz /readyz)          herald_runtime::admin
//!   ├─ admission webhook, on every replica (optional)    admission
//!   ├─ leader election on a Lease                          leader
//!   └─ while leader:
//!       ├─ Broker controller ── JetStream stream per Broker   broker
//!       ├─ Trigger controller: durable consumer per Trigger,  trigger
//!       │    consumer Deployment for `consumer` Triggers
//!       ├─ autoscaler: consumer Deployments on backlog/rates  autoscale
//!       ├─ status.backlog of subscriber Triggers             backlog
//!       └─ EventSource controller: sink, validation           source
//!            (cron, webhook and nats run in `herald sources`)
//! ```
//!
//! Every controller shares one [`context::Context`] (clients, Event recorder,
//! metrics). Every NATS disconnection and reconnection re-runs all Broker reconciles,
//! so Brokers turn `NatsUnavailable` when NATS goes away and heal as soon as it is back.

pub mod admission;
pub mod autoscale;
pub mod backlog;
pub mod broker;
pub mod config;
pub mod context;
pub mod error;
#[cfg(test)]
mod fixtures;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod source;
pub mod trigger;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use herald_api::{Broker, EventSource, Trigger};
use herald_runtime::fired;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::config::OperatorArgs;
use crate::context::Context;
use crate::leader::LeaseLock;
use crate::metrics::Metrics;
use crate::trigger::deployment::WorkloadSettings;

/// Runs `herald operator` until SIGTERM/SIGINT (or until it loses leadership, which
/// is an error so that Kubernetes restarts it as a follower).
pub fn run_operator(args: OperatorArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(operator_main(args))
}

async fn operator_main(args: OperatorArgs) -> anyhow::Result<()> {
    let shutdown = herald_runtime::listen_for_shutdown()?;
    herald_runtime::telemetry::init(args.log_format);
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    tracing::info!(%identity, version = env!("CARGO_PKG_VERSION"), "starting herald operator");

    let client = herald_runtime::kube_client(args.kubeconfig.as_deref()).await?;
    let nats =
        herald_runtime::nats::connect(&args.nats, &format!("herald-operator {identity}")).await?;
    let (metrics, herald_runtime::Component { readiness, admin }) =
        herald_runtime::Component::start(&shutdown, args.metrics_addr, Metrics::register)?;
    let lease_namespace = leader::lease_namespace(
        args.lease_namespace.as_deref(),
        std::env::var("POD_NAMESPACE").ok().as_deref(),
        client.default_namespace(),
    );
    leader::ensure_lease_namespace(&client, &lease_namespace).await?;
    tracing::info!(namespace = %lease_namespace, "leader election and webhook certificate namespace");
    // Every replica answers the apiserver, leader or not: the webhook needs no CRDs
    // and no Lease, and a standby that answers keeps admission up during failover.
    admission::start(&args.admission, &client, &lease_namespace, &shutdown).await?;

    if !wait_for_crds(
        &client,
        args.watch_namespace.first().map(String::as_str),
        &shutdown,
    )
    .await
    {
        return Ok(());
    }
    readiness.set(true);

    let lock = LeaseLock::new(
        Api::namespaced(client.clone(), &lease_namespace),
        &args.lease_name,
        &identity,
        args.lease_duration,
    );
    if !campaign(&lock, &shutdown).await {
        return Ok(());
    }
    metrics.leader.set(1);
    tracing::info!(%identity, lease = %args.lease_name, "became leader; starting controllers");

    let reporter = Reporter {
        controller: "herald-operator".into(),
        instance: Some(identity.clone()),
    };
    let mut ctx = Context::new(
        client,
        nats,
        metrics.clone(),
        args.ingress_url.clone(),
        args.sources_url.clone(),
        WorkloadSettings {
            sidecar_image: args.sidecar_image.clone(),
            nats_url: args
                .workload_nats_url
                .clone()
                .unwrap_or_else(|| args.nats.urls.join(",")),
        },
        reporter,
    );
    ctx.shared_nats = herald_api::nats_source::SharedNats::new(args.shared_nats_namespaces.clone());
    ctx.stream_ceilings = broker::stream::StreamCeilings {
        max_bytes: args.max_stream_bytes,
        max_age: args.max_stream_age,
    };
    ctx.triggers_per_queue_stream = args.triggers_per_queue_stream;
    let ctx = Arc::new(ctx);
    let (stop_tx, stop) = watch::channel(false);
    let leadership = tokio::spawn(hold_leadership(lock, shutdown.clone(), stop_tx));
    // One set of controllers per watched namespace (RBAC may allow no cluster-wide
    // watch), or one for all namespaces.
    futures::future::join_all(
        herald_runtime::scope::scopes(&args.watch_namespace)
            .into_iter()
            .map(|namespace| run_controllers(ctx.clone(), namespace, &stop)),
    )
    .await;
    metrics.leader.set(0);

    let (lock, lost) = leadership.await?;
    if lost {
        anyhow::bail!(
            "lost the leader lease; exiting so that a fresh process rejoins the election"
        );
    }
    lock.release().await;
    let _ = admin.await;
    tracing::info!("stopped");
    Ok(())
}

fn default_identity() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "herald-operator".into());
    format!("{host}-{}", std::process::id())
}

/// Sleeps for `delay`; `false` if shutdown came first.
async fn sleep_unless_shutdown(delay: Duration, shutdown: &watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = fired(shutdown.clone()) => false,
    }
}

/// Waits until the Herald CRDs are served; `false` on shutdown.
async fn wait_for_crds(
    client: &Client,
    namespace: Option<&str>,
    shutdown: &watch::Receiver<bool>,
) -> bool {
    let api: Api<Broker> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    loop {
        match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => return true,
            Err(e) => {
                tracing::error!(error = %e, "cannot list Brokers; are the CRDs installed? (herald crds | kubectl apply -f -)");
            }
        }
        if !sleep_unless_shutdown(Duration::from_secs(2), shutdown).await {
            return false;
        }
    }
}

/// Tries for the Lease until it is ours; `false` on shutdown.
async fn campaign(lock: &LeaseLock, shutdown: &watch::Receiver<bool>) -> bool {
    let mut following = false;
    loop {
        match lock.try_acquire_or_renew().await {
            Ok(true) => return true,
            Ok(false) if !following => {
                following = true;
                tracing::info!("another operator is the leader; standing by");
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "leader election failed; retrying"),
        }
        if !sleep_unless_shutdown(lock.renew_interval(), shutdown).await {
            return false;
        }
    }
}

/// Renews the Lease until shutdown or until it is lost; then stops the controllers.
/// Returns the lock and whether leadership was lost.
async fn hold_leadership(
    lock: LeaseLock,
    shutdown: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
) -> (LeaseLock, bool) {
    let lost = keep_renewing(
        || lock.try_acquire_or_renew(),
        lock.renew_interval(),
        &shutdown,
    )
    .await;
    if lost {
        tracing::error!("lost the leader lease; stopping controllers");
    }
    let _ = stop.send(true);
    (lock, lost)
}

/// Renews every `interval` until shutdown (`false`) or until leadership is lost
/// (`true`): the Lease is someone else's, or it was not renewed within two thirds of
/// its duration (three intervals). Like client-go's renew deadline, that bound holds
/// however the apiserver misbehaves — an attempt that hangs (a blackholed connection)
/// is abandoned at the deadline — so this replica stops leading before another may
/// take the Lease over (after the whole duration): never two leaders.
async fn keep_renewing<F, Fut, E>(
    mut renew: F,
    interval: Duration,
    shutdown: &watch::Receiver<bool>,
) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, E>>,
    E: std::fmt::Display,
{
    let renew_deadline = interval * 2;
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        if !sleep_unless_shutdown(interval, shutdown).await {
            return false;
        }
        let deadline = last_renewal + renew_deadline;
        match tokio::time::timeout_at(deadline, renew()).await {
            Ok(Ok(true)) => last_renewal = tokio::time::Instant::now(),
            Ok(Ok(false)) => return true,
            Ok(Err(e)) if tokio::time::Instant::now() >= deadline => {
                tracing::error!(error = %e, "could not renew the leader lease in time");
                return true;
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "lease renewal failed; retrying"),
            Err(_) => {
                tracing::error!("the leader lease renewal did not answer in time");
                return true;
            }
        }
    }
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// One item per NATS connection state change after startup.
fn nats_state_changes(
    mut changes: watch::Receiver<u64>,
) -> impl Stream<Item = ()> + Send + 'static {
    changes.mark_unchanged();
    futures::stream::unfold(changes, |mut rx| async move {
        rx.changed().await.ok()?;
        Some(((), rx))
    })
}

fn log_result<K, E>(kind: &'static str, result: Result<(ObjectRef<K>, Action), E>)
where
    K: kube::Resource,
    E: std::fmt::Display,
{
    match result {
        Ok((obj, _)) => tracing::debug!(kind, object = %obj.name, "reconciled"),
        Err(e) => tracing::debug!(kind, error = %e, "reconcile did not finish"),
    }
}

async fn run_controllers(ctx: Arc<Context>, namespace: Option<&str>, stop: &watch::Receiver<bool>) {
    let client = ctx.client.clone();
    let brokers = Controller::new(
        api::<Broker>(&client, namespace),
        watcher::Config::default(),
    )
    .reconcile_all_on(nats_state_changes(ctx.nats.state_changes.clone()))
    .graceful_shutdown_on(fired(stop.clone()))
    .run(
        reconcile::reconcile::<Broker>,
        reconcile::error_policy::<Broker>,
        ctx.clone(),
    )
    .for_each(|r| {
        log_result("Broker", r);
        futures::future::ready(())
    });
    // The Triggers' cache is the operator's biggest: trimmed before it is stored.
    let (trigger_store, trigger_cache) = kube::runtime::reflector::store();
    let trigger_events = watcher(
        api::<Trigger>(&client, namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(herald_runtime::scope::trim_for_cache)
    .reflect(trigger_cache)
    .applied_objects();
    let trigger_controller = Controller::for_stream(trigger_events, trigger_store.clone());
    let autoscaler = autoscale::run(ctx.clone(), trigger_store.clone(), stop.clone());
    let backlogs = backlog::run(ctx.clone(), trigger_store.clone(), stop.clone());
    let triggers = trigger_controller
        // The consumer Deployments: a change (e.g. replicas set by hand) re-checks the Trigger.
        .owns(
            api::<Deployment>(&client, namespace),
            watcher::Config::default().labels("app.kubernetes.io/managed-by=herald"),
        )
        // A Broker change (created, Ready, deleted) re-checks the Triggers that name it.
        .watches(
            api::<Broker>(&client, namespace),
            watcher::Config::default(),
            move |broker| trigger::triggers_of(&trigger_store, &broker),
        )
        // After a NATS reconnection every Trigger is checked at once: a queue consumer
        // kept in memory is gone if nats-server restarted, and is restored.
        .reconcile_all_on(nats_state_changes(ctx.nats.state_changes.clone()))
        .graceful_shutdown_on(fired(stop.clone()))
        .run(
            reconcile::reconcile::<Trigger>,
            reconcile::error_policy::<Trigger>,
            ctx.clone(),
        )
        .for_each(|r| {
            log_result("Trigger", r);
            futures::future::ready(())
        });
    let source_controller = Controller::new(
        api::<EventSource>(&client, namespace),
        watcher::Config::default(),
    );
    let source_store = source_controller.store();
    let binding_store = source_store.clone();
    let sources = source_controller
        // A Broker change (its address) re-checks the EventSources that send to it.
        .watches(
            api::<Broker>(&client, namespace),
            watcher::Config::default(),
            move |broker| source::sources_of(&source_store, &broker),
        )
        // A Deployment that starts or stops matching a sink binding.
        .watches(
            api::<Deployment>(&client, namespace),
            watcher::Config::default(),
            move |deployment| source::binding::bindings_of(&binding_store, &deployment),
        )
        .graceful_shutdown_on(fired(stop.clone()))
        .run(
            reconcile::reconcile::<EventSource>,
            reconcile::error_policy::<EventSource>,
            ctx,
        )
        .for_each(|r| {
            log_result("EventSource", r);
            futures::future::ready(())
        });
    tokio::join!(brokers, triggers, sources, autoscaler, backlogs);
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(5);

    #[tokio::test(start_paused = true)]
    async fn a_renewal_that_never_answers_ends_leadership_before_the_lease_can_expire() {
        let (_shutdown, shutdown_rx) = watch::channel(false);
        let started = tokio::time::Instant::now();
        let lost = keep_renewing(
            std::future::pending::<Result<bool, std::io::Error>>,
            INTERVAL,
            &shutdown_rx,
        )
        .await;
        assert!(lost);
        // Others may take the Lease 3 intervals after the last renewal.
        assert!(started.elapsed() <= INTERVAL * 2, "{:?}", started.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn failing_renewals_are_retried_until_the_renew_deadline() {
        let (_shutdown, shutdown_rx) = watch::channel(false);
        let attempts = std::cell::Cell::new(0);
        let started = tokio::time::Instant::now();
        let lost = keep_renewing(
            || {
                attempts.set(attempts.get() + 1);
                async { Err::<bool, _>("apiserver unavailable") }
            },
            INTERVAL,
            &shutdown_rx,
        )
        .await;
        assert!(lost);
        assert_eq!(attempts.get(), 2, "one retry within the deadline");
        assert!(started.elapsed() <= INTERVAL * 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_taken_by_another_ends_leadership_and_shutdown_does_not() {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let taken =
            keep_renewing(|| async { Ok::<_, String>(false) }, INTERVAL, &shutdown_rx).await;
        assert!(taken);
        let renewals = std::cell::Cell::new(0);
        let holding = keep_renewing(
            || {
                renewals.set(renewals.get() + 1);
                if renewals.get() == 10 {
                    let _ = shutdown.send(true);
                }
                async { Ok::<_, String>(true) }
            },
            INTERVAL,
            &shutdown_rx,
        );
        assert!(!holding.await, "shutdown is not a loss");
        assert_eq!(renewals.get(), 10, "renewed for as long as it ran");
    }
}
