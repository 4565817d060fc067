//! Where deliveries may connect: the egress policy of the shared dispatcher and
//! sources adapter.
//!
//! A subscriber, dead-letter sink or sink URI is written by a tenant, but the
//! connection is made by a Herald component that other tenants share and that sits
//! inside the cluster network: without a policy a Trigger could point it at the
//! component's own loopback services, the cloud metadata endpoint or the Kubernetes
//! API server. By default those are refused: loopback, unspecified and link-local
//! addresses (IPv4-mapped IPv6 forms included) and the API server's own socket
//! addresses. `--egress-allow` makes exceptions to the denied ranges (never to the API
//! server), `--egress-deny` adds ranges; the most specific range that holds an address
//! decides (an allow wins a tie with a default range, loses one with `--egress-deny`).
//!
//! The policy is applied when connecting, to the addresses a name resolves to (see
//! [`connector`]), so neither a DNS name for a denied address nor a name that changes
//! its answer between two connections gets past it.

pub mod connector;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

pub use connector::EgressConnector;

/// An address range, e.g. `10.0.0.0/8` or `fd00::/8`; a bare address is the range of
/// itself alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Self {
        Self {
            network: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            prefix,
        }
    }

    const fn v6(network: Ipv6Addr, prefix: u8) -> Self {
        Self {
            network: IpAddr::V6(network),
            prefix,
        }
    }

    /// Whether `ip` (already canonical: IPv4-mapped IPv6 turned into IPv4) is in it.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(ip) & mask == u32::from(network)
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(ip) & mask == u128::from(network)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Why a flag value is not an address range.
#[derive(Debug, thiserror::Error)]
pub enum CidrError {
    /// The address part is not an IP address.
    #[error("{0:?} is not an IP address or a CIDR range (e.g. 10.0.0.0/8)")]
    Address(String),
    /// The prefix length is not a number within the address's bits.
    #[error("{0:?}: the prefix length must be 0 to 32 for IPv4, 0 to 128 for IPv6")]
    Prefix(String),
    /// Bits are set past the prefix: a typo, most likely.
    #[error("{given:?} has bits set past its prefix length; the range is {range}")]
    HostBits {
        /// What was given.
        given: String,
        /// The range it most likely means.
        range: Cidr,
    },
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let given = s.trim();
        let (address, prefix) = match given.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (given, None),
        };
        let ip: IpAddr = address
            .parse()
            .map_err(|_| CidrError::Address(given.to_owned()))?;
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| CidrError::Prefix(given.to_owned()))?,
        };
        let exact = Self {
            network: ip,
            prefix: bits,
        };
        let range = Self {
            network: masked(ip, prefix),
            prefix,
        };
        if range.network != exact.network {
            return Err(CidrError::HostBits {
                given: given.to_owned(),
                range,
            });
        }
        Ok(range)
    }
}

fn masked(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// The ranges refused unless allowed, each with what it is.
pub const DEFAULT_DENY: [(Cidr, &str); 7] = [
    (Cidr::v4(127, 0, 0, 0, 8), "loopback"),
    (Cidr::v4(0, 0, 0, 0, 8), "unspecified"),
    (Cidr::v4(169, 254, 0, 0, 16), "link-local, cloud metadata"),
    (Cidr::v6(Ipv6Addr::LOCALHOST, 128), "loopback"),
    (Cidr::v6(Ipv6Addr::UNSPECIFIED, 128), "unspecified"),
    (
        Cidr::v6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
        "link-local",
    ),
    // The IPv6 address of the EC2 instance metadata service, a ULA the ranges above miss.
    (
        Cidr::v6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254), 128),
        "cloud metadata",
    ),
];

/// Why an address is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// One of the [`DEFAULT_DENY`] ranges, not allowed by `--egress-allow`.
    Default(Cidr, &'static str),
    /// A range of `--egress-deny`.
    Configured(Cidr),
    /// The Kubernetes API server.
    ApiServer,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default(range, what) => write!(f, "{what} ({range})"),
            Self::Configured(range) => write!(f, "in {range} (--egress-deny)"),
            Self::ApiServer => f.write_str("the Kubernetes API server"),
        }
    }
}

/// A connection the egress policy refused: every address the destination stands for
/// was denied. Found in a client error's sources with [`refusal`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("the egress policy refuses {destination}: {}", describe(.denied))]
pub struct Refused {
    /// The destination as the URI names it (`host:port`).
    pub destination: String,
    /// Each address it resolved to, and why that one is denied.
    pub denied: Vec<(SocketAddr, Denial)>,
}

fn describe(denied: &[(SocketAddr, Denial)]) -> String {
    denied
        .iter()
        .map(|(addr, why)| format!("{addr} is {why}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The [`Refused`] among `error`'s sources, if the egress policy is why it failed.
#[must_use]
pub fn refusal<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e Refused> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(refused) = error.downcast_ref::<Refused>() {
            return Some(refused);
        }
        next = error.source();
    }
    None
}

/// Which destination addresses a delivery may connect to.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    deny: Vec<(Cidr, Option<&'static str>)>,
    allow: Vec<Cidr>,
    api_server: Vec<SocketAddr>,
}

impl EgressPolicy {
    /// No restriction at all: for a dispatcher sidecar or a source in the tenant's own
    /// pod, which connects with the tenant's own network identity anyway.
    #[must_use]
    pub fn unrestricted() -> Self {
        Self::default()
    }

    /// The default ranges and `deny` refused, `allow` excepted from them, and the API
    /// server at `api_server` refused whatever `allow` says.
    #[must_use]
    pub fn new(allow: &[Cidr], deny: &[Cidr], api_server: &[SocketAddr]) -> Self {
        Self {
            deny: DEFAULT_DENY
                .iter()
                .map(|(range, what)| (*range, Some(*what)))
                .chain(deny.iter().map(|range| (*range, None)))
                .collect(),
            allow: allow.to_vec(),
            api_server: api_server
                .iter()
                .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()))
                .collect(),
        }
    }

    /// Whether a connection to `addr` is allowed, and if not, why.
    pub fn check(&self, addr: SocketAddr) -> Result<(), Denial> {
        // `::ffff:127.0.0.1` reaches 127.0.0.1: judge the address it really is.
        let ip = addr.ip().to_canonical();
        if self
            .api_server
            .iter()
            .any(|a| a.ip() == ip && a.port() == addr.port())
        {
            return Err(Denial::ApiServer);
        }
        let Some((denied, what)) = self
            .deny
            .iter()
            .filter(|(range, _)| range.contains(ip))
            .max_by_key(|(range, _)| range.prefix)
        else {
            return Ok(());
        };
        let allowed = self
            .allow
            .iter()
            .filter(|range| range.contains(ip))
            .map(|range| range.prefix)
            .max();
        // An allow as specific as a default range is the exception it was written for
        // (`--egress-allow 127.0.0.0/8`); as specific as an `--egress-deny`, it loses.
        if allowed.is_some_and(|prefix| {
            prefix > denied.prefix || (prefix == denied.prefix && what.is_some())
        }) {
            return Ok(());
        }
        Err(what.map_or(Denial::Configured(*denied), |what| {
            Denial::Default(*denied, what)
        }))
    }

    /// The addresses of `addrs` allowed, or [`Refused`] for `destination` when none is.
    pub fn filter(
        &self,
        destination: &str,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<Vec<SocketAddr>, Refused> {
        let mut allowed = Vec::new();
        let mut denied = Vec::new();
        for addr in addrs {
            match self.check(addr) {
                Ok(()) => allowed.push(addr),
                Err(why) => denied.push((addr, why)),
            }
        }
        if allowed.is_empty() && !denied.is_empty() {
            return Err(Refused {
                destination: destination.to_owned(),
                denied,
            });
        }
        Ok(allowed)
    }

    /// One line for the start-up log.
    #[must_use]
    pub fn summary(&self) -> String {
        if self.deny.is_empty() && self.api_server.is_empty() {
            return "unrestricted".into();
        }
        let list = |v: Vec<String>| {
            if v.is_empty() {
                "-".into()
            } else {
                v.join(",")
            }
        };
        format!(
            "deny {}; allow {}; API server {}",
            list(self.deny.iter().map(|(r, _)| r.to_string()).collect()),
            list(self.allow.iter().map(ToString::to_string).collect()),
            list(self.api_server.iter().map(ToString::to_string).collect()),
        )
    }
}

/// Flags of the components that deliver to tenants' URIs (the dispatcher and the
/// sources adapter).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct EgressArgs {
    /// Address range deliveries may connect to although a denied range holds it, e.g.
    /// `127.0.0.1/32` (repeatable or comma-separated). The most specific range holding
    /// an address decides. Never allows the Kubernetes API server.
    #[arg(
        long = "egress-allow",
        env = "HERALD_EGRESS_ALLOW",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    pub allow: Vec<Cidr>,
    /// Address range deliveries may not connect to, besides loopback, unspecified,
    /// link-local and the Kubernetes API server (repeatable or comma-separated), e.g.
    /// the nodes' network.
    #[arg(
        long = "egress-deny",
        env = "HERALD_EGRESS_DENY",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    pub deny: Vec<Cidr>,
}

impl EgressArgs {
    /// The policy these flags ask for, refusing the API server at `api_server` too.
    #[must_use]
    pub fn policy(&self, api_server: &[SocketAddr]) -> EgressPolicy {
        EgressPolicy::new(&self.allow, &self.deny, api_server)
    }
}

/// The socket addresses of the Kubernetes API server: `cluster_url` (the client's)
/// resolved, and, in a pod, `KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT`. A name
/// that does not resolve is logged and left out: the client could not reach it either.
pub async fn api_server_addresses(cluster_url: &hyper::Uri) -> Vec<SocketAddr> {
    let mut found = Vec::new();
    let default_port = if cluster_url.scheme_str() == Some("http") {
        80
    } else {
        443
    };
    if let Some(host) = cluster_url.host() {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = cluster_url.port_u16().unwrap_or(default_port);
        resolve_into(&mut found, host, port).await;
    }
    if let (Ok(host), Some(port)) = (
        std::env::var("KUBERNETES_SERVICE_HOST"),
        std::env::var("KUBERNETES_SERVICE_PORT")
            .ok()
            .and_then(|p| p.parse::<u16>().ok()),
    ) {
        resolve_into(&mut found, &host, port).await;
    }
    found.sort_unstable();
    found.dedup();
    found
}

async fn resolve_into(found: &mut Vec<SocketAddr>, host: &str, port: u16) {
    match tokio::net::lookup_host((host, port)).await {
        Ok(addrs) => found.extend(addrs),
        Err(e) => {
            tracing::warn!(%host, port, error = %e, "cannot resolve the Kubernetes API server; the egress policy cannot refuse it by address");
        }
    }
}
