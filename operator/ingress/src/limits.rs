//! What one client may cost the shared ingress: header count and size and the time to
//! send them (enforced by hyper, answered 431 or the connection closed), the time to
//! send the body (408), and requests in flight per Broker (429), so one noisy tenant
//! cannot take the ingress from the others.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// hyper's own default header count; asking for another makes hyper allocate the
/// header array per request, so it is only set when it differs.
pub const DEFAULT_MAX_HEADERS: usize = 100;
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
}

impl Default for ConnectionLimits {
    /// The defaults of `herald ingress`.
    fn default() -> Self {
        Self {
            max_headers: DEFAULT_MAX_HEADERS,
            max_header_bytes: 16 * 1024,
            header_read_timeout: Duration::from_secs(15),
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
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .max_header_size(limits.max_header_bytes)
        .header_read_timeout(limits.header_read_timeout);
    if limits.max_headers != DEFAULT_MAX_HEADERS {
        http.max_headers(limits.max_headers);
    }
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let service = TowerToHyperService::new(app.clone());
                    let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
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

/// Requests in flight per Broker, capped.
pub struct BrokerConcurrency {
    max: usize,
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
}

/// Held while a request for a Broker runs; frees its place when dropped.
pub struct Slot {
    key: String,
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
}

impl BrokerConcurrency {
    /// At most `max` requests per Broker at once (0: no limit).
    #[must_use]
    pub fn new(max: usize) -> Self {
        Self {
            max,
            in_flight: Arc::default(),
        }
    }

    /// The cap.
    #[must_use]
    pub fn max(&self) -> usize {
        self.max
    }

    /// A place for one more request to `namespace/broker`, or `None` when it has
    /// `max` already.
    #[must_use]
    pub fn acquire(&self, namespace: &str, broker: &str) -> Option<Slot> {
        if self.max == 0 {
            return Some(Slot {
                key: String::new(),
                in_flight: Arc::clone(&self.in_flight),
            });
        }
        let key = format!("{namespace}/{broker}");
        let mut map = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let count = map.entry(key.clone()).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        drop(map);
        Some(Slot {
            key,
            in_flight: Arc::clone(&self.in_flight),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.key.is_empty() {
            return;
        }
        let mut map = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = map.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_broker_has_its_own_cap_and_slots_come_back() {
        let limit = BrokerConcurrency::new(2);
        let a1 = limit.acquire("ns", "a").expect("first");
        let a2 = limit.acquire("ns", "a").expect("second");
        assert!(limit.acquire("ns", "a").is_none(), "third is over the cap");
        assert!(
            limit.acquire("ns", "b").is_some(),
            "another Broker is not affected"
        );
        drop(a1);
        let a3 = limit.acquire("ns", "a").expect("a place came back");
        drop((a2, a3));
        assert!(
            limit.in_flight.lock().unwrap().is_empty(),
            "no entries left behind"
        );
    }

    #[test]
    fn zero_means_unlimited() {
        let limit = BrokerConcurrency::new(0);
        let slots: Vec<_> = (0..1000)
            .map(|_| limit.acquire("ns", "a").unwrap())
            .collect();
        assert_eq!(slots.len(), 1000);
    }
}
