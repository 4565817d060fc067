//! What keeps ServiceAccount-token reviews cheap for the apiserver and fair to
//! senders when someone sends tokens by the thousand.
//!
//! - Accepted and refused reviews are cached apart, each bounded: a flood of made-up
//!   tokens (each refused once, then cached) fills only the refused side, so the
//!   answers for real senders stay cached.
//! - Reviews not answered from the cache are drawn from a budget (a token bucket):
//!   beyond it the ingress answers 503 instead of passing the flood on to the
//!   apiserver.
//! - A token whose own claims already say no (expired, or made for another audience)
//!   is refused without asking.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;

/// New reviews per second the ingress may ask of the apiserver, sustained.
pub const REVIEWS_PER_SECOND: f64 = 50.0;
/// New reviews it may ask at once after a quiet spell.
pub const REVIEW_BURST: f64 = 200.0;
/// Cached answers kept at most, on each side (accepted, refused).
pub const MAX_CACHED: usize = 10_000;

/// What the apiserver said about a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Review {
    /// Valid for the audience; the user it belongs to.
    Authenticated(String),
    /// Not valid (bad signature, expired, wrong audience, deleted ServiceAccount...).
    Refused(String),
}

/// Answers by key (a hash of audience and token), accepted and refused apart.
#[derive(Default)]
pub struct ReviewCache {
    accepted: HashMap<[u8; 32], (Instant, Review)>,
    refused: HashMap<[u8; 32], (Instant, Review)>,
}

impl ReviewCache {
    /// The cached answer for `key`, if it has not expired at `now`.
    #[must_use]
    pub fn get(&self, key: &[u8; 32], now: Instant) -> Option<Review> {
        self.accepted
            .get(key)
            .or_else(|| self.refused.get(key))
            .filter(|(expires, _)| *expires > now)
            .map(|(_, review)| review.clone())
    }

    /// Keeps `review` for `key` until `expires`. A full side drops its expired
    /// answers first; if it is still full, a refused answer replaces the refused side
    /// (made-up tokens only push out made-up tokens), and an accepted one is not kept
    /// (the answers already kept stay: their senders were there first).
    pub fn put(&mut self, key: [u8; 32], review: Review, expires: Instant, now: Instant) {
        let side = match review {
            Review::Authenticated(_) => &mut self.accepted,
            Review::Refused(_) => &mut self.refused,
        };
        if side.len() >= MAX_CACHED {
            side.retain(|_, (until, _)| *until > now);
        }
        if side.len() >= MAX_CACHED {
            match review {
                Review::Refused(_) => side.clear(),
                Review::Authenticated(_) => return,
            }
        }
        side.insert(key, (expires, review));
    }

    /// Answers kept: (accepted, refused).
    #[cfg(test)]
    fn sizes(&self) -> (usize, usize) {
        (self.accepted.len(), self.refused.len())
    }
}

/// A token bucket of reviews: `rate` per second, at most `burst` at once.
pub struct ReviewBudget {
    rate: f64,
    burst: f64,
    available: f64,
    refilled: Instant,
}

impl ReviewBudget {
    /// A full budget.
    #[must_use]
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            rate,
            burst,
            available: burst,
            refilled: now,
        }
    }

    /// Takes one review from the budget; `false` when it is spent.
    pub fn take(&mut self, now: Instant) -> bool {
        let earned = now.saturating_duration_since(self.refilled).as_secs_f64() * self.rate;
        self.available = (self.available + earned).min(self.burst);
        self.refilled = now;
        if self.available >= 1.0 {
            self.available -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Why a token's own claims already refuse it for `audience` at `now_unix`, if they
/// do. Claims that cannot be read say nothing (the apiserver decides).
#[must_use]
pub fn refused_by_claims(token: &str, audience: &str, now_unix: u64) -> Option<String> {
    let claims = claims(token)?;
    if let Some(exp) = claims.get("exp").and_then(serde_json::Value::as_u64)
        && exp <= now_unix
    {
        return Some("the token has expired".into());
    }
    let names_audience = match claims.get("aud")? {
        serde_json::Value::String(aud) => aud == audience,
        serde_json::Value::Array(auds) => auds.iter().any(|a| a.as_str() == Some(audience)),
        _ => return None,
    };
    (!names_audience).then(|| format!("the token was not made for audience {audience}"))
}

/// Time until the JWT's `exp` claim at `now_unix`; zero when it cannot be read.
#[must_use]
pub fn time_left(token: &str, now_unix: u64) -> Duration {
    claims(token)
        .and_then(|c| c.get("exp").and_then(serde_json::Value::as_u64))
        .map_or(Duration::ZERO, |exp| {
            Duration::from_secs(exp.saturating_sub(now_unix))
        })
}

fn claims(token: &str) -> Option<serde_json::Value> {
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').nth(1)?)
        .ok()?;
    serde_json::from_slice(&json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize) -> [u8; 32] {
        let mut k = [0u8; 32];
        k[..8].copy_from_slice(&(n as u64).to_le_bytes());
        k
    }

    fn jwt(claims: &serde_json::Value) -> String {
        let part = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.{}",
            part(br#"{"alg":"RS256"}"#),
            part(claims.to_string().as_bytes()),
            part(b"signature")
        )
    }

    #[test]
    fn a_flood_of_refused_tokens_never_pushes_out_accepted_senders() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let mut cache = ReviewCache::default();
        cache.put(key(0), Review::Authenticated("alice".into()), later, now);
        for n in 1..=3 * MAX_CACHED {
            cache.put(key(n), Review::Refused("made up".into()), later, now);
        }
        assert_eq!(
            cache.get(&key(0), now),
            Some(Review::Authenticated("alice".into()))
        );
        let (accepted, refused) = cache.sizes();
        assert_eq!(accepted, 1);
        assert!(refused <= MAX_CACHED);
    }

    #[test]
    fn a_full_accepted_side_keeps_its_senders_and_expired_answers_go_first() {
        let now = Instant::now();
        let mut cache = ReviewCache::default();
        for n in 0..MAX_CACHED {
            cache.put(
                key(n),
                Review::Authenticated(format!("u{n}")),
                now + Duration::from_secs(60),
                now,
            );
        }
        let newcomer = key(MAX_CACHED);
        cache.put(
            newcomer,
            Review::Authenticated("late".into()),
            now + Duration::from_secs(60),
            now,
        );
        assert_eq!(
            cache.get(&newcomer, now),
            None,
            "not kept: the side is full"
        );
        assert!(cache.get(&key(0), now).is_some());
        // Once the others expire, room is made.
        let after = now + Duration::from_secs(61);
        cache.put(
            newcomer,
            Review::Authenticated("late".into()),
            after + Duration::from_secs(60),
            after,
        );
        assert_eq!(
            cache.get(&newcomer, after),
            Some(Review::Authenticated("late".into()))
        );
        assert_eq!(cache.sizes().0, 1);
    }

    #[test]
    fn the_budget_allows_a_burst_then_its_rate() {
        let start = Instant::now();
        let mut budget = ReviewBudget::new(10.0, 20.0, start);
        let burst = (0..100).filter(|_| budget.take(start)).count();
        assert_eq!(burst, 20);
        let second = start + Duration::from_secs(1);
        let refilled = (0..100).filter(|_| budget.take(second)).count();
        assert_eq!(refilled, 10);
        // A long quiet spell refills to the burst, not beyond.
        let quiet = second + Duration::from_secs(3600);
        assert_eq!((0..100).filter(|_| budget.take(quiet)).count(), 20);
    }

    #[test]
    fn claims_that_already_say_no_spare_the_apiserver() {
        let aud = "http://ingress/ns/b";
        let now = 1_000_000;
        let expired = jwt(&serde_json::json!({"aud": [aud], "exp": now - 1}));
        assert_eq!(
            refused_by_claims(&expired, aud, now).as_deref(),
            Some("the token has expired")
        );
        let elsewhere =
            jwt(&serde_json::json!({"aud": ["https://kubernetes.default.svc"], "exp": now + 600}));
        assert!(
            refused_by_claims(&elsewhere, aud, now)
                .unwrap()
                .contains("audience")
        );
        let good = jwt(&serde_json::json!({"aud": aud, "exp": now + 600}));
        assert_eq!(refused_by_claims(&good, aud, now), None);
        assert_eq!(time_left(&good, now), Duration::from_secs(600));
        // Unreadable claims are the apiserver's to judge.
        assert_eq!(refused_by_claims("a.b.c", aud, now), None);
        assert_eq!(time_left("a.b.c", now), Duration::ZERO);
    }
}
