//! The CloudEvents HTTP protocol binding: binary, structured and batch modes.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use crate::event::{CloudEvent, EventError, MAX_ATTRIBUTES, is_header_text};
use crate::{json, percent};

/// Content type of a structured-mode event in the JSON format.
pub const STRUCTURED_JSON: &str = "application/cloudevents+json";
/// Content type of a batch in the JSON format.
pub const BATCH_JSON: &str = "application/cloudevents-batch+json";

/// How the events came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Attributes in `ce-*` headers, data in the body.
    Binary,
    /// One event as a JSON document.
    Structured,
    /// Several events as a JSON array.
    Batch,
}

impl Mode {
    /// Lower-case name, for metrics and logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Binary => "binary",
            Self::Structured => "structured",
            Self::Batch => "batch",
        }
    }
}

/// An event of a request that is not valid, with its position in a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{error}", index.map(|i| format!("event {i} of the batch: ")).unwrap_or_default())]
pub struct RequestError {
    /// Position in the batch (batch mode only).
    pub index: Option<usize>,
    /// What is wrong.
    pub error: EventError,
}

fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// Reads the events of an HTTP request and validates each. A batch may be empty
/// (the binding allows it): then there are no events.
pub fn decode(headers: &HeaderMap, body: Bytes) -> Result<(Mode, Vec<CloudEvent>), RequestError> {
    let single = |error| RequestError { index: None, error };
    let media = media_type(headers);
    let (mode, events) = if media == BATCH_JSON {
        (Mode::Batch, json::parse_batch(&body).map_err(single)?)
    } else if media == STRUCTURED_JSON {
        (
            Mode::Structured,
            vec![json::parse_structured(&body).map_err(single)?],
        )
    } else if media.starts_with("application/cloudevents") {
        return Err(single(EventError::UnsupportedFormat(media)));
    } else {
        (
            Mode::Binary,
            vec![decode_binary(headers, body).map_err(single)?],
        )
    };
    for (i, event) in events.iter().enumerate() {
        event.validate().map_err(|error| RequestError {
            index: (mode == Mode::Batch).then_some(i),
            error,
        })?;
    }
    Ok((mode, events))
}

fn decode_binary(headers: &HeaderMap, body: Bytes) -> Result<CloudEvent, EventError> {
    let mut event = CloudEvent::default();
    for (name, value) in headers {
        let Some(attribute) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        // Also keeps `insert`'s duplicate scan short (a server may take many headers).
        if event.attribute_count() >= MAX_ATTRIBUTES {
            return Err(EventError::TooManyAttributes);
        }
        let bad = |why: &str| EventError::Value {
            name: attribute.to_owned(),
            why: why.to_owned(),
        };
        let unquoted =
            unquote(value.as_bytes()).ok_or_else(|| bad("a quoted-string is not closed"))?;
        let text = percent::decode(&unquoted)
            .ok_or_else(|| bad("the header value is not valid percent-encoded UTF-8"))?;
        event.insert(attribute.to_owned(), text)?;
    }
    if event.get("specversion").is_none() {
        return Err(EventError::Malformed(
            "not a CloudEvent: no ce-specversion header (binary mode) and the content type is not application/cloudevents+json".into(),
        ));
    }
    if let Some(ct) = headers.get(CONTENT_TYPE) {
        let ct = ct
            .to_str()
            .map_err(|_| EventError::Malformed("Content-Type is not ASCII".into()))?;
        if event.attribute_count() >= MAX_ATTRIBUTES {
            return Err(EventError::TooManyAttributes);
        }
        event.insert("datacontenttype".into(), ct.to_owned())?;
    }
    event.data = (!body.is_empty()).then_some(body);
    Ok(event)
}

/// Undoes the RFC 7230 quoted-strings of a header value (`"say \"hi\""` → `say "hi"`),
/// which the binding (3.1.3.2) removes before percent-decoding: older senders quote
/// values with spaces instead of percent-encoding them. `None` when a quote is not
/// closed.
fn unquote(value: &[u8]) -> Option<Cow<'_, [u8]>> {
    if !value.contains(&b'"') {
        return Some(Cow::Borrowed(value));
    }
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.iter().copied();
    let mut quoted = false;
    while let Some(b) = bytes.next() {
        match (quoted, b) {
            (_, b'"') => quoted = !quoted,
            // A quoted-pair: the next byte stands for itself.
            (true, b'\\') => out.push(bytes.next()?),
            _ => out.push(b),
        }
    }
    (!quoted).then_some(Cow::Owned(out))
}

/// Writes an event as a binary-mode HTTP request: headers and body.
///
/// `datacontenttype` becomes `Content-Type` as it is: the binding percent-encodes
/// only `ce-` headers, and a media type is ASCII already ([`CloudEvent::validate`]).
#[must_use]
pub fn encode_binary(event: &CloudEvent) -> (HeaderMap, Bytes) {
    let mut headers = HeaderMap::new();
    for (name, value) in event.attributes() {
        if name == "datacontenttype" {
            // A value that is not a media type cannot be a header; an event stored
            // before validation refused such values is delivered without it.
            if value.bytes().all(is_header_text)
                && let Ok(content_type) = HeaderValue::from_str(value)
            {
                headers.insert(CONTENT_TYPE, content_type);
            }
        } else if let (Ok(header), Ok(encoded)) = (
            HeaderName::from_bytes(format!("ce-{name}").as_bytes()),
            HeaderValue::from_str(&percent::encode(value)),
        ) {
            headers.insert(header, encoded);
        }
    }
    (headers, event.data.clone().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn binary_mode_decodes_percent_encoded_headers() {
        let h = headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "42"),
            ("ce-source", "/shop"),
            ("ce-type", "order.created"),
            ("ce-subject", "Euro%20%E2%82%AC"),
            ("content-type", "application/json"),
        ]);
        let (mode, events) = decode(&h, Bytes::from_static(b"{\"a\":1}")).unwrap();
        assert_eq!(mode, Mode::Binary);
        assert_eq!(events[0].get("subject"), Some("Euro €"));
        assert_eq!(events[0].get("datacontenttype"), Some("application/json"));
        let (back_headers, body) = encode_binary(&events[0]);
        assert_eq!(back_headers.get("ce-subject").unwrap(), "Euro%20%E2%82%AC");
        assert_eq!(decode(&back_headers, body).unwrap().1, events);
    }

    fn required(extra: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut pairs = vec![
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
        ];
        pairs.extend_from_slice(extra);
        headers(&pairs)
    }

    #[test]
    fn content_type_is_delivered_as_it_came_not_percent_encoded() {
        for content_type in [
            "text/plain; charset=utf-8",
            "multipart/mixed; boundary=\"a b\"",
            "application/json;\tcharset=utf-8",
            "text/x-percent; note=100%",
        ] {
            let h = required(&[("content-type", content_type)]);
            let (_, events) = decode(&h, Bytes::from_static(b"hi")).unwrap();
            assert_eq!(events[0].get("datacontenttype"), Some(content_type));
            // The dispatcher's path: stored on NATS, read back, POSTed in binary mode.
            let (nats_headers, payload) = crate::nats::encode(&events[0]);
            let stored = crate::nats::decode(Some(&nats_headers), payload).unwrap();
            let (out, body) = encode_binary(&stored);
            assert_eq!(out.get(CONTENT_TYPE).unwrap(), content_type);
            assert!(!out.contains_key("ce-datacontenttype"));
            let (_, received) = decode(&out, body).unwrap();
            assert_eq!(received[0].get("datacontenttype"), Some(content_type));
        }
    }

    #[test]
    fn quoted_strings_are_unquoted_before_percent_decoding() {
        for (header, attribute) in [
            (r#""hello world""#, "hello world"),
            (r#""say \"hi\"""#, r#"say "hi""#),
            (r#""back\\slash""#, r"back\slash"),
            (r#""100%25 sure""#, "100% sure"),
            (r#"a"b c"d"#, "ab cd"),
            (r"not\quoted", r"not\quoted"),
            ("Euro%20%E2%82%AC", "Euro €"),
        ] {
            let h = required(&[("ce-subject", header)]);
            let (_, events) = decode(&h, Bytes::new()).unwrap_or_else(|e| panic!("{header}: {e}"));
            assert_eq!(events[0].get("subject"), Some(attribute), "{header}");
        }
        for open in [r#""never closed"#, r#""ends in \""#] {
            let e = decode(&required(&[("ce-subject", open)]), Bytes::new()).unwrap_err();
            assert!(
                matches!(&e.error, EventError::Value { name, .. } if name == "subject"),
                "{open}: {e}"
            );
        }
    }

    #[test]
    fn binary_mode_caps_attributes_too() {
        let mut most = required(&[]);
        for i in 4..MAX_ATTRIBUTES {
            let name = HeaderName::from_bytes(format!("ce-x{i}").as_bytes()).unwrap();
            most.insert(name, HeaderValue::from_static("1"));
        }
        assert!(decode(&most, Bytes::new()).is_ok());
        most.insert("ce-onemore", HeaderValue::from_static("1"));
        assert_eq!(
            decode(&most, Bytes::new()).unwrap_err().error,
            EventError::TooManyAttributes
        );
    }

    #[test]
    fn an_empty_batch_is_valid_and_has_no_events() {
        let h = headers(&[("content-type", BATCH_JSON)]);
        for body in ["[]", " [ ]\n"] {
            assert_eq!(
                decode(&h, Bytes::from(body)).unwrap(),
                (Mode::Batch, Vec::new())
            );
        }
        assert!(decode(&h, Bytes::new()).is_err(), "no body is not a batch");
    }

    #[test]
    fn an_event_format_herald_does_not_read_is_its_own_error() {
        let h = headers(&[("content-type", "application/cloudevents+avro")]);
        let e = decode(&h, Bytes::from_static(b"\0")).unwrap_err();
        assert_eq!(
            e.error,
            EventError::UnsupportedFormat("application/cloudevents+avro".into())
        );
    }

    #[test]
    fn missing_headers_and_bad_specversion_are_explained() {
        let e = decode(&headers(&[("content-type", "text/plain")]), Bytes::new()).unwrap_err();
        assert!(e.to_string().contains("ce-specversion"), "{e}");
        let h = headers(&[
            ("ce-specversion", "0.3"),
            ("ce-id", "1"),
            ("ce-source", "/"),
            ("ce-type", "t"),
        ]);
        assert!(matches!(
            decode(&h, Bytes::new()).unwrap_err().error,
            EventError::SpecVersion(_)
        ));
    }

    #[test]
    fn batch_reports_the_index_of_the_bad_event() {
        let h = headers(&[(
            "content-type",
            "application/cloudevents-batch+json; charset=utf-8",
        )]);
        let body = br#"[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{"specversion":"1.0","source":"/s","type":"t"}]"#;
        let e = decode(&h, Bytes::from_static(body)).unwrap_err();
        assert_eq!(e.index, Some(1));
        assert_eq!(
            e.to_string(),
            "event 1 of the batch: missing required attribute \"id\""
        );
    }
}
