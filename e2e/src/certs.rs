//! Certificates made by `openssl` for one test alone: a CA, and server and client
//! certificates it signed, in a scratch directory. Used for the TLS nats-server
//! ([`crate::secure_nats`]) and for https subscribers and ingresses.

use std::path::{Path, PathBuf};

/// A test CA and what it signed, in a directory removed when dropped.
pub struct TestPki {
    dir: PathBuf,
}

impl TestPki {
    /// Makes `ca.crt`, `server.crt`/`server.key` (for 127.0.0.1 and localhost) and
    /// `client.crt`/`client.key` in a fresh directory named after `name`.
    #[must_use]
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "herald-e2e-pki-{name}-{}-{}",
            std::process::id(),
            crate::process::free_port()
        ));
        std::fs::create_dir_all(&dir).expect("create the PKI directory");
        make_certificates(&dir);
        Self { dir }
    }

    /// A file of the PKI: `ca.crt`, `server.crt`, `server.key`, ...
    #[must_use]
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `file(name)` as a string, for flags.
    #[must_use]
    pub fn path(&self, name: &str) -> String {
        self.file(name).display().to_string()
    }

    /// Another server certificate for 127.0.0.1 and localhost, `<who>.crt`/`<who>.key`.
    pub fn issue_server(&self, who: &str) {
        issue(&self.dir, who, SERVER_EXTENSIONS);
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const SERVER_EXTENSIONS: &str =
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n";
const P256: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be on PATH (e2e/controlplane/up.sh uses it too)");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, in `dir`.
pub(crate) fn make_certificates(dir: &Path) {
    openssl(
        dir,
        &[
            &["req", "-x509"],
            &P256[..],
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "1",
                "-subj",
                "/CN=herald-e2e-ca",
            ],
        ]
        .concat(),
    );
    issue(dir, "server", SERVER_EXTENSIONS);
    issue(dir, "client", "extendedKeyUsage=clientAuth\n");
}

/// `<who>.crt` and `<who>.key`, signed by the CA in `dir`, with `extensions`.
fn issue(dir: &Path, who: &str, extensions: &str) {
    std::fs::write(dir.join(format!("{who}.ext")), extensions).expect("write extensions");
    openssl(
        dir,
        &[
            &["req"],
            &P256[..],
            &[
                "-keyout",
                &format!("{who}.key"),
                "-out",
                &format!("{who}.csr"),
                "-subj",
                &format!("/CN=herald-e2e-{who}"),
            ],
        ]
        .concat(),
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{who}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            &format!("{who}.crt"),
            "-extfile",
            &format!("{who}.ext"),
        ],
    );
}

/// The leaf certificate (DER) a TLS server on 127.0.0.1:`port` presents to a new
/// connection, if a client trusting only the CAs in `ca_pem` accepts it for 127.0.0.1.
pub async fn presented_certificate(port: u16, ca_pem: &[u8]) -> Option<Vec<u8>> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(ca.ok()?).ok()?;
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .ok()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .ok()?;
    Some(tls.get_ref().1.peer_certificates()?.first()?.to_vec())
}
