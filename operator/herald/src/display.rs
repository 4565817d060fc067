//! `herald display`: a subscriber that prints every CloudEvent it receives (like
//! Knative's event-display), for trying Triggers out and for debugging.

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

/// Flags of `herald display`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  herald display --listen 127.0.0.1:8081\n  \
# then point a Trigger at it: subscriber: {uri: http://127.0.0.1:8081/}")]
pub struct DisplayArgs {
    /// Address to receive events on (any path).
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// Print each event as one JSON line instead of a readable block.
    #[arg(long)]
    pub json: bool,
}

/// Runs `herald display` until interrupted.
pub fn run(args: &DisplayArgs) -> ExitCode {
    let json = args.json;
    let serve = async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        eprintln!(
            "herald display: waiting for events on http://{}/",
            args.listen
        );
        let receive = move |headers: HeaderMap, body: Bytes| async move {
            match herald_cloudevents::http::decode(&headers, body) {
                Ok((_, events)) => {
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
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|e| e.to_string())
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(serve));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("herald display: {message}");
            ExitCode::from(2)
        }
    }
}
