//! Processes a test starts and owns: `herald operator`, `ingress`, `dispatcher`,
//! `sources` (and, in [`crate::nats`], private `nats-server`s).
//! Each is killed when dropped, so a failing test leaves nothing running.

pub use crate::nats::{ClusterNode, NatsCluster, NatsServer};

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

pub use herald_runtime::testing::free_port;

/// Where process logs go: `target/e2e-logs/`.
pub(crate) fn log_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-logs");
    std::fs::create_dir_all(&dir).expect("create target/e2e-logs");
    dir
}

pub(crate) fn log_file(name: &str) -> std::fs::File {
    // A component watching many namespaces has a long name: keep file names legal.
    let name = if name.len() > 120 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        name.hash(&mut hasher);
        let cut = name.char_indices().nth(100).map_or(name.len(), |(i, _)| i);
        format!("{}-{:016x}", &name[..cut], hasher.finish())
    } else {
        name.to_owned()
    };
    std::fs::File::create(log_dir().join(format!("{name}.log"))).expect("create log file")
}

pub(crate) fn herald_bin() -> PathBuf {
    std::env::var_os("HERALD_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/herald"),
        PathBuf::from,
    )
}

pub(crate) async fn wait_for_port(port: u16, what: &str) {
    wait_for_addr("127.0.0.1", port, what).await;
}

pub(crate) async fn wait_for_addr(host: &str, port: u16, what: &str) {
    for _ in 0..150 {
        if tokio::net::TcpStream::connect((host, port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not listen on port {port} within 15s");
}

/// Fetches `http://127.0.0.1:<port><path>` and returns the body (HTTP/1.0, no client crate needed).
pub async fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
}

/// A `herald <component>` command line with what every component a test starts
/// shares: the binary, `--nats-url` (with a private server's credentials),
/// `--watch-namespace`, the ports, log files, and kill on drop.
pub struct HeraldCommand {
    command: Command,
    what: String,
    /// Where the process shows it is up: its listener, else its admin server.
    ready_port: Option<u16>,
}

impl HeraldCommand {
    /// `herald <component>` for `namespace` (comma-separated for several), on `nats_url`.
    #[must_use]
    pub fn new(component: &str, namespace: &str, nats_url: &str) -> Self {
        let mut command = Command::new(herald_bin());
        command
            .arg(component)
            .args(["--nats-url", nats_url])
            .envs(crate::secure_nats::client_env_for(nats_url))
            .args(["--watch-namespace", namespace])
            .kill_on_drop(true);
        Self {
            command,
            what: format!("herald {component}"),
            ready_port: None,
        }
    }

    /// Serves (events, webhooks) on `127.0.0.1:<port>`; [`HeraldCommand::spawn`] waits for it.
    #[must_use]
    pub fn listen(mut self, port: u16) -> Self {
        self.command
            .args(["--listen", &format!("127.0.0.1:{port}")]);
        self.ready_port = Some(port);
        self
    }

    /// Its admin server (`/metrics`, `/healthz`) on `127.0.0.1:<port>`; without
    /// [`HeraldCommand::listen`], [`HeraldCommand::spawn`] waits for this one.
    #[must_use]
    pub fn admin(mut self, port: u16) -> Self {
        self.command
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")]);
        self.ready_port.get_or_insert(port);
        self
    }

    /// Further flags.
    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command.args(args);
        self
    }

    /// Sets an environment variable.
    #[must_use]
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.command.env(key, value);
        self
    }

    /// Removes an environment variable the test run may have set.
    #[must_use]
    pub fn env_remove(mut self, key: &str) -> Self {
        self.command.env_remove(key);
        self
    }

    /// Writes stdout to `target/e2e-logs/<name>.log` and stderr to `<name>.err.log`.
    #[must_use]
    pub fn logs(mut self, name: &str) -> Self {
        self.command
            .stdout(log_file(name))
            .stderr(log_file(&format!("{name}.err")));
        self
    }

    /// Starts the process and waits until its listener (or admin server) accepts.
    pub async fn spawn(mut self) -> Child {
        let child = self.command.spawn().unwrap_or_else(|e| {
            panic!(
                "start {} (build it first: cargo build -p herald): {e}",
                self.what
            )
        });
        if let Some(port) = self.ready_port {
            wait_for_port(port, &self.what).await;
        }
        child
    }

    /// Runs the process to its end (a command expected to exit) and returns its output.
    pub async fn output(mut self) -> std::process::Output {
        self.command
            .output()
            .await
            .unwrap_or_else(|e| panic!("run {}: {e}", self.what))
    }
}

/// A running `herald operator` that watches one namespace.
pub struct Operator {
    child: Child,
    /// Port of its admin server (`/metrics`, `/healthz`, `/readyz`).
    pub metrics_port: u16,
    /// Its leader-election identity.
    pub identity: String,
}

impl Operator {
    /// Starts an operator for `namespace`, talking to `nats_url`, electing a leader on
    /// a Lease in that namespace with a short (4 s) duration.
    pub async fn start(namespace: &str, nats_url: &str, identity: &str) -> Self {
        Self::start_with_ingress(namespace, nats_url, identity, "http://ingress.test").await
    }

    /// Like [`Operator::start`], with Broker addresses under `ingress_url`.
    pub async fn start_with_ingress(
        namespace: &str,
        nats_url: &str,
        identity: &str,
        ingress_url: &str,
    ) -> Self {
        Self::start_with_flags(namespace, nats_url, identity, ingress_url, &[]).await
    }

    /// Like [`Operator::start_with_ingress`], with `extra` flags.
    pub async fn start_with_flags(
        namespace: &str,
        nats_url: &str,
        identity: &str,
        ingress_url: &str,
        extra: &[&str],
    ) -> Self {
        let metrics_port = free_port();
        // `namespace` may list several (comma-separated); the Lease lives in the first.
        let lease_namespace = namespace.split(',').next().unwrap_or(namespace);
        let child = HeraldCommand::new("operator", namespace, nats_url)
            .admin(metrics_port)
            .args(["--lease-namespace", lease_namespace])
            .args(["--lease-duration", "4s"])
            .args(["--identity", identity])
            .args(["--ingress-url", ingress_url])
            .args(workload_flags(nats_url, extra))
            .args(extra)
            .env("RUST_LOG", "info,herald_controllers=debug")
            .logs(&format!("{namespace}-{identity}"))
            .spawn()
            .await;
        Self {
            child,
            metrics_port,
            identity: identity.to_owned(),
        }
    }

    /// The value of a metric line that starts with `series` (e.g.
    /// `herald_operator_reconciles_total{kind="Broker"}`), or 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let body = http_get(self.metrics_port, "/metrics")
            .await
            .unwrap_or_default();
        body.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Kills the operator with SIGKILL, as a node failure would.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("kill operator");
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// On a plane with a node, the pods the operator makes (consumer sidecars, source
/// adapters) reach `nats_url` at the node's address for this machine; `extra` may
/// say otherwise.
fn workload_flags(nats_url: &str, extra: &[&str]) -> Vec<String> {
    let on_node = crate::pods::node_host_ip().is_some();
    if !on_node || extra.iter().any(|f| f.starts_with("--workload-nats-url")) {
        return Vec::new();
    }
    vec![
        "--workload-nats-url".to_owned(),
        crate::pods::pod_facing(nats_url),
    ]
}

/// A running `herald ingress` serving one namespace.
pub struct Ingress {
    child: Child,
    /// Port producers send events to.
    pub port: u16,
    /// Port of its admin server.
    pub metrics_port: u16,
    namespace: String,
    nats_url: String,
    extra: Vec<String>,
}

/// Whether `flags` make the ingress serve https.
fn serves_https(flags: &[String]) -> bool {
    flags
        .iter()
        .any(|f| f == "--tls-cert" || f.starts_with("--tls-cert="))
}

impl Ingress {
    /// Starts an ingress for `namespace` with the default body limit.
    pub async fn start(namespace: &str, nats_url: &str) -> Self {
        Self::start_with(namespace, nats_url, &[]).await
    }

    /// Starts an ingress for `namespace` with extra flags.
    pub async fn start_with(namespace: &str, nats_url: &str, extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let (port, metrics_port) = (free_port(), free_port());
        let child = Self::spawn(namespace, nats_url, port, metrics_port, &extra).await;
        Self {
            child,
            port,
            metrics_port,
            namespace: namespace.to_owned(),
            nats_url: nats_url.to_owned(),
            extra,
        }
    }

    async fn spawn(
        namespace: &str,
        nats_url: &str,
        port: u16,
        metrics_port: u16,
        extra: &[String],
    ) -> Child {
        HeraldCommand::new("ingress", namespace, nats_url)
            .listen(port)
            .admin(metrics_port)
            .args(extra)
            // Per admin port: a restarted ingress keeps the log of the one it replaced.
            .logs(&format!("{namespace}-ingress-{metrics_port}"))
            .spawn()
            .await
    }

    /// Kills the ingress with SIGKILL and starts it again on the same port.
    pub async fn restart(&mut self) {
        self.child.kill().await.expect("kill ingress");
        self.metrics_port = free_port();
        self.child = Self::spawn(
            &self.namespace,
            &self.nats_url,
            self.port,
            self.metrics_port,
            &self.extra,
        )
        .await;
    }

    /// `http://127.0.0.1:<port>`, or `https://` when started with `--tls-cert`.
    #[must_use]
    pub fn url(&self) -> String {
        let scheme = if serves_https(&self.extra) {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }
}

/// Every test's subscribers, sinks and ingress listen on 127.0.0.1, which the egress
/// policy refuses by default; the rest of loopback and the API server (127.0.0.1 too,
/// on its own port) stay refused.
pub const LOOPBACK_SINKS: [&str; 2] = ["--egress-allow", "127.0.0.1/32"];

/// A running `herald dispatcher` for one namespace.
pub struct Dispatcher {
    child: Child,
    /// Port of its admin server.
    pub metrics_port: u16,
}

impl Dispatcher {
    /// Starts a dispatcher for `namespace`.
    pub async fn start(namespace: &str, nats_url: &str) -> Self {
        Self::start_with(namespace, nats_url, &[]).await
    }

    /// Starts a dispatcher with extra flags.
    pub async fn start_with(namespace: &str, nats_url: &str, extra: &[&str]) -> Self {
        let metrics_port = free_port();
        let child = HeraldCommand::new("dispatcher", namespace, nats_url)
            .admin(metrics_port)
            .args(LOOPBACK_SINKS)
            .args(extra)
            .logs(&format!("{namespace}-dispatcher-{metrics_port}"))
            .spawn()
            .await;
        Self {
            child,
            metrics_port,
        }
    }

    /// Kills the dispatcher with SIGKILL.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("kill dispatcher");
    }

    /// Its resident memory in bytes (from `/proc`), 0 if it is gone.
    #[must_use]
    pub fn rss_bytes(&self) -> u64 {
        let Some(pid) = self.child.id() else { return 0 };
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// Open file descriptors (sockets included) of the dispatcher.
    pub fn open_files(&self) -> usize {
        self.child.id().map_or(0, |pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
        })
    }

    /// Sends SIGTERM and returns how long the dispatcher took to exit (at most `limit`).
    pub async fn terminate(&mut self, limit: Duration) -> Option<Duration> {
        let pid = self.child.id()?;
        let began = std::time::Instant::now();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "kill -TERM {pid}");
        tokio::time::timeout(limit, self.child.wait())
            .await
            .ok()
            .map(|_| began.elapsed())
    }

    /// The value of metric `name` (summed over its series), 0 when absent.
    pub async fn metric(&self, name: &str) -> f64 {
        let body = http_get(self.metrics_port, "/metrics")
            .await
            .unwrap_or_default();
        body.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Events this dispatcher delivered (2xx), from its metrics.
    pub async fn delivered(&self) -> f64 {
        let body = http_get(self.metrics_port, "/metrics")
            .await
            .unwrap_or_default();
        body.lines()
            .filter(|l| {
                l.starts_with("herald_dispatcher_events_total{")
                    && l.contains("outcome=\"delivered\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// A running `herald sources` (the EventSource adapter) for one namespace.
pub struct Sources {
    _child: Child,
    /// Port of the webhook endpoint.
    pub port: u16,
    /// Port of its admin server.
    pub metrics_port: u16,
}

impl Sources {
    /// Starts the adapter for `namespace`.
    pub async fn start(namespace: &str, nats_url: &str) -> Self {
        Self::start_with(namespace, nats_url, &[]).await
    }

    /// Starts the adapter for `namespace` with extra flags.
    pub async fn start_with(namespace: &str, nats_url: &str, extra: &[&str]) -> Self {
        let (port, metrics_port) = (free_port(), free_port());
        let child = HeraldCommand::new("sources", namespace, nats_url)
            .listen(port)
            .admin(metrics_port)
            .args(LOOPBACK_SINKS)
            .args(extra)
            .logs(&format!("{namespace}-sources-{port}"))
            .spawn()
            .await;
        Self {
            _child: child,
            port,
            metrics_port,
        }
    }

    /// The webhook URL of EventSource `namespace/name` on this adapter.
    #[must_use]
    pub fn webhook_url(&self, namespace: &str, name: &str) -> String {
        format!("http://127.0.0.1:{}/{namespace}/{name}", self.port)
    }
}

/// Runs `herald ARGS` to its end and returns what it printed; fails the test with
/// its stderr when it exits with an error.
pub fn herald_stdout<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = herald_command().args(args).output().expect("run herald");
    assert!(
        out.status.success(),
        "herald exited with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `herald` binary, for running CLI commands in tests.
#[must_use]
pub fn herald_command() -> std::process::Command {
    std::process::Command::new(herald_bin())
}
