//! The one HTTP client constructor of the dispatcher, the sources adapter and
//! `herald send`: `http://` and `https://` alike, the latter verified against the
//! system's roots plus an optional CA bundle (`--ca-bundle`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Builder, Client};
use rustls::{ClientConfig, RootCertStore};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use super::{TlsError, certificates, provider, read};
use crate::egress::{EgressConnector, EgressPolicy};

/// An HTTP client for `http://` and `https://` URLs.
pub type HttpClient<B> = Client<HttpsConnector<EgressConnector>, B>;

/// Flags of the components that make outbound HTTP requests.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClientTlsArgs {
    /// PEM file of CA certificates trusted for `https://` subscribers, sinks and
    /// Brokers, besides the system's roots (e.g. a mounted `ConfigMap` or Secret).
    #[arg(long, env = "HERALD_CA_BUNDLE", value_name = "FILE")]
    pub ca_bundle: Option<PathBuf>,
}

impl ClientTlsArgs {
    /// The TLS settings these flags ask for.
    pub fn load(&self) -> Result<ClientTls, TlsError> {
        ClientTls::load(self.ca_bundle.as_deref())
    }
}

/// What an outbound `https://` connection trusts.
#[derive(Clone, Debug)]
pub struct ClientTls {
    pub(super) config: Arc<ClientConfig>,
    /// What `config` trusts, kept to add a destination's own CAs to.
    roots: Arc<RootCertStore>,
}

impl ClientTls {
    /// Trusts the system's roots and, when given, every certificate of the PEM file
    /// `ca_bundle`. A bundle that cannot be read, or holds no certificate, is an error:
    /// better not to start than to fail every delivery later.
    pub fn load(ca_bundle: Option<&Path>) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        let system = rustls_native_certs::load_native_certs();
        if !system.errors.is_empty() {
            // Missing system roots only matter for public https endpoints; a bundle
            // may still be all that is needed.
            tracing::debug!(errors = ?system.errors, "some system CA certificates could not be loaded");
        }
        let (system_roots, _unusable) = roots.add_parsable_certificates(system.certs);
        let mut bundle_roots = 0;
        if let Some(path) = ca_bundle {
            for certificate in certificates(path, &read(path)?)? {
                roots.add(certificate).map_err(|source| TlsError::BadCa {
                    path: path.to_owned(),
                    source,
                })?;
                bundle_roots += 1;
            }
        }
        tracing::debug!(
            system_roots,
            bundle_roots,
            ca_bundle = ?ca_bundle,
            "https: trusted CA certificates loaded"
        );
        Self::trusting(roots)
    }

    fn trusting(roots: RootCertStore) -> Result<Self, TlsError> {
        let roots = Arc::new(roots);
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
            roots,
        })
    }

    /// Trusts, besides what this trusts, the CA certificates in `pem` (a destination's
    /// own `caCerts`, like Knative's `CACerts`).
    pub fn with_ca_certs(&self, pem: &str) -> Result<Self, TlsError> {
        let mut roots = (*self.roots).clone();
        for certificate in inline_certificates(pem)? {
            roots.add(certificate).map_err(TlsError::InlineBadCa)?;
        }
        Self::trusting(roots)
    }

    /// A client built by `builder` (pool settings) that speaks `http://` and `https://`
    /// (HTTP/1.1) and connects only where `egress` allows.
    #[must_use]
    pub fn http_client<B>(&self, builder: &Builder, egress: &Arc<EgressPolicy>) -> HttpClient<B>
    where
        B: hyper::body::Body + Send,
        B::Data: Send,
    {
        let http = EgressConnector::new(egress.clone());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*self.config).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        builder.build(connector)
    }
}

/// The certificates of `pem` (at least one), each usable as a CA: what the operator
/// checks a destination's `caCerts` with.
pub fn check_ca_certs(pem: &str) -> Result<(), TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in inline_certificates(pem)? {
        roots.add(certificate).map_err(TlsError::InlineBadCa)?;
    }
    Ok(())
}

fn inline_certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsError::InlinePem)?;
    if certificates.is_empty() {
        return Err(TlsError::InlineNoCertificate);
    }
    Ok(certificates)
}

/// `error` and its sources, `: `-separated, each said once: the client's own error
/// ("client error (Connect)") says little, the reason (an untrusted certificate,
/// a refused connection) is in its sources.
#[must_use]
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_ca_bundle_is_refused_naming_the_file() {
        let error = ClientTls::load(Some(Path::new("/nonexistent/ca.crt"))).unwrap_err();
        assert!(matches!(error, TlsError::Read { .. }), "{error:?}");
        assert!(error.to_string().contains("/nonexistent/ca.crt"), "{error}");
    }

    #[test]
    fn a_ca_bundle_without_certificates_is_refused() {
        let path = std::env::temp_dir().join(format!("herald-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let error = ClientTls::load(Some(&path)).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(error, TlsError::NoCertificate { .. }), "{error:?}");
        assert!(
            error.to_string().contains(&*path.to_string_lossy()),
            "{error}"
        );
    }

    #[test]
    fn a_broken_pem_section_is_refused() {
        let path =
            std::env::temp_dir().join(format!("herald-broken-ca-{}.pem", std::process::id()));
        std::fs::write(&path, "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
        let error = ClientTls::load(Some(&path)).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(error, TlsError::Pem { .. }), "{error:?}");
    }

    #[test]
    fn inline_ca_certs_must_be_pem_certificates() {
        assert!(matches!(
            check_ca_certs("hello"),
            Err(TlsError::InlineNoCertificate)
        ));
        assert!(matches!(
            check_ca_certs("-----BEGIN CERTIFICATE-----\nAAAA\n"),
            Err(TlsError::InlinePem(_))
        ));
        let ca = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("src/tls/testdata/ca.crt"),
        )
        .unwrap();
        assert!(check_ca_certs(&ca).is_ok());
        let base = ClientTls::load(None).unwrap();
        let extended = base.with_ca_certs(&ca).unwrap();
        assert_eq!(extended.roots.len(), base.roots.len() + 1);
    }

    #[test]
    fn the_error_chain_says_each_cause_once() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("client error (Connect)")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let inner = std::io::Error::other("invalid peer certificate: UnknownIssuer");
        assert_eq!(
            error_chain(&Outer(inner)),
            "client error (Connect): invalid peer certificate: UnknownIssuer"
        );
    }
}
