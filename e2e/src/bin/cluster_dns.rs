//! `herald-cluster-dns`: the test cluster's DNS for `*.svc.<domain>` (Debian has no
//! package of the usual cluster DNS server). It watches Services and Endpoints through
//! the apiserver and answers A queries the way cluster DNS does:
//!   `<service>.<namespace>.svc.<domain>` → the Service's cluster IP, or for a headless
//!   Service the addresses of its ready endpoints;
//!   `<hostname>.<service>.<namespace>.svc.<domain>` → that endpoint (a stateful set's pods).
//! Other names under the domain get NXDOMAIN (AAAA of a known name: no data, so that
//! resolvers use the A answer); names outside it get REFUSED (nothing here leaves the
//! machine). UDP and TCP on one address. `e2e/controlplane/node.sh` starts it.
//!
//! `herald-cluster-dns --check NAME --server ADDR` asks once and exits 0 if NAME has an
//! A record: the harness's readiness check, with no `dig` needed.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType, rdata::A};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Short: tests create and delete Services all the time.
const TTL_SECONDS: u32 = 5;

struct Options {
    kubeconfig: Option<PathBuf>,
    listen: SocketAddr,
    domain: String,
    check: Option<String>,
}

fn parse_args() -> anyhow::Result<Options> {
    let mut options = Options {
        kubeconfig: None,
        listen: "127.0.0.1:53".parse()?,
        domain: "cluster.local".to_owned(),
        check: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--kubeconfig" => options.kubeconfig = Some(value()?.into()),
            "--listen" | "--server" => options.listen = value()?.parse()?,
            "--domain" => options.domain = value()?.trim_matches('.').to_ascii_lowercase(),
            "--check" => options.check = Some(value()?),
            other => bail!(
                "unknown argument {other}; usage: herald-cluster-dns --kubeconfig FILE \
                 --listen IP:PORT [--domain cluster.local] | --check NAME --server IP:PORT"
            ),
        }
    }
    Ok(options)
}

/// What a query name asks for, once the `.svc.<domain>` suffix is gone.
#[derive(Debug, PartialEq, Eq)]
enum Lookup<'a> {
    Service {
        namespace: &'a str,
        service: &'a str,
    },
    Endpoint {
        namespace: &'a str,
        service: &'a str,
        hostname: &'a str,
    },
    /// Under the cluster domain, but no Service or endpoint name.
    Unknown,
    /// Not under the cluster domain at all.
    Outside,
}

fn classify<'a>(name: &'a str, domain: &str) -> Lookup<'a> {
    let name = name.trim_end_matches('.');
    let Some(prefix) = name.strip_suffix(domain).and_then(|p| p.strip_suffix('.')) else {
        return if name == domain {
            Lookup::Unknown
        } else {
            Lookup::Outside
        };
    };
    let Some(prefix) = prefix.strip_suffix(".svc") else {
        return Lookup::Unknown;
    };
    match prefix.split('.').collect::<Vec<_>>()[..] {
        [service, namespace] => Lookup::Service { namespace, service },
        [hostname, service, namespace] => Lookup::Endpoint {
            namespace,
            service,
            hostname,
        },
        _ => Lookup::Unknown,
    }
}

struct Cluster {
    services: Store<Service>,
    endpoints: Store<Endpoints>,
    domain: String,
}

impl Cluster {
    /// The A addresses for a name, or `None` if there is no such name.
    fn addresses(&self, lookup: &Lookup<'_>) -> Option<Vec<Ipv4Addr>> {
        let (namespace, service, hostname) = match *lookup {
            Lookup::Service { namespace, service } => (namespace, service, None),
            Lookup::Endpoint {
                namespace,
                service,
                hostname,
            } => (namespace, service, Some(hostname)),
            Lookup::Unknown | Lookup::Outside => return None,
        };
        let svc = self
            .services
            .get(&ObjectRef::new(service).within(namespace))?;
        let cluster_ip = svc.spec.as_ref().and_then(|s| s.cluster_ip.clone());
        if hostname.is_none() {
            if let Some(ip) = cluster_ip.filter(|ip| ip != "None" && !ip.is_empty()) {
                return Some(ip.parse().ok().into_iter().collect());
            }
        }
        let endpoints = self
            .endpoints
            .get(&ObjectRef::new(service).within(namespace));
        let ready = endpoints
            .iter()
            .flat_map(|e| e.subsets.iter().flatten())
            .flat_map(|subset| subset.addresses.iter().flatten())
            .filter(|address| hostname.is_none() || address.hostname.as_deref() == hostname)
            .filter_map(|address| address.ip.parse().ok())
            .collect::<Vec<_>>();
        if hostname.is_some() && ready.is_empty() {
            return None;
        }
        Some(ready)
    }

    fn answer(&self, request: &Message) -> Message {
        let mut response = Message::new();
        response
            .set_id(request.id())
            .set_message_type(MessageType::Response)
            .set_op_code(request.op_code())
            .set_recursion_desired(request.recursion_desired())
            .set_recursion_available(false);
        let [query] = request.queries() else {
            response.set_response_code(ResponseCode::FormErr);
            return response;
        };
        response.add_query(query.clone());
        if request.op_code() != OpCode::Query {
            response.set_response_code(ResponseCode::NotImp);
            return response;
        }
        let name = query.name().to_lowercase().to_ascii();
        let lookup = classify(&name, &self.domain);
        if lookup == Lookup::Outside {
            response.set_response_code(ResponseCode::Refused);
            return response;
        }
        response.set_authoritative(true);
        match self.addresses(&lookup) {
            None => {
                response.set_response_code(ResponseCode::NXDomain);
            }
            Some(addresses) if query.query_type() == RecordType::A => {
                response.add_answers(addresses.into_iter().map(|ip| {
                    Record::from_rdata(query.name().clone(), TTL_SECONDS, RData::A(A(ip)))
                }));
            }
            Some(_) => {} // the name exists; no records of that type (NODATA)
        }
        response
    }

    fn reply(&self, packet: &[u8]) -> Option<Vec<u8>> {
        let request = Message::from_vec(packet).ok()?;
        let response = match request.message_type() {
            MessageType::Query => self.answer(&request),
            MessageType::Response => return None,
        };
        response.to_vec().ok()
    }
}

/// A reflector for every object of kind `K` in the cluster, ready once listed.
async fn watch_all<K>(client: &Client) -> anyhow::Result<Store<K>>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let stream = watcher(Api::<K>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .touched_objects();
    tokio::spawn(stream.for_each(|_| std::future::ready(())));
    tokio::time::timeout(Duration::from_secs(60), store.wait_until_ready())
        .await
        .context("no initial list from the apiserver within 60 s")??;
    Ok(store)
}

async fn serve_udp(socket: UdpSocket, cluster: Arc<Cluster>) -> anyhow::Result<()> {
    let mut buf = vec![0_u8; 4096];
    loop {
        let (len, peer) = socket.recv_from(&mut buf).await?;
        if let Some(reply) = cluster.reply(&buf[..len]) {
            // A lost reply is retried by the client; nothing to do about it here.
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, cluster: Arc<Cluster>) -> anyhow::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(serve_tcp_connection(stream, Arc::clone(&cluster)));
    }
}

async fn serve_tcp_connection(mut stream: TcpStream, cluster: Arc<Cluster>) -> std::io::Result<()> {
    loop {
        let len = usize::from(stream.read_u16().await?);
        let mut packet = vec![0_u8; len];
        stream.read_exact(&mut packet).await?;
        let Some(reply) = cluster.reply(&packet) else {
            return Ok(());
        };
        let len = u16::try_from(reply.len()).map_err(std::io::Error::other)?;
        stream.write_u16(len).await?;
        stream.write_all(&reply).await?;
    }
}

async fn serve(options: Options) -> anyhow::Result<()> {
    let config = match &options.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?
        }
        None => Config::infer().await?,
    };
    let client = Client::try_from(config)?;
    let cluster = Arc::new(Cluster {
        services: watch_all::<Service>(&client).await?,
        endpoints: watch_all::<Endpoints>(&client).await?,
        domain: options.domain,
    });
    let udp = UdpSocket::bind(options.listen)
        .await
        .with_context(|| format!("binding udp {}", options.listen))?;
    let tcp = TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("binding tcp {}", options.listen))?;
    eprintln!(
        "herald-cluster-dns: serving *.svc.{} on {}",
        cluster.domain, options.listen
    );
    let udp_task = tokio::spawn(serve_udp(udp, Arc::clone(&cluster)));
    let tcp_task = tokio::spawn(serve_tcp(tcp, cluster));
    // Either listener ending is fatal: the harness sees the process exit.
    let ended: anyhow::Result<()> = tokio::select! {
        udp = udp_task => udp?,
        tcp = tcp_task => tcp?,
    };
    ended.context("a listener stopped")
}

/// One A query over UDP; Ok if the answer has at least one record.
async fn check(name: &str, server: SocketAddr) -> anyhow::Result<()> {
    let mut query = Message::new();
    query
        .set_id(0x4e1d)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name)?, RecordType::A));
    let socket = UdpSocket::bind("0.0.0.0:0").await?;
    socket.send_to(&query.to_vec()?, server).await?;
    let mut buf = vec![0_u8; 4096];
    let len = tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf))
        .await
        .context("no answer within 1 s")??;
    let response = Message::from_vec(&buf[..len])?;
    if response.answers().is_empty() {
        bail!("{name}: {} with no records", response.response_code());
    }
    for record in response.answers() {
        println!("{name} {}", record.data());
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let options = parse_args()?;
    match options.check.clone() {
        Some(name) => check(&name, options.listen).await,
        None => serve(options).await,
    }
}

#[cfg(test)]
mod tests {
    use super::{Lookup, classify};

    #[test]
    fn names_under_the_cluster_domain_are_services_or_endpoints() {
        assert_eq!(
            classify("nats.herald.svc.cluster.local.", "cluster.local"),
            Lookup::Service {
                namespace: "herald",
                service: "nats"
            }
        );
        assert_eq!(
            classify("web-0.web.shop.svc.cluster.local", "cluster.local"),
            Lookup::Endpoint {
                namespace: "shop",
                service: "web",
                hostname: "web-0"
            }
        );
        // A search-domain expansion of a full name, and names without a Service.
        assert_eq!(
            classify(
                "a.b.svc.cluster.local.b.svc.cluster.local.",
                "cluster.local"
            ),
            Lookup::Unknown
        );
        assert_eq!(classify("cluster.local.", "cluster.local"), Lookup::Unknown);
        assert_eq!(
            classify("herald.svc.cluster.local.", "cluster.local"),
            Lookup::Unknown
        );
    }

    #[test]
    fn names_elsewhere_are_outside() {
        assert_eq!(classify("example.com.", "cluster.local"), Lookup::Outside);
        assert_eq!(
            classify("notcluster.local.", "cluster.local"),
            Lookup::Outside
        );
    }
}
