//! Private `nats-server`s a test starts and owns: one server, or a 3-node JetStream
//! cluster; killed (and their stores deleted) when dropped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::process::{free_port, log_file, wait_for_addr};

pub use herald_runtime::testing::NatsServer;

/// A 3-node JetStream cluster on loopback: routes on free ports, a store per node.
pub struct NatsCluster {
    /// The nodes, each a `nats-server` process.
    pub nodes: Vec<ClusterNode>,
}

/// One node of a [`NatsCluster`].
pub struct ClusterNode {
    child: Option<Child>,
    /// Its server name (`<cluster>-<n>`), as JetStream reports leaders.
    pub name: String,
    /// Client port.
    pub port: u16,
    cluster_port: u16,
    store: PathBuf,
    routes: String,
    /// Address it listens on (127.0.0.1, or a veth address for a partition test).
    host: String,
    /// Network namespace it runs in, if not the test's own.
    netns: Option<String>,
}

impl ClusterNode {
    /// `nats://<host>:<port>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("nats://{}:{}", self.host, self.port)
    }

    /// Kills the node (SIGKILL).
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill nats-server");
        }
    }

    /// Starts the node again (same ports, same store) after [`ClusterNode::kill`].
    pub async fn restart(&mut self) {
        self.kill().await;
        let routes = self.routes.clone();
        self.spawn(&routes);
        wait_for_addr(&self.host, self.port, "nats-server (cluster node)").await;
    }

    fn spawn(&mut self, routes: &str) {
        routes.clone_into(&mut self.routes);
        let bin = std::env::var("HERALD_NATS_SERVER_BIN")
            .expect("HERALD_NATS_SERVER_BIN is not set: run through e2e/test.sh");
        let cluster_name = self
            .name
            .rsplit_once('-')
            .map_or("herald", |(c, _)| c)
            .to_owned();
        let mut command = match &self.netns {
            Some(netns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", netns, &bin]);
                c
            }
            None => Command::new(bin),
        };
        let child = command
            .args(["-a", &self.host, "-p", &self.port.to_string(), "-js"])
            .args(["-n", &self.name])
            .arg("-sd")
            .arg(&self.store)
            .args(["--cluster_name", &cluster_name])
            .args([
                "--cluster",
                &format!("nats://{}:{}", self.host, self.cluster_port),
            ])
            .args(["--routes", routes])
            .stdout(Stdio::null())
            .stderr(log_file(&format!("nats-{}", self.name)))
            .kill_on_drop(true)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
    }
}

impl NatsCluster {
    /// Starts three nodes named `<name>-0..2` on 127.0.0.1 and waits until JetStream answers.
    pub async fn start(name: &str) -> Self {
        let local = || ("127.0.0.1".to_owned(), None);
        Self::start_on(name, [local(), local(), local()]).await
    }

    /// Like [`NatsCluster::start`], each node on the given address and, optionally, in
    /// a network namespace.
    pub async fn start_on(name: &str, placement: [(String, Option<String>); 3]) -> Self {
        let mut nodes: Vec<ClusterNode> = placement
            .into_iter()
            .enumerate()
            .map(|(i, (host, netns))| {
                let port = free_port();
                ClusterNode {
                    child: None,
                    name: format!("{name}-{i}"),
                    port,
                    cluster_port: free_port(),
                    store: std::env::temp_dir().join(format!("herald-e2e-nats-{name}-{i}-{port}")),
                    routes: String::new(),
                    host,
                    netns,
                }
            })
            .collect();
        let routes: Vec<String> = nodes
            .iter()
            .map(|n| format!("nats://{}:{}", n.host, n.cluster_port))
            .collect();
        let routes = routes.join(",");
        for node in &mut nodes {
            node.spawn(&routes);
        }
        for node in &nodes {
            wait_for_addr(&node.host, node.port, "nats-server (cluster node)").await;
        }
        let cluster = Self { nodes };
        // JetStream needs a meta leader before it takes streams.
        let client = async_nats::connect(cluster.addrs())
            .await
            .expect("connect to the cluster");
        let js = async_nats::jetstream::new(client);
        for _ in 0..150 {
            if js.query_account().await.is_ok() {
                return cluster;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("the JetStream cluster {name} did not elect a meta leader within 30 s");
    }

    /// Every node's address, for a client of the test itself.
    #[must_use]
    pub fn addrs(&self) -> Vec<async_nats::ServerAddr> {
        self.nodes
            .iter()
            .map(|n| n.url().parse().expect("a NATS URL"))
            .collect()
    }

    /// Every node's URL, comma-separated (as `--nats-url` takes them).
    #[must_use]
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(ClusterNode::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                let _ = child.start_kill();
            }
            let _ = std::fs::remove_dir_all(&node.store);
        }
    }
}

/// Waits up to `timeout` until JetStream consumer `durable` of `stream` has nothing
/// pending and nothing unacknowledged: every message it got was acked.
pub async fn await_consumer_drained(
    js: &async_nats::jetstream::Context,
    stream: &str,
    durable: &str,
    timeout: std::time::Duration,
) {
    crate::eventually(
        &format!("consumer {durable} of {stream} acknowledged everything"),
        timeout,
        || async {
            let consumer: async_nats::jetstream::consumer::PullConsumer =
                js.get_consumer_from_stream(durable, stream).await.ok()?;
            let info = consumer.cached_info();
            (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
        },
    )
    .await;
}

/// Publishes `payload` on `<prefix>.<n>` (on the shared nats-server) until `subscriber`
/// got something, at most 50 times: a NATS source subscribes through its adapter's
/// own watch, a moment after it is Ready.
pub async fn publish_until_delivered(
    prefix: &str,
    payload: &'static str,
    subscriber: &crate::subscriber::Subscriber,
) {
    let nats = async_nats::connect(crate::nats_url())
        .await
        .expect("connect");
    for n in 0..50 {
        nats.publish(format!("{prefix}.{n}"), payload.into())
            .await
            .expect("publish");
        nats.flush().await.expect("flush");
        if !subscriber.deliveries().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
