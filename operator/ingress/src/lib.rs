//! `herald ingress`: the one door producers use. A shared, multi-tenant HTTP server
//! that takes CloudEvents for any Broker at `POST /<namespace>/<broker>` and answers
//! 202 only after JetStream has stored them.
//!
//! ```text
//!  request ─▶ brokers (reflector cache: exists? Ready?)
//!          ─▶ auth (Broker spec.auth: static token hash | TokenReview, cached)
//!          ─▶ in-flight byte budget (held until the acks; 503 when spent)
//!          ─▶ herald_cloudevents::http::decode (binary | structured | batch, validated)
//!          ─▶ herald_cloudevents::nats::encode + naming::event_subject
//!          ─▶ JetStream publish (pipelined) ─▶ await acks ─▶ 202
//! ```

pub mod auth;
pub mod brokers;
pub mod config;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod reviews;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use herald_runtime::fired;

use crate::config::IngressArgs;
use crate::metrics::Metrics;
use crate::server::AppState;

/// Runs `herald ingress` until SIGTERM/SIGINT; in-flight requests finish first.
pub fn run_ingress(args: IngressArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(ingress_main(args))
}

async fn ingress_main(args: IngressArgs) -> anyhow::Result<()> {
    let shutdown = herald_runtime::listen_for_shutdown()?;
    herald_runtime::telemetry::init(args.log_format);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), listen = %args.listen, "starting herald ingress");
    // A certificate that cannot be served stops the start, naming the file.
    let certificate = match (&args.server_cert, &args.server_key) {
        (Some(cert), Some(key)) => {
            Some(herald_runtime::tls::ReloadingCertificate::load(cert, key)?)
        }
        _ => None,
    };
    let client = herald_runtime::kube_client(args.kubeconfig.as_deref()).await?;
    let nats = herald_runtime::nats::connect(&args.nats, "herald-ingress").await?;
    let jetstream = async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .max_ack_inflight(args.max_acks_in_flight)
        .backpressure_on_inflight(true)
        .build(nats.client.clone());
    let (metrics, herald_runtime::Component { readiness, admin }) =
        herald_runtime::Component::start(&shutdown, args.metrics_addr, Metrics::register)?;

    let (brokers, watch_brokers) = brokers::watch(&client, &args.watch_namespace);
    tokio::spawn(watch_brokers);
    tokio::select! {
        () = brokers.wait_until_ready() => {}
        () = fired(shutdown.clone()) => return Ok(()),
    }
    readiness.set(true);

    let state = Arc::new(AppState {
        brokers,
        auth: auth::Authenticator::new(Some(client)),
        nats,
        jetstream,
        metrics,
        max_body_bytes: args.max_body_bytes,
        body_timeout: args.read_timeout,
        per_broker: limits::BrokerConcurrency::new(args.max_concurrent_per_broker),
        in_flight_bytes: herald_runtime::budget::ByteBudget::new(args.max_in_flight_bytes),
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let connection_limits = limits::ConnectionLimits {
        max_headers: args.max_headers,
        max_header_bytes: args.max_header_bytes,
        header_read_timeout: args.read_timeout,
        ..limits::ConnectionLimits::default()
    };
    let app = server::router(state);
    match certificate {
        None => {
            tracing::info!(addr = %args.listen, "accepting events at POST http://<addr>/<namespace>/<broker>");
            limits::serve(listener, app, connection_limits, fired(shutdown)).await;
        }
        Some(certificate) => {
            let acceptor = certificate.acceptor()?;
            tokio::spawn(
                certificate.keep_reloading(args.tls_reload_interval, fired(shutdown.clone())),
            );
            tracing::info!(addr = %args.listen, reload_every = ?args.tls_reload_interval, "accepting events at POST https://<addr>/<namespace>/<broker>");
            limits::serve_tls(listener, acceptor, app, connection_limits, fired(shutdown)).await;
        }
    }
    let _ = admin.await;
    tracing::info!("stopped");
    Ok(())
}
