//! Process plumbing shared by every long-running Herald component (operator, ingress,
//! dispatcher, source adapters): logging, the NATS connection, the admin HTTP server
//! (`/metrics`, `/healthz`, `/readyz`), shutdown on SIGTERM/SIGINT, the one way a
//! CloudEvent is sent out with `POST` ([`outbound`]) and the supervisor of restartable loops
//! ([`loops`]).
//!
//! Nothing here knows about Brokers or Triggers; components build on it.

pub mod admin;
pub mod budget;
pub mod egress;
pub mod http_server;
pub mod loops;
pub mod nats;
pub mod outbound;
pub mod scope;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tls;
pub mod token;

/// A recorder of Kubernetes Events from `controller` (e.g. `herald-dispatcher`), this
/// replica named by its pod (`HOSTNAME`).
#[must_use]
pub fn event_recorder(client: kube::Client, controller: &str) -> kube::runtime::events::Recorder {
    let instance = std::env::var("HOSTNAME").unwrap_or_else(|_| controller.to_owned());
    kube::runtime::events::Recorder::new(
        client,
        kube::runtime::events::Reporter {
            controller: controller.to_owned(),
            instance: Some(instance),
        },
    )
}

/// A flag raised when the process receives SIGTERM or SIGINT, listened for from this
/// call on. Call it first thing in a component's async main, before anything that can
/// take time: a container's PID 1 ignores a signal it has no handler for, so a pod
/// deleted while its process was still starting (a consumer scaled down at once)
/// waited out its whole grace period, 30 s, before the kubelet killed it.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub fn listen_for_shutdown() -> std::io::Result<tokio::sync::watch::Receiver<bool>> {
    let (raise, shutdown) = tokio::sync::watch::channel(false);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        // Created here, not in the task: the handlers are installed when this returns.
        let mut term = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
                _ = interrupt.recv() => tracing::info!("SIGINT received, shutting down"),
            }
            let _ = raise.send(true);
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("Ctrl-C received, shutting down");
            let _ = raise.send(true);
        }
    });
    Ok(shutdown)
}

/// A Kubernetes client from `kubeconfig` when given, else from `KUBECONFIG`,
/// `~/.kube/config` or the in-cluster service account.
pub async fn kube_client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
    Ok(kube::Client::try_from(kube_config(kubeconfig).await?)?)
}

/// The Kubernetes client configuration from `kubeconfig` when given, else from
/// `KUBECONFIG`, `~/.kube/config` or the in-cluster service account.
pub async fn kube_config(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Config> {
    use anyhow::Context as _;
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await?
        }
        None => kube::Config::infer()
            .await
            .context("no Kubernetes configuration found")?,
    };
    Ok(config)
}

/// A future that resolves once the watched flag turns true (a shutdown or stop signal
/// shared by several tasks).
pub async fn fired(mut flag: tokio::sync::watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}

/// What every long-running component starts with once it listens for shutdown
/// ([`listen_for_shutdown`]): the admin server (`/metrics` for `registry`, `/healthz`,
/// `/readyz` following `readiness`), which stops with that flag.
pub struct Component {
    /// What `/readyz` reports; starts not ready.
    pub readiness: admin::Readiness,
    /// The admin server; await it after shutdown.
    pub admin: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Component {
    /// Creates the component's metrics with `register` in a fresh registry and serves
    /// the admin routes for that registry on `admin_addr` until `shutdown`.
    pub fn start<M>(
        shutdown: &tokio::sync::watch::Receiver<bool>,
        admin_addr: std::net::SocketAddr,
        register: impl FnOnce(&prometheus::Registry) -> prometheus::Result<M>,
    ) -> anyhow::Result<(M, Self)> {
        let registry = prometheus::Registry::new();
        let metrics = register(&registry)?;
        let readiness = admin::Readiness::default();
        let admin = tokio::spawn(admin::serve(
            admin_addr,
            registry,
            readiness.clone(),
            fired(shutdown.clone()),
        ));
        Ok((metrics, Self { readiness, admin }))
    }
}
