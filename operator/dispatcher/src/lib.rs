//! `herald dispatcher`: delivers each Ready Trigger's events to its subscriber.
//!
//! ```text
//!  Triggers + Brokers (reflectors) ──▶ plan::plan per Trigger ──▶ one pull loop per plan
//!  pull loop: durable consumer ──▶ deliver::Deliverer::handle (≤ maxInFlight at once)
//!             ──▶ filter ─▶ POST ─▶ ack | NAK(backoff) | dead-letter | drop
//! ```
//!
//! Several dispatchers may run: they pull from the same durable consumers, and
//! JetStream shares the events between them. A dispatcher that dies loses nothing:
//! what it had not acknowledged is redelivered after the consumer's ack wait (10 s;
//! [`pull`] keeps the messages it holds alive with progress acks).

pub mod config;
pub mod deliver;
pub mod filtering;
pub mod metrics;
pub mod plan;
pub mod pull;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use herald_api::workload::DispatcherPlan;
use herald_api::{Broker, Trigger};
use herald_runtime::fired;
use herald_runtime::scope::{self, Stores};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kube::ResourceExt;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::{Notify, watch};

use crate::config::DispatcherArgs;
use crate::deliver::Deliverer;
use crate::metrics::Metrics;
use crate::plan::TriggerPlan;

/// Runs `herald dispatcher` until SIGTERM/SIGINT; deliveries in flight finish first.
pub fn run_dispatcher(args: DispatcherArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(dispatcher_main(args))
}

async fn dispatcher_main(args: DispatcherArgs) -> anyhow::Result<()> {
    herald_runtime::telemetry::init(args.log_format);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "starting herald dispatcher"
    );
    if let Some(json) = &args.trigger_plan {
        return sidecar_main(&args, json).await;
    }
    let client = herald_runtime::kube_client(args.kubeconfig.as_deref()).await?;
    let nats = herald_runtime::nats::connect(&args.nats, "herald-dispatcher").await?;
    let (
        metrics,
        herald_runtime::Component {
            shutdown,
            readiness,
            admin,
        },
    ) = herald_runtime::Component::start(args.metrics_addr, Metrics::register)?;

    let recorder = herald_runtime::event_recorder(client.clone(), "herald-dispatcher");
    let tokens = args
        .token_service_account
        .as_ref()
        .map(|(namespace, name)| {
            herald_runtime::token::TokenSource::new(client.clone(), namespace, name)
        });
    let deliverer = Arc::new(deliverer(&nats, &metrics, Some(recorder), tokens));

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
    tokio::select! {
        _ = async { tokio::join!(triggers.wait_until_ready(), brokers.wait_until_ready()) } => {}
        () = fired(shutdown.clone()) => return Ok(()),
    }
    readiness.set(true);

    let mut running: HashMap<String, Running> = HashMap::new();
    loop {
        let desired = desired_plans(&triggers, &brokers);
        reconcile_loops(&mut running, desired, &deliverer);
        metrics
            .triggers
            .set(i64::try_from(running.len()).unwrap_or(i64::MAX));
        tokio::select! {
            () = changed.notified() => tokio::time::sleep(Duration::from_millis(50)).await,
            () = fired(shutdown.clone()) => break,
        }
    }
    tracing::info!(
        triggers = running.len(),
        "stopping; letting deliveries in flight finish"
    );
    for (_, loop_) in running.drain() {
        let _ = loop_.stop.send(true);
        let _ = loop_.task.await;
    }
    let _ = admin.await;
    Ok(())
}

fn deliverer(
    nats: &herald_runtime::nats::NatsConnection,
    metrics: &Metrics,
    recorder: Option<Recorder>,
    tokens: Option<herald_runtime::token::TokenSource>,
) -> Deliverer {
    Deliverer {
        http: Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build_http(),
        jetstream: async_nats::jetstream::ContextBuilder::new()
            .timeout(pull::JETSTREAM_API_TIMEOUT)
            .build(nats.client.clone()),
        metrics: metrics.clone(),
        recorder,
        tokens,
    }
}

/// Sidecar mode: one Trigger, from the plan the operator put in the pod template, to
/// the consumer container; no Kubernetes API. Replicas share the durable consumer.
async fn sidecar_main(args: &DispatcherArgs, json: &str) -> anyhow::Result<()> {
    let spec: DispatcherPlan = serde_json::from_str(json)
        .map_err(|e| anyhow::anyhow!("--trigger-plan is not a valid plan: {e}"))?;
    let subscriber = args
        .subscriber
        .clone()
        .ok_or_else(|| anyhow::anyhow!("--subscriber is required with --trigger-plan"))?;
    let plan = plan::from_spec(&spec, subscriber).map_err(|e| anyhow::anyhow!("{e}"))?;
    let nats = herald_runtime::nats::connect(&args.nats, "herald-dispatcher-sidecar").await?;
    let (
        metrics,
        herald_runtime::Component {
            shutdown,
            readiness,
            admin,
        },
    ) = herald_runtime::Component::start(args.metrics_addr, Metrics::register)?;
    let deliverer = Arc::new(deliverer(&nats, &metrics, None, None));
    tracing::info!(trigger = %format!("{}/{}", plan.namespace, plan.trigger), subscriber = %plan.subscriber, "delivering one Trigger (sidecar)");
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(pull::pull_loop(Arc::new(plan), deliverer, stopped));
    readiness.set(true);
    metrics.triggers.set(1);
    fired(shutdown).await;
    tracing::info!("stopping; letting deliveries in flight finish");
    let _ = stop.send(true);
    let _ = task.await;
    let _ = admin.await;
    Ok(())
}

/// A Trigger's running pull loop.
struct Running {
    plan: TriggerPlan,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn desired_plans(
    triggers: &Stores<Trigger>,
    brokers: &Stores<Broker>,
) -> HashMap<String, TriggerPlan> {
    triggers
        .state()
        .iter()
        .filter_map(|t| {
            let broker = brokers.get(&ObjectRef::new(&t.spec.broker).within(&t.namespace()?));
            plan::plan(t, broker.as_deref())
        })
        .map(|p| (format!("{}/{}", p.namespace, p.trigger), p))
        .collect()
}

/// Starts, restarts and stops loops so that exactly the desired plans run.
fn reconcile_loops(
    running: &mut HashMap<String, Running>,
    desired: HashMap<String, TriggerPlan>,
    deliverer: &Arc<Deliverer>,
) {
    running.retain(|key, loop_| {
        let keep = desired.get(key) == Some(&loop_.plan);
        if !keep {
            tracing::info!(trigger = %key, "stopping delivery");
            let _ = loop_.stop.send(true);
        }
        keep
    });
    for (key, plan) in desired {
        if running.contains_key(&key) {
            continue;
        }
        tracing::info!(trigger = %key, subscriber = %plan.subscriber, "starting delivery");
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(pull::pull_loop(
            Arc::new(plan.clone()),
            deliverer.clone(),
            stopped,
        ));
        running.insert(key, Running { plan, stop, task });
    }
}
