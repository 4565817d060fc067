//! Command-line configuration of `herald sources`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use herald_runtime::egress::EgressArgs;
use herald_runtime::nats::NatsArgs;
use herald_runtime::telemetry::LogFormat;
use herald_runtime::tls::ClientTlsArgs;

/// Flags of `herald sources` (each with an environment fallback).
#[derive(clap::Args, Debug, Clone)]
pub struct SourcesArgs {
    /// NATS connection (also the default for `nats` sources).
    #[command(flatten)]
    pub nats: NatsArgs,
    /// What `https://` sinks are trusted by.
    #[command(flatten)]
    pub tls: ClientTlsArgs,
    /// Where sinks given as a `uri` may be (not applied to a `kubernetes` source, which
    /// runs in its own pod as the tenant's ServiceAccount).
    #[command(flatten)]
    pub egress: EgressArgs,
    /// Address of the webhook endpoint (`POST /<namespace>/<eventsource>`).
    #[arg(long, env = "HERALD_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Address of the admin server (`/metrics`, `/healthz`, `/readyz`).
    #[arg(long, env = herald_api::workload::ENV_METRICS_ADDR, default_value = "0.0.0.0:9093")]
    pub metrics_addr: SocketAddr,
    /// Run only EventSources in these namespaces, comma-separated (default: all).
    #[arg(long, env = "HERALD_WATCH_NAMESPACE", value_delimiter = ',')]
    pub watch_namespace: Vec<String>,
    /// Kubeconfig file; without it, `KUBECONFIG`, `~/.kube/config` or the in-cluster config is used.
    #[arg(long, env = "HERALD_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Run one `kubernetes` EventSource, described as JSON by the operator (its
    /// Deployment sets it); the process then needs no NATS and no webhook listener.
    #[arg(long, env = herald_api::workload::ENV_KUBERNETES_PLAN, value_name = "JSON")]
    pub kubernetes_plan: Option<String>,
    /// ServiceAccount (`NAMESPACE/NAME`, normally the adapter's own) whose tokens are
    /// sent to sinks that ask for one (Brokers with `spec.auth`).
    #[arg(long, env = "HERALD_TOKEN_SERVICE_ACCOUNT", value_name = "NAMESPACE/NAME", value_parser = herald_runtime::token::parse_account)]
    pub token_service_account: Option<(String, String)>,
    /// Time a webhook client has to send the headers (else the connection is closed)
    /// and, again, the body (else 408), e.g. `15s`.
    #[arg(long, env = "HERALD_READ_TIMEOUT", default_value = "15s", value_parser = herald_api::duration::parse_flag)]
    pub read_timeout: Duration,
    /// Most webhook connections open at once; more wait in the listen backlog (0: no
    /// limit). Each may hold a request for as long as its sink takes, retries included.
    #[arg(long, env = "HERALD_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Most bytes of webhook bodies held at once, from reading until the sink took the
    /// event; a request that does not fit gets 503 with `Retry-After` (0: no limit).
    #[arg(long, env = "HERALD_MAX_IN_FLIGHT_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_in_flight_bytes: usize,
    /// Log format.
    #[arg(long, env = "HERALD_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
}
