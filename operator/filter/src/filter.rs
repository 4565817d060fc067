//! [`CompiledFilter`]: one Trigger's `filter.attributes` and `filters` as one matcher.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cesql::{Comparison, Expression};
use crate::dialect;
use crate::error::{FilterError, FilterErrorReason};
use crate::event::{Event, Name};
use crate::guard::{self, Atom, Guard, Test};
use crate::pattern::Pattern;

/// Knative's `filter` of a Trigger.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct AttributesFilter {
    /// Attribute name → exact value; the value `""` only requires the attribute.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// The filtering part of a Trigger spec, as the user writes it.
///
/// Deserializing a whole Trigger `spec` into this type picks out `filter` and
/// `filters` and ignores the other fields.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct FilterSpec {
    /// Knative's attribute filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<AttributesFilter>,
    /// Filters that must all match; each has exactly one dialect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Value>,
}

/// A compiled filter expression.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    /// The attribute's string form equals `value`.
    Equals {
        name: Name,
        value: String,
    },
    /// The attribute is present.
    Present {
        name: Name,
    },
    Prefix {
        name: Name,
        value: String,
    },
    Suffix {
        name: Name,
        value: String,
    },
    /// The attribute cast to Integer as CESQL casts compares so with `value`.
    Compare {
        name: Name,
        op: Comparison,
        value: i32,
    },
    All(Vec<Node>),
    Any(Vec<Node>),
    Not(Box<Node>),
    Cesql(Box<Expression>),
    Pattern(Box<Pattern>),
}

impl Node {
    pub(crate) fn matches(&self, event: &Event<'_>) -> bool {
        match self {
            Node::Equals { name, value } => {
                event.get(name).is_some_and(|v| v.with_str(|s| s == value))
            }
            Node::Present { name } => event.get(name).is_some(),
            Node::Prefix { name, value } => event
                .get(name)
                .is_some_and(|v| v.with_str(|s| s.starts_with(value.as_str()))),
            Node::Suffix { name, value } => event
                .get(name)
                .is_some_and(|v| v.with_str(|s| s.ends_with(value.as_str()))),
            Node::Compare { name, op, value } => op.holds(event.get(name), *value),
            Node::All(nodes) => nodes.iter().all(|n| n.matches(event)),
            Node::Any(nodes) => nodes.iter().any(|n| n.matches(event)),
            Node::Not(node) => !node.matches(event),
            Node::Cesql(expr) => expr.matches(event),
            Node::Pattern(pattern) => pattern.matches(event),
        }
    }

    fn needs_data(&self) -> bool {
        match self {
            Node::All(nodes) | Node::Any(nodes) => nodes.iter().any(Node::needs_data),
            Node::Not(node) => node.needs_data(),
            Node::Pattern(pattern) => pattern.needs_data(),
            _ => false,
        }
    }

    /// `Some(t)` when the node is exactly "`type` equals `t`".
    fn type_equality(&self) -> Option<&str> {
        match self {
            Node::Equals {
                name: Name::Type,
                value,
            } => Some(value),
            Node::Pattern(pattern) => pattern.type_equality(),
            _ => None,
        }
    }

    /// A necessary condition for [`Node::matches`], for indexing.
    fn guard(&self) -> Option<Guard> {
        let atom =
            |name: &Name, test, value: &str| Some(Guard::one(Atom::attribute(name, test, value)));
        match self {
            Node::Equals { name, value } => atom(name, Test::Equals, value),
            Node::Prefix { name, value } => atom(name, Test::Prefix, value),
            Node::Suffix { name, value } => atom(name, Test::Suffix, value),
            Node::Present { .. } | Node::Compare { .. } | Node::Not(_) => None,
            Node::All(nodes) => guard::all_of(nodes.iter().map(Node::guard)),
            Node::Any(nodes) => guard::any_of(nodes.iter().map(Node::guard)),
            Node::Cesql(expr) => expr.guard(),
            Node::Pattern(pattern) => pattern.guard(),
        }
    }

    /// A rough evaluation cost, to test cheap conjuncts first.
    fn cost(&self) -> u8 {
        match self {
            Node::Equals { .. } | Node::Present { .. } => 0,
            Node::Prefix { .. } | Node::Suffix { .. } | Node::Compare { .. } => 1,
            Node::All(_) | Node::Any(_) | Node::Not(_) => 2,
            Node::Pattern(_) => 3,
            Node::Cesql(_) => 4,
        }
    }

    /// `All` of the nodes, without a needless wrapper.
    pub(crate) fn all(mut nodes: Vec<Node>) -> Node {
        if nodes.len() == 1 {
            nodes.pop().unwrap_or(Node::All(Vec::new()))
        } else {
            Node::All(nodes)
        }
    }

    /// `Any` of the nodes, without a needless wrapper.
    pub(crate) fn any(mut nodes: Vec<Node>) -> Node {
        if nodes.len() == 1 {
            nodes.pop().unwrap_or(Node::Any(Vec::new()))
        } else {
            Node::Any(nodes)
        }
    }

    /// `Not`, cancelling a double negation.
    pub(crate) fn not(node: Node) -> Node {
        match node {
            Node::Not(inner) => *inner,
            other => Node::Not(Box::new(other)),
        }
    }
}

/// One Trigger's filters, compiled once and evaluated for every event.
///
/// Built from `filter.attributes` and the `filters` list: an event matches when every
/// attribute filter and every entry of `filters` matches. A Trigger without filters
/// matches every event.
#[derive(Clone, Debug)]
pub struct CompiledFilter {
    /// All must match; cheapest first.
    conjuncts: Vec<Node>,
    /// A conjunct requires `type` to equal this.
    indexed_type: Option<String>,
    /// The whole filter is "`type` equals this".
    exact_type: Option<String>,
    needs_data: bool,
    /// At least one atom holds for every matching event.
    guard: Option<Guard>,
    /// The filter is exactly its guard's single atom.
    guard_decides: bool,
}

impl Default for CompiledFilter {
    fn default() -> Self {
        CompiledFilter::match_all()
    }
}

/// How deep a filter document (nested `all`/`any`/`not`, nested pattern objects) may
/// be. Compiling and matching recurse over the document, so the depth is checked
/// first, without recursion, whatever the input.
pub const MAX_FILTER_DEPTH: usize = 64;

/// The nesting depth of a JSON document, computed without recursion.
fn json_depth(root: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(root, 1usize)];
    while let Some((value, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        match value {
            Value::Array(items) => stack.extend(items.iter().map(|v| (v, depth + 1))),
            Value::Object(map) => stack.extend(map.values().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    deepest
}

impl CompiledFilter {
    /// The filter of a Trigger without filters: every event matches.
    #[must_use]
    pub fn match_all() -> Self {
        CompiledFilter::from_conjuncts(Vec::new())
    }

    /// Compiles a [`FilterSpec`].
    pub fn compile(spec: &FilterSpec) -> Result<Self, FilterError> {
        let attributes = spec
            .filter
            .iter()
            .flat_map(|f| f.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        CompiledFilter::from_parts(attributes, &spec.filters)
    }

    /// Compiles `filter.attributes` (name → value pairs) and the `filters` list (one
    /// JSON object per entry, as written in the Trigger).
    pub fn from_parts<'s>(
        attributes: impl IntoIterator<Item = (&'s str, &'s str)>,
        filters: &[Value],
    ) -> Result<Self, FilterError> {
        let mut conjuncts = Vec::new();
        for (name, value) in attributes {
            conjuncts.push(dialect::attribute(name, value)?);
        }
        for (i, filter) in filters.iter().enumerate() {
            if json_depth(filter) > MAX_FILTER_DEPTH {
                return Err(FilterError::new(
                    format!("filters[{i}]"),
                    FilterErrorReason::TooDeep(MAX_FILTER_DEPTH),
                ));
            }
            match dialect::filter(filter, &format!("filters[{i}]"))? {
                Node::All(nodes) => conjuncts.extend(nodes),
                node => conjuncts.push(node),
            }
        }
        Ok(CompiledFilter::from_conjuncts(conjuncts))
    }

    /// Compiles a single filter object (`{"cesql": "..."}`), e.g. to validate one entry.
    pub fn from_filter(filter: &Value) -> Result<Self, FilterError> {
        CompiledFilter::from_parts([], std::slice::from_ref(filter))
    }

    fn from_conjuncts(mut conjuncts: Vec<Node>) -> Self {
        // `all` nested at the top is the same conjunction.
        while let Some(i) = conjuncts.iter().position(|n| matches!(n, Node::All(_))) {
            if let Node::All(nodes) = conjuncts.swap_remove(i) {
                conjuncts.extend(nodes);
            }
        }
        conjuncts.sort_by_key(Node::cost);
        let indexed_type = conjuncts
            .iter()
            .find_map(Node::type_equality)
            .map(str::to_owned);
        let exact_type = indexed_type.clone().filter(|t| {
            conjuncts
                .iter()
                .all(|n| n.type_equality() == Some(t.as_str()))
        });
        let needs_data = conjuncts.iter().any(Node::needs_data);
        let guard = guard::all_of(conjuncts.iter().map(Node::guard));
        let guard_decides = matches!(
            conjuncts.as_slice(),
            [Node::Equals { .. } | Node::Prefix { .. } | Node::Suffix { .. }]
        );
        CompiledFilter {
            conjuncts,
            indexed_type,
            exact_type,
            needs_data,
            guard,
            guard_decides,
        }
    }

    /// Whether `event` passes the filter.
    #[must_use]
    pub fn matches(&self, event: &Event<'_>) -> bool {
        self.conjuncts.iter().all(|n| n.matches(event))
    }

    /// `Some(t)` when the whole filter is equivalent to "`type` equals `t`", so delivery
    /// can select the events with a JetStream subject filter instead of evaluating.
    #[must_use]
    pub fn exact_type(&self) -> Option<&str> {
        self.exact_type.as_deref()
    }

    /// `Some(t)` when a matching event's `type` must equal `t` (other conditions may
    /// follow); [`crate::MatcherSet`] indexes on it.
    #[must_use]
    pub fn indexed_type(&self) -> Option<&str> {
        self.indexed_type.as_deref()
    }

    /// Whether matching looks at `data`; when no filter does, the dispatcher need not
    /// parse payloads.
    #[must_use]
    pub fn needs_data(&self) -> bool {
        self.needs_data
    }

    /// The filter's guard, which [`crate::MatcherSet`] indexes on.
    pub(crate) fn guard(&self) -> Option<&Guard> {
        self.guard.as_ref()
    }

    /// Whether an event for which the guard's (single) atom holds matches.
    pub(crate) fn guard_decides(&self) -> bool {
        self.guard_decides
    }

    /// Whether every event matches (no filter at all).
    #[must_use]
    pub fn is_match_all(&self) -> bool {
        self.conjuncts.is_empty()
    }
}
