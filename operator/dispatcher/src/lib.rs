//! `herald dispatcher`: routes each Broker's events into the queues of the Triggers
//! that want them, and delivers each Trigger's queue to its subscriber.
//!
//! ```text
//!  Triggers + Brokers (reflectors) ──▶ supervisor ──▶ per Broker: router (one table of all filters)
//!                                                  ├▶ per Trigger with history owed: backfill
//!                                                  └▶ per Trigger with a subscriber: pull loop
//!  router: Broker stream ──match once──▶ copies to queue subjects ──▶ ack
//!  pull loop: Trigger queue ──▶ deliver::Deliverer::handle (≤ maxInFlight at once)
//!             ──▶ POST ─▶ ack | NAK(backoff) | dead-letter | drop
//! ```
//!
//! The routers also note which event types each Broker carries; [`catalog`] keeps
//! them as `EventType` objects.
//!
//! Several dispatchers may run: they share each Broker's router consumer and each
//! Trigger's queue, and JetStream spreads the events between them. A dispatcher that dies loses nothing: what it had not
//! acknowledged is routed or delivered again after the ack wait (10 s; [`pull`] keeps
//! the messages it holds alive with progress acks).

pub mod attempts;
pub mod catalog;
pub mod clients;
pub mod config;
pub mod debts;
pub mod deliver;
pub mod desired;
pub mod filtering;
pub mod jobs;
pub mod lease;
pub mod metrics;
pub mod moves;
pub mod pull;
pub mod rate;
pub mod reports;
pub mod router;
pub mod routes;
pub mod slots;
pub mod supervisor;
pub mod transforming;

use std::sync::Arc;
use std::time::Duration;

use herald_api::workload::SidecarConfig;
use herald_api::{Broker, Trigger};
use herald_runtime::fired;
use herald_runtime::scope;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{Notify, watch};

use crate::config::DispatcherArgs;
use crate::deliver::Deliverer;
use crate::metrics::Metrics;
use crate::pull::Stop;
use crate::supervisor::Supervisor;

/// Runs `herald dispatcher` until SIGTERM/SIGINT, then drains for `--drain-timeout`.
pub fn run_dispatcher(args: DispatcherArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(dispatcher_main(args))
}

/// The routing leases: one router per Broker at a time, so ordered Triggers keep
/// Broker order across replicas (lease.rs); without the bucket every replica routes.
async fn open_leases(routing: &async_nats::jetstream::Context) -> Option<lease::Leases> {
    let holder = format!(
        "{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "dispatcher".to_owned()),
        std::process::id()
    );
    match lease::Leases::open(routing, &holder).await {
        Ok(leases) => Some(leases),
        Err(e) => {
            tracing::warn!(error = %e, "no routing lease bucket: every replica routes every Broker (ordered Triggers keep order per replica only)");
            None
        }
    }
}

async fn dispatcher_main(args: DispatcherArgs) -> anyhow::Result<()> {
    let shutdown = herald_runtime::listen_for_shutdown()?;
    herald_runtime::telemetry::init(args.log_format);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "starting herald dispatcher"
    );
    // A CA bundle that cannot be used stops the start: every https delivery would fail.
    let tls = args.tls.load()?;
    transforming::install_workers();
    if let Some(json) = &args.trigger_plan {
        return sidecar_main(&args, &tls, json, shutdown).await;
    }
    let config = herald_runtime::kube_config(args.kubeconfig.as_deref()).await?;
    let api_server = herald_runtime::egress::api_server_addresses(&config.cluster_url).await;
    let egress = Arc::new(args.egress.policy(&api_server));
    tracing::info!(policy = %egress.summary(), "egress policy for subscribers and dead-letter sinks");
    let client = kube::Client::try_from(config)?;
    let nats = herald_runtime::nats::connect(&args.nats, "herald-dispatcher").await?;
    let (metrics, herald_runtime::Component { readiness, admin }) =
        herald_runtime::Component::start(&shutdown, args.metrics_addr, Metrics::register)?;

    let recorder = herald_runtime::event_recorder(client.clone(), "herald-dispatcher");
    let drops = Arc::new(reports::DropReports::default());
    let reporting = tokio::spawn(drops.clone().publish_every_period(recorder));
    let tokens = args
        .token_service_account
        .as_ref()
        .map(|(namespace, name)| {
            // Audiences come from Triggers: never mint one the apiserver accepts.
            herald_runtime::token::TokenSource::new(client.clone(), namespace, name)
                .refusing_apiserver_audiences(client.clone())
        });
    let deliverer = Arc::new(Deliverer {
        rate_sharers: args.replicas,
        jobs: Some(jobs::Jobs::start(&client, &args.watch_namespace)),
        ..deliverer(
            &nats,
            &tls,
            egress,
            &metrics,
            Some(drops),
            tokens,
            args.max_in_flight,
        )
    });

    let changed = Arc::new(Notify::new());
    let notify = {
        let changed = changed.clone();
        move || changed.notify_one()
    };
    let (triggers, watch_triggers) = scope::reflect(
        scope::apis::<Trigger>(&client, &args.watch_namespace),
        notify.clone(),
    );
    let (brokers, watch_brokers) = scope::reflect(
        scope::apis::<Broker>(&client, &args.watch_namespace),
        notify,
    );
    tokio::spawn(watch_triggers);
    tokio::spawn(watch_brokers);
    let (catalog, cataloguing) = start_catalog(&client, &brokers, &metrics);
    tokio::select! {
        _ = async { tokio::join!(triggers.wait_until_ready(), brokers.wait_until_ready()) } => {}
        () = fired(shutdown.clone()) => return Ok(()),
    }
    readiness.set(true);

    // Routing gets a NATS connection of its own: a flood on the delivery side (acks,
    // progress acks and naks of thousands of deliveries to slow subscribers) must not
    // hold up the copies every event needs. Found by the long churn run: with one
    // shared connection a Broker's router stalled for minutes during a 300-Trigger round.
    let routing = herald_runtime::nats::connect(&args.nats, "herald-dispatcher-routing").await?;
    let routing_jetstream = async_nats::jetstream::ContextBuilder::new()
        .timeout(pull::JETSTREAM_API_TIMEOUT)
        .build(routing.client.clone());
    deliverer
        .moves
        .follow_reconnections(routing.state_changes.clone());
    let leases = open_leases(&routing_jetstream).await;
    let mut supervisor = Supervisor::new(deliverer, routing_jetstream, catalog, leases);
    loop {
        supervisor.reconcile(&triggers, &brokers);
        metrics
            .triggers
            .set(i64::try_from(supervisor.deliveries()).unwrap_or(i64::MAX));
        tokio::select! {
            () = changed.notified() => tokio::time::sleep(Duration::from_millis(50)).await,
            () = fired(shutdown.clone()) => break,
        }
    }
    tracing::info!(
        triggers = supervisor.deliveries(),
        drain = ?args.drain_timeout,
        "stopping: no new events; deliveries in flight may finish within the drain time"
    );
    readiness.set(false);
    supervisor.shutdown(args.drain_timeout).await;
    reporting.abort();
    cataloguing.abort();
    admin.abort();
    Ok(())
}

/// The event-type catalog the routers record into, and the task that writes it.
fn start_catalog(
    client: &kube::Client,
    brokers: &herald_runtime::scope::Stores<Broker>,
    metrics: &Metrics,
) -> (Arc<catalog::Catalog>, tokio::task::JoinHandle<()>) {
    let catalog = Arc::new(catalog::Catalog::default());
    let writer = catalog::writer::Writer {
        catalog: catalog.clone(),
        client: client.clone(),
        brokers: brokers.clone(),
        recorder: herald_runtime::event_recorder(client.clone(), "herald-dispatcher"),
        overflow: metrics.eventtypes_overflow.clone(),
    };
    (catalog, tokio::spawn(writer.run()))
}

fn deliverer(
    nats: &herald_runtime::nats::NatsConnection,
    tls: &herald_runtime::tls::ClientTls,
    egress: Arc<herald_runtime::egress::EgressPolicy>,
    metrics: &Metrics,
    drops: Option<Arc<reports::DropReports>>,
    tokens: Option<herald_runtime::token::TokenSource>,
    max_in_flight: u32,
) -> Deliverer {
    Deliverer {
        // A sidecar's config already holds its pod's share; the shared dispatcher sets
        // its own (`--replicas`).
        rate_sharers: 1,
        // Idle connections are kept for reuse, but not every connection a burst opened:
        // thousands of idle sockets to a slow subscriber hold buffers long after it
        // (the numbers Knative's dispatcher uses).
        // The timer is what evicts idle connections in the background: without it the
        // idle timeout applies only when a connection is next checked out, so the
        // connections to subscribers of deleted namespaces were kept for good.
        http: clients::Clients::new(
            tls.clone(),
            {
                let mut builder = Client::builder(TokioExecutor::new());
                builder
                    .pool_timer(hyper_util::rt::TokioTimer::new())
                    .pool_idle_timeout(Duration::from_secs(30))
                    .pool_max_idle_per_host(100);
                builder
            },
            egress,
        ),
        jetstream: async_nats::jetstream::ContextBuilder::new()
            .timeout(pull::JETSTREAM_API_TIMEOUT)
            .build(nats.client.clone()),
        metrics: metrics.clone(),
        drops,
        tokens,
        attempts: deliver::Attempts::default(),
        slots: slots::Slots::new(usize::try_from(max_in_flight).unwrap_or(usize::MAX)),
        moves: follow_leader_moves(nats),
        jobs: None,
    }
}

/// Leader moves (advisories, and reconnections of this connection), followed for as
/// long as the dispatcher runs.
fn follow_leader_moves(nats: &herald_runtime::nats::NatsConnection) -> moves::LeaderMoves {
    let moves = moves::LeaderMoves::default();
    let (following, client) = (moves.clone(), nats.client.clone());
    tokio::spawn(async move { following.follow(client).await });
    moves.follow_reconnections(nats.state_changes.clone());
    moves
}

/// Sidecar mode: one Trigger, from the config the operator put in the pod template, to
/// the consumer container; no Kubernetes API. Replicas share the durable consumer.
async fn sidecar_main(
    args: &DispatcherArgs,
    tls: &herald_runtime::tls::ClientTls,
    json: &str,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let spec: SidecarConfig = serde_json::from_str(json)
        .map_err(|e| anyhow::anyhow!("--trigger-plan is not a valid plan: {e}"))?;
    let subscriber = args
        .subscriber
        .clone()
        .ok_or_else(|| anyhow::anyhow!("--subscriber is required with --trigger-plan"))?;
    let plan = desired::from_sidecar_config(&spec, subscriber)?;
    let nats = herald_runtime::nats::connect(&args.nats, "herald-dispatcher-sidecar").await?;
    let (metrics, herald_runtime::Component { readiness, admin }) =
        herald_runtime::Component::start(&shutdown, args.metrics_addr, Metrics::register)?;
    // The sidecar delivers to its own pod's container on localhost, with the pod's
    // network identity: not a boundary between tenants, so no egress policy.
    let deliverer = Arc::new(deliverer(
        &nats,
        tls,
        Arc::new(herald_runtime::egress::EgressPolicy::unrestricted()),
        &metrics,
        None,
        None,
        args.max_in_flight,
    ));
    tracing::info!(trigger = %format!("{}/{}", plan.namespace, plan.trigger), subscriber = %plan.subscriber, "delivering one Trigger (sidecar)");
    let (stop, stopped) = watch::channel(Stop::Running);
    let task = tokio::spawn(pull::pull_loop(Arc::new(plan), deliverer, stopped));
    readiness.set(true);
    metrics.triggers.set(1);
    fired(shutdown).await;
    tracing::info!(drain = ?args.drain_timeout, "stopping: no new events; deliveries in flight may finish within the drain time");
    readiness.set(false);
    let deadline = tokio::time::Instant::now() + args.drain_timeout;
    let _ = stop.send(Stop::Drain(deadline));
    let _ = tokio::time::timeout_at(deadline + Duration::from_secs(2), task).await;
    admin.abort();
    Ok(())
}
