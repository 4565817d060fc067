//! The JSON event format: one event (structured mode) or an array (batch mode).

use std::cell::RefCell;
use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::event::{CloudEvent, EventError, MAX_ATTRIBUTES};

/// Whether a media type carries JSON (`application/json`, `text/json`, `*/*+json`).
#[must_use]
pub fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

/// Parses one event in the JSON format (not yet validated), in one pass: members
/// are checked for duplicates with a set and counted as they are read, so an event
/// with more than [`MAX_ATTRIBUTES`] attributes is refused at the first one too many.
pub fn parse_event(raw: &RawValue) -> Result<CloudEvent, EventError> {
    let problem = RefCell::new(None);
    let members = MemberList { problem: &problem }
        .deserialize(&mut serde_json::Deserializer::from_str(raw.get()))
        .map_err(|e| {
            problem.take().unwrap_or_else(|| {
                EventError::Malformed(format!("an event must be a JSON object: {e}"))
            })
        })?;
    let mut event = CloudEvent::default();
    let mut data: Option<&RawValue> = None;
    let mut data_base64: Option<String> = None;
    for (name, value) in members {
        match name {
            "data" => data = Some(value),
            "data_base64" => {
                data_base64 = Some(
                    serde_json::from_str::<String>(value.get())
                        .map_err(|_| value_error("data_base64", "must be a string"))?,
                );
            }
            _ => {
                if let Some(text) = attribute_text(name, value)? {
                    event.push_new(name.to_owned(), text);
                }
            }
        }
    }
    event.data = match (data, data_base64) {
        (Some(_), Some(_)) => {
            return Err(EventError::Malformed(
                "an event has both data and data_base64".into(),
            ));
        }
        (None, Some(b64)) => {
            Some(Bytes::from(BASE64.decode(b64.as_bytes()).map_err(|e| {
                value_error("data_base64", &format!("is not base64: {e}"))
            })?))
        }
        (Some(raw), None) => Some(data_bytes(&mut event, raw)),
        (None, None) => None,
    };
    Ok(event)
}

/// Reads the members of one JSON object in order, refusing a name given twice and
/// more than [`MAX_ATTRIBUTES`] attributes (`data` and `data_base64` are not
/// attributes). The typed reason goes to `problem`, as serde's errors are strings.
struct MemberList<'p> {
    problem: &'p RefCell<Option<EventError>>,
}

impl<'de> DeserializeSeed<'de> for MemberList<'_> {
    type Value = Vec<(&'de str, &'de RawValue)>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MemberList<'_> {
    type Value = Vec<(&'de str, &'de RawValue)>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::new();
        let mut seen = HashSet::new();
        let mut attributes = 0;
        while let Some(name) = map.next_key::<&'de str>()? {
            if !seen.insert(name) {
                self.problem
                    .replace(Some(EventError::Duplicate(name.to_owned())));
                return Err(A::Error::custom("duplicate member"));
            }
            if !matches!(name, "data" | "data_base64") {
                attributes += 1;
                if attributes > MAX_ATTRIBUTES {
                    self.problem.replace(Some(EventError::TooManyAttributes));
                    return Err(A::Error::custom("too many attributes"));
                }
            }
            members.push((name, map.next_value::<&'de RawValue>()?));
        }
        Ok(members)
    }
}

/// Parses a batch: a JSON array of events (not yet validated).
pub fn parse_batch(body: &[u8]) -> Result<Vec<CloudEvent>, EventError> {
    let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| {
        EventError::Malformed(format!("a batch must be a JSON array of events: {e}"))
    })?;
    items.into_iter().map(parse_event).collect()
}

/// Parses a structured-mode body (not yet validated).
pub fn parse_structured(body: &[u8]) -> Result<CloudEvent, EventError> {
    let raw: &RawValue = serde_json::from_slice(body)
        .map_err(|e| EventError::Malformed(format!("the body is not JSON: {e}")))?;
    parse_event(raw)
}

fn value_error(name: &str, why: &str) -> EventError {
    EventError::Value {
        name: name.to_owned(),
        why: why.to_owned(),
    }
}

/// The canonical string of an attribute value; `None` for JSON null (absent).
fn attribute_text(name: &str, value: &RawValue) -> Result<Option<String>, EventError> {
    match serde_json::from_str::<serde_json::Value>(value.get()) {
        Ok(serde_json::Value::String(s)) => Ok(Some(s)),
        Ok(serde_json::Value::Bool(b)) => Ok(Some(b.to_string())),
        Ok(serde_json::Value::Number(n)) => match n.as_i64().and_then(|i| i32::try_from(i).ok()) {
            Some(i) => Ok(Some(i.to_string())),
            None => Err(value_error(name, "numbers must be 32-bit integers")),
        },
        Ok(serde_json::Value::Null) => Ok(None),
        Ok(_) => Err(value_error(name, "must be a string, integer or boolean")),
        Err(e) => Err(EventError::Malformed(e.to_string())),
    }
}

/// The bytes of a `data` member: JSON stays as written; a string under a non-JSON
/// content type is its text.
fn data_bytes(event: &mut CloudEvent, raw: &RawValue) -> Bytes {
    let content_type = event.get("datacontenttype").map(str::to_owned);
    match content_type {
        Some(ct) if !is_json_media_type(&ct) => match serde_json::from_str::<String>(raw.get()) {
            Ok(text) => Bytes::from(text),
            Err(_) => Bytes::copy_from_slice(raw.get().as_bytes()),
        },
        Some(_) => Bytes::copy_from_slice(raw.get().as_bytes()),
        None => {
            // The JSON format says an unspecified datacontenttype means application/json.
            event.set("datacontenttype", "application/json");
            Bytes::copy_from_slice(raw.get().as_bytes())
        }
    }
}

/// Writes an event in the JSON format (`application/cloudevents+json`).
#[must_use]
pub fn to_structured(event: &CloudEvent) -> Vec<u8> {
    let mut object = serde_json::Map::new();
    for (name, value) in event.attributes() {
        object.insert(name.to_owned(), serde_json::Value::String(value.to_owned()));
    }
    if let Some(data) = &event.data {
        let json_type = event.get("datacontenttype").is_none_or(is_json_media_type);
        let as_json = json_type
            .then(|| serde_json::from_slice::<serde_json::Value>(data).ok())
            .flatten();
        match (as_json, std::str::from_utf8(data)) {
            (Some(v), _) => {
                object.insert("data".into(), v);
            }
            (None, Ok(text)) if !json_type => {
                object.insert("data".into(), serde_json::Value::String(text.to_owned()));
            }
            _ => {
                object.insert(
                    "data_base64".into(),
                    serde_json::Value::String(BASE64.encode(data)),
                );
            }
        }
    }
    serde_json::to_vec(&object).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    #[test]
    fn structured_event_keeps_json_data_verbatim_and_types_extensions() {
        let body = br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","count":7,"flag":true,"gone":null,"data":{"b": 1,"a":[1,2]}}"#;
        let e = parse_structured(body).unwrap();
        assert_eq!(e.get("count"), Some("7"));
        assert_eq!(e.get("flag"), Some("true"));
        assert_eq!(e.get("gone"), None);
        assert_eq!(e.get("datacontenttype"), Some("application/json"));
        assert_eq!(e.data.as_deref(), Some(&br#"{"b": 1,"a":[1,2]}"#[..]));
        assert_eq!(e.validate(), Ok(()));
    }

    #[test]
    fn text_and_base64_data() {
        let e = parse_structured(br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"text/plain","data":"hello"}"#).unwrap();
        assert_eq!(e.data.as_deref(), Some(&b"hello"[..]));
        let e = parse_structured(
            br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"AAEC"}"#,
        )
        .unwrap();
        assert_eq!(e.data.as_deref(), Some(&[0u8, 1, 2][..]));
        let both = parse_structured(br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":1,"data_base64":"AA=="}"#);
        assert!(both.is_err());
    }

    #[test]
    fn bad_values_are_named() {
        let e = parse_structured(
            br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","x":{"nested":1}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("\"x\""), "{e}");
        let e =
            parse_structured(br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","x":1.5}"#)
                .unwrap_err();
        assert!(e.to_string().contains("32-bit"), "{e}");
        assert!(
            parse_batch(b"{}")
                .unwrap_err()
                .to_string()
                .contains("array")
        );
    }

    /// A structured event with `extensions` extension attributes `x0`, `x1`, ...
    fn with_extensions(extensions: usize) -> Vec<u8> {
        let members: String = (0..extensions).fold(String::new(), |mut members, i| {
            let _ = write!(members, r#","x{i}":1"#);
            members
        });
        format!(
            r#"{{"specversion":"1.0","id":"1","source":"/s","type":"t"{members},"data":{{"a":1}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn attributes_are_capped_and_data_does_not_count() {
        let most = parse_structured(&with_extensions(MAX_ATTRIBUTES - 4)).unwrap();
        assert_eq!(most.validate(), Ok(()));
        // datacontenttype was added for the JSON data, after reading.
        assert_eq!(most.attribute_count(), MAX_ATTRIBUTES + 1);
        assert_eq!(
            parse_structured(&with_extensions(MAX_ATTRIBUTES - 3)),
            Err(EventError::TooManyAttributes)
        );
    }

    #[test]
    fn an_attribute_bomb_is_refused_at_the_first_attribute_too_many() {
        // About 1 MiB, the ingress's default body limit: ~120,000 attributes, which a
        // quadratic duplicate check would take minutes over.
        let bomb = with_extensions(120_000);
        assert!(bomb.len() > 1 << 20);
        let started = std::time::Instant::now();
        assert_eq!(parse_structured(&bomb), Err(EventError::TooManyAttributes));
        let batch = format!("[{}]", String::from_utf8(bomb).unwrap());
        assert_eq!(
            parse_batch(batch.as_bytes()),
            Err(EventError::TooManyAttributes)
        );
        // Generous for a debug build on a loaded machine; the quadratic parse took
        // far longer.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn a_member_given_twice_is_refused_not_silently_overwritten() {
        let twice = br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","id":"2"}"#;
        assert_eq!(
            parse_structured(twice),
            Err(EventError::Duplicate("id".into()))
        );
        let data_twice =
            br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":1,"data":2}"#;
        assert_eq!(
            parse_structured(data_twice),
            Err(EventError::Duplicate("data".into()))
        );
    }

    #[test]
    fn structured_round_trip() {
        let mut e = crate::CloudEvent::new("1", "/s", "t");
        e.set("datacontenttype", "application/json");
        e.data = Some(Bytes::from_static(br#"{"a":1}"#));
        let back = parse_structured(&to_structured(&e)).unwrap();
        assert_eq!(back.get("id"), Some("1"));
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(back.data.as_ref().unwrap()).unwrap(),
            serde_json::json!({"a":1})
        );
        let mut bin = crate::CloudEvent::new("2", "/s", "t");
        bin.set("datacontenttype", "application/octet-stream");
        bin.data = Some(Bytes::from_static(&[0xff, 0x00]));
        assert_eq!(
            parse_structured(&to_structured(&bin)).unwrap().data,
            bin.data
        );
    }
}
