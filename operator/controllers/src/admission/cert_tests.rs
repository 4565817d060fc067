use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::*;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

fn the_names() -> Vec<String> {
    names("herald-operator", "herald-system", &["127.0.0.1".into()])
}

/// Whether a client trusting `bundle` accepts `cert` for `name` at `at`, as rustls
/// (webpki) checks it.
fn trusted(bundle: &str, cert: &str, name: &str, at: OffsetDateTime) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(bundle.as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    let leaf = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
    let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        at.unix_timestamp().try_into().unwrap(),
    ));
    verifier
        .verify_server_cert(
            &leaf,
            &[],
            &ServerName::try_from(name.to_owned()).unwrap(),
            &[],
            at,
        )
        .is_ok()
}

#[test]
fn the_names_are_the_service_s_and_the_extra_ones() {
    assert_eq!(
        the_names(),
        [
            "127.0.0.1",
            "herald-operator",
            "herald-operator.herald-system",
            "herald-operator.herald-system.svc",
            "herald-operator.herald-system.svc.cluster.local",
        ]
    );
}

#[test]
fn a_fresh_certificate_is_trusted_through_the_bundle_for_every_name() {
    let certs = Certificates::issue(&the_names(), now(), None).unwrap();
    for name in the_names() {
        assert!(
            trusted(&certs.ca_bundle, &certs.cert, &name, now()),
            "{name}"
        );
    }
    assert!(!trusted(
        &certs.ca_bundle,
        &certs.cert,
        "elsewhere.example",
        now()
    ));
    assert!(!certs.need_renewal(&the_names(), now()));
}

#[test]
fn what_the_secret_keeps_reads_back_the_same() {
    let certs = Certificates::issue(&the_names(), now(), None).unwrap();
    let (data, annotations) = certs.to_secret();
    assert_eq!(Certificates::from_secret(&data, &annotations), Some(certs));
    let mut partial = data.clone();
    partial.remove(KEY);
    assert_eq!(Certificates::from_secret(&partial, &annotations), None);
}

#[test]
fn the_serving_certificate_is_renewed_by_the_same_ca_before_it_expires() {
    let first = Certificates::issue(&the_names(), now(), None).unwrap();
    let later = now() + CERT_LIFETIME - CERT_RENEW_BEFORE + Duration::hours(1);
    assert!(first.need_renewal(&the_names(), later));
    let renewed = Certificates::issue(&the_names(), later, Some(&first)).unwrap();
    assert_eq!(renewed.ca_bundle, first.ca_bundle, "the caBundle stays");
    assert_ne!(renewed.cert, first.cert);
    // Both are trusted at once: replicas still serving the first one keep working.
    assert!(trusted(
        &renewed.ca_bundle,
        &first.cert,
        "herald-operator.herald-system.svc",
        later
    ));
    assert!(trusted(
        &renewed.ca_bundle,
        &renewed.cert,
        "herald-operator.herald-system.svc",
        later
    ));
    assert!(!renewed.need_renewal(&the_names(), later));
}

#[test]
fn a_ca_near_its_end_is_replaced_and_the_old_one_trusted_until_then() {
    let first = Certificates::issue(&the_names(), now(), None).unwrap();
    let later = now() + CA_LIFETIME - CA_RENEW_BEFORE + Duration::days(1);
    assert!(first.need_renewal(&the_names(), later));
    let renewed = Certificates::issue(&the_names(), later, Some(&first)).unwrap();
    assert_ne!(renewed.ca_key, first.ca_key);
    assert!(renewed.ca_bundle.ends_with(&first.ca_bundle), "old CA kept");
    assert!(renewed.ca_not_after > first.ca_not_after);
    // A certificate of the old CA, renewed just before, still validates.
    let old_leaf = Certificates::issue(&the_names(), later - Duration::days(2), Some(&first))
        .unwrap()
        .cert;
    assert!(trusted(&renewed.ca_bundle, &old_leaf, "127.0.0.1", later));
    assert!(trusted(
        &renewed.ca_bundle,
        &renewed.cert,
        "127.0.0.1",
        later
    ));
}

#[test]
fn new_names_need_a_new_certificate() {
    let certs = Certificates::issue(&the_names(), now(), None).unwrap();
    let more = names("herald-operator", "herald-system", &["10.0.0.1".into()]);
    assert!(certs.need_renewal(&more, now()));
}
