//! ServiceAccount tokens a component sends to receivers that ask for one (the
//! dispatcher to subscribers with `subscriber.audience`, the sources adapter to
//! Brokers with `spec.auth`): minted for the component's own ServiceAccount with the
//! `TokenRequest` API, one per audience, reused until 80 % of its lifetime has passed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::Mutex;

/// Lifetime asked for each token (the apiserver may shorten it).
const LIFETIME: Duration = Duration::from_secs(3600);

/// Mints and caches tokens for one ServiceAccount.
pub struct TokenSource {
    accounts: Api<ServiceAccount>,
    name: String,
    cache: Mutex<HashMap<String, (String, Instant)>>,
}

impl TokenSource {
    /// Tokens of ServiceAccount `namespace/name` (see [`parse_account`]).
    #[must_use]
    pub fn new(client: Client, namespace: &str, name: &str) -> Self {
        Self {
            accounts: Api::namespaced(client, namespace),
            name: name.to_owned(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// A token for `audience`, from the cache or freshly minted.
    pub async fn token(&self, audience: &str) -> Result<String, String> {
        // Held across the request: concurrent deliveries wait for one mint, not many.
        let mut cache = self.cache.lock().await;
        if let Some((token, refresh_at)) = cache.get(audience)
            && Instant::now() < *refresh_at
        {
            return Ok(token.clone());
        }
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(vec![audience.to_owned()]),
                expiration_seconds: i64::try_from(LIFETIME.as_secs()).ok(),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let minted = self
            .accounts
            .create_token_request(&self.name, &PostParams::default(), &request)
            .await
            .map_err(|e| format!("cannot get a token for audience {audience}: {e}"))?;
        let status = minted.status.unwrap_or_default();
        let token = status
            .token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("the apiserver returned no token for audience {audience}"))?;
        // Refresh at 80 % of the lifetime the apiserver granted (or asked for, if unsaid).
        let lifetime = status
            .expiration_timestamp
            .and_then(|t| {
                u64::try_from(t.0.as_second() - k8s_openapi::jiff::Timestamp::now().as_second())
                    .ok()
            })
            .map_or(LIFETIME, Duration::from_secs);
        let refresh_at = Instant::now() + lifetime.mul_f64(0.8);
        cache.insert(audience.to_owned(), (token.clone(), refresh_at));
        Ok(token)
    }
}

/// The `Authorization` value that carries `token`: `Bearer <token>`.
pub fn bearer(token: &str) -> Result<axum::http::HeaderValue, String> {
    axum::http::HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| "the token cannot be sent in a header".to_owned())
}

/// `namespace/name` of a ServiceAccount.
pub fn parse_account(value: &str) -> Result<(String, String), String> {
    match value.split_once('/') {
        Some((namespace, name))
            if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
        {
            Ok((namespace.to_owned(), name.to_owned()))
        }
        _ => Err(format!("{value:?}: expected NAMESPACE/NAME")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_namespace_slash_name() {
        assert_eq!(
            parse_account("herald/herald-dispatcher").unwrap(),
            ("herald".into(), "herald-dispatcher".into())
        );
        for bad in ["herald", "/x", "x/", "a/b/c"] {
            assert!(parse_account(bad).is_err(), "{bad}");
        }
    }
}
