//! The borrowed view of a CloudEvent that every filter evaluates against.
//!
//! [`Event`] borrows everything: the ingress or dispatcher fills it from the message it
//! already holds (NATS headers in binary mode, or a parsed structured-mode JSON body)
//! without copying strings. Context attribute names are lower-case, as CloudEvents
//! requires.

use std::sync::OnceLock;

use serde_json::Value;
use thiserror::Error;

/// The value of one context attribute or extension.
///
/// CloudEvents attributes travel as strings in binary mode; in structured JSON mode an
/// extension may be a JSON boolean or integer. CESQL sees the three kinds as its
/// Boolean, Integer and String types; the other filters compare their string form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttributeValue<'a> {
    /// A string (also URI, URI-reference, timestamp and binary attributes).
    String(&'a str),
    /// A CloudEvents Integer (32-bit signed).
    Integer(i32),
    /// A CloudEvents Boolean.
    Boolean(bool),
}

impl<'a> From<&'a str> for AttributeValue<'a> {
    fn from(value: &'a str) -> Self {
        AttributeValue::String(value)
    }
}

impl From<i32> for AttributeValue<'_> {
    fn from(value: i32) -> Self {
        AttributeValue::Integer(value)
    }
}

impl From<bool> for AttributeValue<'_> {
    fn from(value: bool) -> Self {
        AttributeValue::Boolean(value)
    }
}

impl AttributeValue<'_> {
    /// Calls `f` with the canonical string form of the value (no allocation).
    pub fn with_str<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        match self {
            AttributeValue::String(s) => f(s),
            AttributeValue::Boolean(true) => f("true"),
            AttributeValue::Boolean(false) => f("false"),
            AttributeValue::Integer(i) => {
                let mut buf = [0u8; 11];
                f(format_i32(*i, &mut buf))
            }
        }
    }
}

/// An attribute name resolved when a filter is compiled: matching then reads a
/// context attribute directly and compares only extension names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Name {
    Id,
    Source,
    SpecVersion,
    Type,
    Subject,
    Time,
    DataContentType,
    DataSchema,
    Extension(Box<str>),
}

impl From<&str> for Name {
    fn from(name: &str) -> Self {
        match name {
            "id" => Name::Id,
            "source" => Name::Source,
            "specversion" => Name::SpecVersion,
            "type" => Name::Type,
            "subject" => Name::Subject,
            "time" => Name::Time,
            "datacontenttype" => Name::DataContentType,
            "dataschema" => Name::DataSchema,
            other => Name::Extension(other.into()),
        }
    }
}

impl Name {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Name::Id => "id",
            Name::Source => "source",
            Name::SpecVersion => "specversion",
            Name::Type => "type",
            Name::Subject => "subject",
            Name::Time => "time",
            Name::DataContentType => "datacontenttype",
            Name::DataSchema => "dataschema",
            Name::Extension(name) => name,
        }
    }

    /// A context attribute (always a String), not an extension (which may be typed).
    pub(crate) fn is_context(&self) -> bool {
        !matches!(self, Name::Extension(_))
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Writes the base-10 form of `value` into `buf` and returns it.
pub(crate) fn format_i32(value: i32, buf: &mut [u8; 11]) -> &str {
    let mut n = value.unsigned_abs();
    let mut pos = buf.len();
    loop {
        pos -= 1;
        // `n % 10` is below 10, so the cast cannot truncate.
        buf[pos] = b'0' + u8::try_from(n % 10).unwrap_or(0);
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if value < 0 {
        pos -= 1;
        buf[pos] = b'-';
    }
    std::str::from_utf8(&buf[pos..]).unwrap_or("")
}

/// A CloudEvent as the filters see it: context attributes plus the optional JSON `data`.
///
/// The four REQUIRED attributes are always present; the OPTIONAL ones and extensions may
/// be absent. Build one with [`Event::new`] and the `with_*` methods, or from a
/// structured-mode JSON event with [`Event::from_json`].
///
/// ```
/// use herald_filter::Event;
/// let data = serde_json::json!({"amount": 120});
/// let event = Event::new("id-1", "/orders", "1.0", "com.example.order.created")
///     .with_subject("order-42")
///     .with_extension("tenant", "acme")
///     .with_data(&data);
/// assert_eq!(event.event_type(), "com.example.order.created");
/// ```
#[derive(Clone, Debug)]
pub struct Event<'a> {
    id: &'a str,
    source: &'a str,
    specversion: &'a str,
    ty: &'a str,
    subject: Option<&'a str>,
    time: Option<&'a str>,
    datacontenttype: Option<&'a str>,
    dataschema: Option<&'a str>,
    extensions: Vec<(&'a str, AttributeValue<'a>)>,
    data: Option<&'a Value>,
    /// Whether some key in `data` has a `.`, found out when a pattern first asks.
    dotted_keys: OnceLock<bool>,
}

impl PartialEq for Event<'_> {
    fn eq(&self, other: &Self) -> bool {
        // `dotted_keys` only caches what `data` says.
        self.id == other.id
            && self.source == other.source
            && self.specversion == other.specversion
            && self.ty == other.ty
            && self.subject == other.subject
            && self.time == other.time
            && self.datacontenttype == other.datacontenttype
            && self.dataschema == other.dataschema
            && self.extensions == other.extensions
            && self.data == other.data
    }
}

/// Whether some object key in `value` contains a `.` (or the value nests too deep to
/// tell cheaply, which callers treat the same way).
fn has_dotted_keys(value: &Value, depth: usize) -> bool {
    match value {
        _ if depth > 128 => true,
        Value::Object(map) => map.iter().any(|(key, child)| {
            key.bytes().any(|b| b == b'.') || has_dotted_keys(child, depth + 1)
        }),
        Value::Array(items) => items.iter().any(|item| has_dotted_keys(item, depth + 1)),
        _ => false,
    }
}

/// Why a JSON document is not a structured-mode CloudEvent this crate can view.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EventError {
    /// The document is not a JSON object.
    #[error("a structured CloudEvent must be a JSON object")]
    NotAnObject,
    /// A REQUIRED attribute is absent or not a string.
    #[error("required attribute `{0}` is missing or not a string")]
    MissingRequired(&'static str),
    /// An attribute has a value CloudEvents does not allow.
    #[error("attribute `{name}`: {reason}")]
    InvalidAttribute {
        /// The attribute.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl<'a> Event<'a> {
    /// An event with the four REQUIRED attributes and nothing else.
    #[must_use]
    pub fn new(id: &'a str, source: &'a str, specversion: &'a str, ty: &'a str) -> Self {
        Event {
            id,
            source,
            specversion,
            ty,
            subject: None,
            time: None,
            datacontenttype: None,
            dataschema: None,
            extensions: Vec::new(),
            data: None,
            dotted_keys: OnceLock::new(),
        }
    }

    #[must_use]
    pub fn with_subject(mut self, subject: &'a str) -> Self {
        self.subject = Some(subject);
        self
    }

    /// Sets `time` (kept as the string the producer wrote).
    #[must_use]
    pub fn with_time(mut self, time: &'a str) -> Self {
        self.time = Some(time);
        self
    }

    #[must_use]
    pub fn with_datacontenttype(mut self, value: &'a str) -> Self {
        self.datacontenttype = Some(value);
        self
    }

    #[must_use]
    pub fn with_dataschema(mut self, value: &'a str) -> Self {
        self.dataschema = Some(value);
        self
    }

    /// Adds (or replaces) an attribute. The names of the OPTIONAL context attributes set
    /// those; any other name is an extension. The REQUIRED attributes are replaced when
    /// given a string.
    #[must_use]
    pub fn with_extension(mut self, name: &'a str, value: impl Into<AttributeValue<'a>>) -> Self {
        self.set_attribute(name, value.into());
        self
    }

    /// Sets the parsed JSON `data`.
    #[must_use]
    pub fn with_data(mut self, data: &'a Value) -> Self {
        self.set_data(Some(data));
        self
    }

    /// In-place form of [`Event::with_extension`], for callers that fill an event in a loop.
    pub fn set_attribute(&mut self, name: &'a str, value: AttributeValue<'a>) {
        let as_str = match value {
            AttributeValue::String(s) => Some(s),
            _ => None,
        };
        match (name, as_str) {
            ("id", Some(s)) => self.id = s,
            ("source", Some(s)) => self.source = s,
            ("specversion", Some(s)) => self.specversion = s,
            ("type", Some(s)) => self.ty = s,
            ("subject", Some(s)) => self.subject = Some(s),
            ("time", Some(s)) => self.time = Some(s),
            ("datacontenttype", Some(s)) => self.datacontenttype = Some(s),
            ("dataschema", Some(s)) => self.dataschema = Some(s),
            _ => {
                if let Some(slot) = self.extensions.iter_mut().find(|(n, _)| *n == name) {
                    slot.1 = value;
                } else {
                    self.extensions.push((name, value));
                }
            }
        }
    }

    /// Sets or clears the parsed JSON `data`.
    pub fn set_data(&mut self, data: Option<&'a Value>) {
        self.data = data;
        self.dotted_keys = OnceLock::new();
    }

    /// Views a structured-mode JSON CloudEvent (`{"specversion": "1.0", "id": ..., "data": ...}`).
    ///
    /// Extensions may be strings, booleans or 32-bit integers; `data` is kept as JSON,
    /// `data_base64` is ignored (binary data has no JSON to match).
    pub fn from_json(document: &'a Value) -> Result<Self, EventError> {
        let object = document.as_object().ok_or(EventError::NotAnObject)?;
        let required = |name: &'static str| {
            object
                .get(name)
                .and_then(Value::as_str)
                .ok_or(EventError::MissingRequired(name))
        };
        let mut event = Event::new(
            required("id")?,
            required("source")?,
            required("specversion")?,
            required("type")?,
        );
        for (name, value) in object {
            match name.as_str() {
                "id" | "source" | "specversion" | "type" | "data_base64" => {}
                "data" => event.set_data(Some(value)),
                _ => {
                    let value = match value {
                        Value::String(s) => AttributeValue::String(s),
                        Value::Bool(b) => AttributeValue::Boolean(*b),
                        Value::Number(n) => AttributeValue::Integer(
                            n.as_i64()
                                .and_then(|i| i32::try_from(i).ok())
                                .ok_or_else(|| EventError::InvalidAttribute {
                                    name: name.clone(),
                                    reason: "numbers must be 32-bit integers",
                                })?,
                        ),
                        Value::Null => continue,
                        Value::Array(_) | Value::Object(_) => {
                            return Err(EventError::InvalidAttribute {
                                name: name.clone(),
                                reason: "attributes must be strings, booleans or integers",
                            });
                        }
                    };
                    if !matches!(value, AttributeValue::String(_))
                        && matches!(
                            name.as_str(),
                            "subject" | "time" | "datacontenttype" | "dataschema"
                        )
                    {
                        return Err(EventError::InvalidAttribute {
                            name: name.clone(),
                            reason: "must be a string",
                        });
                    }
                    event.set_attribute(name, value);
                }
            }
        }
        Ok(event)
    }

    /// The `type` attribute.
    #[must_use]
    pub fn event_type(&self) -> &'a str {
        self.ty
    }

    /// The parsed JSON `data`, if any.
    #[must_use]
    pub fn data(&self) -> Option<&'a Value> {
        self.data
    }

    /// Whether some key in `data` contains a `.`: only then can an event spell a
    /// pattern's path `a` → `b` as the key `"a.b"`, so only then must matching look for
    /// such keys. Found out once per event, when first asked.
    pub(crate) fn data_has_dotted_keys(&self) -> bool {
        *self
            .dotted_keys
            .get_or_init(|| self.data.is_some_and(|d| has_dotted_keys(d, 0)))
    }

    /// Looks up an attribute by its resolved name.
    pub(crate) fn get(&self, name: &Name) -> Option<AttributeValue<'a>> {
        let s = match name {
            Name::Id => Some(self.id),
            Name::Source => Some(self.source),
            Name::SpecVersion => Some(self.specversion),
            Name::Type => Some(self.ty),
            Name::Subject => self.subject,
            Name::Time => self.time,
            Name::DataContentType => self.datacontenttype,
            Name::DataSchema => self.dataschema,
            Name::Extension(name) => {
                return self
                    .extensions
                    .iter()
                    .find(|(n, _)| *n == &**name)
                    .map(|(_, v)| *v);
            }
        };
        s.map(AttributeValue::String)
    }

    /// Looks up a context attribute or extension by its (lower-case) name.
    #[must_use]
    pub fn attribute(&self, name: &str) -> Option<AttributeValue<'a>> {
        let s = match name {
            "id" => Some(self.id),
            "source" => Some(self.source),
            "specversion" => Some(self.specversion),
            "type" => Some(self.ty),
            "subject" => self.subject,
            "time" => self.time,
            "datacontenttype" => self.datacontenttype,
            "dataschema" => self.dataschema,
            _ => {
                return self
                    .extensions
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| *v);
            }
        };
        s.map(AttributeValue::String)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn required_and_optional_attributes() {
        let event = Event::new("1", "/s", "1.0", "t").with_subject("sub");
        assert_eq!(event.attribute("id"), Some(AttributeValue::String("1")));
        assert_eq!(event.attribute("type"), Some(AttributeValue::String("t")));
        assert_eq!(
            event.attribute("subject"),
            Some(AttributeValue::String("sub"))
        );
        assert_eq!(event.attribute("time"), None);
        assert_eq!(event.attribute("myext"), None);
    }

    #[test]
    fn extensions_replace_by_name() {
        let event = Event::new("1", "/s", "1.0", "t")
            .with_extension("n", 1)
            .with_extension("n", true)
            .with_extension("type", "u");
        assert_eq!(event.attribute("n"), Some(AttributeValue::Boolean(true)));
        assert_eq!(event.event_type(), "u");
    }

    #[test]
    fn from_json_reads_typed_extensions_and_data() {
        let doc = json!({
            "specversion": "1.0", "id": "x", "source": "/s", "type": "t",
            "time": "2018-04-26T14:48:09+02:00", "flag": true, "count": 10,
            "data": {"a": 1}, "data_base64": "AA==", "nothing": null
        });
        let event = Event::from_json(&doc).unwrap();
        assert_eq!(event.attribute("flag"), Some(AttributeValue::Boolean(true)));
        assert_eq!(event.attribute("count"), Some(AttributeValue::Integer(10)));
        assert_eq!(
            event.attribute("time"),
            Some(AttributeValue::String("2018-04-26T14:48:09+02:00"))
        );
        assert_eq!(event.attribute("data_base64"), None);
        assert_eq!(event.attribute("nothing"), None);
        assert_eq!(event.data(), Some(&json!({"a": 1})));
    }

    #[test]
    fn from_json_rejects_invalid_events() {
        assert_eq!(Event::from_json(&json!([])), Err(EventError::NotAnObject));
        let no_type = json!({"specversion": "1.0", "id": "x", "source": "/s"});
        assert_eq!(
            Event::from_json(&no_type),
            Err(EventError::MissingRequired("type"))
        );
        let big = json!({"specversion": "1.0", "id": "x", "source": "/s", "type": "t", "n": 1e20});
        assert!(matches!(
            Event::from_json(&big),
            Err(EventError::InvalidAttribute { .. })
        ));
        let bool_subject =
            json!({"specversion": "1.0", "id": "x", "source": "/s", "type": "t", "subject": true});
        assert!(Event::from_json(&bool_subject).is_err());
    }

    #[test]
    fn integer_string_form() {
        for n in [0, 7, -7, 1234, i32::MAX, i32::MIN] {
            let mut buf = [0u8; 11];
            assert_eq!(format_i32(n, &mut buf), n.to_string());
        }
        assert!(AttributeValue::Integer(-12).with_str(|s| s == "-12"));
        assert!(AttributeValue::Boolean(false).with_str(|s| s == "false"));
    }
}
