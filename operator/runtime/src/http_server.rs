//! Serving HTTP to clients that are not trusted: what one connection may cost is
//! bounded before a request reaches the router. Header count and size and the time
//! to send them are enforced by hyper (431, or the connection closed); the number of
//! open connections by a cap, past which new ones wait in the listen backlog. The
//! body's size and time are the handler's to bound, as only it knows the limits.
//! With [`serve_tls`], connections speak TLS first; the handshake must finish within
//! the header time too.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// hyper's own default header count; asking for another makes hyper allocate the
/// header array per request, so it is only set when it differs.
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Default most bytes of request line plus headers.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Default time to send the headers, and again the body.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(15);
/// How long in-flight requests may take to finish after shutdown began.
const DRAIN: Duration = Duration::from_secs(25);

/// Per-connection limits, applied by hyper before a request reaches the router.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Most request headers; more get 431.
    pub max_headers: usize,
    /// Most bytes of request line plus headers; more get 431.
    pub max_header_bytes: usize,
    /// Time to send the request line and headers; slower connections are closed.
    pub header_read_timeout: Duration,
    /// Most connections open at once; more wait to be accepted (0: no limit).
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    /// The defaults of `herald ingress` (which bounds requests, not connections).
    fn default() -> Self {
        Self {
            max_headers: DEFAULT_MAX_HEADERS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            header_read_timeout: DEFAULT_READ_TIMEOUT,
            max_connections: 0,
        }
    }
}

/// Serves `app` on `listener` with `limits` until `shutdown` fires, then lets the
/// requests in flight finish (for at most 25 s).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    serve_connections(listener, None, app, limits, shutdown).await;
}

/// [`serve`] over TLS: each connection is accepted by `tls` (see
/// [`crate::tls::ReloadingCertificate::acceptor`]) before it speaks HTTP.
pub async fn serve_tls(
    listener: TcpListener,
    tls: TlsAcceptor,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    serve_connections(listener, Some(tls), app, limits, shutdown).await;
}

async fn serve_connections(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .max_header_size(limits.max_header_bytes)
        .header_read_timeout(limits.header_read_timeout);
    if limits.max_headers != DEFAULT_MAX_HEADERS {
        http.max_headers(limits.max_headers);
    }
    let connections =
        (limits.max_connections > 0).then(|| Arc::new(Semaphore::new(limits.max_connections)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // A place for the next connection first: at the cap, the kernel's backlog
        // holds new connections until one closes.
        let place = match &connections {
            Some(places) => tokio::select! {
                place = Arc::clone(places).acquire_owned() => match place {
                    Ok(place) => Some(place),
                    Err(_) => break, // closed: never, the semaphore is ours
                },
                () = &mut shutdown => break,
            },
            None => None,
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let service = TowerToHyperService::new(app.clone());
                    let Some(tls) = tls.clone() else {
                        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                        tokio::spawn(async move {
                            if let Err(e) = connection.await {
                                tracing::debug!(error = %e, "connection ended with an error");
                            }
                            drop(place);
                        });
                        continue;
                    };
                    // The handshake runs in the connection's task, so a slow client
                    // holds up no other; it counts as watched for the drain.
                    let (http, watcher) = (http.clone(), graceful.watcher());
                    let handshake_timeout = limits.header_read_timeout;
                    tokio::spawn(async move {
                        match tokio::time::timeout(handshake_timeout, tls.accept(stream)).await {
                            Ok(Ok(stream)) => {
                                let connection = watcher.watch(http.serve_connection(TokioIo::new(stream), service));
                                if let Err(e) = connection.await {
                                    tracing::debug!(error = %e, "connection ended with an error");
                                }
                            }
                            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                            Err(_) => tracing::debug!("TLS handshake not finished within {handshake_timeout:?}"),
                        }
                        drop(place);
                    });
                }
                Err(e) => {
                    // Out of file descriptors, typically: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after {DRAIN:?}; closing them");
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;

    use super::*;

    async fn server(limits: ConnectionLimits) -> std::net::SocketAddr {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(|| async { "ok" });
        tokio::spawn(serve(listener, app, limits, std::future::pending()));
        addr
    }

    async fn get(stream: &mut TcpStream) -> String {
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = vec![0; 1024];
        let n = stream.read(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer[..n]).into_owned()
    }

    #[tokio::test]
    async fn connections_past_the_cap_wait_until_one_closes() {
        let addr = server(ConnectionLimits {
            max_connections: 2,
            ..ConnectionLimits::default()
        })
        .await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        assert!(get(&mut first).await.starts_with("HTTP/1.1 200"));
        assert!(get(&mut second).await.starts_with("HTTP/1.1 200"));
        // The third is in the backlog: connected, not served.
        let mut third = TcpStream::connect(addr).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(300), get(&mut third)).await;
        assert!(waiting.is_err(), "served past the cap: {waiting:?}");
        drop(first);
        let served = tokio::time::timeout(Duration::from_secs(5), async {
            let mut answer = vec![0; 1024];
            let n = third.read(&mut answer).await.unwrap();
            String::from_utf8_lossy(&answer[..n]).into_owned()
        })
        .await
        .expect("served once a place came back");
        assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_cut_off() {
        let addr = server(ConnectionLimits {
            header_read_timeout: Duration::from_millis(200),
            ..ConnectionLimits::default()
        })
        .await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"POST / HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest))
            .await
            .expect("the connection is closed after the header timeout");
        assert!(closed.is_ok(), "{closed:?}");
        assert!(!String::from_utf8_lossy(&rest).contains("200"));
    }
}
