//! The event model and the spec's validation rules.

use bytes::Bytes;

/// Attributes every event must have.
pub const REQUIRED: [&str; 4] = ["id", "source", "specversion", "type"];
/// The only spec version Herald accepts.
pub const SPEC_VERSION: &str = "1.0";
/// Most context attributes (required, optional and extensions together) an event read
/// from an HTTP request may have. The spec sets no limit, but every attribute becomes
/// a header when the event is delivered in binary mode, and common servers (hyper, the
/// ingress itself) take at most 100 headers: an event with more could be accepted and
/// never delivered. Without a cap, a 1 MiB structured event could carry ~100,000.
pub const MAX_ATTRIBUTES: usize = 100;

/// A CloudEvent: context attributes (including extensions) in their canonical string
/// form, and optional data bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CloudEvent {
    attributes: Vec<(String, String)>,
    /// The event data, as bytes (its meaning is given by `datacontenttype`).
    pub data: Option<Bytes>,
}

/// Why an event is not a valid CloudEvent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// A required attribute is absent or empty.
    #[error("missing required attribute {0:?}")]
    Missing(&'static str),
    /// `specversion` is not 1.0.
    #[error("unsupported specversion {0:?}: Herald accepts \"1.0\"")]
    SpecVersion(String),
    /// An attribute name breaks the naming rules.
    #[error("invalid attribute name {0:?}: names are lower-case letters a-z and digits 0-9")]
    Name(String),
    /// An attribute value has the wrong form.
    #[error("invalid value of attribute {name:?}: {why}")]
    Value {
        /// The attribute.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// An attribute appears twice.
    #[error("attribute {0:?} is given more than once")]
    Duplicate(String),
    /// More attributes than [`MAX_ATTRIBUTES`].
    #[error("an event may have at most {MAX_ATTRIBUTES} attributes (extensions included)")]
    TooManyAttributes,
    /// The content type names an event format Herald does not read (such as
    /// `application/cloudevents+avro`).
    #[error(
        "unsupported event format {0:?}: use application/cloudevents+json, application/cloudevents-batch+json or binary mode"
    )]
    UnsupportedFormat(String),
    /// The message could not be read as a CloudEvent at all.
    #[error("{0}")]
    Malformed(String),
}

/// Whether `name` follows the attribute naming rules (lower-case ASCII letters and digits).
#[must_use]
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Whether `b` may appear in an HTTP header value as it is (printable ASCII or tab):
/// what a `Content-Type` carries, so what a `datacontenttype` may hold.
#[must_use]
pub(crate) fn is_header_text(b: u8) -> bool {
    b == b'\t' || (0x20..=0x7e).contains(&b)
}

impl CloudEvent {
    /// An event with the four required attributes.
    #[must_use]
    pub fn new(id: &str, source: &str, type_: &str) -> Self {
        let mut e = Self::default();
        for (k, v) in [
            ("specversion", SPEC_VERSION),
            ("id", id),
            ("source", source),
            ("type", type_),
        ] {
            e.attributes.push((k.to_owned(), v.to_owned()));
        }
        e
    }

    /// Sets an attribute (replacing an earlier value).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.attributes.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.attributes.push((name.to_owned(), value)),
        }
    }

    /// Adds an attribute read from the wire; refuses a second value for the same name.
    pub fn insert(&mut self, name: String, value: String) -> Result<(), EventError> {
        if self.attributes.iter().any(|(k, _)| *k == name) {
            return Err(EventError::Duplicate(name));
        }
        self.attributes.push((name, value));
        Ok(())
    }

    /// Adds an attribute the caller knows is not there yet (a parser that checked for
    /// duplicates as it read): no scan, so reading n attributes stays O(n).
    pub(crate) fn push_new(&mut self, name: String, value: String) {
        debug_assert!(self.get(&name).is_none(), "{name} is already set");
        self.attributes.push((name, value));
    }

    /// How many attributes the event has.
    #[must_use]
    pub fn attribute_count(&self) -> usize {
        self.attributes.len()
    }

    /// The value of an attribute.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every attribute, in the order they were given.
    pub fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `id` (empty before validation).
    #[must_use]
    pub fn id(&self) -> &str {
        self.get("id").unwrap_or_default()
    }

    /// `source` (empty before validation).
    #[must_use]
    pub fn source(&self) -> &str {
        self.get("source").unwrap_or_default()
    }

    /// `type` (empty before validation).
    #[must_use]
    pub fn type_(&self) -> &str {
        self.get("type").unwrap_or_default()
    }

    /// Checks the spec's rules: required attributes, spec version, names, and the
    /// form of the attributes whose type the spec fixes.
    pub fn validate(&self) -> Result<(), EventError> {
        for name in REQUIRED {
            if self.get(name).is_none_or(str::is_empty) {
                return Err(EventError::Missing(name));
            }
        }
        if self.get("specversion") != Some(SPEC_VERSION) {
            return Err(EventError::SpecVersion(
                self.get("specversion").unwrap_or_default().to_owned(),
            ));
        }
        for (name, value) in self.attributes() {
            if !is_valid_name(name) {
                return Err(EventError::Name(name.to_owned()));
            }
            let bad = |why: &str| {
                Err(EventError::Value {
                    name: name.to_owned(),
                    why: why.to_owned(),
                })
            };
            match name {
                "time" if !is_rfc3339(value) => return bad("must be an RFC 3339 timestamp"),
                "dataschema" if value.is_empty() || value.contains(char::is_whitespace) => {
                    return bad("must be a URI");
                }
                // RFC 2046 media types are ASCII; anything else could not be
                // delivered as the Content-Type header the binding maps it to.
                "datacontenttype" if !value.contains('/') || !value.bytes().all(is_header_text) => {
                    return bad(
                        "must be a media type such as application/json, in printable ASCII",
                    );
                }
                "subject" if value.is_empty() => return bad("must not be empty when present"),
                _ => {}
            }
        }
        Ok(())
    }
}

/// A strict-enough RFC 3339 check: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() < 20
        || !(digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10))
    {
        return false;
    }
    if !(matches!(b[10], b'T' | b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19))
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_event_passes() {
        let mut e = CloudEvent::new("1", "/src", "com.example.a");
        e.set("time", "2026-11-23T07:00:00.123Z");
        e.set("myext", "x");
        assert_eq!(e.validate(), Ok(()));
    }

    #[test]
    fn each_rule_has_its_error() {
        let mut e = CloudEvent::new("", "/src", "t");
        assert_eq!(e.validate(), Err(EventError::Missing("id")));
        e.set("id", "1");
        e.set("specversion", "0.3");
        assert!(matches!(e.validate(), Err(EventError::SpecVersion(v)) if v == "0.3"));
        e.set("specversion", "1.0");
        e.set("Bad-Name", "x");
        assert_eq!(e.validate(), Err(EventError::Name("Bad-Name".into())));
        let mut e = CloudEvent::new("1", "/s", "t");
        e.set("time", "yesterday");
        assert!(e.validate().unwrap_err().to_string().contains("RFC 3339"));
        assert!(matches!(
            e.insert("id".into(), "2".into()),
            Err(EventError::Duplicate(_))
        ));
    }

    #[test]
    fn datacontenttype_is_a_media_type_a_header_can_carry() {
        let mut e = CloudEvent::new("1", "/s", "t");
        for ok in [
            "application/json",
            "text/plain; charset=\"utf-8\"",
            "text/plain;\tcharset=utf-8",
        ] {
            e.set("datacontenttype", ok);
            assert_eq!(e.validate(), Ok(()), "{ok}");
        }
        for bad in ["json", "text/plain; name=ü", "text/plain\r\nx-injected: 1"] {
            e.set("datacontenttype", bad);
            assert!(
                matches!(e.validate(), Err(EventError::Value { ref name, .. }) if name == "datacontenttype"),
                "{bad}"
            );
        }
    }

    #[test]
    fn rfc3339_forms() {
        for ok in [
            "2026-11-23T07:00:00Z",
            "2026-11-23T07:00:00.5+01:00",
            "2026-11-23t07:00:00z",
        ] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in [
            "2026-11-23",
            "2026-11-23T07:00:00",
            "2026-11-23T07:00:00.Z",
            "2026-11-23 07:00:00Z",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }
}
