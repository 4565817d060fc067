//! Matchers of one field, and how they test one value.
//!
//! A *leaf* is the list of matchers under one field: the field matches when one of them
//! matches one of its values. `{"exists": true}` needs some value, `{"exists": false}`
//! none (see `walk.rs` for what "none" means inside arrays). A value is a JSON scalar:
//! strings only meet string matchers, numbers only numeric ones, and `anything-but`
//! matches every value it does not exclude, `null` included.
//!
//! Context attributes are strings on the wire, so for them numeric matchers read the
//! string as a number (`sequence: [{numeric: [">", 10]}]`).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::net::IpAddr;

use serde_json::Value;

use super::cidr::{Cidr, ip_of};
use super::fold::Folded;
use super::number::Num;
use crate::event::AttributeValue;
use crate::glob::Glob;

/// A literal value to compare with.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Exact {
    Str(String),
    /// A string that is an IP address: equal to any spelling of the address.
    Ip(IpAddr),
    Num(Num),
    Bool(bool),
    Null,
}

/// What `anything-but` excludes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum AnythingBut {
    Strings(Vec<String>),
    /// Doubles (EventBridge refuses numbers it cannot compare here).
    Numbers(Vec<f64>),
    Prefixes(Vec<String>),
    Suffixes(Vec<String>),
    IgnoreCase(Vec<Folded>),
    Wildcards(Vec<Glob>),
}

/// A numeric range; `None` is unbounded. The flag says whether the bound is included.
/// Bounds compare in IEEE-754 total order, as EventBridge does.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Range {
    pub(crate) lower: Option<(f64, bool)>,
    pub(crate) upper: Option<(f64, bool)>,
}

impl Range {
    #[inline]
    pub(crate) fn contains(&self, n: f64) -> bool {
        let above = self
            .lower
            .is_none_or(|(b, inclusive)| beyond(n, b, inclusive, Ordering::Greater));
        let below = self
            .upper
            .is_none_or(|(b, inclusive)| beyond(n, b, inclusive, Ordering::Less));
        above && below
    }
}

/// Whether `n` lies on the `side` of the bound `b` (or on it, when `inclusive`), in total
/// order. Only `-0.0` against `0.0` needs more than the plain comparison.
#[inline]
fn beyond(n: f64, b: f64, inclusive: bool, side: Ordering) -> bool {
    match n.partial_cmp(&b) {
        Some(Ordering::Equal) | None => match n.total_cmp(&b) {
            Ordering::Equal => inclusive,
            order => order == side,
        },
        Some(order) => order == side,
    }
}

/// One matcher of a leaf (`exists` is a flag of the leaf).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Matcher {
    Exact(Exact),
    Prefix(String),
    Suffix(String),
    PrefixIgnoreCase(Folded),
    SuffixIgnoreCase(Folded),
    EqualsIgnoreCase(Folded),
    Wildcard(Glob),
    AnythingBut(AnythingBut),
    Numeric(Range),
    Cidr(Cidr),
}

/// What a matcher can ask of a value.
pub(crate) trait Scalar {
    fn text(&self) -> Option<Cow<'_, str>>;
    fn number(&self) -> Option<Num>;
    fn boolean(&self) -> Option<bool>;
    fn is_null(&self) -> bool;
}

impl Scalar for Value {
    fn text(&self) -> Option<Cow<'_, str>> {
        self.as_str().map(Cow::Borrowed)
    }
    fn number(&self) -> Option<Num> {
        match self {
            Value::Number(n) => Num::of(n),
            _ => None,
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
    fn number(&self) -> Option<Num> {
        match self {
            AttributeValue::String(s) => Num::from_text(s),
            AttributeValue::Integer(i) => Some(Num::Double(f64::from(*i))),
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

impl Matcher {
    /// Whether a value (a scalar) matches.
    pub(crate) fn matches<S: Scalar + ?Sized>(&self, v: &S) -> bool {
        match self {
            Matcher::Exact(Exact::Str(want)) => v.text().is_some_and(|t| t == want.as_str()),
            Matcher::Exact(Exact::Ip(want)) => v.text().is_some_and(|t| ip_of(&t) == Some(*want)),
            Matcher::Exact(Exact::Num(want)) => v.number().is_some_and(|n| n.same(*want)),
            Matcher::Exact(Exact::Bool(want)) => v.boolean() == Some(*want),
            Matcher::Exact(Exact::Null) => v.is_null(),
            Matcher::Prefix(p) => v.text().is_some_and(|t| t.starts_with(p.as_str())),
            Matcher::Suffix(s) => v.text().is_some_and(|t| t.ends_with(s.as_str())),
            Matcher::PrefixIgnoreCase(f) => v.text().is_some_and(|t| f.is_prefix_of(&t)),
            Matcher::SuffixIgnoreCase(f) => v.text().is_some_and(|t| f.is_suffix_of(&t)),
            Matcher::EqualsIgnoreCase(f) => v.text().is_some_and(|t| f.equals(&t)),
            Matcher::Wildcard(glob) => v.text().is_some_and(|t| glob.matches(&t)),
            Matcher::AnythingBut(but) => !excluded(but, v),
            Matcher::Numeric(range) => v
                .number()
                .and_then(Num::double)
                .is_some_and(|n| range.contains(n)),
            Matcher::Cidr(cidr) => v.text().is_some_and(|t| cidr.contains(&t)),
        }
    }
}

/// Whether `anything-but` excludes the value: only values of the kind it lists can be.
fn excluded<S: Scalar + ?Sized>(but: &AnythingBut, v: &S) -> bool {
    match but {
        AnythingBut::Strings(list) => v
            .text()
            .is_some_and(|t| list.iter().any(|s| s.as_str() == t)),
        AnythingBut::Numbers(list) => v
            .number()
            .and_then(Num::double)
            .is_some_and(|n| list.iter().any(|x| n.total_cmp(x) == Ordering::Equal)),
        AnythingBut::Prefixes(list) => v
            .text()
            .is_some_and(|t| list.iter().any(|p| t.starts_with(p.as_str()))),
        AnythingBut::Suffixes(list) => v
            .text()
            .is_some_and(|t| list.iter().any(|s| t.ends_with(s.as_str()))),
        AnythingBut::IgnoreCase(list) => {
            v.text().is_some_and(|t| list.iter().any(|f| f.equals(&t)))
        }
        AnythingBut::Wildcards(list) => {
            v.text().is_some_and(|t| list.iter().any(|g| g.matches(&t)))
        }
    }
}

/// The matchers under one field.
#[derive(Clone, Debug, PartialEq, Default)]
pub(crate) struct Leaf {
    pub(crate) matchers: Vec<Matcher>,
    /// `{"exists": true}`: any value will do.
    pub(crate) if_present: bool,
    /// `{"exists": false}`: the field may have no value.
    pub(crate) if_absent: bool,
}

impl Leaf {
    /// Whether one value matches (the field is then present).
    pub(crate) fn matches<S: Scalar + ?Sized>(&self, v: &S) -> bool {
        self.if_present || self.matchers.iter().any(|m| m.matches(v))
    }

    /// Matches a context attribute (one value or none).
    pub(crate) fn matches_attribute(&self, v: Option<AttributeValue<'_>>) -> bool {
        match v {
            None => self.if_absent,
            Some(v) => self.matches(&v),
        }
    }

    /// `Some(s)` when the leaf is exactly one string literal.
    pub(crate) fn single_string(&self) -> Option<&str> {
        match (self.matchers.as_slice(), self.if_present, self.if_absent) {
            ([Matcher::Exact(Exact::Str(s))], false, false) => Some(s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ranges_use_total_order() {
        let r = Range {
            lower: Some((0.0, false)),
            upper: Some((5.0, true)),
        };
        assert!(!r.contains(0.0));
        assert!(r.contains(0.1));
        assert!(r.contains(5.0));
        assert!(!r.contains(5.01));
        let below_zero = Range {
            lower: None,
            upper: Some((0.0, false)),
        };
        assert!(below_zero.contains(-0.0), "-0 sorts below 0");
    }

    #[test]
    fn attribute_scalars() {
        let n = AttributeValue::String("42.5");
        assert_eq!(n.number(), Some(Num::Double(42.5)));
        assert_eq!(AttributeValue::String("NaN").number(), None);
        assert_eq!(AttributeValue::Integer(3).text().as_deref(), Some("3"));
        assert_eq!(AttributeValue::String("true").boolean(), Some(true));
        assert_eq!(json!("5").number(), None, "a JSON string is not a number");
    }

    #[test]
    fn anything_but_passes_values_of_other_kinds() {
        let but = |b: AnythingBut| Matcher::AnythingBut(b);
        let strings = but(AnythingBut::Strings(vec!["x".into()]));
        assert!(strings.matches(&json!(null)));
        assert!(strings.matches(&json!(1)));
        assert!(!strings.matches(&json!("x")));
        let prefixes = but(AnythingBut::Prefixes(vec!["in".into(), "te".into()]));
        assert!(prefixes.matches(&json!(null)));
        assert!(prefixes.matches(&json!("run")));
        assert!(!prefixes.matches(&json!("test")));
        let numbers = but(AnythingBut::Numbers(vec![5.0]));
        assert!(!numbers.matches(&json!(5.0)));
        assert!(numbers.matches(&json!("5")));
        assert!(numbers.matches(&json!(null)));
    }
}
