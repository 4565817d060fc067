//! Why a Trigger's filters do not compile.

use thiserror::Error;

use crate::cesql::{ParseError, Type};

/// The dialects of one entry of `filters`.
pub(crate) const DIALECTS: &str = "exact, prefix, suffix, all, any, not, cesql, pattern";

/// A filter that does not compile: where (`filters[1].any[0].cesql`) and why.
///
/// The `Display` form, `PATH: REASON`, is meant for a Trigger's `FilterValid` condition.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{path}: {reason}")]
pub struct FilterError {
    /// Where, starting at `filter.attributes` or `filters[i]`.
    pub path: String,
    /// What is wrong there.
    pub reason: FilterErrorReason,
}

impl FilterError {
    pub(crate) fn new(path: impl Into<String>, reason: FilterErrorReason) -> Self {
        FilterError {
            path: path.into(),
            reason,
        }
    }
}

/// What is wrong with a filter.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum FilterErrorReason {
    /// A filter object without any dialect key.
    #[error("a filter needs one dialect ({DIALECTS}), found none")]
    NoDialect,
    /// A filter object with several dialect keys.
    #[error("a filter has exactly one dialect, found {}", .0.join(", "))]
    SeveralDialects(Vec<String>),
    /// A key that is not a dialect.
    #[error("unknown dialect `{0}` (expected one of {DIALECTS})")]
    UnknownDialect(String),
    /// A value of the wrong JSON type.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// What was expected.
        expected: &'static str,
        /// What was there.
        found: &'static str,
    },
    /// A name that is not a CloudEvents attribute name.
    #[error("`{0}` is not a CloudEvents attribute name (lower-case letters a-z and digits)")]
    AttributeName(String),
    /// `exact`, `prefix` or `suffix` without any attribute.
    #[error("`{0}` needs at least one attribute")]
    EmptyDialect(&'static str),
    /// An empty value where Knative requires one (`exact`, `prefix`, `suffix`).
    #[error("the value must not be empty")]
    EmptyValue,
    /// `any: []`, which could never match.
    #[error("`any` needs at least one filter")]
    EmptyAny,
    /// Filters or patterns nested deeper than [`crate::filter::MAX_FILTER_DEPTH`].
    #[error("the filter nests deeper than {0} levels")]
    TooDeep(usize),
    /// The CESQL expression does not parse.
    #[error("CESQL expression does not parse {0}")]
    CesqlParse(ParseError),
    /// The CESQL expression calls functions that do not exist.
    #[error("CESQL expression calls unknown function(s) {}", .0.join(", "))]
    CesqlMissingFunction(Vec<String>),
    /// The CESQL expression can never be a Boolean.
    #[error("CESQL expression evaluates to {0}; a filter needs a Boolean")]
    CesqlNotBoolean(Type),
    /// The content pattern is invalid (the path points into it).
    #[error("{0}")]
    Pattern(String),
}

/// How a JSON value is called in messages ("a list", "an object", ...): shared by
/// every error message about user-written JSON (filters, transforms, the CLI).
#[must_use]
pub fn json_kind(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
