//! The webhook's own CA and serving certificate, as kept in a Secret (pure).
//!
//! The apiserver trusts the CA through the `caBundle` of the webhook configuration;
//! the serving certificate is issued for the webhook Service's names. The CA lives ten
//! years and is renewed a year ahead, its successor trusted alongside it until then;
//! the serving certificate lives one year and is renewed 30 days ahead by the same
//! CA, so the `caBundle` does not change and replicas that still serve the previous
//! certificate stay trusted while they catch up.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// Secret key of the CA bundle (the current CA, and the previous one while it lasts).
pub const CA_BUNDLE: &str = "ca.crt";
/// Secret key of the CA's private key.
pub const CA_KEY: &str = "ca.key";
/// Secret key of the serving certificate (as `kubernetes.io/tls`).
pub const CERT: &str = "tls.crt";
/// Secret key of the serving certificate's private key.
pub const KEY: &str = "tls.key";
/// Annotation: when the CA expires (Unix seconds).
pub const CA_NOT_AFTER: &str = "eventing.herald.dev/ca-not-after";
/// Annotation: when the serving certificate expires (Unix seconds).
pub const CERT_NOT_AFTER: &str = "eventing.herald.dev/cert-not-after";
/// Annotation: the names the serving certificate is for, comma-separated.
pub const CERT_NAMES: &str = "eventing.herald.dev/cert-names";

const CA_LIFETIME: Duration = Duration::days(3650);
const CA_RENEW_BEFORE: Duration = Duration::days(365);
const CERT_LIFETIME: Duration = Duration::days(365);
const CERT_RENEW_BEFORE: Duration = Duration::days(30);
/// Certificates are valid from a little before they were made: clocks differ.
const BACKDATE: Duration = Duration::hours(1);
const CA_NAME: &str = "herald-admission-ca";

/// Why a certificate could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused (a name that is not a DNS name, a key it cannot read).
    #[error("cannot issue the webhook certificate")]
    Issue(#[from] rcgen::Error),
}

/// The CA and serving certificate, as stored in the Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificates {
    /// PEM: the current CA first, then the previous one while it is still valid.
    pub ca_bundle: String,
    /// PEM (PKCS#8) key of the current CA.
    pub ca_key: String,
    /// PEM serving certificate.
    pub cert: String,
    /// PEM (PKCS#8) key of the serving certificate.
    pub key: String,
    /// Expiry of the current CA, Unix seconds.
    pub ca_not_after: i64,
    /// Expiry of the serving certificate, Unix seconds.
    pub cert_not_after: i64,
    /// The names the serving certificate is for, sorted.
    pub names: Vec<String>,
}

/// The names the certificate must carry: the Service's in-cluster DNS names and
/// `extra` (DNS names or IP addresses), sorted and without repeats.
#[must_use]
pub fn names(service: &str, namespace: &str, extra: &[String]) -> Vec<String> {
    let mut names = vec![
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ];
    names.extend(extra.iter().filter(|n| !n.is_empty()).cloned());
    names.sort();
    names.dedup();
    names
}

impl Certificates {
    /// Reads what a Secret holds; `None` if anything is missing or unreadable (then a
    /// fresh set is issued).
    #[must_use]
    pub fn from_secret(
        data: &BTreeMap<String, ByteString>,
        annotations: &BTreeMap<String, String>,
    ) -> Option<Self> {
        let text = |key: &str| {
            data.get(key)
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
        };
        let number = |key: &str| annotations.get(key).and_then(|v| v.parse().ok());
        Some(Self {
            ca_bundle: text(CA_BUNDLE)?,
            ca_key: text(CA_KEY)?,
            cert: text(CERT)?,
            key: text(KEY)?,
            ca_not_after: number(CA_NOT_AFTER)?,
            cert_not_after: number(CERT_NOT_AFTER)?,
            names: annotations
                .get(CERT_NAMES)?
                .split(',')
                .map(str::to_owned)
                .collect(),
        })
    }

    /// The Secret's data and annotations.
    #[must_use]
    pub fn to_secret(&self) -> (BTreeMap<String, ByteString>, BTreeMap<String, String>) {
        let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
        let data = BTreeMap::from([
            (CA_BUNDLE.to_owned(), bytes(&self.ca_bundle)),
            (CA_KEY.to_owned(), bytes(&self.ca_key)),
            (CERT.to_owned(), bytes(&self.cert)),
            (KEY.to_owned(), bytes(&self.key)),
        ]);
        let annotations = BTreeMap::from([
            (CA_NOT_AFTER.to_owned(), self.ca_not_after.to_string()),
            (CERT_NOT_AFTER.to_owned(), self.cert_not_after.to_string()),
            (CERT_NAMES.to_owned(), self.names.join(",")),
        ]);
        (data, annotations)
    }

    /// Whether these must be replaced at `now` to serve `names`: the serving
    /// certificate or the CA is near its end, or the names changed.
    #[must_use]
    pub fn need_renewal(&self, names: &[String], now: OffsetDateTime) -> bool {
        let now = now.unix_timestamp();
        self.names != names
            || self.cert_not_after - now < CERT_RENEW_BEFORE.whole_seconds()
            || self.ca_not_after - now < CA_RENEW_BEFORE.whole_seconds()
    }

    /// Issues a serving certificate for `names` at `now`, with the CA of `previous`
    /// while it is good for a year more, else with a new CA (trusted alongside the
    /// previous one until that expires).
    pub fn issue(
        names: &[String],
        now: OffsetDateTime,
        previous: Option<&Self>,
    ) -> Result<Self, CertError> {
        let reusable = previous
            .filter(|p| p.ca_not_after - now.unix_timestamp() >= CA_RENEW_BEFORE.whole_seconds());
        let (ca_key, ca_bundle, ca_not_after) = if let Some(p) = reusable {
            (
                KeyPair::from_pem(&p.ca_key)?,
                p.ca_bundle.clone(),
                p.ca_not_after,
            )
        } else {
            let key = KeyPair::generate()?;
            let params = ca_params(now);
            let ca = params.self_signed(&key)?;
            let mut bundle = ca.pem();
            // The previous CA still signs what other replicas serve: keep trusting it.
            if let Some(old) = previous
                .filter(|p| p.ca_not_after > now.unix_timestamp())
                .and_then(|p| first_pem(&p.ca_bundle))
            {
                bundle.push_str(old);
            }
            (key, bundle, (now + CA_LIFETIME).unix_timestamp())
        };
        let issuer = Issuer::new(ca_params(now), ca_key);
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().map_or("herald", String::as_str),
        );
        params.not_before = now - BACKDATE;
        params.not_after = now + CERT_LIFETIME;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Self {
            ca_bundle,
            ca_key: issuer.key().serialize_pem(),
            cert: cert.pem(),
            key: key.serialize_pem(),
            ca_not_after,
            cert_not_after: params.not_after.unix_timestamp(),
            names: names.to_vec(),
        })
    }
}

/// The CA's parameters. Signing needs only its name, key usages and key identifier
/// method, which do not depend on `now`: a CA issued earlier signs with these too.
fn ca_params(now: OffsetDateTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_LIFETIME;
    params
}

/// The first PEM certificate of `bundle`, with its end line.
fn first_pem(bundle: &str) -> Option<&str> {
    const END: &str = "-----END CERTIFICATE-----";
    let end = bundle.find(END)? + END.len();
    let rest = &bundle[end..];
    let newline = usize::from(rest.starts_with('\n'));
    Some(&bundle[..end + newline])
}

#[cfg(test)]
#[path = "cert_tests.rs"]
mod tests;
