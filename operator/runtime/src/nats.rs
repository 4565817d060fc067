//! The NATS connection every component makes, configured from the same flags.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;

/// NATS connection flags (each with an environment fallback).
#[derive(clap::Args, Debug, Clone)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated; the client fails over between them.
    #[arg(
        long = "nats-url",
        env = "HERALD_NATS_URL",
        value_delimiter = ',',
        default_value = "nats://127.0.0.1:4222"
    )]
    pub urls: Vec<String>,
    /// NATS credentials file (JWT + NKey seed, a `.creds` file).
    #[arg(long = "nats-creds", env = "HERALD_NATS_CREDS", value_name = "FILE")]
    pub creds: Option<PathBuf>,
    /// NATS authentication token.
    #[arg(long = "nats-token", env = "HERALD_NATS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// NATS user name; needs --nats-password.
    #[arg(long = "nats-user", env = "HERALD_NATS_USER", requires = "password")]
    pub user: Option<String>,
    /// NATS password for --nats-user.
    #[arg(
        long = "nats-password",
        env = "HERALD_NATS_PASSWORD",
        hide_env_values = true,
        requires = "user"
    )]
    pub password: Option<String>,
    /// NATS NKey seed (`SU...`): the client signs the server's challenge with it.
    #[arg(long = "nats-nkey", env = "HERALD_NATS_NKEY", hide_env_values = true)]
    pub nkey: Option<String>,
    /// CA certificate (PEM) to verify the NATS server's TLS certificate.
    #[arg(long = "nats-tls-ca", env = "HERALD_NATS_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs --nats-tls-key.
    #[arg(
        long = "nats-tls-cert",
        env = "HERALD_NATS_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS; needs --nats-tls-cert.
    #[arg(
        long = "nats-tls-key",
        env = "HERALD_NATS_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Refuse to talk to NATS without TLS.
    #[arg(long = "nats-tls-required", env = "HERALD_NATS_TLS_REQUIRED")]
    pub tls_required: bool,
}

/// A NATS client plus a counter of connection state changes (connected or
/// disconnected), which lets a component react when NATS goes away or comes back.
#[derive(Clone)]
pub struct NatsConnection {
    /// The client; it reconnects by itself.
    pub client: async_nats::Client,
    /// Incremented on every connection and every disconnection.
    pub state_changes: watch::Receiver<u64>,
}

impl NatsConnection {
    /// Whether the client is connected right now.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

/// Applies the credentials and TLS settings of `args` to `options`: what every
/// connection to NATS needs, whether long-lived (components) or one-shot (`herald tail`).
pub async fn with_security(
    mut options: async_nats::ConnectOptions,
    args: &NatsArgs,
) -> anyhow::Result<async_nats::ConnectOptions> {
    if let Some(creds) = &args.creds {
        options = options.credentials_file(creds).await.map_err(|e| {
            anyhow::anyhow!("cannot read NATS credentials {}: {e}", creds.display())
        })?;
    }
    if let Some(token) = &args.token {
        options = options.token(token.clone());
    }
    if let (Some(user), Some(password)) = (&args.user, &args.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(seed) = &args.nkey {
        // Checked here: a bad seed would otherwise only show as endless reconnects.
        nkeys::KeyPair::from_seed(seed.trim())
            .map_err(|e| anyhow::anyhow!("--nats-nkey is not an NKey seed: {e}"))?;
        options = options.nkey(seed.trim().to_owned());
    }
    if let Some(ca) = &args.tls_ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    if args.tls_required {
        options = options.require_tls(true);
    }
    Ok(options)
}

/// Connects to NATS. Does not wait for the server: when it is down, the client keeps
/// trying in the background, so a component starts and reports NATS as unavailable
/// instead of crash-looping.
pub async fn connect(args: &NatsArgs, client_name: &str) -> anyhow::Result<NatsConnection> {
    let (tx, rx) = watch::channel(0u64);
    let mut options = async_nats::ConnectOptions::new()
        .name(client_name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(3))
        // A server cut off by the network sends no reset: only missed pings show it.
        // Every 2 s (default 60 s), so a client on it moves to another node in seconds.
        .ping_interval(Duration::from_secs(2))
        .request_timeout(Some(Duration::from_secs(5)))
        // Reconnect quickly (NATS restarts are short); the cap keeps a dead server cheap.
        .reconnect_delay_callback(|attempt| {
            Duration::from_millis(100 * u64::try_from(attempt.min(20)).unwrap_or(20))
        })
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!("connected to NATS");
                        tx.send_modify(|n| *n += 1);
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!("disconnected from NATS");
                        tx.send_modify(|n| *n += 1);
                    }
                    other => tracing::info!(event = %other, "NATS connection event"),
                }
            }
        });
    options = with_security(options, args).await?;
    let client = options
        .connect(&args.urls)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to NATS at {}: {e}", args.urls.join(",")))?;
    Ok(NatsConnection {
        client,
        state_changes: rx,
    })
}
