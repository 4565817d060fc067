//! Command-line configuration of `herald ingress`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use herald_runtime::nats::NatsArgs;
use herald_runtime::telemetry::LogFormat;

/// Default `--max-in-flight-bytes`: a quarter of the chart's 256 MiB memory limit.
pub const DEFAULT_MAX_IN_FLIGHT_BYTES: usize = 64 * 1024 * 1024;

/// Flags of `herald ingress` (each with an environment fallback).
#[derive(clap::Args, Debug, Clone)]
pub struct IngressArgs {
    /// NATS connection.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Address producers send events to: `POST http://<addr>/<namespace>/<broker>`
    /// (`https://` with `--tls-cert`).
    #[arg(long, env = "HERALD_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Address of the admin server (`/metrics`, `/healthz`, `/readyz`).
    #[arg(long, env = herald_api::workload::ENV_METRICS_ADDR, default_value = "0.0.0.0:9091")]
    pub metrics_addr: SocketAddr,
    /// Largest request body accepted, in bytes; larger requests get 413. Each event
    /// must also fit the NATS server's max payload (1 MiB by default).
    #[arg(long, env = "HERALD_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Serve only Brokers in these namespaces, comma-separated (default: all).
    #[arg(long, env = "HERALD_WATCH_NAMESPACE", value_delimiter = ',')]
    pub watch_namespace: Vec<String>,
    /// Kubeconfig file; without it, `KUBECONFIG`, `~/.kube/config` or the in-cluster config is used.
    #[arg(long, env = "HERALD_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Most JetStream publishes awaiting their ack at once (shared by all requests).
    #[arg(long, env = "HERALD_MAX_ACKS_IN_FLIGHT", default_value_t = 16_384)]
    pub max_acks_in_flight: usize,
    /// Most headers in a request; more get 431.
    #[arg(long, env = "HERALD_MAX_HEADERS", default_value_t = crate::limits::DEFAULT_MAX_HEADERS)]
    pub max_headers: usize,
    /// Most bytes of request line plus headers; more get 431.
    #[arg(long, env = "HERALD_MAX_HEADER_BYTES", default_value_t = crate::limits::DEFAULT_MAX_HEADER_BYTES)]
    pub max_header_bytes: usize,
    /// Time a client has to send the headers (else the connection is closed) and,
    /// again, the body (else 408), e.g. `15s`.
    #[arg(long, env = "HERALD_READ_TIMEOUT", default_value = "15s", value_parser = herald_api::duration::parse_flag)]
    pub read_timeout: Duration,
    /// Most requests in flight per Broker; more get 429 with `Retry-After` (0: no limit).
    #[arg(long, env = "HERALD_MAX_CONCURRENT_PER_BROKER", default_value_t = 1024)]
    pub max_concurrent_per_broker: usize,
    /// Most bytes of request bodies held at once, across all requests: from reading
    /// until JetStream stored their events. A request that does not fit gets 503 with
    /// `Retry-After` before its body is read (0: no limit). Keep it well under the
    /// memory limit: events are held about twice (the body and their NATS messages).
    #[arg(long, env = "HERALD_MAX_IN_FLIGHT_BYTES", default_value_t = DEFAULT_MAX_IN_FLIGHT_BYTES)]
    pub max_in_flight_bytes: usize,
    /// Serve https with this certificate chain (PEM, leaf first; e.g. `tls.crt` of a
    /// `kubernetes.io/tls` Secret). Without it, plain HTTP.
    #[arg(
        long = "tls-cert",
        env = "HERALD_TLS_CERT",
        value_name = "FILE",
        requires = "server_key"
    )]
    pub server_cert: Option<PathBuf>,
    /// The private key (PEM) of `--tls-cert`.
    #[arg(
        long = "tls-key",
        env = "HERALD_TLS_KEY",
        value_name = "FILE",
        requires = "server_cert"
    )]
    pub server_key: Option<PathBuf>,
    /// How often the certificate files are read again; new connections get a changed
    /// certificate (a Secret mount is updated in place), e.g. `10s`.
    #[arg(long, env = "HERALD_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = herald_api::duration::parse_flag)]
    pub tls_reload_interval: Duration,
    /// Log format.
    #[arg(long, env = "HERALD_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::IngressArgs;
    use crate::limits::ConnectionLimits;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: IngressArgs,
    }

    #[test]
    fn flag_defaults_are_the_connection_limits_defaults() {
        let args = Cli::parse_from(["herald-ingress"]).args;
        let defaults = ConnectionLimits::default();
        assert_eq!(
            (args.max_headers, args.max_header_bytes, args.read_timeout),
            (
                defaults.max_headers,
                defaults.max_header_bytes,
                defaults.header_read_timeout
            )
        );
    }

    #[test]
    fn a_certificate_needs_its_key() {
        let parsed = Cli::try_parse_from(["herald-ingress", "--tls-cert", "tls.crt"]);
        assert!(parsed.is_err());
        let args = Cli::parse_from(["herald-ingress", "--tls-cert", "c", "--tls-key", "k"]).args;
        assert!(args.server_cert.is_some() && args.server_key.is_some());
    }
}
