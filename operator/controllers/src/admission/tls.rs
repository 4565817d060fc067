//! The certificate the webhook presents, swapped in memory when the keeper loads a
//! new one; none until the first is loaded (handshakes fail until then, and the
//! apiserver, with `failurePolicy: Fail`, refuses what it would have asked about).

use std::sync::{Arc, PoisonError, RwLock};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

/// The current certificate and the PEM it came from (to tell a change).
#[derive(Default)]
pub struct ServingCertificate {
    current: RwLock<Option<(String, Arc<CertifiedKey>)>>,
}

impl std::fmt::Debug for ServingCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCertificate").finish_non_exhaustive()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ServingCertificate {
    /// Presents `cert` (PEM chain) with `key` (PEM) from now on; `Ok(true)` if that
    /// is a change. Connections already open keep the certificate they got.
    pub fn present(&self, cert: &str, key: &str) -> Result<bool, rustls::Error> {
        let unchanged = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|(pem, _)| pem == cert);
        if unchanged {
            return Ok(false);
        }
        let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| rustls::Error::General(format!("certificate PEM: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
            .map_err(|e| rustls::Error::General(format!("key PEM: {e}")))?;
        let certified = CertifiedKey::from_der(chain, key, &provider())?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) =
            Some((cert.to_owned(), Arc::new(certified)));
        Ok(true)
    }

    /// A TLS acceptor (HTTP/1.1) presenting the current certificate.
    pub fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, rustls::Error> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

impl ResolvesServerCert for ServingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(_, key)| key.clone())
    }
}
