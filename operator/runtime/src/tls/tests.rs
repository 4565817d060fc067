//! A real handshake between [`ClientTls`] and [`ReloadingCertificate`] served by
//! [`crate::http_server::serve_tls`], with the test PKI in `testdata/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use http_body_util::{BodyExt as _, Empty};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

use super::*;
use crate::http_server::{ConnectionLimits, serve_tls};

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/tls/testdata")
        .join(name)
}

/// A scratch directory with server `who`'s files as `tls.crt` and `tls.key`, removed
/// when dropped.
struct Mounted(PathBuf);

impl std::ops::Deref for Mounted {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mounted(test: &str, who: &str) -> Mounted {
    let dir = std::env::temp_dir().join(format!("herald-tls-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    swap(&dir, who);
    Mounted(dir)
}

/// Puts server `who`'s files in `dir`, as a Secret update would.
fn swap(dir: &Path, who: &str) {
    std::fs::copy(testdata(&format!("server-{who}.crt")), dir.join("tls.crt")).unwrap();
    std::fs::copy(testdata(&format!("server-{who}.key")), dir.join("tls.key")).unwrap();
}

/// Serves "ok" over TLS with the certificate in `dir`.
async fn server(dir: &Path) -> (std::net::SocketAddr, Arc<ReloadingCertificate>) {
    let certificate =
        ReloadingCertificate::load(&dir.join("tls.crt"), &dir.join("tls.key")).unwrap();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { "ok" });
    let acceptor = certificate.acceptor().unwrap();
    tokio::spawn(serve_tls(
        listener,
        acceptor,
        app,
        ConnectionLimits::default(),
        std::future::pending(),
    ));
    (addr, certificate)
}

/// The leaf certificate the server at `addr` presents to a new connection.
async fn presented(addr: std::net::SocketAddr) -> CertificateDer<'static> {
    let tls = ClientTls::load(Some(&testdata("ca.crt"))).unwrap();
    let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

fn leaf(who: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(testdata(&format!("server-{who}.crt"))).unwrap()
}

/// GETs `url` with `tls`; the body, or the error with its causes.
async fn get(tls: &ClientTls, url: &str) -> Result<String, String> {
    let builder = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new());
    let client: HttpClient<Empty<&'static [u8]>> = tls.http_client(
        &builder,
        &std::sync::Arc::new(crate::egress::EgressPolicy::unrestricted()),
    );
    let response = client
        .get(url.parse().unwrap())
        .await
        .map_err(|e| error_chain(&e))?;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn https_is_trusted_through_the_ca_bundle_and_plain_http_still_works() {
    let dir = mounted("trusted", "a");
    let (addr, _) = server(&dir).await;
    let tls = ClientTls::load(Some(&testdata("ca.crt"))).unwrap();
    assert_eq!(
        get(&tls, &format!("https://localhost:{}/", addr.port()))
            .await
            .unwrap(),
        "ok"
    );
    assert_eq!(
        get(&tls, &format!("https://127.0.0.1:{}/", addr.port()))
            .await
            .unwrap(),
        "ok"
    );

    let plain = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let plain_addr = plain.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { "plain" });
    tokio::spawn(async move { axum::serve(plain, app).await });
    assert_eq!(
        get(&tls, &format!("http://{plain_addr}/")).await.unwrap(),
        "plain"
    );
}

#[tokio::test]
async fn a_destination_s_own_ca_certs_are_trusted() {
    let dir = mounted("inline", "a");
    let (addr, _) = server(&dir).await;
    let pem = std::fs::read_to_string(testdata("ca.crt")).unwrap();
    let tls = ClientTls::load(None).unwrap().with_ca_certs(&pem).unwrap();
    let url = format!("https://localhost:{}/", addr.port());
    assert_eq!(get(&tls, &url).await.unwrap(), "ok");
}

#[tokio::test]
async fn without_the_ca_the_certificate_is_refused_and_the_reason_said() {
    let dir = mounted("untrusted", "a");
    let (addr, _) = server(&dir).await;
    let error = get(
        &ClientTls::load(None).unwrap(),
        &format!("https://localhost:{}/", addr.port()),
    )
    .await
    .unwrap_err();
    assert!(error.contains("invalid peer certificate"), "{error}");
}

#[tokio::test]
async fn new_connections_get_the_certificate_the_files_changed_to() {
    let dir = mounted("reload", "a");
    let (addr, certificate) = server(&dir).await;
    assert_eq!(presented(addr).await, leaf("a"));
    assert!(
        !certificate.reload_if_changed().unwrap(),
        "nothing changed yet"
    );
    swap(&dir, "b");
    assert!(certificate.reload_if_changed().unwrap());
    assert_eq!(presented(addr).await, leaf("b"));
}

#[tokio::test]
async fn a_half_updated_pair_keeps_the_previous_certificate() {
    let dir = mounted("half", "a");
    let (addr, certificate) = server(&dir).await;
    std::fs::copy(testdata("server-b.crt"), dir.join("tls.crt")).unwrap();
    let error = certificate.reload_if_changed().unwrap_err();
    assert!(matches!(error, TlsError::KeyPair { .. }), "{error:?}");
    assert_eq!(presented(addr).await, leaf("a"));
    std::fs::copy(testdata("server-b.key"), dir.join("tls.key")).unwrap();
    assert!(certificate.reload_if_changed().unwrap());
    assert_eq!(presented(addr).await, leaf("b"));
}

#[test]
fn a_server_certificate_that_cannot_be_used_is_refused_naming_the_file() {
    let missing =
        ReloadingCertificate::load(Path::new("/nonexistent/tls.crt"), &testdata("server-a.key"))
            .unwrap_err();
    assert!(
        missing.to_string().contains("/nonexistent/tls.crt"),
        "{missing}"
    );
    let mismatched =
        ReloadingCertificate::load(&testdata("server-a.crt"), &testdata("server-b.key"))
            .unwrap_err();
    assert!(
        matches!(mismatched, TlsError::KeyPair { .. }),
        "{mismatched:?}"
    );
    let no_key = ReloadingCertificate::load(&testdata("server-a.crt"), &testdata("server-a.crt"))
        .unwrap_err();
    assert!(matches!(no_key, TlsError::NoKey { .. }), "{no_key:?}");
}
