//! Fuzz harness for the CloudEvents HTTP binding, shared by the `cloudevents_http`
//! fuzz target and the corpus replay test of `herald-cloudevents`.
//!
//! Input layout: byte 0 picks the `Content-Type` (none, binary `application/json`,
//! structured, batch, an unsupported event format, `text/plain`); the rest is
//! `name: value` header lines up to the first empty line, then the body. Header lines
//! are appended after the chosen `Content-Type`, so the input can add a second or a
//! garbage one. Lines that are not valid HTTP headers are skipped.
//!
//! Checks: no panic in `http::decode`, nor in what the ingress and the dispatcher do
//! with a decoded event (`nats::encode`, `nats::decode`, `http::encode_binary`).

use bytes::Bytes;
use herald_cloudevents::{http as binding, nats};
use http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

const CONTENT_TYPES: [Option<&str>; 6] = [
    None,
    Some("application/json"),
    Some(binding::STRUCTURED_JSON),
    Some("application/cloudevents-batch+json; charset=utf-8"),
    Some("application/cloudevents+xml"),
    Some("text/plain"),
];

/// Splits `data` into headers and body as described in the module docs.
fn request(data: &[u8]) -> (HeaderMap, Bytes) {
    let Some((&selector, rest)) = data.split_first() else {
        return (HeaderMap::new(), Bytes::new());
    };
    let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(end) => (&rest[..end], &rest[end + 2..]),
        None => (rest, &[][..]),
    };
    let mut headers = HeaderMap::new();
    if let Some(content_type) = CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()] {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    (headers, Bytes::copy_from_slice(body))
}

/// Decodes the request `data` describes and passes every decoded event on the way it
/// goes through Herald.
pub fn run(data: &[u8]) {
    let (headers, body) = request(data);
    let Ok((_mode, events)) = binding::decode(&headers, body) else {
        return;
    };
    for event in events {
        let (nats_headers, payload) = nats::encode(&event);
        if let Ok(stored) = nats::decode(Some(&nats_headers), payload) {
            let (headers, body) = binding::encode_binary(&stored);
            let _ = binding::decode(&headers, body);
        }
    }
}
