//! `herald display`: a subscriber that prints every CloudEvent it receives (like
//! Knative's event-display), for trying Triggers out and for debugging.

use anyhow::Context as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

/// Flags of `herald display`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  herald display --listen 127.0.0.1:8081\n  \
# then point a Trigger at it: subscriber: {uri: http://127.0.0.1:8081/}\n  \
PORT=8080 herald display --json --delay 50ms   # as a consumer Deployment's container")]
pub struct DisplayArgs {
    /// Address to receive events on (any path); default `0.0.0.0:$PORT` when `PORT` is
    /// set (as in a consumer Deployment), else 127.0.0.1:8081.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Print each event as one JSON line instead of a readable block.
    #[arg(long)]
    pub json: bool,
    /// Take this long over each event before answering, e.g. `50ms` (to play a slow consumer).
    #[arg(long, value_parser = herald_api::duration::parse_flag)]
    pub delay: Option<Duration>,
}

fn listen_address(args: &DisplayArgs) -> anyhow::Result<SocketAddr> {
    if let Some(addr) = args.listen {
        return Ok(addr);
    }
    match std::env::var("PORT") {
        Ok(port) => {
            let port: u16 = port
                .parse()
                .with_context(|| format!("PORT={port} is not a port number"))?;
            Ok(SocketAddr::from(([0, 0, 0, 0], port)))
        }
        Err(_) => Ok(SocketAddr::from(([127, 0, 0, 1], 8081))),
    }
}

/// Runs `herald display` until interrupted.
pub fn run(args: &DisplayArgs) -> ExitCode {
    let json = args.json;
    let delay = args.delay;
    let serve = async move {
        let shutdown = herald_runtime::listen_for_shutdown()?;
        let listen = listen_address(args)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        eprintln!("herald display: waiting for events on http://{listen}/");
        let receive = move |headers: HeaderMap, body: Bytes| async move {
            match herald_cloudevents::http::decode(&headers, body) {
                Ok((_, events)) => {
                    if let Some(delay) = delay {
                        tokio::time::sleep(delay).await;
                    }
                    for event in &events {
                        crate::tail::print_event(0, event, json);
                    }
                    StatusCode::ACCEPTED
                }
                Err(e) => {
                    eprintln!("herald display: not a CloudEvent: {e}");
                    StatusCode::BAD_REQUEST
                }
            }
        };
        let app = Router::new()
            .route("/", post(receive))
            .route("/{*path}", post(receive));
        // SIGTERM too: as a container's PID 1 an unhandled SIGTERM is ignored, and every
        // pod of a consumer Deployment scaled down then took the whole grace period to go.
        axum::serve(listener, app)
            .with_graceful_shutdown(herald_runtime::fired(shutdown))
            .await?;
        anyhow::Ok(())
    };
    match crate::block_on(serve) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald display: {e:#}");
            ExitCode::from(2)
        }
    }
}
