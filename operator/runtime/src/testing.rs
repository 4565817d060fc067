//! Helpers for benchmarks and the e2e suite that need a nats-server of their own
//! (compiled only with the `testing` feature).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// A free TCP port on 127.0.0.1 (free when this returns; taken soon after by the caller).
///
/// Never the same port twice in one process: the kernel may hand out a port again as
/// soon as the probe socket closes, and two calls in a row (a listen port and an admin
/// port) once gave one component the same port twice, so it could not start.
///
/// # Panics
/// When no port can be bound at all.
#[must_use]
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind an ephemeral port");
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// A private nats-server with JetStream on a free loopback port and a store of its
/// own, killed (and its store deleted) when dropped. The binary is
/// `HERALD_NATS_SERVER_BIN`, else `nats-server` from `PATH`; its log goes to the
/// workspace's `target/e2e-logs/`.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    store: PathBuf,
    name: String,
}

impl NatsServer {
    /// Starts the server and waits until it accepts connections.
    ///
    /// # Panics
    /// When the binary cannot be started or does not listen within 15 s.
    pub async fn start(name: &str) -> Self {
        let port = free_port();
        let store = std::env::temp_dir().join(format!("herald-e2e-nats-{name}-{port}"));
        let mut server = Self {
            child: None,
            port,
            store,
            name: name.to_owned(),
        };
        server.restart().await;
        server
    }

    /// `nats://127.0.0.1:<port>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's process id while it runs (benchmarks read its CPU time).
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Stops the server (SIGKILL: JetStream's file store must survive that).
    ///
    /// # Panics
    /// When the process cannot be killed.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill nats-server");
        }
    }

    /// Starts the server again on the same port and store.
    ///
    /// # Panics
    /// When the binary cannot be started or does not listen within 15 s.
    pub async fn restart(&mut self) {
        self.stop().await;
        let bin = std::env::var("HERALD_NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
        let child = Command::new(&bin)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js"])
            .arg("-sd")
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(log_file(&format!("nats-{}-{}", self.name, self.port)))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} (set HERALD_NATS_SERVER_BIN): {e}"));
        self.child = Some(child);
        for _ in 0..150 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "nats-server did not listen on port {} within 15s",
            self.port
        );
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// `target/e2e-logs/<name>.log` of the workspace, or nowhere if it cannot be made.
fn log_file(name: &str) -> Stdio {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/e2e-logs");
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::File::create(dir.join(format!("{name}.log"))))
        .map_or_else(|_| Stdio::null(), Stdio::from)
}
