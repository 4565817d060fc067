//! `spec.auth` → `status.auth`: checks the policy and turns the static bearer token
//! Secret into the hash the ingress compares against (the ingress never reads Secrets).

use herald_api::Broker;
use herald_api::auth::{self, BrokerAuthStatus, MIN_BEARER_TOKEN_CHARS};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::error::Error;

/// The policy to publish for `broker`, whose address is `url`.
pub async fn resolve(broker: &Broker, url: &str, ctx: &Context) -> Result<BrokerAuthStatus, Error> {
    let Some(spec) = &broker.spec.auth else {
        return Ok(BrokerAuthStatus {
            policy: auth::OPEN_POLICY.into(),
            ..BrokerAuthStatus::default()
        });
    };
    spec.validate().map_err(Error::InvalidAuth)?;
    let namespace = broker.namespace().unwrap_or_default();
    let bearer_token_sha256 = match &spec.bearer_token_secret_ref {
        None => None,
        Some(reference) => {
            let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
            let secret = secrets.get_opt(&reference.name).await?;
            let token = secret_value(secret.as_ref(), &reference.key).map_err(|problem| {
                Error::BearerTokenUnavailable(format!(
                    "Secret {namespace}/{} {problem}",
                    reference.name
                ))
            })?;
            Some(hash_checked(&token)?)
        }
    };
    Ok(BrokerAuthStatus {
        policy: spec.describe(&namespace),
        audience: spec.service_accounts.is_some().then(|| url.to_owned()),
        bearer_token_sha256,
    })
}

/// What is wrong with the Secret that should hold the token; the message follows
/// "Secret ns/name".
#[derive(Debug, thiserror::Error)]
enum SecretProblem {
    #[error("does not exist")]
    Missing,
    #[error("has no key {0:?}")]
    NoKey(String),
    #[error("key {key:?} is not UTF-8 text")]
    NotText {
        key: String,
        #[source]
        source: std::string::FromUtf8Error,
    },
}

/// The token stored under `key` (surrounding whitespace, such as the newline of a
/// `kubectl create secret --from-file`, removed), or what is wrong.
fn secret_value(secret: Option<&Secret>, key: &str) -> Result<String, SecretProblem> {
    let secret = secret.ok_or(SecretProblem::Missing)?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|s| s.clone().into_bytes())
        })
        .ok_or_else(|| SecretProblem::NoKey(key.to_owned()))?;
    let text = String::from_utf8(bytes).map_err(|source| SecretProblem::NotText {
        key: key.to_owned(),
        source,
    })?;
    Ok(text.trim().to_owned())
}

fn hash_checked(token: &str) -> Result<String, Error> {
    if token.chars().count() < MIN_BEARER_TOKEN_CHARS {
        return Err(Error::BearerTokenTooShort(format!(
            "the bearer token has {} characters; use a random token of at least {MIN_BEARER_TOKEN_CHARS} (e.g. `openssl rand -hex 32`)",
            token.chars().count()
        )));
    }
    Ok(auth::token_sha256(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(key: &str, value: &str) -> Secret {
        Secret {
            data: Some([(key.to_owned(), ByteString(value.as_bytes().to_vec()))].into()),
            ..Secret::default()
        }
    }

    #[test]
    fn secret_value_trims_and_names_what_is_missing() {
        let s = secret("token", "abc\n");
        assert_eq!(secret_value(Some(&s), "token").unwrap(), "abc");
        assert_eq!(
            secret_value(Some(&s), "other").unwrap_err().to_string(),
            "has no key \"other\""
        );
        assert_eq!(
            secret_value(None, "token").unwrap_err().to_string(),
            "does not exist"
        );
    }

    #[test]
    fn short_tokens_are_refused_long_ones_hashed() {
        let err = hash_checked("short").unwrap_err();
        assert_eq!(err.reason(), "BearerTokenTooShort");
        let long = "x".repeat(MIN_BEARER_TOKEN_CHARS);
        assert_eq!(hash_checked(&long).unwrap(), auth::token_sha256(&long));
    }
}
