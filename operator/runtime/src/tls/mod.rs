//! TLS for Herald's own HTTP: outbound clients that speak both `http://` and
//! `https://`, trusting the system roots plus an optional CA bundle ([`client`]), and
//! a server certificate read from PEM files and reloaded when they change ([`server`]).
//!
//! Everything runs on rustls with the `ring` provider, the one kube and async-nats
//! already bring: one crypto backend in the binary.

pub mod client;
pub mod server;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

pub use client::{ClientTls, ClientTlsArgs, HttpClient, check_ca_certs, error_chain};
pub use server::ReloadingCertificate;

/// Why TLS could not be set up; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not PEM, or a PEM section of it is broken.
    #[error("{} is not valid PEM", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The file holds no `CERTIFICATE` section.
    #[error("{} holds no PEM certificate", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The file holds no private key section.
    #[error("{} holds no PEM private key", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// A certificate of the file cannot be used as a trust anchor.
    #[error("{} holds a certificate that cannot be trusted as a CA", path.display())]
    BadCa {
        /// The file.
        path: PathBuf,
        /// Why rustls refused it.
        #[source]
        source: rustls::Error,
    },
    /// CA certificates given inline (a Trigger's `caCerts`) are not PEM certificates.
    #[error("caCerts is not a PEM certificate list")]
    InlinePem(#[source] rustls::pki_types::pem::Error),
    /// CA certificates given inline hold no `CERTIFICATE` section.
    #[error("caCerts holds no PEM certificate")]
    InlineNoCertificate,
    /// A certificate given inline cannot be used as a trust anchor.
    #[error("caCerts holds a certificate that cannot be trusted as a CA")]
    InlineBadCa(#[source] rustls::Error),
    /// The key cannot be loaded, or does not belong to the certificate.
    #[error("the key {} cannot serve the certificate {}", key.display(), cert.display())]
    KeyPair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why rustls refused the pair.
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the configuration itself (a bug rather than bad input).
    #[error("cannot configure TLS")]
    Config(#[source] rustls::Error),
}

/// The crypto provider of every TLS configuration Herald makes.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads `path`.
fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every certificate of a PEM file's contents `pem`; at least one.
fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_owned(),
            source,
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certificates)
}
