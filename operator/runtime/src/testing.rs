//! Helpers for benchmarks and tests that need a real nats-server.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A nats-server with JetStream on a free loopback port and a temporary file store,
/// stopped (and its store deleted) when dropped. The binary is
/// `HERALD_NATS_SERVER_BIN`, else `nats-server` from `PATH`.
pub struct NatsServer {
    child: Child,
    store: PathBuf,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
}

impl NatsServer {
    /// Starts the server and waits until it accepts connections.
    ///
    /// # Panics
    /// When the binary cannot be started or does not listen within 5 s.
    #[must_use]
    pub fn start() -> Self {
        let bin = std::env::var("HERALD_NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let store = std::env::temp_dir().join(format!("herald-nats-{port}"));
        let mut child = Command::new(&bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} (set HERALD_NATS_SERVER_BIN): {e}"));
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self {
                    child,
                    store,
                    url: format!("nats://127.0.0.1:{port}"),
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("{bin} did not listen on port {port}");
    }
}

impl NatsServer {
    /// The server's process id (benchmarks read its CPU time).
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
