//! The event-type catalog: which types each Broker carries, from which sources, how
//! many, and the shape of their data — kept as `EventType` objects.
//!
//! ```text
//!  router (per Broker, per batch): decode ──▶ BrokerTally::record  (a map lookup and counters)
//!  writer (every 10 s): take each Broker's window ──▶ one status write per changed `EventType`
//! ```
//!
//! Recording is on the routing path, so it stays cheap: a hash-map lookup by type and a
//! few counters per event; a source pattern is allocated only for a source no pattern
//! covers yet, and only [`SAMPLES_PER_WINDOW`] events per type per window have their
//! data parsed for the schema. Memory is bounded: at most
//! [`MAX_TYPES_PER_BROKER`] types per Broker per window, ten source patterns and ten
//! content types per type, a bounded schema; events of further types are only counted.
//!
//! Every dispatcher replica routes a share of each Broker's events, so each keeps its
//! own window and the [`writer`] adds it to what the `EventType` holds (re-reading on a
//! conflict): the counts of all replicas add up.

pub mod schema;
pub mod sources;
pub mod writer;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use herald_api::eventtype::{
    EventTypeStatus, MAX_SOURCE_PATTERNS, MAX_TYPES_PER_BROKER, SourcePattern,
};
use herald_cloudevents::CloudEvent;
use serde_json::Value;

/// Events per type per window whose data is parsed for the schema.
pub const SAMPLES_PER_WINDOW: u32 = 4;
/// Data longer than this is not parsed for the schema (the cost of a sample stays small).
const MAX_SAMPLED_DATA: usize = 256 * 1024;
/// Content types listed per event type.
const MAX_CONTENT_TYPES: usize = 10;
/// Overflowed type names kept for the report, as examples.
const OVERFLOW_EXAMPLES: usize = 5;

/// Every Broker's tally, by the Broker's stream name.
#[derive(Default)]
pub struct Catalog {
    tallies: Mutex<HashMap<String, Arc<Mutex<BrokerTally>>>>,
}

impl Catalog {
    /// The tally of the Broker stored in `stream` (created when first asked for).
    pub fn tally_for(&self, stream: &str) -> Arc<Mutex<BrokerTally>> {
        self.tallies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(stream.to_owned())
            .or_default()
            .clone()
    }

    /// Stops keeping the tally of `stream` (its router stopped).
    pub fn forget(&self, stream: &str) {
        self.tallies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(stream);
    }

    fn all(&self) -> Vec<(String, Arc<Mutex<BrokerTally>>)> {
        self.tallies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(stream, tally)| (stream.clone(), tally.clone()))
            .collect()
    }
}

/// What one Broker's router saw since the last write.
#[derive(Default)]
pub struct BrokerTally {
    types: HashMap<String, TypeWindow>,
    /// Types an `EventType` exists for (as of the last write, which sets it): always
    /// admitted, so a flood of new types cannot push known types out of the catalog.
    pub known: HashSet<String>,
    overflow: Overflow,
}

/// Events of types beyond the bound.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Overflow {
    /// Events not catalogued.
    pub events: u64,
    /// A few of their types, for the report.
    pub examples: Vec<String>,
}

impl Overflow {
    /// Counts `events` of `event_type` as not catalogued.
    pub fn note(&mut self, event_type: &str, events: u64) {
        self.events += events;
        if self.examples.len() < OVERFLOW_EXAMPLES && !self.examples.iter().any(|t| t == event_type)
        {
            self.examples.push(event_type.to_owned());
        }
    }
}

/// One event type's events in one window.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TypeWindow {
    pub count: u64,
    /// Routing time of the first and the latest.
    pub first_seen: Option<SystemTime>,
    /// See `first_seen`.
    pub last_seen: Option<SystemTime>,
    /// Their sources, as patterns.
    pub sources: Vec<SourcePattern>,
    /// Their `datacontenttype`s.
    pub content_types: Vec<String>,
    /// Schema inferred from the sampled data.
    pub schema: Option<Value>,
    /// Events sampled for the schema.
    pub samples: u32,
}

impl BrokerTally {
    /// Notes one routed event (at `now`, the batch's routing time).
    pub fn record(&mut self, event: &CloudEvent, now: SystemTime) {
        let event_type = event.type_();
        if let Some(window) = self.types.get_mut(event_type) {
            add_event(window, event, now);
        } else if self.types.len() < MAX_TYPES_PER_BROKER || self.known.contains(event_type) {
            add_event(
                self.types.entry(event_type.to_owned()).or_default(),
                event,
                now,
            );
        } else {
            self.overflow.note(event_type, 1);
        }
    }

    /// Whether there is anything to write.
    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.types.is_empty() && self.overflow.events == 0
    }

    /// Takes what was seen since the last call.
    pub fn take_window(&mut self) -> (HashMap<String, TypeWindow>, Overflow) {
        (
            std::mem::take(&mut self.types),
            std::mem::take(&mut self.overflow),
        )
    }
}

/// Counts `event` (routed at `now`) in its type's window.
fn add_event(window: &mut TypeWindow, event: &CloudEvent, now: SystemTime) {
    window.count += 1;
    window.first_seen = Some(window.first_seen.map_or(now, |first| first.min(now)));
    window.last_seen = Some(window.last_seen.map_or(now, |last| last.max(now)));
    let source = event.source();
    if !sources::count_if_known(&mut window.sources, source) {
        sources::add(&mut window.sources, source, 1);
    }
    let content_type = event.get("datacontenttype");
    if let Some(ct) = content_type {
        if window.content_types.len() < MAX_CONTENT_TYPES
            && !window.content_types.iter().any(|known| known == ct)
        {
            window.content_types.push(ct.to_owned());
        }
    }
    if window.samples < SAMPLES_PER_WINDOW {
        sample(window, event, content_type);
    }
}

/// Adds the schema of `event`'s data, if it is JSON, to `window`'s.
fn sample(window: &mut TypeWindow, event: &CloudEvent, content_type: Option<&str>) {
    let Some(data) = event.data.as_deref() else {
        return;
    };
    if data.len() > MAX_SAMPLED_DATA
        || content_type.is_some_and(|ct| !herald_cloudevents::json::is_json_media_type(ct))
    {
        return;
    }
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let inferred = schema::infer(&value);
    window.schema = Some(match window.schema.take() {
        Some(so_far) => schema::merge(&so_far, &inferred),
        None => inferred,
    });
    window.samples += 1;
}

/// RFC 3339 with seconds, as Kubernetes writes times.
fn rfc3339(time: SystemTime) -> Option<String> {
    let timestamp = k8s_openapi::jiff::Timestamp::try_from(time).ok()?;
    Some(
        timestamp
            .round(k8s_openapi::jiff::Unit::Second)
            .ok()?
            .to_string(),
    )
}

/// `old` (what the `EventType` holds; none for a new one) with `window` added: counts
/// summed, first and last seen widened, sources folded in, schemas merged.
#[must_use]
pub fn merged_status(old: Option<&EventTypeStatus>, window: &TypeWindow) -> EventTypeStatus {
    let mut status = old.cloned().unwrap_or_default();
    status.count = status
        .count
        .saturating_add(i64::try_from(window.count).unwrap_or(i64::MAX));
    let (first, last) = (
        window.first_seen.and_then(rfc3339),
        window.last_seen.and_then(rfc3339),
    );
    // RFC 3339 in UTC with a fixed precision orders as text.
    status.first_seen = match (status.first_seen.take(), first) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    status.last_seen = match (status.last_seen.take(), last) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    for p in &window.sources {
        sources::add(&mut status.sources, &p.pattern, p.count);
    }
    status.sources.truncate(MAX_SOURCE_PATTERNS);
    status.source = sources::summary(&status.sources);
    for ct in &window.content_types {
        if status.data_content_types.len() < MAX_CONTENT_TYPES
            && !status.data_content_types.contains(ct)
        {
            status.data_content_types.push(ct.clone());
        }
    }
    if let Some(seen) = &window.schema {
        status.schema = Some(match status.schema.take() {
            Some(stored) => schema::merge(&stored, seen),
            None => seen.clone(),
        });
        status.schema_samples = Some(
            status
                .schema_samples
                .unwrap_or(0)
                .saturating_add(i64::from(window.samples)),
        );
    }
    status
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use serde_json::json;

    fn event(type_: &str, source: &str, data: &str) -> CloudEvent {
        let mut e = CloudEvent::new("1", source, type_);
        e.set("datacontenttype", "application/json");
        e.data = Some(bytes::Bytes::from(data.to_owned()));
        e
    }

    #[test]
    fn a_window_counts_types_sources_and_samples_schemas() {
        let mut tally = BrokerTally::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for n in 0..10u64 {
            let data = if n % 2 == 0 {
                r#"{"id": 1, "coupon": "x"}"#
            } else {
                r#"{"id": 2}"#
            };
            tally.record(
                &event("order.created", "shop", data),
                t0 + Duration::from_secs(n),
            );
        }
        tally.record(&event("order.paid", "billing", "not json"), t0);
        let (types, overflow) = tally.take_window();
        assert!(tally.is_idle());
        assert_eq!(overflow, Overflow::default());
        let created = &types["order.created"];
        assert_eq!(created.count, 10);
        assert_eq!(
            created.samples, SAMPLES_PER_WINDOW,
            "only a sample is parsed"
        );
        assert_eq!(
            created.schema,
            Some(json!({"type": "object", "required": ["id"], "properties": {
                "id": {"type": "integer"}, "coupon": {"type": "string"}}}))
        );
        assert_eq!(created.last_seen, Some(t0 + Duration::from_secs(9)));
        assert_eq!(types["order.paid"].schema, None);

        let status = merged_status(None, created);
        assert_eq!(status.count, 10);
        assert_eq!(status.first_seen.as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(status.last_seen.as_deref(), Some("2023-11-14T22:13:29Z"));
        assert_eq!(status.source.as_deref(), Some("shop"));
        assert_eq!(status.data_content_types, ["application/json"]);
        assert_eq!(status.schema_samples, Some(4));
    }

    #[test]
    fn windows_of_two_replicas_add_up() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (mut a, mut b) = (BrokerTally::default(), BrokerTally::default());
        for n in 0..7 {
            a.record(
                &event("t", "/a", r#"{"x": 1}"#),
                t0 + Duration::from_secs(n),
            );
        }
        for n in 0..5 {
            b.record(
                &event("t", "/b", r#"{"x": "s"}"#),
                t0 - Duration::from_secs(n),
            );
        }
        let after_a = merged_status(None, &a.take_window().0["t"]);
        let both = merged_status(Some(&after_a), &b.take_window().0["t"]);
        assert_eq!(both.count, 12);
        assert_eq!(both.first_seen.as_deref(), Some("2023-11-14T22:13:16Z"));
        assert_eq!(both.last_seen.as_deref(), Some("2023-11-14T22:13:26Z"));
        assert_eq!(both.source.as_deref(), Some("/*"));
        assert_eq!(both.sources.iter().map(|p| p.count).sum::<i64>(), 12);
        assert_eq!(
            both.schema,
            Some(json!({"type": "object", "required": ["x"], "properties": {
                "x": {"type": ["integer", "string"]}}}))
        );
        assert_eq!(both.schema_samples, Some(8));
    }

    #[test]
    fn types_beyond_the_bound_are_counted_not_kept_and_known_types_stay_admitted() {
        let now = SystemTime::now();
        let mut tally = BrokerTally::default();
        for n in 0..1000 {
            tally.record(&event(&format!("flood.{n}"), "x", "{}"), now);
        }
        let (types, overflow) = tally.take_window();
        tally.known = HashSet::from(["known".to_owned()]);
        assert_eq!(types.len(), MAX_TYPES_PER_BROKER);
        assert_eq!(overflow.events, 900);
        assert_eq!(overflow.examples.len(), OVERFLOW_EXAMPLES);
        for n in 0..1000 {
            tally.record(&event(&format!("flood2.{n}"), "x", "{}"), now);
        }
        tally.record(&event("known", "x", "{}"), now);
        let (types, overflow) = tally.take_window();
        assert!(
            types.contains_key("known"),
            "a known type is admitted past the bound"
        );
        assert_eq!(types.len(), MAX_TYPES_PER_BROKER + 1);
        assert_eq!(overflow.events, 900);
    }
}
