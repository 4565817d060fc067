//! Keeps the webhook's certificate: issued once into a Secret of the operator's
//! namespace (so every replica, leader or not, serves the same one), renewed before
//! it expires, loaded into the server, and its CA set as the `caBundle` of every
//! webhook of the `ValidatingWebhookConfiguration` the operator is told to manage.
//!
//! Replicas race for the Secret with the apiserver as referee: creating it fails for
//! all but one (409), replacing it carries the `resourceVersion` read, so one renewal
//! wins and the others load it on their next pass.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use time::OffsetDateTime;
use tokio::sync::watch;

use super::cert::{CertError, Certificates};
use super::tls::ServingCertificate;

/// Field manager of the `caBundle`s: the one owner of that field.
pub const FIELD_MANAGER: &str = "herald-operator-admission";
/// How often the Secret is read again (renewal, another replica's renewal).
const CHECK_EVERY: Duration = Duration::from_secs(300);
/// How soon a failed or lost attempt is retried.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Why a pass did not finish.
#[derive(Debug, thiserror::Error)]
pub enum KeepError {
    /// The apiserver refused or did not answer.
    #[error("{what}")]
    Kube {
        /// What was being done.
        what: String,
        /// The apiserver's error.
        #[source]
        source: kube::Error,
    },
    /// Issuing failed.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The Secret's certificate cannot be served.
    #[error("the certificate in Secret {0} cannot be served")]
    Unusable(String, #[source] rustls::Error),
    /// Another replica wrote the Secret first; read it again.
    #[error("another replica wrote Secret {0} first")]
    Lost(String),
}

fn kube_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> KeepError {
    let what = what.into();
    move |source| KeepError::Kube { what, source }
}

/// Where the certificate is kept and for what.
#[derive(Clone, Debug)]
pub struct Keeping {
    /// Namespace of the Secret (the operator's own).
    pub namespace: String,
    /// Name of the Secret.
    pub secret: String,
    /// Names the serving certificate must carry.
    pub names: Vec<String>,
    /// `ValidatingWebhookConfiguration` whose `caBundle`s to set, if any.
    pub webhook_config: Option<String>,
}

/// Runs passes until `shutdown`: every few minutes, and soon again after a failure.
pub async fn keep(
    client: Client,
    keeping: Keeping,
    serving: Arc<ServingCertificate>,
    shutdown: watch::Receiver<bool>,
) {
    loop {
        let wait = match pass(&client, &keeping, &serving).await {
            Ok(()) => CHECK_EVERY,
            Err(KeepError::Lost(secret)) => {
                tracing::debug!(%secret, "another replica wrote the webhook certificate; reading it");
                Duration::ZERO
            }
            Err(e) => {
                tracing::warn!(error = %herald_runtime::tls::error_chain(&e), "admission webhook certificate not in place; retrying");
                RETRY_AFTER
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = herald_runtime::fired(shutdown.clone()) => return,
        }
    }
}

/// One pass: the Secret holds a current certificate (issued if needed), the server
/// presents it, the webhook configuration trusts its CA.
pub async fn pass(
    client: &Client,
    keeping: &Keeping,
    serving: &ServingCertificate,
) -> Result<(), KeepError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &keeping.namespace);
    let existing = secrets
        .get_opt(&keeping.secret)
        .await
        .map_err(kube_error(format!("cannot read Secret {}", keeping.secret)))?;
    let stored = existing.as_ref().and_then(|s| {
        Certificates::from_secret(s.data.as_ref()?, s.metadata.annotations.as_ref()?)
    });
    let now = OffsetDateTime::now_utc();
    let certs = match stored {
        Some(certs) if !certs.need_renewal(&keeping.names, now) => certs,
        previous => {
            let certs = Certificates::issue(&keeping.names, now, previous.as_ref())?;
            store(&secrets, keeping, existing.as_ref(), &certs).await?;
            tracing::info!(secret = %keeping.secret, names = ?keeping.names, "issued the admission webhook certificate");
            certs
        }
    };
    if serving
        .present(&certs.cert, &certs.key)
        .map_err(|e| KeepError::Unusable(keeping.secret.clone(), e))?
    {
        tracing::info!(secret = %keeping.secret, "serving the admission webhook certificate");
    }
    if let Some(config) = &keeping.webhook_config {
        trust(client, config, &certs.ca_bundle).await?;
    }
    Ok(())
}

/// Writes `certs` into the Secret: created, or replaced if unchanged since read.
async fn store(
    secrets: &Api<Secret>,
    keeping: &Keeping,
    existing: Option<&Secret>,
    certs: &Certificates,
) -> Result<(), KeepError> {
    let (data, annotations) = certs.to_secret();
    let mut secret = existing.cloned().unwrap_or_else(|| Secret {
        metadata: ObjectMeta {
            name: Some(keeping.secret.clone()),
            labels: Some(
                [(
                    "app.kubernetes.io/managed-by".to_owned(),
                    "herald".to_owned(),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        ..Secret::default()
    });
    secret.data = Some(data);
    secret.string_data = None;
    secret.annotations_mut().extend(annotations);
    let written = match existing {
        None => secrets.create(&PostParams::default(), &secret).await,
        // Carries the resourceVersion read: a concurrent renewal makes this a 409.
        Some(_) => {
            secrets
                .replace(&keeping.secret, &PostParams::default(), &secret)
                .await
        }
    };
    match written {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Err(KeepError::Lost(keeping.secret.clone())),
        Err(e) => Err(kube_error(format!(
            "cannot write Secret {}",
            keeping.secret
        ))(e)),
    }
}

/// Sets `ca_bundle` on every webhook of `config` that does not have it yet.
async fn trust(client: &Client, config: &str, ca_bundle: &str) -> Result<(), KeepError> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let current = api.get(config).await.map_err(kube_error(format!(
        "cannot read ValidatingWebhookConfiguration {config}"
    )))?;
    let webhooks = current.webhooks.unwrap_or_default();
    let stale = webhooks.iter().any(|w| {
        w.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()) != Some(ca_bundle.as_bytes())
    });
    if !stale {
        return Ok(());
    }
    let patch = ca_bundle_patch(config, webhooks.iter().map(|w| w.name.as_str()), ca_bundle);
    api.patch(
        config,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(kube_error(format!(
        "cannot set the caBundle of ValidatingWebhookConfiguration {config}"
    )))?;
    tracing::info!(%config, "the webhook configuration trusts the admission CA");
    Ok(())
}

/// The apply configuration that owns exactly the `caBundle` of each named webhook
/// (pure): the chart, or whoever made the configuration, keeps everything else.
#[must_use]
pub fn ca_bundle_patch<'a>(
    config: &str,
    webhooks: impl Iterator<Item = &'a str>,
    ca_bundle: &str,
) -> serde_json::Value {
    use k8s_openapi::ByteString;
    let encoded =
        serde_json::to_value(ByteString(ca_bundle.as_bytes().to_vec())).unwrap_or_default();
    let webhooks: Vec<serde_json::Value> = webhooks
        .map(|name| serde_json::json!({"name": name, "clientConfig": {"caBundle": encoded}}))
        .collect();
    serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": config},
        "webhooks": webhooks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patch_owns_only_each_webhook_s_ca_bundle() {
        let patch = ca_bundle_patch(
            "herald",
            ["a.herald.dev", "b.herald.dev"].into_iter(),
            "PEM",
        );
        assert_eq!(
            patch["webhooks"],
            serde_json::json!([
                {"name": "a.herald.dev", "clientConfig": {"caBundle": "UEVN"}},
                {"name": "b.herald.dev", "clientConfig": {"caBundle": "UEVN"}},
            ])
        );
        assert_eq!(patch["metadata"], serde_json::json!({"name": "herald"}));
    }
}
