//! The compiled form of a content pattern and how it matches values.
//!
//! A *leaf* is the list of matchers under one field (any of them may match). A field
//! that is absent matches only `{"exists": false}`; a present field matches
//! `{"exists": true}` whatever its value (even `null`); an array matches when any of its
//! elements does. Context attributes are strings on the wire, so numeric matchers read
//! a string attribute as a number; JSON `data` is matched by its JSON types.

use std::borrow::Cow;

use serde_json::Value;

use super::cidr::Cidr;
use crate::event::{AttributeValue, Event, Name};
use crate::glob::Glob;

/// A literal value to compare with.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Exact {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

/// The forms of `anything-but`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum AnythingBut {
    Strings(Vec<String>),
    Numbers(Vec<f64>),
    Prefix(String),
    Suffix(String),
    /// Lower-cased values.
    IgnoreCase(Vec<String>),
    Wildcard(Vec<Glob>),
}

/// A numeric range; `None` is unbounded. The flag says whether the bound is included.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Range {
    pub(crate) lower: Option<(f64, bool)>,
    pub(crate) upper: Option<(f64, bool)>,
}

impl Range {
    pub(crate) fn contains(&self, n: f64) -> bool {
        let above = self
            .lower
            .is_none_or(|(b, inclusive)| if inclusive { n >= b } else { n > b });
        let below = self
            .upper
            .is_none_or(|(b, inclusive)| if inclusive { n <= b } else { n < b });
        above && below
    }
}

/// One matcher of a leaf.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Matcher {
    Exact(Exact),
    /// `ignore_case` values are lower-cased at compile time.
    Prefix {
        value: String,
        ignore_case: bool,
    },
    Suffix {
        value: String,
        ignore_case: bool,
    },
    /// Lower-cased.
    EqualsIgnoreCase(String),
    Wildcard(Glob),
    AnythingBut(AnythingBut),
    Numeric(Range),
    Cidr(Cidr),
    Exists(bool),
}

/// What a matcher can ask of a scalar.
pub(crate) trait Scalar {
    fn text(&self) -> Option<Cow<'_, str>>;
    fn number(&self) -> Option<f64>;
    fn boolean(&self) -> Option<bool>;
    fn is_null(&self) -> bool;
}

impl Scalar for Value {
    fn text(&self) -> Option<Cow<'_, str>> {
        self.as_str().map(Cow::Borrowed)
    }
    fn number(&self) -> Option<f64> {
        if self.is_number() {
            self.as_f64()
        } else {
            None
        }
    }
    fn boolean(&self) -> Option<bool> {
        self.as_bool()
    }
    fn is_null(&self) -> bool {
        Value::is_null(self)
    }
}

impl Scalar for AttributeValue<'_> {
    fn text(&self) -> Option<Cow<'_, str>> {
        Some(match self {
            AttributeValue::String(s) => Cow::Borrowed(*s),
            AttributeValue::Integer(i) => Cow::Owned(i.to_string()),
            AttributeValue::Boolean(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        })
    }
    fn number(&self) -> Option<f64> {
        match self {
            AttributeValue::String(s) => s.parse::<f64>().ok().filter(|n| n.is_finite()),
            AttributeValue::Integer(i) => Some(f64::from(*i)),
            AttributeValue::Boolean(_) => None,
        }
    }
    fn boolean(&self) -> Option<bool> {
        match self {
            AttributeValue::Boolean(b) => Some(*b),
            AttributeValue::String("true") => Some(true),
            AttributeValue::String("false") => Some(false),
            _ => None,
        }
    }
    fn is_null(&self) -> bool {
        false
    }
}

/// `text` starts with `lower_prefix`, comparing lower-cased characters.
fn starts_with_ignore_case(text: &str, lower_prefix: &str) -> bool {
    let mut t = text.chars().flat_map(char::to_lowercase);
    lower_prefix.chars().all(|p| t.next() == Some(p))
}

fn ends_with_ignore_case(text: &str, lower_suffix: &str) -> bool {
    let mut t = text.chars().rev().flat_map(char::to_lowercase);
    lower_suffix
        .chars()
        .rev()
        .flat_map(char::to_lowercase)
        .all(|p| t.next() == Some(p))
}

fn equals_ignore_case(text: &str, lower: &str) -> bool {
    text.chars().flat_map(char::to_lowercase).eq(lower.chars())
}

impl Matcher {
    /// Whether a present, non-array value matches (`Exists` is handled by the leaf).
    fn matches<S: Scalar + ?Sized>(&self, v: &S) -> bool {
        match self {
            Matcher::Exact(Exact::Str(want)) => v.text().is_some_and(|t| t == want.as_str()),
            Matcher::Exact(Exact::Num(want)) => v.number() == Some(*want),
            Matcher::Exact(Exact::Bool(want)) => v.boolean() == Some(*want),
            Matcher::Exact(Exact::Null) => v.is_null(),
            Matcher::Prefix { value, ignore_case } => v.text().is_some_and(|t| {
                if *ignore_case {
                    starts_with_ignore_case(&t, value)
                } else {
                    t.starts_with(value.as_str())
                }
            }),
            Matcher::Suffix { value, ignore_case } => v.text().is_some_and(|t| {
                if *ignore_case {
                    ends_with_ignore_case(&t, value)
                } else {
                    t.ends_with(value.as_str())
                }
            }),
            Matcher::EqualsIgnoreCase(lower) => {
                v.text().is_some_and(|t| equals_ignore_case(&t, lower))
            }
            Matcher::Wildcard(glob) => v.text().is_some_and(|t| glob.matches(&t)),
            Matcher::AnythingBut(but) => !v.is_null() && anything_but(but, v),
            Matcher::Numeric(range) => v.number().is_some_and(|n| range.contains(n)),
            Matcher::Cidr(cidr) => v.text().is_some_and(|t| cidr.contains(&t)),
            Matcher::Exists(_) => false,
        }
    }
}

fn anything_but<S: Scalar + ?Sized>(but: &AnythingBut, v: &S) -> bool {
    match but {
        // A value of another type is not excluded.
        AnythingBut::Strings(list) => v
            .text()
            .is_none_or(|t| !list.iter().any(|s| s.as_str() == t)),
        AnythingBut::Numbers(list) => v.number().is_none_or(|n| !list.contains(&n)),
        // These forms only speak about strings.
        AnythingBut::Prefix(p) => v.text().is_some_and(|t| !t.starts_with(p.as_str())),
        AnythingBut::Suffix(s) => v.text().is_some_and(|t| !t.ends_with(s.as_str())),
        AnythingBut::IgnoreCase(list) => v
            .text()
            .is_some_and(|t| !list.iter().any(|l| equals_ignore_case(&t, l))),
        AnythingBut::Wildcard(globs) => v
            .text()
            .is_some_and(|t| !globs.iter().any(|g| g.matches(&t))),
    }
}

/// The matchers under one field.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Leaf {
    pub(crate) matchers: Vec<Matcher>,
}

impl Leaf {
    fn matches_absent(&self) -> bool {
        self.matchers.contains(&Matcher::Exists(false))
    }

    /// Matches a context attribute (never an array).
    pub(crate) fn matches_attribute(&self, v: Option<AttributeValue<'_>>) -> bool {
        match v {
            None => self.matches_absent(),
            Some(v) => self.matchers.iter().any(|m| match m {
                Matcher::Exists(present) => *present,
                m => m.matches(&v),
            }),
        }
    }

    /// Matches a JSON value; an array matches when one of its elements does.
    pub(crate) fn matches_json(&self, v: Option<&Value>) -> bool {
        match v {
            None => self.matches_absent(),
            Some(Value::Array(items)) => self.matchers.iter().any(|m| match m {
                Matcher::Exists(present) => *present,
                m => items.iter().any(|item| !item.is_array() && m.matches(item)),
            }),
            Some(v) => self.matchers.iter().any(|m| match m {
                Matcher::Exists(present) => *present,
                m => m.matches(v),
            }),
        }
    }

    /// `Some(s)` when the leaf is exactly one string literal.
    pub(crate) fn single_string(&self) -> Option<&str> {
        match self.matchers.as_slice() {
            [Matcher::Exact(Exact::Str(s))] => Some(s),
            _ => None,
        }
    }
}

/// A field of an object pattern.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Field {
    Object(ObjectPattern),
    Leaf(Leaf),
}

/// A pattern over a JSON object: every field matches, and one `$or` alternative does.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ObjectPattern {
    pub(crate) fields: Vec<(String, Field)>,
    pub(crate) any_of: Vec<ObjectPattern>,
}

impl ObjectPattern {
    /// Matches a value; an array matches when one of its elements does on its own.
    pub(crate) fn matches(&self, v: Option<&Value>) -> bool {
        match v {
            Some(Value::Array(items)) => items.iter().any(|item| self.matches_one(Some(item))),
            v => self.matches_one(v),
        }
    }

    fn matches_one(&self, v: Option<&Value>) -> bool {
        let object = v.and_then(Value::as_object);
        self.fields.iter().all(|(name, field)| {
            let child = object.and_then(|o| o.get(name));
            match field {
                Field::Object(p) => p.matches(child),
                Field::Leaf(l) => l.matches_json(child),
            }
        }) && (self.any_of.is_empty() || self.any_of.iter().any(|alt| alt.matches_one(v)))
    }
}

/// What a pattern says about `data`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum DataPattern {
    Object(ObjectPattern),
    Leaf(Leaf),
}

/// A whole pattern: context attributes, `data`, and `$or` alternatives of both.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TopPattern {
    pub(crate) attributes: Vec<(Name, Leaf)>,
    pub(crate) data: Option<DataPattern>,
    pub(crate) any_of: Vec<TopPattern>,
}

impl TopPattern {
    pub(crate) fn matches(&self, event: &Event<'_>) -> bool {
        self.attributes
            .iter()
            .all(|(name, leaf)| leaf.matches_attribute(event.get(name)))
            && match &self.data {
                None => true,
                Some(DataPattern::Object(p)) => p.matches(event.data()),
                Some(DataPattern::Leaf(l)) => l.matches_json(event.data()),
            }
            && (self.any_of.is_empty() || self.any_of.iter().any(|alt| alt.matches(event)))
    }

    pub(crate) fn needs_data(&self) -> bool {
        self.data.is_some() || self.any_of.iter().any(TopPattern::needs_data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ignore_case_helpers() {
        assert!(starts_with_ignore_case("EventBridge", "eventb"));
        assert!(!starts_with_ignore_case("Even", "eventb"));
        assert!(ends_with_ignore_case("FILE.PNG", ".png"));
        assert!(!ends_with_ignore_case("png", ".png"));
        assert!(equals_ignore_case("ÄBC", "äbc"));
        assert!(!equals_ignore_case("ÄBCD", "äbc"));
    }

    #[test]
    fn ranges() {
        let r = Range {
            lower: Some((0.0, false)),
            upper: Some((5.0, true)),
        };
        assert!(!r.contains(0.0));
        assert!(r.contains(0.1));
        assert!(r.contains(5.0));
        assert!(!r.contains(5.01));
    }

    #[test]
    fn attribute_scalars() {
        let n = AttributeValue::String("42.5");
        assert_eq!(n.number(), Some(42.5));
        assert_eq!(AttributeValue::String("NaN").number(), None);
        assert_eq!(AttributeValue::Integer(3).text().as_deref(), Some("3"));
        assert_eq!(AttributeValue::String("true").boolean(), Some(true));
        assert_eq!(json!("5").number(), None, "a JSON string is not a number");
    }
}
