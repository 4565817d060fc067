//! `EventType`: one event type a Broker carries, as the dispatchers observed it — how
//! many, since when, from which sources, and the shape of its `data` (a JSON Schema
//! inferred from what was seen, like EventBridge schema discovery).
//!
//! Herald writes these; users read them (`kubectl get eventtypes`, `herald types`).
//! There is one per (Broker, type): a type's sources are listed inside it as at most
//! [`MAX_SOURCE_PATTERNS`] patterns, so an event type sent from thousands of sources
//! (a source per tenant or per device is common in CloudEvents) is still one object.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Event types catalogued per Broker, at most; events of further types are counted
/// (metric `herald_dispatcher_eventtypes_overflow_total` and a Warning Event on the
/// Broker), not catalogued.
pub const MAX_TYPES_PER_BROKER: usize = 100;
/// Source patterns listed per event type, at most; beyond, sources are folded into
/// patterns (`prefix*`).
pub const MAX_SOURCE_PATTERNS: usize = 10;
/// Label on every `EventType` naming its Broker, so one Broker's types list cheaply.
pub const BROKER_LABEL: &str = "eventing.herald.dev/broker";

/// One event type a Broker carries, recorded by Herald's dispatchers: counts,
/// first and last seen, sources and an inferred JSON Schema of its data.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "eventing.herald.dev",
    version = "v1alpha1",
    kind = "EventType",
    namespaced,
    status = "EventTypeStatus",
    shortname = "et",
    category = "herald",
    doc = "An event type a Broker carries, recorded by Herald's dispatchers: how many events, first and last seen, from which sources, and a JSON Schema inferred from their data.",
    printcolumn(name = "Broker", type_ = "string", json_path = ".spec.broker"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Source", type_ = "string", json_path = ".status.source"),
    printcolumn(name = "Count", type_ = "integer", json_path = ".status.count"),
    printcolumn(name = "Last seen", type_ = "date", json_path = ".status.lastSeen"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeSpec {
    /// Name of the Broker (in the same namespace) that carries this type.
    #[schemars(length(min = 1, max = 253))]
    pub broker: String,
    /// The CloudEvents `type` attribute, exactly as sent.
    #[serde(rename = "type")]
    #[schemars(length(min = 1))]
    pub type_: String,
}

/// What the dispatchers observed of one event type.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeStatus {
    /// Events of this type routed since it was first seen (summed over dispatchers).
    #[serde(default)]
    pub count: i64,
    /// When the first event of this type was routed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<String>,
    /// When the latest event of this type was routed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    /// One pattern covering every source seen: the source itself when there is one,
    /// else their common prefix followed by `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The sources seen, as at most ten patterns: a source exactly, or `prefix*` for
    /// every source that starts with `prefix`; with counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourcePattern>,
    /// The `datacontenttype`s seen (at most ten).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_content_types: Vec<String>,
    /// A JSON Schema (draft 2020-12 subset) inferred from the JSON `data` of a sample
    /// of the events: the types of each field, `required` for fields every sampled
    /// event had; bounded in depth and properties. Absent when no JSON data was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::opaque_object")]
    pub schema: Option<serde_json::Value>,
    /// Events whose `data` the schema was inferred from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_samples: Option<i64>,
}

/// Sources of an event type matching one pattern.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SourcePattern {
    /// A source exactly, or a prefix followed by `*` (every source that starts with it).
    pub pattern: String,
    /// Events from sources matching the pattern.
    #[serde(default)]
    pub count: i64,
}

impl SourcePattern {
    /// Whether `source` matches this pattern.
    #[must_use]
    pub fn matches(&self, source: &str) -> bool {
        pattern_matches(&self.pattern, source)
    }
}

/// Whether `source` matches `pattern` (a source exactly, or `prefix*`).
#[must_use]
pub fn pattern_matches(pattern: &str, source: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => source.starts_with(prefix),
        None => pattern == source,
    }
}

/// Longest name the apiserver accepts for an object (a DNS subdomain).
const MAX_NAME: usize = 253;

/// The name of the `EventType` for `event_type` on Broker `broker`: `<broker>.<type>`
/// when that is already a valid object name (`orders.com.example.order.created`),
/// else a readable form of it (lowercase, other characters as `-`) with a hash of
/// the exact pair, so two types that differ only in case or punctuation never share
/// an object. Deterministic: every dispatcher picks the same name.
#[must_use]
pub fn object_name(broker: &str, event_type: &str) -> String {
    let full = format!("{broker}.{event_type}");
    if is_dns_subdomain(&full) {
        return full;
    }
    let readable: String = full
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '.' | '-') => c,
            _ => '-',
        })
        .collect();
    let hash = crate::naming::short_hash(&format!("{broker}\n{event_type}"));
    let keep = MAX_NAME - hash.len() - 1;
    let head: String = readable.chars().take(keep).collect();
    let head = head.trim_end_matches(['-', '.']);
    // Each dot-separated part must start and end alphanumeric.
    let parts: Vec<&str> = head
        .split('.')
        .map(|p| p.trim_matches('-'))
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        return format!("et-{hash}");
    }
    format!("{}-{hash}", parts.join("."))
}

/// Whether `name` is a valid DNS subdomain (RFC 1123), as object names must be.
#[must_use]
pub fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
                && bytes[0] != b'-'
                && bytes[bytes.len() - 1] != b'-'
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_types_keep_their_name() {
        assert_eq!(
            object_name("default", "com.example.order.created"),
            "default.com.example.order.created"
        );
    }

    #[test]
    fn other_types_get_a_valid_name_with_a_hash() {
        let names = [
            object_name("default", "com.Example.Order"),
            object_name("default", "com.example.order"),
            object_name("default", "Com.example.order"),
            object_name("default", "order created!"),
            object_name("default", "-.-"),
            object_name("default", "ü"),
            object_name("default", &"x".repeat(400)),
            object_name("default", &format!("{}Y", "x".repeat(400))),
            object_name("default", "a..b"),
            object_name("default", "a/b"),
        ];
        for name in &names {
            assert!(is_dns_subdomain(name), "{name}");
        }
        let distinct: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(distinct.len(), names.len(), "{names:?}");
        assert!(
            names[0].starts_with("default.com.example.order-"),
            "{}",
            names[0]
        );
    }

    #[test]
    fn patterns_match_sources() {
        assert!(pattern_matches("shop", "shop"));
        assert!(!pattern_matches("shop", "shop/1"));
        assert!(pattern_matches("shop/*", "shop/1"));
        assert!(pattern_matches("*", "anything"));
        assert!(!pattern_matches("shop/*", "shoe"));
    }
}
