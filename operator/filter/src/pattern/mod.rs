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
//! Matchers: exact values (string, number, boolean, `null`), `prefix`, `suffix` (both
//! with an optional `equals-ignore-case`), `equals-ignore-case`, `wildcard`,
//! `anything-but` (value, list, `prefix`, `suffix`, `equals-ignore-case`, `wildcard`),
//! `numeric` ranges, `cidr` (IPv4 and IPv6) and `exists`. See `docs/filters.md`.

mod cidr;
mod compile;
mod guard;
mod matcher;

use std::fmt;

use serde_json::Value;

use crate::event::Event;
pub(crate) use matcher::Range;

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

/// A compiled content pattern.
#[derive(Clone, Debug, PartialEq)]
pub struct Pattern {
    root: matcher::TopPattern,
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
            root: compile::top(pattern, path)?,
        })
    }

    /// Whether `event` matches.
    #[must_use]
    pub fn matches(&self, event: &Event<'_>) -> bool {
        self.root.matches(event)
    }

    /// Whether the pattern looks at `data` (so the caller must parse the payload).
    #[must_use]
    pub fn needs_data(&self) -> bool {
        self.root.needs_data()
    }

    /// A necessary condition for [`Pattern::matches`], for indexing.
    pub(crate) fn guard(&self) -> Option<crate::guard::Guard> {
        guard::top(&self.root)
    }

    /// `Some(t)` when the pattern is exactly `{"type": ["t"]}`.
    pub(crate) fn type_equality(&self) -> Option<&str> {
        match (
            self.root.attributes.as_slice(),
            &self.root.data,
            self.root.any_of.is_empty(),
        ) {
            ([(crate::event::Name::Type, leaf)], None, true) => leaf.single_string(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
