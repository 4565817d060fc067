//! The routing side of a Broker: the stream that holds its Triggers' queues and the
//! durable `router` consumer of its event stream, both built purely from the Broker's
//! stream, then made to exist.
//!
//! Each event is routed once: a router (in `herald dispatcher`) reads it through the
//! `router` consumer, evaluates every Trigger's filters with one index lookup and
//! copies it to the queue subject of each Trigger that matches. A queue stream is a
//! work queue: each Trigger's subject has exactly one consumer, and a copy is removed
//! when that consumer acknowledges it, so the stream holds the backlog, not the
//! history (the history stays in the Broker's stream).
//!
//! Why a work queue and not interest retention: with interest retention nats-server
//! asks *every* consumer of the stream, on every acknowledgement, whether it still
//! needs the message — under the stream's lock. With 1,000 Triggers on a Broker that is
//! 1,000 checks per delivered event, and it made nats-server the bottleneck of the
//! fan-out benchmark (docs/benchmarks.md). A work queue removes the message on its one
//! ack. What interest retention did implicitly — drop copies nobody will read — the
//! Trigger controller does explicitly: it purges a Trigger's subject when it creates
//! or deletes its queue.

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::stream::{self, Config};
use herald_api::{Broker, naming};
use kube::ResourceExt;

use crate::context::Context;
use crate::error::Error;
use crate::reconcile::ObjectKey;

/// Broker events a router may hold unacknowledged.
const ROUTER_MAX_ACK_PENDING: i64 = 20_000;

/// The queue stream for a Broker whose event stream is `events`: same storage,
/// replicas and age limit; a work queue, so a copy is gone once delivered.
#[must_use]
pub fn desired_queue_config(broker: &Broker, events: &Config) -> Config {
    let namespace = broker.namespace().unwrap_or_default();
    let name = broker.name_any();
    Config {
        name: naming::queue_stream_name(&namespace, &name),
        description: Some(format!(
            "Trigger queues of Herald Broker {namespace}/{name}"
        )),
        subjects: naming::queue_stream_subjects(&namespace, &name),
        storage: events.storage,
        retention: stream::RetentionPolicy::WorkQueue,
        discard: stream::DiscardPolicy::Old,
        num_replicas: events.num_replicas,
        max_age: events.max_age,
        max_bytes: events.max_bytes,
        max_messages: events.max_messages,
        // Copies are deduplicated by (Broker sequence, Trigger): a route retried after a
        // lost ack, or a backfill overlapping live routing, stores nothing twice.
        duplicate_window: events.duplicate_window,
        metadata: events.metadata.clone(),
        ..Config::default()
    }
}

/// Queue stream number `shard` of a Broker whose first queue stream is `first`: the
/// same limits and owner under the shard's name and subjects.
#[must_use]
pub fn shard_config(first: &Config, namespace: &str, broker: &str, shard: u32) -> Config {
    Config {
        name: naming::queue_shard_stream_name(namespace, broker, shard),
        subjects: naming::queue_shard_subjects(namespace, broker, shard),
        description: Some(format!(
            "Trigger queues of Herald Broker {namespace}/{broker} (stream {shard})"
        )),
        ..first.clone()
    }
}

/// Most queue streams a Broker may have: with the default of 64 Triggers each, room
/// for 64,000 Triggers; a bound on the probing below.
const MAX_QUEUE_SHARDS: u32 = 1_000;

/// The numbers of the Broker's queue streams after the first that exist, in order.
/// Shards are made one after the other and never deleted before their Broker, so the
/// first missing number ends the list.
pub async fn later_shards(namespace: &str, broker: &str, ctx: &Context) -> Result<Vec<u32>, Error> {
    let mut found = Vec::new();
    for shard in 1..MAX_QUEUE_SHARDS {
        let name = naming::queue_shard_stream_name(namespace, broker, shard);
        // STREAM.INFO: a handle without info would not say whether the stream exists.
        match ctx.jetstream.get_stream(&name).await {
            Ok(_) => found.push(shard),
            Err(e) if super::is_not_found(&e) => break,
            Err(e) => {
                return Err(Error::nats(format!("cannot read stream {name}"), e));
            }
        }
    }
    Ok(found)
}

/// The `router` consumer of a Broker's event stream.
#[must_use]
pub fn router_config() -> pull::Config {
    pull::Config {
        durable_name: Some(naming::ROUTER_CONSUMER.to_owned()),
        description: Some(
            "Herald: routes each event to the queues of the Triggers it matches".into(),
        ),
        deliver_policy: DeliverPolicy::New,
        ack_policy: AckPolicy::Explicit,
        ack_wait: herald_api::delivery::ACK_WAIT,
        max_deliver: -1,
        max_ack_pending: ROUTER_MAX_ACK_PENDING,
        ..pull::Config::default()
    }
}

/// Makes the queue stream and the router exist and match; `events` is the Broker's
/// event stream as it now exists.
pub async fn ensure(
    broker: &Broker,
    key: &ObjectKey,
    events: &Config,
    ctx: &Context,
) -> Result<(), Error> {
    let mut desired = desired_queue_config(broker, events);
    // nats-server cannot change a stream's retention to or from work queue: a queue
    // stream made before (interest retention) keeps it. It works the same, only slower
    // with many Triggers; re-creating the Broker gives it a work queue.
    if let Ok(mut existing) = ctx.jetstream.get_stream(&desired.name).await
        && let Ok(info) = existing.info().await
        && info.config.retention == stream::RetentionPolicy::Interest
    {
        desired.retention = stream::RetentionPolicy::Interest;
    }
    for shard in later_shards(&key.namespace, &key.name, ctx).await? {
        let mut config = shard_config(&desired, &key.namespace, &key.name, shard);
        // Made by the Trigger reconcile as work queues, always.
        config.retention = stream::RetentionPolicy::WorkQueue;
        super::apply_stream(config, ctx).await?;
    }
    super::apply_stream(desired, ctx).await?;
    let stream = ctx
        .jetstream
        .get_stream_no_info(&events.name)
        .await
        .map_err(|e| Error::nats("", e))?;
    let rejected = |e: &dyn std::fmt::Display| Error::StreamRejected {
        stream: events.name.clone(),
        message: format!("consumer {}: {e}", naming::ROUTER_CONSUMER),
    };
    match stream.consumer_info(naming::ROUTER_CONSUMER).await {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.kind(), ConsumerInfoErrorKind::NotFound) => {
            stream
                .create_consumer(router_config())
                .await
                .map_err(|e| rejected(&e))?;
            Ok(())
        }
        Err(e) => Err(Error::nats(
            format!("cannot read consumer {}", naming::ROUTER_CONSUMER),
            e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_api::BrokerSpec;
    use herald_api::broker::StreamSpec;
    use std::time::Duration;

    #[test]
    fn the_queue_stream_follows_the_event_stream_but_keeps_only_what_is_owed() {
        let mut broker = Broker::new(
            "orders",
            BrokerSpec {
                stream: StreamSpec {
                    replicas: 3,
                    max_age: Some("1h".into()),
                    ..StreamSpec::default()
                },
                ..BrokerSpec::default()
            },
        );
        broker.metadata.namespace = Some("shop".into());
        let events = super::super::stream::desired_config(
            &broker,
            super::super::stream::StreamCeilings::default(),
        )
        .unwrap();
        let queue = desired_queue_config(&broker, &events);
        assert_eq!(queue.name, "HERALDQ_shop_orders");
        assert_eq!(queue.subjects, ["heraldq.shop.orders.*"]);
        assert_eq!(queue.retention, stream::RetentionPolicy::WorkQueue);
        assert_eq!(
            (queue.num_replicas, queue.max_age, queue.storage),
            (3, Duration::from_secs(3600), events.storage)
        );
        assert_eq!(
            queue.metadata, events.metadata,
            "owned like the Broker's stream"
        );
        let third = shard_config(&queue, "shop", "orders", 2);
        assert_eq!(third.name, "HERALDQ_shop_orders_S2");
        assert_eq!(third.subjects, ["heraldq.shop.orders.2.*"]);
        assert_eq!(
            (third.max_age, third.retention, &third.metadata),
            (queue.max_age, queue.retention, &queue.metadata),
            "the same limits and owner as the first"
        );
        let router = router_config();
        assert_eq!(router.durable_name.as_deref(), Some("router"));
        assert_eq!(router.deliver_policy, DeliverPolicy::New);
    }
}
