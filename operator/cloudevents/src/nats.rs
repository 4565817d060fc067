//! Herald's storage format on NATS: one message per event, the CloudEvents HTTP
//! binding's binary mode carried over to NATS headers — every attribute in a
//! `ce-<name>` header (percent-encoded like the HTTP binding), `datacontenttype` as
//! `content-type` (as it is, like the HTTP binding's `Content-Type`), the data as
//! payload — so any NATS client can read the events.

use async_nats::HeaderMap;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::event::{CloudEvent, EventError};
use crate::percent;

/// The `Nats-Msg-Id` of an event: derived from (source, id), which the spec says
/// identify an event, so a producer's retry is a duplicate JetStream drops.
#[must_use]
pub fn message_id(source: &str, id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(source.as_bytes());
    hasher.update([0]);
    hasher.update(id.as_bytes());
    let digest = hasher.finalize();
    digest[..16]
        .iter()
        .fold(String::with_capacity(32), |mut hex, b| {
            use std::fmt::Write;
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// The headers and payload of an event's NATS message (with `Nats-Msg-Id`).
#[must_use]
pub fn encode(event: &CloudEvent) -> (HeaderMap, Bytes) {
    let mut headers = HeaderMap::new();
    for (name, value) in event.attributes() {
        if name == "datacontenttype" {
            headers.insert("content-type", value);
        } else {
            headers.insert(
                format!("ce-{name}").as_str(),
                percent::encode(value).as_str(),
            );
        }
    }
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        message_id(event.source(), event.id()).as_str(),
    );
    (headers, event.data.clone().unwrap_or_default())
}

/// Reads an event back from a NATS message.
pub fn decode(headers: Option<&HeaderMap>, payload: Bytes) -> Result<CloudEvent, EventError> {
    let headers =
        headers.ok_or_else(|| EventError::Malformed("the message has no headers".into()))?;
    let mut event = CloudEvent::default();
    for (name, values) in headers.iter() {
        let name = AsRef::<str>::as_ref(name).to_ascii_lowercase();
        let Some(raw) = values.first().map(async_nats::HeaderValue::as_str) else {
            continue;
        };
        let (attribute, text) = if name == "content-type" {
            ("datacontenttype".to_owned(), stored_content_type(raw))
        } else if let Some(attribute) = name.strip_prefix("ce-") {
            let text = percent::decode(raw.as_bytes()).ok_or_else(|| EventError::Value {
                name: attribute.to_owned(),
                why: "bad percent-encoding".into(),
            })?;
            (attribute.to_owned(), text)
        } else {
            continue;
        };
        event.insert(attribute, text)?;
    }
    event.data = (!payload.is_empty()).then_some(payload);
    Ok(event)
}

/// The `datacontenttype` of a stored `content-type`. Herald used to store it
/// percent-encoded (`text/plain;%20charset=utf-8`); such a value, still in streams
/// written before, is exactly what percent-encoding its decoding gives, which a
/// media type stored as it is practically never is (it would need a `%XX` standing
/// for a space, `"`, `%` or non-ASCII, and no space or `"` of its own).
fn stored_content_type(raw: &str) -> String {
    if raw.contains('%')
        && let Some(decoded) = percent::decode(raw.as_bytes())
        && percent::encode(&decoded) == raw
    {
        return decoded;
    }
    raw.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_attribute_and_the_data() {
        let mut e = CloudEvent::new("id-1", "/shop", "order.created");
        e.set("subject", "Größe 42");
        e.set("time", "2026-11-23T07:00:00Z");
        e.set("datacontenttype", "application/json");
        e.set("dataschema", "https://example.com/s.json");
        e.set("tenant", "acme");
        e.data = Some(Bytes::from_static(b"{\"n\":1}"));
        let (headers, payload) = encode(&e);
        assert_eq!(
            headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .unwrap()
                .as_str(),
            message_id("/shop", "id-1")
        );
        let back = decode(Some(&headers), payload).unwrap();
        let mut want: Vec<_> = e.attributes().collect();
        let mut got: Vec<_> = back.attributes().collect();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want);
        assert_eq!(back.data, e.data);
    }

    #[test]
    fn content_type_is_stored_as_it_is_and_the_old_percent_encoded_form_still_reads() {
        let mut e = CloudEvent::new("1", "/s", "t");
        e.set("datacontenttype", "text/plain; charset=utf-8");
        let (headers, payload) = encode(&e);
        assert_eq!(
            headers.get("content-type").unwrap().as_str(),
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            decode(Some(&headers), payload)
                .unwrap()
                .get("datacontenttype"),
            Some("text/plain; charset=utf-8")
        );
        for (stored, read) in [
            ("text/plain;%20charset=utf-8", "text/plain; charset=utf-8"),
            ("a/b;%20q=%22x%22", "a/b; q=\"x\""),
            ("text/x; note=100%", "text/x; note=100%"),
            ("text/x;n=%41", "text/x;n=%41"),
            ("a/b; q=%25", "a/b; q=%25"),
            ("application/json", "application/json"),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert("ce-specversion", "1.0");
            headers.insert("content-type", stored);
            let event = decode(Some(&headers), Bytes::new()).unwrap();
            assert_eq!(event.get("datacontenttype"), Some(read), "{stored}");
        }
    }

    #[test]
    fn message_id_depends_on_source_and_id_only() {
        assert_eq!(message_id("/a", "1"), message_id("/a", "1"));
        assert_ne!(message_id("/a", "1"), message_id("/a", "2"));
        assert_ne!(message_id("/a1", ""), message_id("/a", "1"));
        assert_eq!(message_id("/a", "1").len(), 32);
    }
}
