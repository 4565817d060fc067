//! The abuse-protection handshake of the CloudEvents webhook spec (http-webhook.md,
//! section 4): before it POSTs, a sender asks the target with `OPTIONS` and
//! `WebHook-Request-Origin` whether it may; the target consents with
//! `WebHook-Allowed-Origin` and `WebHook-Allowed-Rate`.

use http::header::{ALLOW, HeaderMap, HeaderName, HeaderValue};

/// The methods of a delivery target: POST delivers, OPTIONS asks.
pub const ALLOWED_METHODS: &str = "POST, OPTIONS";
/// The sender's origin, asking for consent.
pub const REQUEST_ORIGIN: HeaderName = HeaderName::from_static("webhook-request-origin");
/// The origin the target consents to (the one asked for, or `*`).
pub const ALLOWED_ORIGIN: HeaderName = HeaderName::from_static("webhook-allowed-origin");
/// Requests a minute the target consents to (`*`: no rate set).
pub const ALLOWED_RATE: HeaderName = HeaderName::from_static("webhook-allowed-rate");

/// The headers of an answer to `OPTIONS` that consents to delivery: `Allow`, the
/// origin asked for (`*` when none was named) and no rate limit, since a target
/// that throttles says so per request with 429 and `Retry-After`.
#[must_use]
pub fn consent(request: &HeaderMap) -> HeaderMap {
    let origin = request
        .get(REQUEST_ORIGIN)
        .filter(|origin| !origin.is_empty())
        .cloned()
        .unwrap_or(HeaderValue::from_static("*"));
    let mut answer = HeaderMap::new();
    answer.insert(ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
    answer.insert(ALLOWED_ORIGIN, origin);
    answer.insert(ALLOWED_RATE, HeaderValue::from_static("*"));
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consents_to_the_origin_asked_for_at_any_rate() {
        let mut request = HeaderMap::new();
        request.insert(
            "WebHook-Request-Origin",
            HeaderValue::from_static("eventemitter.example.com"),
        );
        request.insert("WebHook-Request-Rate", HeaderValue::from_static("120"));
        let answer = consent(&request);
        assert_eq!(answer[ALLOW], "POST, OPTIONS");
        assert_eq!(answer[ALLOWED_ORIGIN], "eventemitter.example.com");
        assert_eq!(answer[ALLOWED_RATE], "*");
    }

    #[test]
    fn without_an_origin_any_origin_is_welcome() {
        assert_eq!(consent(&HeaderMap::new())[ALLOWED_ORIGIN], "*");
        let mut empty = HeaderMap::new();
        empty.insert(REQUEST_ORIGIN, HeaderValue::from_static(""));
        assert_eq!(consent(&empty)[ALLOWED_ORIGIN], "*");
    }
}
