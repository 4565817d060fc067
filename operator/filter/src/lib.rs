//! Herald's event filter engine: decides which Triggers of a Broker an event goes to.
//!
//! This crate is pure (no IO, no async, no Kubernetes or NATS types). It owns:
//!
//! * the **event view** [`Event`]: a borrowed CloudEvent (context attributes,
//!   extensions, optional parsed JSON `data`) that the ingress or dispatcher fills from
//!   the message it already holds;
//! * the three **filter families** a Trigger can use, with their compile-time checks:
//!   Knative's `filter.attributes` (exact match), the `filters` list of Knative's
//!   subscriptions API (`exact`, `prefix`, `suffix`, `all`, `any`, `not`, `cesql`) and
//!   Herald's `pattern` dialect (EventBridge-style content patterns, [`pattern`]);
//! * a complete **CESQL v1** implementation ([`cesql`]), checked against the whole
//!   CloudEvents TCK in `tests/cesql-tck`;
//! * [`CompiledFilter`]: one Trigger's filters compiled once into one matcher, and
//!   [`MatcherSet`]: all Triggers of a Broker, indexed on the exact event `type`.
//!
//! Data flow:
//!
//! ```text
//!  controller (Trigger reconcile)                 dispatcher (per event)
//!  ─────────────────────────────                  ──────────────────────
//!  TriggerSpec.filter / .filters                  NATS message (headers or JSON body)
//!        │  CompiledFilter::from_parts / compile        │  Event::new(..).with_*(..) or
//!        ▼                                              ▼  Event::from_json(&body)
//!  Ok(CompiledFilter) ──┐   Err(FilterError)      Event<'_> (borrowed, no copies)
//!        │              │   "filters[1].cesql: …"       │
//!        │ exact_type() └─▶ FilterValid=False           │ parse `data` only if
//!        │   Some(t): push down to a                    │ MatcherSet::needs_data()
//!        │   JetStream subject filter                   ▼
//!        ▼                                        MatcherSet::matching(&event)
//!  MatcherSet::insert(trigger_key, filter) ─────▶   ├─ filters indexed under event.type
//!  MatcherSet::remove(&trigger_key)                 └─ filters without an exact type
//!                                                        → keys of matching Triggers
//! ```
//!
//! Evaluation never panics and never fails: a CESQL evaluation error or a missing
//! attribute is a non-match. Everything a user can get wrong is reported when the
//! filter is compiled, with the path of the offending value (see [`FilterError`]).
//!
//! ```
//! use herald_filter::{CompiledFilter, Event, FilterSpec, MatcherSet};
//!
//! let spec: FilterSpec = serde_json::from_value(serde_json::json!({
//!     "filters": [
//!         {"exact": {"type": "com.example.order.created"}},
//!         {"pattern": {"data": {"amount": [{"numeric": [">", 100]}]}}}
//!     ]
//! })).unwrap();
//! let filter = CompiledFilter::compile(&spec).unwrap();
//!
//! let mut set = MatcherSet::new();
//! set.insert("default/big-orders", filter);
//!
//! let data = serde_json::json!({"amount": 250});
//! let event = Event::new("1", "/shop", "1.0", "com.example.order.created").with_data(&data);
//! assert_eq!(set.matching_keys(&event), vec!["default/big-orders"]);
//! ```

pub mod cesql;
mod dialect;
mod error;
pub mod event;
mod filter;
mod glob;
mod guard;
mod index;
pub mod pattern;
mod set;

pub use error::{FilterError, FilterErrorReason, json_kind};
pub use event::{AttributeValue, Event, EventError};
pub use filter::{AttributesFilter, CompiledFilter, FilterSpec};
pub use set::MatcherSet;
