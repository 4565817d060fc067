//! The validating admission webhook: who may ask Herald to run things.
//!
//! Herald acts with its own rights: it creates consumer Deployments from a Trigger's
//! pod template, runs a kubernetes source's adapter as the ServiceAccount it names and
//! patches the Deployments a sink binding selects. Without a check, creating a Trigger
//! would be creating pods as any ServiceAccount of the namespace. So before such an
//! object is stored, the apiserver asks this webhook, and the webhook asks the
//! apiserver (`SubjectAccessReview`) whether the *requesting user* may do the same
//! directly ([`policy`]); if not, the request is refused, naming what is missing.
//!
//! ```text
//!  herald operator --admission-addr 0.0.0.0:8443      (every replica, leader or not)
//!   ├─ HTTPS POST /validate  ── review: policy + SubjectAccessReviews   review
//!   └─ keeper: CA + serving certificate in a Secret,                   keeper, cert
//!              caBundle on the ValidatingWebhookConfiguration
//! ```

pub mod cert;
pub mod keeper;
pub mod policy;
pub mod review;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use axum::{Json, Router};
use herald_runtime::http_server::ConnectionLimits;
use kube::Client;
use kube::core::DynamicObject;
use kube::core::admission::AdmissionReview;
use tokio::sync::watch;

/// The path the webhook configuration points at.
pub const PATH: &str = "/validate";
/// The largest `AdmissionReview` read.
const MAX_REVIEW_BYTES: usize = 8 << 20;

/// Flags of the admission webhook (`herald operator`).
#[derive(clap::Args, Debug, Clone)]
pub struct AdmissionArgs {
    /// Serve the admission webhook (HTTPS) on this address, e.g. `0.0.0.0:8443`; no
    /// webhook when unset.
    #[arg(long, env = "HERALD_ADMISSION_ADDR")]
    pub admission_addr: Option<SocketAddr>,
    /// `ValidatingWebhookConfiguration` whose webhooks get the CA of the webhook's
    /// certificate as `caBundle`.
    #[arg(
        long,
        env = "HERALD_ADMISSION_WEBHOOK_CONFIG",
        requires = "admission_addr"
    )]
    pub admission_webhook_config: Option<String>,
    /// Secret (in `--lease-namespace`) that keeps the webhook's CA and certificate, so
    /// every replica serves the same one.
    #[arg(
        long,
        env = "HERALD_ADMISSION_SECRET",
        default_value = "herald-operator-admission-tls"
    )]
    pub admission_secret: String,
    /// Service in front of the webhook: the certificate is for its in-cluster names
    /// (`<service>.<lease namespace>.svc`, ...).
    #[arg(
        long,
        env = "HERALD_ADMISSION_SERVICE",
        default_value = "herald-operator"
    )]
    pub admission_service: String,
    /// More names (DNS names or IP addresses) for the certificate, comma-separated.
    #[arg(long, env = "HERALD_ADMISSION_EXTRA_NAMES", value_delimiter = ',')]
    pub admission_extra_names: Vec<String>,
}

/// Why the webhook could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// The address cannot be bound.
    #[error("cannot listen on {addr} for the admission webhook")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// rustls refused the server configuration.
    #[error("cannot set up TLS for the admission webhook")]
    Tls(#[source] rustls::Error),
}

/// Starts the webhook and its certificate keeper (until `shutdown`), if
/// `--admission-addr` is given; `namespace` is the operator's own.
pub async fn start(
    args: &AdmissionArgs,
    client: &Client,
    namespace: &str,
    shutdown: &watch::Receiver<bool>,
) -> Result<(), AdmissionError> {
    let Some(addr) = args.admission_addr else {
        return Ok(());
    };
    let serving = Arc::new(tls::ServingCertificate::default());
    let acceptor = serving.acceptor().map_err(AdmissionError::Tls)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| AdmissionError::Bind { addr, source })?;
    let keeping = keeper::Keeping {
        namespace: namespace.to_owned(),
        secret: args.admission_secret.clone(),
        names: cert::names(
            &args.admission_service,
            namespace,
            &args.admission_extra_names,
        ),
        webhook_config: args.admission_webhook_config.clone(),
    };
    tokio::spawn(keeper::keep(
        client.clone(),
        keeping,
        serving,
        shutdown.clone(),
    ));
    let review_client = client.clone();
    let app = Router::new()
        .route(
            PATH,
            post(move |Json(review): Json<AdmissionReview<DynamicObject>>| {
                let client = review_client.clone();
                async move { Json(review::answer(&client, review).await) }
            }),
        )
        // An UPDATE carries the object twice, each up to etcd's 1.5 MiB: above axum's
        // 2 MiB default, and a review refused for size is a request refused.
        .layer(DefaultBodyLimit::max(MAX_REVIEW_BYTES));
    let limits = ConnectionLimits {
        // The apiserver is the only client; a few dozen connections is plenty.
        max_connections: 256,
        ..ConnectionLimits::default()
    };
    tracing::info!(%addr, path = PATH, "serving the admission webhook");
    tokio::spawn(herald_runtime::http_server::serve_tls(
        listener,
        acceptor,
        app,
        limits,
        herald_runtime::fired(shutdown.clone()),
    ));
    Ok(())
}
