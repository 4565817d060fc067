//! The TCP connector of every delivery client: hyper-util's `HttpConnector`, with a
//! resolver that keeps only the addresses the [`EgressPolicy`] allows, and a check of
//! IP-literal hosts, which `HttpConnector` connects to without asking its resolver.
//!
//! The check runs at every new connection, after resolution: a name that resolves to
//! a denied address, or starts to (DNS rebinding), is refused like the address itself.
//! The API server is denied by address *and port*, which the resolver is not told, so
//! each connection gets a resolver that knows the port it is for.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::EgressPolicy;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

/// Connects to what the policy allows; a refusal is a [`super::Refused`] error.
#[derive(Clone, Debug)]
pub struct EgressConnector {
    policy: Arc<EgressPolicy>,
}

impl EgressConnector {
    /// A connector held to `policy`.
    #[must_use]
    pub fn new(policy: Arc<EgressPolicy>) -> Self {
        Self { policy }
    }
}

impl tower_service::Service<Uri> for EgressConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move {
            // The port as HttpConnector works it out: the URI's, else the scheme's.
            let port = uri
                .port_u16()
                .unwrap_or(if uri.scheme_str() == Some("https") {
                    443
                } else {
                    80
                });
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']');
            if let Ok(ip) = host.parse::<IpAddr>() {
                let addr = SocketAddr::new(ip, port);
                policy.filter(&addr.to_string(), [addr])?;
            }
            let mut http = HttpConnector::new_with_resolver(Resolver { policy, port });
            // The scheme is the TLS layer's to check, not the TCP connector's.
            http.enforce_http(false);
            let stream = tower_service::Service::call(&mut http, uri).await?;
            Ok(stream)
        })
    }
}

/// Resolves a name for a connection to `port`, keeping the addresses allowed.
#[derive(Clone, Debug)]
struct Resolver {
    policy: Arc<EgressPolicy>,
    port: u16,
}

impl tower_service::Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let (policy, port) = (self.policy.clone(), self.port);
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((name.as_str(), port)).await?;
            let destination = format!("{}:{port}", name.as_str());
            Ok(policy.filter(&destination, resolved)?.into_iter())
        })
    }
}
