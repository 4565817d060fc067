//! EventBridge-style content patterns over a CloudEvent's attributes and JSON `data`.
//!
//! A pattern is a JSON object shaped like the event it selects. Top-level keys are
//! context attributes (`type`, `source`, `subject`, extensions, ...) and `data` for the
//! payload; under `data` the pattern nests like the payload does. Every field listed
//! must match (AND); the values in one field's list are alternatives (OR); `$or` lists
//! alternative patterns at any level.
//!
//! ```json
//! {
//!   "type": ["com.example.order.created"],
//!   "source": [{"prefix": "/shop/"}],
//!   "data": {
//!     "amount": [{"numeric": [">", 100]}],
//!     "customer": {"tier": ["gold", "platinum"]},
//!     "$or": [{"country": ["DE"]}, {"express": [true]}]
//!   }
//! }
//! ```
//!
//! The semantics are EventBridge's (see `docs/filters.md`): matchers are exact values
//! (string, number, boolean, `null`; a string that is an IP address equals any spelling
//! of it), `prefix`, `suffix` (both with an optional `equals-ignore-case`),
//! `equals-ignore-case`, `wildcard`, `anything-but` (value, list, `prefix`, `suffix`,
//! `equals-ignore-case`, `wildcard`, each with one value or a list), `numeric` ranges,
//! `cidr` (IPv4 and IPv6) and `exists`. Keys written with dots are paths
//! (`"state.status"` is `state` → `status`) in patterns and events alike; values of an
//! array are tested one by one, and fields of one rule must agree on the element of an
//! array of objects they come from.

mod cidr;
mod compile;
mod complexity;
mod fold;
mod guard;
mod matcher;
mod number;
mod operators;
mod path;
mod walk;

use std::fmt;

use serde_json::Value;

use crate::event::Event;
pub(crate) use matcher::Range;
pub(crate) use path::joined_keys;

/// An invalid pattern: where (a path such as `data.amount[0].numeric`) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternError {
    /// Where in the pattern, as `key.key[index].operator`.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for PatternError {}

/// A compiled content pattern: its `$or`s expanded into alternatives.
#[derive(Clone, Debug, PartialEq)]
pub struct Pattern {
    alternatives: Vec<walk::Alternative>,
}

impl Pattern {
    /// Compiles a pattern; error paths start at the pattern's root.
    pub fn compile(pattern: &Value) -> Result<Self, PatternError> {
        Self::compile_at(pattern, "")
    }

    /// Compiles a pattern that sits at `path` in a larger document; error paths start
    /// there (`filters[1].pattern.data.x[0]`).
    pub fn compile_at(pattern: &Value, path: &str) -> Result<Self, PatternError> {
        Ok(Pattern {
            alternatives: compile::pattern(pattern, path)?,
        })
    }

    /// Whether `event` matches.
    #[must_use]
    pub fn matches(&self, event: &Event<'_>) -> bool {
        self.alternatives.iter().any(|alt| alt.matches(event))
    }

    /// Whether the pattern looks at `data` (so the caller must parse the payload).
    #[must_use]
    pub fn needs_data(&self) -> bool {
        self.alternatives.iter().any(|alt| !alt.data.is_empty())
    }

    /// A necessary condition for [`Pattern::matches`], for indexing.
    pub(crate) fn guard(&self) -> Option<crate::guard::Guard> {
        guard::pattern(&self.alternatives)
    }

    /// `Some(t)` when the pattern is exactly `{"type": ["t"]}`.
    pub(crate) fn type_equality(&self) -> Option<&str> {
        match self.alternatives.as_slice() {
            [alt] if alt.data.is_empty() => match alt.attributes.as_slice() {
                [(crate::event::Name::Type, leaf)] => leaf.single_string(),
                _ => None,
            },
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_structure;
