//! Writes the catalog: every [`WRITE_EVERY`], each Broker with events since the last
//! round gets one LIST of its `EventTypes` and one status write per type it saw.
//!
//! A write adds this dispatcher's window to what the object holds and sends it with
//! the object's `resourceVersion`; on a conflict (another replica wrote first) it
//! re-reads and adds again, so no replica's counts are lost or counted twice. A type
//! without an `EventType` gets one — owned by its Broker, so it goes with it — while the
//! Broker has fewer than [`MAX_TYPES_PER_BROKER`]; past that its events are
//! counted in `herald_dispatcher_eventtypes_overflow_total` and reported in a Warning
//! Event on the Broker (at most one per Broker per round). Replicas creating new types
//! in the same round may together pass the bound by what each created in it; no
//! later round creates more while the Broker is at the bound.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use herald_api::eventtype::{self, BROKER_LABEL, EventType, EventTypeSpec, MAX_TYPES_PER_BROKER};
use herald_api::{Broker, naming};
use herald_runtime::scope::Stores;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::runtime::events::{Event, EventType as EventKind, Recorder};
use kube::{Api, Resource, ResourceExt};
use prometheus::IntCounterVec;

use super::{BrokerTally, Catalog, Overflow, TypeWindow, merged_status};

/// How often each dispatcher writes what it saw.
pub const WRITE_EVERY: Duration = Duration::from_secs(10);
/// Field manager of the writes.
pub const FIELD_MANAGER: &str = "herald-catalog";
/// Attempts of one status write that keeps meeting newer versions.
const CONFLICT_ATTEMPTS: u32 = 5;
/// Longest one round may take (a quiet apiserver must not stop later rounds).
const ROUND_DEADLINE: Duration = Duration::from_secs(30);

/// Why an `EventType` could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The apiserver refused or did not answer.
    #[error("EventType {name}: {source}")]
    Kube {
        name: String,
        /// What the apiserver said.
        #[source]
        source: kube::Error,
    },
    /// Other replicas kept writing in between.
    #[error("EventType {0}: still conflicting after {CONFLICT_ATTEMPTS} attempts")]
    Contended(String),
}

/// What the writer needs.
pub struct Writer {
    /// Where the routers record.
    pub catalog: Arc<Catalog>,
    pub client: kube::Client,
    /// The Brokers (for their UID and to tell a Broker's stream).
    pub brokers: Stores<Broker>,
    /// Publishes the overflow reports.
    pub recorder: Recorder,
    /// `herald_dispatcher_eventtypes_overflow_total{namespace, broker}`.
    pub overflow: IntCounterVec,
}

impl Writer {
    /// Writes every [`WRITE_EVERY`] until the task is dropped.
    pub async fn run(self) {
        let mut every = tokio::time::interval(WRITE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if tokio::time::timeout(ROUND_DEADLINE, self.round())
                .await
                .is_err()
            {
                tracing::warn!(
                    "writing the event-type catalog took longer than {ROUND_DEADLINE:?}; abandoned"
                );
            }
        }
    }

    async fn round(&self) {
        let brokers: HashMap<String, Arc<Broker>> = self
            .brokers
            .state()
            .into_iter()
            .filter_map(|b| Some((naming::stream_name(&b.namespace()?, &b.name_any()), b)))
            .collect();
        for (stream, tally) in self.catalog.all() {
            if lock(&tally).is_idle() {
                continue;
            }
            let Some(broker) = brokers.get(&stream) else {
                // The Broker is gone: what it carried goes with it.
                let _ = lock(&tally).take_window();
                continue;
            };
            self.write_broker(broker, &tally).await;
        }
    }

    async fn write_broker(&self, broker: &Broker, tally: &Mutex<BrokerTally>) {
        let (namespace, name) = (broker.namespace().unwrap_or_default(), broker.name_any());
        let api: Api<EventType> = Api::namespaced(self.client.clone(), &namespace);
        let selector = format!("{BROKER_LABEL}={}", naming::label_value(&name));
        let existing: HashMap<String, EventType> = match api
            .list(&ListParams::default().labels(&selector))
            .await
        {
            Ok(list) => list
                .items
                .into_iter()
                .filter(|t| t.spec.broker == name)
                .map(|t| (t.spec.type_.clone(), t))
                .collect(),
            Err(e) => {
                // Kept for the next round: nothing is lost while the apiserver is away.
                tracing::debug!(broker = %format!("{namespace}/{name}"), error = %e, "cannot list EventTypes");
                return;
            }
        };
        let (window, mut overflow) = lock(tally).take_window();
        let mut room = MAX_TYPES_PER_BROKER.saturating_sub(existing.len());
        let mut catalogued: HashSet<String> = existing.keys().cloned().collect();
        for (event_type, seen) in window {
            let result = match existing.get(&event_type) {
                Some(current) => add_window(&api, current.clone(), &seen).await,
                None if room > 0 => {
                    room -= 1;
                    catalogued.insert(event_type.clone());
                    self.create(&api, broker, &event_type, &seen).await
                }
                None => {
                    overflow.note(&event_type, seen.count);
                    continue;
                }
            };
            if let Err(e) = result {
                tracing::debug!(broker = %format!("{namespace}/{name}"), error = %e, "cannot write an EventType");
            }
        }
        // What has an EventType now is counted in the next windows whatever else arrives.
        lock(tally).known = catalogued;
        if overflow.events > 0 {
            self.overflow
                .with_label_values(&[namespace.as_str(), name.as_str()])
                .inc_by(overflow.events);
            self.report(broker, &overflow).await;
        }
    }

    async fn create(
        &self,
        api: &Api<EventType>,
        broker: &Broker,
        event_type: &str,
        seen: &TypeWindow,
    ) -> Result<(), WriteError> {
        let name = eventtype::object_name(&broker.name_any(), event_type);
        let object = EventType {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(
                    [(
                        BROKER_LABEL.to_owned(),
                        naming::label_value(&broker.name_any()),
                    )]
                    .into(),
                ),
                owner_references: owner(broker).map(|o| vec![o]),
                ..ObjectMeta::default()
            },
            spec: EventTypeSpec {
                broker: broker.name_any(),
                type_: event_type.to_owned(),
            },
            status: None,
        };
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        let created = match api.create(&params, &object).await {
            Ok(created) => created,
            // Another replica created it first: add to theirs.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                api.get(&name).await.map_err(|source| WriteError::Kube {
                    name: name.clone(),
                    source,
                })?
            }
            Err(source) => return Err(WriteError::Kube { name, source }),
        };
        add_window(api, created, seen).await
    }

    async fn report(&self, broker: &Broker, overflow: &Overflow) {
        let reference = ObjectReference {
            api_version: Some(Broker::api_version(&()).into_owned()),
            kind: Some(Broker::kind(&()).into_owned()),
            name: Some(broker.name_any()),
            namespace: broker.namespace(),
            uid: broker.uid(),
            ..ObjectReference::default()
        };
        if let Err(e) = self
            .recorder
            .publish(&overflow_event(overflow), &reference)
            .await
        {
            tracing::debug!(error = %e, "could not publish a Kubernetes Event");
        }
    }
}

fn lock(tally: &Mutex<BrokerTally>) -> std::sync::MutexGuard<'_, BrokerTally> {
    tally.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The Broker as owner (not controller) of its `EventTypes`: the garbage collector
/// deletes them with it.
fn owner(broker: &Broker) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: Broker::api_version(&()).into_owned(),
        kind: Broker::kind(&()).into_owned(),
        name: broker.name_any(),
        uid: broker.uid()?,
        ..OwnerReference::default()
    })
}

/// Adds `seen` to `current`'s status, re-reading it after each conflict.
async fn add_window(
    api: &Api<EventType>,
    mut current: EventType,
    seen: &TypeWindow,
) -> Result<(), WriteError> {
    let name = current.name_any();
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    for _ in 0..CONFLICT_ATTEMPTS {
        current.status = Some(merged_status(current.status.as_ref(), seen));
        match api.replace_status(&name, &params, &current).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                current = api.get(&name).await.map_err(|source| WriteError::Kube {
                    name: name.clone(),
                    source,
                })?;
            }
            Err(source) => return Err(WriteError::Kube { name, source }),
        }
    }
    Err(WriteError::Contended(name))
}

fn overflow_event(overflow: &Overflow) -> Event {
    Event {
        type_: EventKind::Warning,
        reason: "EventTypesOverflow".into(),
        note: Some(format!(
            "{} event(s) of types beyond the catalog's bound of {MAX_TYPES_PER_BROKER} types per Broker were routed but not catalogued as EventTypes (e.g. {}); delete EventTypes no longer wanted to make room",
            overflow.events,
            overflow.examples.join(", ")
        )),
        action: "Catalog".into(),
        secondary: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overflow_report_says_how_many_and_gives_examples() {
        let note = overflow_event(&Overflow {
            events: 900,
            examples: vec!["flood.1".into(), "flood.2".into()],
        })
        .note
        .expect("note");
        assert!(note.starts_with("900 event(s) of types beyond"), "{note}");
        assert!(note.contains("(e.g. flood.1, flood.2)"), "{note}");
    }

    #[test]
    fn eventtypes_are_owned_by_their_broker_without_controlling_it() {
        let mut broker = Broker::new("orders", herald_api::BrokerSpec::default());
        assert_eq!(owner(&broker), None, "no UID yet: no owner reference");
        broker.metadata.uid = Some("u-1".into());
        let o = owner(&broker).expect("owner");
        assert_eq!(
            (o.kind.as_str(), o.name.as_str(), o.uid.as_str()),
            ("Broker", "orders", "u-1")
        );
        assert_eq!(o.controller, None);
    }
}
