//! Command-line configuration of `herald dispatcher`.

use std::net::SocketAddr;
use std::path::PathBuf;

use herald_runtime::egress::EgressArgs;
use herald_runtime::nats::NatsArgs;
use herald_runtime::telemetry::LogFormat;
use herald_runtime::tls::ClientTlsArgs;

/// Flags of `herald dispatcher` (each with an environment fallback).
#[derive(clap::Args, Debug, Clone)]
pub struct DispatcherArgs {
    /// NATS connection.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// What `https://` subscribers are trusted by.
    #[command(flatten)]
    pub tls: ClientTlsArgs,
    /// Where subscribers and dead-letter sinks may be (not applied in sidecar mode).
    #[command(flatten)]
    pub egress: EgressArgs,
    /// Address of the admin server (`/metrics`, `/healthz`, `/readyz`).
    #[arg(long, env = herald_api::workload::ENV_METRICS_ADDR, default_value = "0.0.0.0:9092")]
    pub metrics_addr: SocketAddr,
    /// Deliver only Triggers in these namespaces, comma-separated (default: all).
    #[arg(long, env = "HERALD_WATCH_NAMESPACE", value_delimiter = ',')]
    pub watch_namespace: Vec<String>,
    /// Kubeconfig file; without it, `KUBECONFIG`, `~/.kube/config` or the in-cluster config is used.
    #[arg(long, env = "HERALD_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Sidecar mode: deliver only this Trigger, described as JSON by the operator (the
    /// pod template of a consumer Deployment sets it); no Kubernetes API access is needed.
    #[arg(
        long,
        env = herald_api::workload::ENV_TRIGGER_PLAN,
        value_name = "JSON",
        requires = "subscriber"
    )]
    pub trigger_plan: Option<String>,
    /// Sidecar mode: where to POST the Trigger's events (the consumer container).
    #[arg(long, env = herald_api::workload::ENV_SUBSCRIBER, value_name = "URL")]
    pub subscriber: Option<String>,
    /// ServiceAccount (`NAMESPACE/NAME`, normally the dispatcher's own) whose tokens
    /// are sent to subscribers that set `audience`.
    #[arg(long, env = "HERALD_TOKEN_SERVICE_ACCOUNT", value_name = "NAMESPACE/NAME", value_parser = herald_runtime::token::parse_account)]
    pub token_service_account: Option<(String, String)>,
    /// Most deliveries in flight at once across all Triggers (each Trigger is also held
    /// to its own `maxInFlight`); bounds the dispatcher's connections and memory.
    #[arg(long, env = "HERALD_MAX_IN_FLIGHT", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,
    /// How many dispatcher replicas share the Triggers: each lets through 1/N of every
    /// Trigger's `delivery.rateLimit`, so together they keep to it (the chart sets it
    /// from `dispatcher.replicas`).
    #[arg(long, env = "HERALD_DISPATCHER_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub replicas: u32,
    /// On SIGTERM, how long deliveries in flight may take to finish before the rest is
    /// handed back to JetStream for redelivery (keep it below the pod's grace period).
    #[arg(long, env = "HERALD_DRAIN_TIMEOUT", default_value = "20s", value_parser = herald_api::duration::parse_flag)]
    pub drain_timeout: std::time::Duration,
    /// Log format.
    #[arg(long, env = "HERALD_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
}
