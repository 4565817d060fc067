//! A nats-server that insists on TLS with client certificates and on a user (a
//! password user and an NKey user), with a CA and certificates made by `openssl` for
//! the test alone.
//!
//! Components started for its URL ([`crate::process`]) get the client settings as
//! `HERALD_NATS_*` environment variables, the way the Helm chart passes them, so a
//! test uses `Stack::start(client, ns, &server.url())` unchanged.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;

use tokio::process::{Child, Command};

use crate::process::{free_port, log_file, wait_for_port};

/// The password user's name.
pub const USER: &str = "herald";
/// The password user's password.
pub const PASSWORD: &str = "e2e-password-not-secret";

/// Client settings per server URL, read when a component is spawned.
static CLIENT_ENV: Mutex<BTreeMap<String, Vec<(String, String)>>> = Mutex::new(BTreeMap::new());

/// The `HERALD_NATS_*` variables a component needs to reach the server at `url`
/// (none for an ordinary server).
pub(crate) fn client_env_for(url: &str) -> Vec<(String, String)> {
    CLIENT_ENV
        .lock()
        .expect("client env lock")
        .get(url)
        .cloned()
        .unwrap_or_default()
}

/// A private TLS + auth nats-server with JetStream.
pub struct SecureNatsServer {
    child: Child,
    /// Client port.
    pub port: u16,
    dir: PathBuf,
    /// Seed of the NKey user the server knows (`SU...`).
    pub nkey_seed: String,
}

impl SecureNatsServer {
    /// Makes the certificates and starts the server.
    pub async fn start(name: &str) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("herald-e2e-secure-nats-{name}-{port}"));
        std::fs::create_dir_all(dir.join("store")).expect("create the server's directory");
        crate::certs::make_certificates(&dir);
        let nkey = nkeys::KeyPair::new_user();
        let nkey_seed = nkey.seed().expect("a new key has a seed");
        let config = format!(
            r#"
listen: "127.0.0.1:{port}"
server_name: "{name}-{port}"
jetstream {{ store_dir: "{store}" }}
tls {{
  cert_file: "{dir}/server.crt"
  key_file: "{dir}/server.key"
  ca_file: "{dir}/ca.crt"
  verify: true
  timeout: 3
}}
authorization {{
  users: [
    {{ user: "{USER}", password: "{PASSWORD}" }}
    {{ nkey: "{public}" }}
  ]
}}
"#,
            store = dir.join("store").display(),
            dir = dir.display(),
            public = nkey.public_key(),
        );
        let config_path = dir.join("nats.conf");
        std::fs::write(&config_path, config).expect("write nats.conf");
        let bin = std::env::var("HERALD_NATS_SERVER_BIN")
            .expect("HERALD_NATS_SERVER_BIN is not set: run through e2e/test.sh");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log_file(&format!("nats-secure-{name}-{port}")))
            .kill_on_drop(true)
            .spawn()
            .expect("start nats-server");
        wait_for_port(port, "nats-server (TLS)").await;
        let server = Self {
            child,
            port,
            dir,
            nkey_seed,
        };
        CLIENT_ENV
            .lock()
            .expect("client env lock")
            .insert(server.url(), server.client_env());
        server
    }

    /// `tls://127.0.0.1:<port>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("tls://127.0.0.1:{}", self.port)
    }

    /// A file of the test PKI: `ca.crt`, `client.crt`, `client.key`, ...
    #[must_use]
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// What a Herald component needs: the CA, a client certificate, TLS required and
    /// the password user.
    #[must_use]
    pub fn client_env(&self) -> Vec<(String, String)> {
        let path = |name: &str| self.file(name).display().to_string();
        vec![
            ("HERALD_NATS_TLS_CA".into(), path("ca.crt")),
            ("HERALD_NATS_TLS_CERT".into(), path("client.crt")),
            ("HERALD_NATS_TLS_KEY".into(), path("client.key")),
            ("HERALD_NATS_TLS_REQUIRED".into(), "true".into()),
            ("HERALD_NATS_USER".into(), USER.into()),
            ("HERALD_NATS_PASSWORD".into(), PASSWORD.into()),
        ]
    }
}

impl Drop for SecureNatsServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        CLIENT_ENV
            .lock()
            .expect("client env lock")
            .remove(&self.url());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
