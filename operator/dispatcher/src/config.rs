//! Command-line configuration of `herald dispatcher`.

use std::net::SocketAddr;
use std::path::PathBuf;

use herald_runtime::nats::NatsArgs;
use herald_runtime::telemetry::LogFormat;

/// Flags of `herald dispatcher` (each with an environment fallback).
#[derive(clap::Args, Debug, Clone)]
pub struct DispatcherArgs {
    /// NATS connection.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Address of the admin server (`/metrics`, `/healthz`, `/readyz`).
    #[arg(long, env = "HERALD_METRICS_ADDR", default_value = "0.0.0.0:9092")]
    pub metrics_addr: SocketAddr,
    /// Deliver only Triggers in this namespace (default: all namespaces).
    #[arg(long, env = "HERALD_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Kubeconfig file; without it, `KUBECONFIG`, `~/.kube/config` or the in-cluster config is used.
    #[arg(long, env = "HERALD_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "HERALD_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
}
