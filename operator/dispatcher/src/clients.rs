//! The HTTP clients deliveries go out with: one for destinations without their own
//! `caCerts`, and one per distinct `caCerts` (each with its own connection pool, as
//! its connections trust other certificates), made on first use. All connect only
//! where the egress policy allows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use herald_runtime::egress::EgressPolicy;
use herald_runtime::outbound::EventClient;
use herald_runtime::tls::{ClientTls, TlsError};
use hyper_util::client::legacy::Builder;

/// Clients kept for distinct `caCerts` at most; past it they are all dropped and made
/// again as needed (Triggers that keep changing their CAs cannot grow the map).
const MOST_CA_CLIENTS: usize = 256;

/// Clients by the CA certificates a destination adds.
pub struct Clients {
    tls: ClientTls,
    builder: Builder,
    egress: Arc<EgressPolicy>,
    shared: EventClient,
    by_ca_certs: Mutex<HashMap<String, EventClient>>,
}

impl Clients {
    /// Clients trusting `tls` (plus a destination's own CAs), with `builder`'s pool
    /// settings, connecting where `egress` allows.
    #[must_use]
    pub fn new(tls: ClientTls, builder: Builder, egress: Arc<EgressPolicy>) -> Self {
        Self {
            shared: tls.http_client(&builder, &egress),
            tls,
            builder,
            egress,
            by_ca_certs: Mutex::default(),
        }
    }

    /// The client for a destination with `ca_certs` (PEM), or the shared one.
    pub fn for_destination(&self, ca_certs: Option<&str>) -> Result<EventClient, TlsError> {
        let Some(pem) = ca_certs else {
            return Ok(self.shared.clone());
        };
        let mut by_ca_certs = self
            .by_ca_certs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = by_ca_certs.get(pem) {
            return Ok(client.clone());
        }
        let tls = self.tls.with_ca_certs(pem)?;
        if by_ca_certs.len() >= MOST_CA_CLIENTS {
            by_ca_certs.clear();
        }
        let client = tls.http_client(&self.builder, &self.egress);
        by_ca_certs.insert(pem.to_owned(), client.clone());
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    use super::*;

    #[test]
    fn unusable_ca_certs_are_an_error_and_a_client_is_made_once_per_ca() {
        let clients = Clients::new(
            ClientTls::load(None).unwrap(),
            Client::builder(TokioExecutor::new()),
            Arc::new(EgressPolicy::unrestricted()),
        );
        assert!(clients.for_destination(None).is_ok());
        let error = herald_runtime::tls::error_chain(
            &clients.for_destination(Some("not pem")).unwrap_err(),
        );
        assert!(error.contains("caCerts"), "{error}");
        let ca = include_str!("../../runtime/src/tls/testdata/ca.crt");
        clients.for_destination(Some(ca)).unwrap();
        clients.for_destination(Some(ca)).unwrap();
        assert_eq!(clients.by_ca_certs.lock().unwrap().len(), 1);
    }
}
