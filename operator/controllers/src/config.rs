//! Command-line configuration of `herald operator`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use herald_runtime::nats::NatsArgs;
use herald_runtime::telemetry::LogFormat;

/// Flags of `herald operator` (each with an environment fallback).
#[derive(clap::Args, Debug, Clone)]
pub struct OperatorArgs {
    /// NATS connection.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Kubeconfig file; without it, `KUBECONFIG`, `~/.kube/config` or the in-cluster config is used.
    #[arg(long, env = "HERALD_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Address of the admin server (`/metrics`, `/healthz`, `/readyz`).
    #[arg(long, env = herald_api::workload::ENV_METRICS_ADDR, default_value = "0.0.0.0:9090")]
    pub metrics_addr: SocketAddr,
    /// Reconcile only objects in these namespaces, comma-separated (default: all).
    #[arg(long, env = "HERALD_WATCH_NAMESPACE", value_delimiter = ',')]
    pub watch_namespace: Vec<String>,
    /// Base URL of the ingress; Broker addresses are `<base>/<namespace>/<broker>`.
    #[arg(
        long,
        env = "HERALD_INGRESS_URL",
        default_value = "http://herald-ingress.herald-system.svc.cluster.local"
    )]
    pub ingress_url: String,
    /// Base URL of the shared sources adapter; webhook sources are at `<base>/<namespace>/<name>`.
    #[arg(
        long,
        env = "HERALD_SOURCES_URL",
        default_value = "http://herald-sources.herald-system.svc.cluster.local"
    )]
    pub sources_url: String,
    /// Name of the leader-election Lease.
    #[arg(long, env = "HERALD_LEASE_NAME", default_value = "herald-operator")]
    pub lease_name: String,
    /// Namespace of the leader-election Lease and the webhook's certificate Secret.
    /// Default: where the operator runs — `$POD_NAMESPACE`, else the in-cluster
    /// ServiceAccount's namespace, else the kubeconfig context's. It must exist.
    #[arg(long, env = "HERALD_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// How long a leader's Lease lasts without renewal, e.g. `15s`.
    #[arg(long, env = "HERALD_LEASE_DURATION", default_value = "15s", value_parser = herald_api::duration::parse_flag)]
    pub lease_duration: Duration,
    /// Identity in the Lease and in Events (default: `$HOSTNAME` and the process id).
    #[arg(long, env = "HERALD_IDENTITY")]
    pub identity: Option<String>,
    /// Image of the dispatcher sidecar in consumer Deployments (`http` mode).
    #[arg(long, env = "HERALD_SIDECAR_IMAGE", default_value = concat!("ghcr.io/herald-dev/herald:", env!("CARGO_PKG_VERSION")))]
    pub sidecar_image: String,
    /// NATS URL(s) given to consumer Deployments' pods (default: the operator's `--nats-url`).
    #[arg(long, env = "HERALD_WORKLOAD_NATS_URL")]
    pub workload_nats_url: Option<String>,
    /// Namespaces whose `nats` EventSources may read through Herald's own NATS
    /// connection (no `url`, no credentials of their own), comma-separated; `*` for
    /// all. Default: none. Such sources stay away from Herald's subjects and streams.
    #[arg(long, env = "HERALD_SHARED_NATS_NAMESPACES", value_delimiter = ',')]
    pub shared_nats_namespaces: Vec<String>,
    /// Most bytes a Broker's stream may keep, e.g. `2Gi`: a Broker asking for more is
    /// refused (`InvalidSpec`), one leaving `spec.stream.maxBytes` unset gets this.
    /// JetStream reserves each stream's maxBytes in its store. Default: no ceiling.
    #[arg(long, env = "HERALD_MAX_STREAM_BYTES", value_parser = herald_api::quantity::parse_flag)]
    pub max_stream_bytes: Option<u64>,
    /// Oldest event a Broker's stream may keep, e.g. `168h`: a Broker asking for longer
    /// is refused (`InvalidSpec`), one leaving `spec.stream.maxAge` unset gets this.
    /// Default: no ceiling.
    #[arg(long, env = "HERALD_MAX_STREAM_AGE", value_parser = herald_api::duration::parse_flag)]
    pub max_stream_age: Option<Duration>,
    /// Triggers whose queues share one queue stream of their Broker; a Broker with more
    /// Triggers gets more queue streams. nats-server's work per delivered event grows
    /// with the consumers of a stream (docs/architecture.md), so keep it small.
    #[arg(
        long,
        env = "HERALD_TRIGGERS_PER_QUEUE_STREAM",
        default_value_t = herald_api::naming::DEFAULT_TRIGGERS_PER_QUEUE_STREAM,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub triggers_per_queue_stream: u32,
    /// Log format.
    #[arg(long, env = "HERALD_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
    /// The admission webhook (off unless `--admission-addr` is given).
    #[command(flatten)]
    pub admission: crate::admission::AdmissionArgs,
}
