//! ServiceAccount tokens a component sends to receivers that ask for one (the
//! dispatcher to subscribers with `subscriber.audience`, the sources adapter to
//! Brokers with `spec.auth`): minted for the component's own ServiceAccount with the
//! `TokenRequest` API, one per audience, reused until 80 % of its lifetime has passed.
//! Where the receiver's audience comes from a tenant (the dispatcher), tokens the
//! Kubernetes apiserver itself would accept are refused: a Trigger must not be able to
//! make Herald hand its own API identity to a URL the Trigger chose.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{
    TokenRequest, TokenRequestSpec, TokenReview, TokenReviewSpec,
};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::Mutex;

/// Lifetime asked for each token (the apiserver may shorten it).
const LIFETIME: Duration = Duration::from_secs(3600);

/// Why there is no token for an audience.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// The apiserver would accept the token: never sent (permanent for the audience).
    #[error(
        "audience {0} is accepted by the Kubernetes apiserver; Herald does not send tokens of its own identity for it"
    )]
    ApiserverAudience(String),
    #[error("cannot get a token for audience {audience}: {source}")]
    Unminted {
        audience: String,
        #[source]
        source: Arc<kube::Error>,
    },
    #[error("the apiserver returned no token for audience {0}")]
    NoToken(String),
    #[error("cannot check that the apiserver refuses the token: {0}")]
    Unreviewed(#[source] Arc<kube::Error>),
}

impl TokenError {
    /// Everything but an apiserver audience may work next time.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::ApiserverAudience(_))
    }
}

/// Mints and caches tokens for one ServiceAccount.
pub struct TokenSource {
    accounts: Api<ServiceAccount>,
    name: String,
    /// Set: each new token is reviewed for the apiserver's own audiences first.
    reviews: Option<Api<TokenReview>>,
    /// Per audience: the token (or why there is none) and when to mint again.
    cache: Mutex<HashMap<String, Minted>>,
}

/// A token, or why there is none, and when to mint again.
type Minted = (Result<String, TokenError>, Instant);

impl TokenSource {
    /// Tokens of ServiceAccount `namespace/name` (see [`parse_account`]).
    #[must_use]
    pub fn new(client: Client, namespace: &str, name: &str) -> Self {
        Self {
            accounts: Api::namespaced(client, namespace),
            name: name.to_owned(),
            reviews: None,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Refuses audiences the apiserver accepts: each new token is first sent to a
    /// `TokenReview` with no audience (that is, the apiserver's own), and one that
    /// authenticates there is never handed out. Needs `create` on `tokenreviews`.
    #[must_use]
    pub fn refusing_apiserver_audiences(mut self, client: Client) -> Self {
        self.reviews = Some(Api::all(client));
        self
    }

    /// A token for `audience`, from the cache or freshly minted.
    ///
    /// # Errors
    /// [`TokenError::ApiserverAudience`] for an audience the apiserver accepts (with
    /// [`Self::refusing_apiserver_audiences`]); another [`TokenError`] otherwise.
    pub async fn token(&self, audience: &str) -> Result<String, TokenError> {
        // Held across the request: concurrent deliveries wait for one mint, not many.
        let mut cache = self.cache.lock().await;
        if let Some((token, refresh_at)) = cache.get(audience)
            && Instant::now() < *refresh_at
        {
            return token.clone();
        }
        let (token, refresh_at) = self.mint(audience).await?;
        let token = match &self.reviews {
            Some(reviews) => match accepted_by_apiserver(reviews, &token).await {
                Ok(false) => Ok(token),
                Ok(true) => Err(TokenError::ApiserverAudience(audience.to_owned())),
                Err(e) => return Err(e),
            },
            None => Ok(token),
        };
        cache.insert(audience.to_owned(), (token.clone(), refresh_at));
        token
    }

    /// A new token for `audience` and when to mint the next.
    async fn mint(&self, audience: &str) -> Result<(String, Instant), TokenError> {
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
            .map_err(|source| TokenError::Unminted {
                audience: audience.to_owned(),
                source: Arc::new(source),
            })?;
        let status = minted.status.unwrap_or_default();
        let token = status
            .token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| TokenError::NoToken(audience.to_owned()))?;
        // Refresh at 80 % of the lifetime the apiserver granted (or asked for, if unsaid).
        let lifetime = status
            .expiration_timestamp
            .and_then(|t| {
                u64::try_from(t.0.as_second() - k8s_openapi::jiff::Timestamp::now().as_second())
                    .ok()
            })
            .map_or(LIFETIME, Duration::from_secs);
        Ok((token, Instant::now() + lifetime.mul_f64(0.8)))
    }
}

/// Whether the apiserver authenticates `token` for its own audiences.
async fn accepted_by_apiserver(
    reviews: &Api<TokenReview>,
    token: &str,
) -> Result<bool, TokenError> {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: token.to_owned(),
            audiences: None,
        },
        ..TokenReview::default()
    };
    let answer = reviews
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| TokenError::Unreviewed(Arc::new(e)))?;
    Ok(answer.status.and_then(|s| s.authenticated).unwrap_or(false))
}

/// A token with characters no HTTP header can carry.
#[derive(Debug, thiserror::Error)]
#[error("the token cannot be sent in a header")]
pub struct UnsendableToken(#[source] axum::http::header::InvalidHeaderValue);

/// The `Authorization` value that carries `token`: `Bearer <token>`.
pub fn bearer(token: &str) -> Result<axum::http::HeaderValue, UnsendableToken> {
    axum::http::HeaderValue::from_str(&format!("Bearer {token}")).map_err(UnsendableToken)
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?}: expected NAMESPACE/NAME")]
pub struct NotAnAccount(String);

/// `namespace/name` of a ServiceAccount.
pub fn parse_account(value: &str) -> Result<(String, String), NotAnAccount> {
    match value.split_once('/') {
        Some((namespace, name))
            if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
        {
            Ok((namespace.to_owned(), name.to_owned()))
        }
        _ => Err(NotAnAccount(value.to_owned())),
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
