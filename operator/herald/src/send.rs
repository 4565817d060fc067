//! `herald send`: send one CloudEvent to a Broker, by URL or by `namespace/name`.
//!
//! Exit codes: 0 when the ingress accepted the event (2xx), 1 when it refused it
//! (the status and the error body are printed), 2 when it could not be sent at all
//! (bad arguments, Broker not found or without an address, connection failure).

use anyhow::Context as _;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use herald_api::Broker;
use herald_cloudevents::CloudEvent;
use herald_runtime::outbound;
use herald_runtime::tls::ClientTlsArgs;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Flags of `herald send`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
herald send --to default/orders --type com.example.order.created --data '{\"id\":42}'\n  \
herald send --url http://localhost:8080/default/orders --type t --source /me --data-file event.json\n  \
herald send --url https://ingress.example/default/orders --type t --ca-bundle ca.crt\n  \
echo hello | herald send --to team/b --type greeting --content-type text/plain --data-file -\n  \
herald send --to team/secure --type t --token \"$(kubectl create token producer -n team --audience http://ingress/team/secure)\"")]
pub struct SendArgs {
    /// Broker as `namespace/name` (its address is read from `status.address.url`).
    #[arg(long, conflicts_with = "url", required_unless_present = "url")]
    pub to: Option<String>,
    /// Address to POST to, e.g. `http://localhost:8080/<namespace>/<broker>` (or `https://`).
    #[arg(long)]
    pub url: Option<String>,
    /// Event `type`.
    #[arg(long = "type")]
    pub type_: String,
    /// Event `source`.
    #[arg(long, default_value = "herald-cli")]
    pub source: String,
    /// Event `id` (default: a random UUID). Resending with the same id and source is stored once.
    #[arg(long)]
    pub id: Option<String>,
    /// Event `subject`.
    #[arg(long)]
    pub subject: Option<String>,
    /// Extension attribute `name=value` (repeatable).
    #[arg(long = "extension", short = 'e', value_name = "NAME=VALUE")]
    pub extensions: Vec<String>,
    /// Event data, given inline.
    #[arg(long, conflicts_with = "data_file")]
    pub data: Option<String>,
    /// Event data, read from a file (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub data_file: Option<PathBuf>,
    /// Content type of the data.
    #[arg(long, default_value = "application/json")]
    pub content_type: String,
    /// Kubeconfig for resolving `--to` (default: `KUBECONFIG` or in-cluster).
    #[arg(long, env = "HERALD_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Bearer token for a Broker with `spec.auth` (a ServiceAccount token whose audience
    /// is the Broker's URL, or the Broker's static token).
    #[arg(
        long,
        env = "HERALD_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// Read the bearer token from this file (e.g. a projected ServiceAccount token).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// What an `https://` address is trusted by.
    #[command(flatten)]
    pub tls: ClientTlsArgs,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

/// Runs `herald send`.
pub fn run(args: &SendArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start: {e}")),
    };
    match runtime.block_on(send(args)) {
        Ok((status, _)) if (200..300).contains(&status) => {
            println!("{status} {}", reason(status));
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            println!("{status} {}", reason(status));
            if !body.is_empty() {
                println!("{body}");
            }
            ExitCode::from(1)
        }
        Err(e) => fail(&format!("{e:#}")),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("herald send: {message}");
    ExitCode::from(2)
}

fn reason(status: u16) -> &'static str {
    hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

/// Builds the event from the flags.
pub fn build_event(args: &SendArgs) -> anyhow::Result<CloudEvent> {
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut event = CloudEvent::new(&id, &args.source, &args.type_);
    if let Some(subject) = &args.subject {
        event.set("subject", subject.as_str());
    }
    for ext in &args.extensions {
        let (name, value) = ext
            .split_once('=')
            .with_context(|| format!("--extension {ext:?}: expected NAME=VALUE"))?;
        event.set(name, value);
    }
    let data = match (&args.data, &args.data_file) {
        (Some(inline), _) => Some(Bytes::from(inline.clone())),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("cannot read stdin")?;
            Some(Bytes::from(buf))
        }
        (None, Some(path)) => {
            Some(Bytes::from(std::fs::read(path).with_context(|| {
                format!("cannot read {}", path.display())
            })?))
        }
        (None, None) => None,
    };
    if data.is_some() {
        event.set("datacontenttype", args.content_type.as_str());
    }
    event.data = data;
    event.validate().context("not a valid CloudEvent")?;
    Ok(event)
}

async fn resolve(to: &str, kubeconfig: Option<&std::path::Path>) -> anyhow::Result<String> {
    let (namespace, name) = to
        .split_once('/')
        .with_context(|| format!("--to {to:?}: expected NAMESPACE/NAME"))?;
    let client = herald_runtime::kube_client(kubeconfig).await?;
    let brokers: kube::Api<Broker> = kube::Api::namespaced(client, namespace);
    let broker = brokers
        .get_opt(name)
        .await
        .with_context(|| format!("cannot read Broker {to}"))?
        .with_context(|| format!("Broker {to} does not exist"))?;
    broker
        .status
        .and_then(|s| s.address)
        .map(|a| a.url)
        .with_context(|| format!("Broker {to} has no address yet (is the operator running?)"))
}

/// The token from `--token` or `--token-file`, if any.
fn bearer_token(args: &SendArgs) -> anyhow::Result<Option<String>> {
    match (&args.token, &args.token_file) {
        (Some(token), _) => Ok(Some(token.trim().to_owned())),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|t| Some(t.trim().to_owned()))
            .with_context(|| format!("cannot read the token file {}", path.display())),
        (None, None) => Ok(None),
    }
}

async fn send(args: &SendArgs) -> anyhow::Result<(u16, String)> {
    let event = build_event(args)?;
    let url = match (&args.url, &args.to) {
        (Some(url), _) => url.clone(),
        (None, Some(to)) => resolve(to, args.kubeconfig.as_deref()).await?,
        (None, None) => return Err(anyhow::anyhow!("give --to NAMESPACE/NAME or --url URL")),
    };
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(anyhow::anyhow!(
            "{url}: only http:// and https:// addresses are supported"
        ));
    }
    let tls = args
        .tls
        .load()
        .map_err(|e| anyhow::anyhow!(herald_runtime::tls::error_chain(&e)))?;
    let mut request = outbound::request(&url, &event)?;
    if let Some(token) = bearer_token(args)? {
        let value = herald_runtime::token::bearer(&token)
            .context("the token contains characters a header cannot carry")?;
        request
            .headers_mut()
            .insert(hyper::header::AUTHORIZATION, value);
    }
    // The sender's own request, with its own network identity: no egress policy.
    let unrestricted = std::sync::Arc::new(herald_runtime::egress::EgressPolicy::unrestricted());
    let client = tls.http_client(&Client::builder(TokioExecutor::new()), &unrestricted);
    let response = outbound::send(&client, request, Duration::from_secs(args.timeout)).await?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    eprintln!("sent event id {} to {url}", event.id());
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
