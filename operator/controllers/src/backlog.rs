//! `status.backlog` of subscriber Triggers, kept fresh without reconciling them.
//!
//! Reconciling every Trigger every few seconds to refresh one number cost a Broker
//! GET, a consumer apply and a status write per Trigger per period: with 1,000 idle
//! Triggers, 29 % of a core across operator, dispatcher and nats-server. Here, in the
//! leader only, one CONSUMER.LIST per Broker queue stream (a page per 256 Triggers)
//! measures them all every [`EVERY`], and a status is written only when its backlog
//! changed. Consumer Triggers are measured by the autoscaler, which writes their
//! backlog; so each Trigger's `status.backlog` has one writer.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer;
use futures::StreamExt;
use herald_api::{Trigger, TriggerStatus, naming};
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Api, ResourceExt};
use tokio::sync::watch;

use crate::context::Context;

/// Field manager of these status writes.
pub const FIELD_MANAGER: &str = herald_api::field_manager::BACKLOG;
/// How often the backlogs are measured.
pub const EVERY: Duration = Duration::from_secs(10);
/// Longest one round may take before it is abandoned (a NATS or apiserver request
/// gone quiet must not stop later rounds).
const ROUND_DEADLINE: Duration = Duration::from_secs(30);

/// Runs until `stop` fires.
pub async fn run(ctx: Arc<Context>, triggers: Store<Trigger>, mut stop: watch::Receiver<bool>) {
    // What was last written, by namespace/name (seeded from the Triggers' status).
    let mut written: HashMap<(String, String), i64> = HashMap::new();
    let mut every = tokio::time::interval(EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.changed() => break,
        }
        if tokio::time::timeout(ROUND_DEADLINE, round(&ctx, &triggers, &mut written))
            .await
            .is_err()
        {
            tracing::warn!(
                "measuring Trigger backlogs took longer than {ROUND_DEADLINE:?}; abandoned"
            );
        }
    }
}

/// The subscriber Triggers to measure, by their queue stream: consumer name → Trigger.
fn by_queue_stream(triggers: &[Arc<Trigger>]) -> BTreeMap<String, HashMap<String, Arc<Trigger>>> {
    let mut streams: BTreeMap<String, HashMap<String, Arc<Trigger>>> = BTreeMap::new();
    for trigger in triggers {
        let Some(queue) = trigger.status.as_ref().and_then(|s| s.queue.as_ref()) else {
            continue;
        };
        if trigger.spec.consumer.is_some() || trigger.metadata.deletion_timestamp.is_some() {
            continue;
        }
        streams
            .entry(queue.stream.clone())
            .or_default()
            .insert(naming::consumer_name(&trigger.name_any()), trigger.clone());
    }
    streams
}

/// Pending plus unacknowledged: what a Trigger still has to deliver.
fn backlog(info: &consumer::Info) -> i64 {
    i64::try_from(info.num_pending)
        .unwrap_or(i64::MAX)
        .saturating_add(i64::try_from(info.num_ack_pending).unwrap_or(0))
}

async fn round(
    ctx: &Context,
    triggers: &Store<Trigger>,
    written: &mut HashMap<(String, String), i64>,
) {
    let state = triggers.state();
    let streams = by_queue_stream(&state);
    let mut measured = HashMap::new();
    for (stream, of_stream) in streams {
        let queue = match ctx.jetstream.get_stream_no_info(&stream).await {
            Ok(queue) => queue,
            Err(e) => {
                tracing::debug!(%stream, error = %e, "cannot read a queue stream");
                continue;
            }
        };
        let mut infos = queue.consumers();
        while let Some(info) = infos.next().await {
            let info = match info {
                Ok(info) => info,
                Err(e) => {
                    tracing::debug!(%stream, error = %e, "cannot list a queue stream's consumers");
                    break;
                }
            };
            let Some(trigger) = of_stream.get(&info.name) else {
                continue;
            };
            let key = (trigger.namespace().unwrap_or_default(), trigger.name_any());
            let now = backlog(&info);
            let last = written
                .get(&key)
                .copied()
                .or_else(|| trigger.status.as_ref().and_then(|s| s.backlog));
            if last != Some(now) {
                let patch = herald_api::status_patch::<Trigger, _>(&TriggerStatus {
                    backlog: Some(now),
                    ..TriggerStatus::default()
                });
                let result = Api::<Trigger>::namespaced(ctx.client.clone(), &key.0)
                    .patch_status(
                        &key.1,
                        &PatchParams::apply(FIELD_MANAGER).force(),
                        &Patch::Apply(&patch),
                    )
                    .await;
                if let Err(e) = result {
                    tracing::debug!(trigger = %format!("{}/{}", key.0, key.1), error = %e, "cannot write the backlog");
                    continue;
                }
            }
            measured.insert(key, now);
        }
    }
    // Forgets Triggers that are gone (or turned into consumer Triggers).
    *written = measured;
}

#[cfg(test)]
mod tests {
    use herald_api::trigger::{QueueStatus, TriggerStatus};

    use super::*;

    fn trigger(name: &str, broker: &str, queued: bool, consumer: bool) -> Arc<Trigger> {
        let mut spec: herald_api::TriggerSpec = serde_json::from_value(
            serde_json::json!({ "broker": broker, "subscriber": { "uri": "http://s" } }),
        )
        .expect("spec");
        if consumer {
            spec.subscriber = None;
            spec.consumer = serde_json::from_value(serde_json::json!({
                "template": { "spec": { "containers": [{ "name": "c", "image": "i" }] } }
            }))
            .expect("consumer");
        }
        let mut t = Trigger::new(name, spec);
        t.metadata.namespace = Some("team".into());
        if queued {
            t.status = Some(TriggerStatus {
                queue: Some(QueueStatus {
                    broker: broker.into(),
                    stream: naming::queue_stream_name("team", broker),
                    ..QueueStatus::default()
                }),
                ..TriggerStatus::default()
            });
        }
        Arc::new(t)
    }

    #[test]
    fn subscriber_triggers_with_a_queue_are_measured_by_their_stream() {
        let streams = by_queue_stream(&[
            trigger("a", "one", true, false),
            trigger("b", "one", true, false),
            trigger("c", "two", true, false),
            trigger("not-yet", "one", false, false),
            trigger("scaled", "one", true, true),
        ]);
        assert_eq!(streams.len(), 2);
        let one = &streams[&naming::queue_stream_name("team", "one")];
        let mut names: Vec<_> = one.keys().cloned().collect();
        names.sort();
        assert_eq!(
            names,
            [naming::consumer_name("a"), naming::consumer_name("b")]
        );
    }
}
