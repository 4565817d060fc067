//! A server certificate from two PEM files (chain and key), reloaded when they change.
//! A Secret mounted in a pod is updated in place, so the files are read again every
//! few seconds and, when their contents changed and form a valid pair, new TLS
//! connections get the new certificate; connections already open keep theirs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject as _;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use super::{TlsError, certificates, provider, read};

/// The certificate and key a server presents, from `cert_path` and `key_path`.
pub struct ReloadingCertificate {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' contents `current` was made from, to tell a change.
    loaded_from: Mutex<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ReloadingCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCertificate")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl ReloadingCertificate {
    /// Reads the certificate chain (PEM, leaf first) and its private key (PEM: PKCS#8,
    /// PKCS#1 or SEC1); an unreadable file or a key that does not fit is an error.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, TlsError> {
        let (cert_pem, key_pem) = (read(cert_path)?, read(key_path)?);
        let certified = certified_key(cert_path, &cert_pem, key_path, &key_pem)?;
        Ok(Arc::new(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: RwLock::new(Arc::new(certified)),
            loaded_from: Mutex::new((cert_pem, key_pem)),
        }))
    }

    /// Reads the files again; takes their pair when it changed and is valid. `Ok(true)`
    /// when a new certificate is served from now on; an error (the old one stays)
    /// when the files changed into something unusable, e.g. half-way through an update.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let (cert_pem, key_pem) = (read(&self.cert_path)?, read(&self.key_path)?);
        let mut loaded_from = self
            .loaded_from
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if loaded_from.0 == cert_pem && loaded_from.1 == key_pem {
            return Ok(false);
        }
        let certified = certified_key(&self.cert_path, &cert_pem, &self.key_path, &key_pem)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(certified);
        *loaded_from = (cert_pem, key_pem);
        Ok(true)
    }

    /// Calls [`Self::reload_if_changed`] every `period`, logging what happens, until
    /// `stop` resolves.
    pub async fn keep_reloading(self: Arc<Self>, period: Duration, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // the first tick is now: the files were just read
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = &mut stop => return,
            }
            let this = self.clone();
            match tokio::task::spawn_blocking(move || this.reload_if_changed()).await {
                Ok(Ok(true)) => {
                    tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded");
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %super::error_chain(&e), "TLS certificate not reloaded; still serving the previous one");
                }
                Err(e) => tracing::warn!(error = %e, "TLS certificate reload failed"),
            }
        }
    }

    /// A TLS acceptor (HTTP/1.1) that presents the current certificate.
    pub fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, TlsError> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// The pair of PEM contents as rustls serves it; the key must fit the leaf.
fn certified_key(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
) -> Result<CertifiedKey, TlsError> {
    let chain = certificates(cert_path, cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: key_path.to_owned(),
        },
        source => TlsError::Pem {
            path: key_path.to_owned(),
            source,
        },
    })?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|source| TlsError::KeyPair {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
        source,
    })
}
