//! Sender authentication for Brokers with `spec.auth` (see `herald_api::auth`).
//!
//! Runs before the body is read. A static bearer token is checked against the SHA-256
//! the operator published in `status.auth`; a ServiceAccount token is sent to the
//! apiserver in a `TokenReview` with the Broker's URL as audience, and the result is
//! cached briefly (keyed by a hash of token and audience), so a steady sender costs
//! one review a minute, not one per request. [`crate::reviews`] keeps that cheap
//! under a flood of made-up tokens.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::reviews::{
    REVIEW_BURST, REVIEWS_PER_SECOND, Review, ReviewBudget, ReviewCache, refused_by_claims,
    time_left,
};

use axum::http::{HeaderMap, header};
use herald_api::Broker;
use herald_api::auth::{self as policy, AllowedSender, method};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use sha2::{Digest, Sha256};

use crate::error::Rejection;

/// How long an accepted ServiceAccount token is trusted without a new review (never
/// past the token's own expiry).
const ACCEPTED_TTL: Duration = Duration::from_secs(60);
/// How long a refused token stays refused without a new review.
const REFUSED_TTL: Duration = Duration::from_secs(10);

/// Checks senders against a Broker's policy.
pub struct Authenticator {
    reviews: Option<Api<TokenReview>>,
    cache: Mutex<ReviewCache>,
    budget: Mutex<ReviewBudget>,
}

impl Authenticator {
    /// An authenticator that reviews ServiceAccount tokens through `client`; without
    /// a client (benchmarks) such tokens cannot be checked and get 503.
    #[must_use]
    pub fn new(client: Option<Client>) -> Self {
        Self {
            reviews: client.map(Api::all),
            cache: Mutex::new(ReviewCache::default()),
            budget: Mutex::new(ReviewBudget::new(
                REVIEWS_PER_SECOND,
                REVIEW_BURST,
                Instant::now(),
            )),
        }
    }

    /// Whether the request may send to `broker`.
    pub async fn check(&self, broker: &Broker, headers: &HeaderMap) -> Result<(), Rejection> {
        let Some(auth) = &broker.spec.auth else {
            return Ok(());
        };
        let namespace = broker.namespace().unwrap_or_default();
        let name = broker.name_any();
        let token = bearer_token(headers)?;
        let status = broker.status.as_ref();
        if auth.bearer_token_secret_ref.is_some()
            && let Some(expected) = status
                .and_then(|s| s.auth.as_ref())
                .and_then(|a| a.bearer_token_sha256.as_deref())
            // Comparing hashes, not tokens: timing reveals nothing about the token.
            && policy::token_sha256(token) == expected
        {
            return Ok(());
        }
        if auth.service_accounts.is_none() || !looks_like_jwt(token) {
            return Err(Rejection::Unauthenticated(format!(
                "the bearer token is not accepted by Broker {namespace}/{name} ({})",
                accepted_methods(auth)
            )));
        }
        let Some(audience) = status.and_then(|s| s.address.as_ref()).map(|a| &a.url) else {
            return Err(Rejection::AuthUnavailable(
                "the Broker has no address yet, so the token's audience cannot be checked".into(),
            ));
        };
        match self.review(token, audience).await? {
            Review::Refused(why) => Err(Rejection::Unauthenticated(format!(
                "the ServiceAccount token is not valid for {audience}: {why}"
            ))),
            Review::Authenticated(user) => authorize(&user, &auth.allowed_senders(&namespace))
                .map_err(|why| Rejection::Forbidden(format!("{why} to Broker {namespace}/{name}"))),
        }
    }

    async fn review(&self, token: &str, audience: &str) -> Result<Review, Rejection> {
        let key: [u8; 32] = Sha256::new()
            .chain_update(audience)
            .chain_update([0])
            .chain_update(token)
            .finalize()
            .into();
        let now = Instant::now();
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key, now);
        if let Some(review) = cached {
            return Ok(review);
        }
        let now_unix = unix_now();
        if let Some(why) = refused_by_claims(token, audience, now_unix) {
            return Ok(Review::Refused(why));
        }
        if !self
            .budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(now)
        {
            return Err(Rejection::AuthUnavailable(
                "too many new ServiceAccount tokens to review at once; retry shortly".into(),
            ));
        }
        let Some(api) = &self.reviews else {
            return Err(Rejection::AuthUnavailable(
                "this ingress cannot review ServiceAccount tokens".into(),
            ));
        };
        let request = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: Some(vec![audience.to_owned()]),
            },
            ..TokenReview::default()
        };
        let response = api
            .create(&PostParams::default(), &request)
            .await
            .map_err(|e| Rejection::AuthUnavailable(format!("TokenReview failed: {e}")))?;
        let status = response.status.unwrap_or_default();
        let review = match (status.authenticated, status.user.and_then(|u| u.username)) {
            (Some(true), Some(user)) => Review::Authenticated(user),
            _ => Review::Refused(
                status
                    .error
                    .unwrap_or_else(|| "the apiserver did not authenticate it".into()),
            ),
        };
        let ttl = match &review {
            Review::Authenticated(_) => ACCEPTED_TTL.min(time_left(token, now_unix)),
            Review::Refused(_) => REFUSED_TTL,
        };
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .put(key, review.clone(), now + ttl, now);
        Ok(review)
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(headers: &HeaderMap) -> Result<&str, Rejection> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Rejection::Unauthenticated(
            "this Broker requires `Authorization: Bearer <token>`".into(),
        ));
    };
    value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Rejection::Unauthenticated("the Authorization header is not `Bearer <token>`".into())
        })
}

/// Why an authenticated user may not send to a Broker.
#[derive(Debug, thiserror::Error)]
enum NotAllowed {
    #[error("user {0} is not a ServiceAccount and may not send")]
    NotAServiceAccount(String),
    #[error(
        "ServiceAccount {account} is not among the allowed senders ({allowed}) and may not send"
    )]
    NotListed { account: String, allowed: String },
}

/// Whether `user` is one of `allowed`; otherwise why not.
fn authorize(user: &str, allowed: &[AllowedSender]) -> Result<(), NotAllowed> {
    let Some((namespace, name)) = policy::service_account_of(user) else {
        return Err(NotAllowed::NotAServiceAccount(user.to_owned()));
    };
    if allowed.iter().any(|s| s.permits(namespace, name)) {
        return Ok(());
    }
    let list: Vec<String> = allowed.iter().map(AllowedSender::display).collect();
    Err(NotAllowed::NotListed {
        account: format!("{namespace}/{name}"),
        allowed: list.join(", "),
    })
}

fn accepted_methods(auth: &policy::BrokerAuth) -> String {
    let mut methods = Vec::new();
    if auth.service_accounts.is_some() {
        methods.push(method::SERVICE_ACCOUNT_TOKEN);
    }
    if auth.bearer_token_secret_ref.is_some() {
        methods.push(method::BEARER_TOKEN);
    }
    format!("it accepts: {}", methods.join(", "))
}

/// Three base64url segments, as a ServiceAccount token (a JWT) has; anything else is
/// refused without asking the apiserver.
fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use base64::Engine;

    fn headers(authorization: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = authorization {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn bearer_header_is_required_and_parsed() {
        assert!(bearer_token(&headers(None)).is_err());
        assert!(bearer_token(&headers(Some("Basic abc"))).is_err());
        assert!(bearer_token(&headers(Some("Bearer "))).is_err());
        assert_eq!(bearer_token(&headers(Some("bearer tok"))).unwrap(), "tok");
        assert_eq!(
            bearer_token(&headers(Some("Bearer  a.b.c "))).unwrap(),
            "a.b.c"
        );
    }

    #[test]
    fn only_service_accounts_on_the_list_are_authorized() {
        let allowed = [
            AllowedSender {
                namespace: "shop".into(),
                name: None,
            },
            AllowedSender {
                namespace: "ops".into(),
                name: Some("deployer".into()),
            },
        ];
        assert!(authorize("system:serviceaccount:shop:any", &allowed).is_ok());
        assert!(authorize("system:serviceaccount:ops:deployer", &allowed).is_ok());
        let err = authorize("system:serviceaccount:ops:intruder", &allowed)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ops/intruder") && err.contains("shop/*, ops/deployer"),
            "{err}"
        );
        let err = authorize("alice", &allowed).unwrap_err().to_string();
        assert!(err.contains("not a ServiceAccount"), "{err}");
    }

    #[test]
    fn jwt_shape_and_expiry_are_read_without_trusting_them() {
        assert!(!looks_like_jwt("a-static-token"));
        assert!(!looks_like_jwt("a..c"));
        assert!(!looks_like_jwt("a.b.c=d"));
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 120;
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!(r#"{{"aud":["x"],"exp":{exp}}}"#));
        let token = format!("eyJhbGciOiJSUzI1NiJ9.{claims}.c2ln");
        assert!(looks_like_jwt(&token));
        let left = time_left(&token, unix_now());
        assert!(
            left > Duration::from_secs(100) && left <= Duration::from_secs(120),
            "{left:?}"
        );
        assert_eq!(time_left("x.bm90IGpzb24.y", unix_now()), Duration::ZERO);
    }
}
