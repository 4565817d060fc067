//! Who may send events to a Broker (`spec.auth`), and the pure rules the operator and
//! the ingress share to apply it.
//!
//! Two methods, either or both: Kubernetes ServiceAccount tokens (checked by the
//! ingress with a `TokenReview` whose audience is the Broker's URL, then matched against
//! the allowed senders), and one static bearer token kept in a Secret (the operator
//! reads it and publishes only its SHA-256 in the status, so the ingress needs no
//! access to Secrets).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::common::SecretKeyRef;

/// Shortest static bearer token the operator accepts: its SHA-256 is visible to
/// whoever can read the Broker, so the token must be too long to guess.
pub const MIN_BEARER_TOKEN_CHARS: usize = 32;

/// Prefix of the username the apiserver gives a ServiceAccount.
const SERVICE_ACCOUNT_USER_PREFIX: &str = "system:serviceaccount:";

/// Who may send events to a Broker. Without `spec.auth` anyone who can reach the
/// ingress may; with it, a request needs `Authorization: Bearer <token>` that one of
/// the listed methods accepts.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BrokerAuth {
    /// Accept Kubernetes ServiceAccount tokens whose audience is the Broker's URL
    /// (`status.address.url`; e.g. `kubectl create token <sa> --audience <url>` or a
    /// projected token volume), checked with a `TokenReview`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<ServiceAccountAuth>,
    /// Accept one static bearer token, the value of this key of a Secret in the
    /// Broker's namespace (at least 32 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret_ref: Option<SecretKeyRef>,
    /// Publish what the subscribers of this Broker's Triggers answer (replies) into it.
    /// A reply comes from whatever a Trigger delivers to, not from a sender the methods
    /// above checked, so with `spec.auth` replies are dropped unless this is true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accept_replies: bool,
}

/// Whether replies of Triggers on a Broker with this `spec.auth` are published: always
/// on an open Broker, on a guarded one only with `acceptReplies`.
#[must_use]
pub fn accepts_replies(auth: Option<&BrokerAuth>) -> bool {
    auth.is_none_or(|a| a.accept_replies)
}

/// ServiceAccount token authentication.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountAuth {
    /// Service accounts that may send; when empty, every service account of the
    /// Broker's own namespace may. Others get 403.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<AllowedSender>,
}

/// A service account, or all service accounts of a namespace, allowed to send.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AllowedSender {
    /// Namespace of the ServiceAccount; `*` for every namespace.
    #[schemars(length(min = 1))]
    pub namespace: String,
    /// Name of the ServiceAccount; every ServiceAccount of the namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl AllowedSender {
    /// Whether ServiceAccount `namespace/name` is covered.
    #[must_use]
    pub fn permits(&self, namespace: &str, name: &str) -> bool {
        (self.namespace == "*" || self.namespace == namespace)
            && self.name.as_deref().is_none_or(|n| n == name)
    }

    /// `namespace/name`, with `*` for an unset name.
    #[must_use]
    pub fn display(&self) -> String {
        format!("{}/{}", self.namespace, self.name.as_deref().unwrap_or("*"))
    }
}

/// The authentication method names used in status and messages.
pub mod method {
    /// Kubernetes ServiceAccount tokens (`TokenReview`).
    pub const SERVICE_ACCOUNT_TOKEN: &str = "ServiceAccountToken";
    /// A static bearer token from a Secret.
    pub const BEARER_TOKEN: &str = "BearerToken";
}

/// The policy in force, as the operator publishes it in `status.auth`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BrokerAuthStatus {
    /// One line: `Open`, or the methods and allowed senders, e.g.
    /// `ServiceAccountToken(shop/*, ops/deployer) or BearerToken(secret broker-token)`.
    pub policy: String,
    /// Audience a ServiceAccount token must carry (the Broker's URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// SHA-256 (hex) of the static bearer token; the ingress compares the hash of
    /// what a sender presents with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_sha256: Option<String>,
}

/// What the schema cannot catch in a `spec.auth`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "spec.auth names no method: set serviceAccounts, bearerTokenSecretRef or both (remove spec.auth to let anyone send)"
    )]
    NoMethod,
    #[error("spec.auth.bearerTokenSecretRef needs a name and a key")]
    IncompleteSecretRef,
    /// The sender, as [`AllowedSender::display`] writes it.
    #[error("spec.auth.serviceAccounts.allowed has an empty namespace or name ({0})")]
    EmptySender(String),
}

impl BrokerAuth {
    /// Checks what the schema cannot: at least one method, sane names.
    pub fn validate(&self) -> Result<(), AuthError> {
        if self.service_accounts.is_none() && self.bearer_token_secret_ref.is_none() {
            return Err(AuthError::NoMethod);
        }
        if let Some(secret) = &self.bearer_token_secret_ref
            && (secret.name.is_empty() || secret.key.is_empty())
        {
            return Err(AuthError::IncompleteSecretRef);
        }
        for sender in self.service_accounts.iter().flat_map(|s| &s.allowed) {
            if sender.namespace.is_empty() || sender.name.as_deref() == Some("") {
                return Err(AuthError::EmptySender(sender.display()));
            }
        }
        Ok(())
    }

    /// The senders `serviceAccounts` lets in for a Broker in `broker_namespace`
    /// (the explicit list, or the Broker's namespace); empty without `serviceAccounts`.
    #[must_use]
    pub fn allowed_senders(&self, broker_namespace: &str) -> Vec<AllowedSender> {
        match &self.service_accounts {
            None => Vec::new(),
            Some(sa) if sa.allowed.is_empty() => vec![AllowedSender {
                namespace: broker_namespace.to_owned(),
                name: None,
            }],
            Some(sa) => sa.allowed.clone(),
        }
    }

    /// The one-line policy for `status.auth.policy`.
    #[must_use]
    pub fn describe(&self, broker_namespace: &str) -> String {
        let mut parts = Vec::new();
        if self.service_accounts.is_some() {
            let senders: Vec<String> = self
                .allowed_senders(broker_namespace)
                .iter()
                .map(AllowedSender::display)
                .collect();
            parts.push(format!(
                "{}({})",
                method::SERVICE_ACCOUNT_TOKEN,
                senders.join(", ")
            ));
        }
        if let Some(secret) = &self.bearer_token_secret_ref {
            parts.push(format!(
                "{}(secret {}, key {})",
                method::BEARER_TOKEN,
                secret.name,
                secret.key
            ));
        }
        parts.join(" or ")
    }
}

/// Policy line of a Broker without `spec.auth`.
pub const OPEN_POLICY: &str = "Open";

/// The ServiceAccount (`namespace`, `name`) behind an apiserver username, if it is one.
#[must_use]
pub fn service_account_of(username: &str) -> Option<(&str, &str)> {
    let rest = username.strip_prefix(SERVICE_ACCOUNT_USER_PREFIX)?;
    let (namespace, name) = rest.split_once(':')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains(':')).then_some((namespace, name))
}

/// SHA-256 of a bearer token, lowercase hex: what `status.auth.bearerTokenSha256` holds.
#[must_use]
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(namespace: &str, name: Option<&str>) -> AllowedSender {
        AllowedSender {
            namespace: namespace.into(),
            name: name.map(Into::into),
        }
    }

    #[test]
    fn allowed_sender_matches_namespace_and_optional_name() {
        assert!(sender("shop", None).permits("shop", "anyone"));
        assert!(!sender("shop", None).permits("other", "anyone"));
        assert!(sender("shop", Some("checkout")).permits("shop", "checkout"));
        assert!(!sender("shop", Some("checkout")).permits("shop", "cart"));
        assert!(sender("*", Some("deployer")).permits("ops", "deployer"));
        assert!(!sender("*", Some("deployer")).permits("ops", "other"));
    }

    #[test]
    fn default_senders_are_the_brokers_namespace() {
        let auth = BrokerAuth {
            service_accounts: Some(ServiceAccountAuth::default()),
            bearer_token_secret_ref: None,
            accept_replies: false,
        };
        assert_eq!(auth.allowed_senders("team"), vec![sender("team", None)]);
        assert_eq!(auth.describe("team"), "ServiceAccountToken(team/*)");
    }

    #[test]
    fn policy_line_names_both_methods() {
        let auth = BrokerAuth {
            service_accounts: Some(ServiceAccountAuth {
                allowed: vec![sender("shop", None), sender("ops", Some("deployer"))],
            }),
            bearer_token_secret_ref: Some(SecretKeyRef {
                name: "broker-token".into(),
                key: "token".into(),
            }),
            accept_replies: false,
        };
        assert_eq!(
            auth.describe("team"),
            "ServiceAccountToken(shop/*, ops/deployer) or BearerToken(secret broker-token, key token)"
        );
        assert!(auth.validate().is_ok());
    }

    #[test]
    fn validation_names_the_problem() {
        let err = BrokerAuth::default().validate().unwrap_err().to_string();
        assert!(err.contains("names no method"), "{err}");
        let err = BrokerAuth {
            service_accounts: Some(ServiceAccountAuth {
                allowed: vec![sender("", None)],
            }),
            bearer_token_secret_ref: None,
            accept_replies: false,
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.contains("empty namespace"), "{err}");
    }

    #[test]
    fn replies_enter_a_guarded_broker_only_when_it_says_so() {
        assert!(accepts_replies(None), "an open Broker");
        let mut auth = BrokerAuth {
            bearer_token_secret_ref: Some(SecretKeyRef {
                name: "t".into(),
                key: "k".into(),
            }),
            ..BrokerAuth::default()
        };
        assert!(!accepts_replies(Some(&auth)));
        auth.accept_replies = true;
        assert!(accepts_replies(Some(&auth)));
    }

    #[test]
    fn service_account_usernames_are_parsed_strictly() {
        assert_eq!(
            service_account_of("system:serviceaccount:shop:checkout"),
            Some(("shop", "checkout"))
        );
        assert_eq!(service_account_of("system:serviceaccount:shop:"), None);
        assert_eq!(service_account_of("system:serviceaccount:shop:a:b"), None);
        assert_eq!(service_account_of("alice"), None);
        assert_eq!(service_account_of("system:node:n1"), None);
    }

    #[test]
    fn token_hash_is_hex_sha256() {
        assert_eq!(
            token_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
