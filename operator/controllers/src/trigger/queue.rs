//! Making a Trigger's queue (and, while it is needed, its backfill) exist in JetStream,
//! and removing them: the I/O half of [`super::consumer`].

use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::context::{ConsumerInfoErrorKind, GetStreamErrorKind};
use async_nats::jetstream::stream::Stream;
use herald_api::delivery::EffectiveDelivery;
use herald_api::trigger::QueueStatus;
use herald_api::{Trigger, naming};
use kube::runtime::events::EventType;

use super::consumer;
use super::placement::{self, QueueStream};
use crate::context::Context;
use crate::error::Error;
use crate::reconcile::ObjectKey;

fn stream_missing(e: &async_nats::jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), GetStreamErrorKind::JetStream(js) if js.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// Makes the Trigger's queue consumer (and its backfill, while one is owed) match;
/// returns the queue as the status shows it.
pub async fn ensure(
    trigger: &Trigger,
    key: &ObjectKey,
    delivery: &EffectiveDelivery,
    ctx: &Context,
) -> Result<QueueStatus, Error> {
    if !ctx.nats.is_connected() {
        return Err(Error::nats_down("not connected to any NATS server"));
    }
    let (namespace, name) = (&key.namespace, &key.name);
    let broker = &trigger.spec.broker;
    let events_name = naming::stream_name(namespace, broker);
    let durable = naming::consumer_name(name);
    let (mut queue, existing) = placement::find(trigger, key, ctx).await?;
    if let Some(existing) = &existing
        && existing.metadata.get(consumer::OWNER_KEY)
            != Some(&consumer::owner_value(namespace, name))
    {
        return Err(Error::ConsumerNotOwned {
            stream: queue.name,
            consumer: durable,
        });
    }
    let recreate = match &existing {
        Some(found) => update_or_delete(found, trigger, key, delivery, &queue).await?,
        None => Some(String::new()),
    };
    let events = ctx
        .jetstream
        .get_stream_no_info(&events_name)
        .await
        .map_err(|e| Error::nats(format!("cannot read stream {events_name}"), e))?;
    let routed_after = match recreate {
        None => existing.as_ref().map_or(0, consumer::routed_after),
        Some(reasons) => {
            let work_queue = placement::is_work_queue(&queue, ctx).await?;
            if let Some(routed_after) =
                lost_queue(trigger, &queue.name, work_queue, existing.is_none())
            {
                restore(trigger, key, delivery, &queue, routed_after, ctx).await?;
                routed_after
            } else {
                // A new queue goes where there is room; a recreated one stays.
                if existing.is_none() {
                    queue = placement::place(namespace, broker, ctx.triggers_per_queue_stream, ctx)
                        .await?;
                }
                let work_queue = placement::is_work_queue(&queue, ctx).await?;
                create(
                    trigger,
                    key,
                    delivery,
                    (&queue, work_queue),
                    &events,
                    &reasons,
                    ctx,
                )
                .await?
            }
        }
    };
    // Only a Trigger that starts in the past has (had) a backfill to look at.
    let backfilling = if consumer::backfill_config(trigger)?.is_some() {
        backfill_progress(trigger, key, &events, routed_after, ctx).await?
    } else {
        false
    };
    Ok(QueueStatus {
        broker: broker.clone(),
        subject: naming::queue_shard_subject(namespace, broker, queue.shard, name),
        stream: queue.name,
        routed_after,
        backfilling,
    })
}

/// Brings an existing queue consumer up to date; when that takes a new consumer,
/// deletes it and returns why. An existing queue keeps the seam it was created with
/// (and where its state is kept).
async fn update_or_delete(
    found: &async_nats::jetstream::consumer::Config,
    trigger: &Trigger,
    key: &ObjectKey,
    delivery: &EffectiveDelivery,
    queue: &QueueStream,
) -> Result<Option<String>, Error> {
    let desired = consumer::desired_config(
        trigger,
        delivery,
        (consumer::routed_after(found), queue.shard),
        found.memory_storage,
    )?;
    let durable = naming::consumer_name(&key.name);
    let rejected = |e: &dyn std::fmt::Display| Error::StreamRejected {
        stream: queue.name.clone(),
        message: format!("consumer {durable}: {e}"),
    };
    let reasons = consumer::recreate_reasons(found, &desired);
    if reasons.is_empty() {
        if consumer::needs_update(found, &desired) {
            queue
                .stream
                .update_consumer(desired)
                .await
                .map_err(|e| rejected(&e))?;
        }
        return Ok(None);
    }
    queue
        .stream
        .delete_consumer(&durable)
        .await
        .map_err(|e| rejected(&e))?;
    Ok(Some(reasons.join(", ")))
}

/// The seam of a queue this Trigger had on `queue_name` whose consumer is gone
/// although nothing asked for that: a consumer whose state was in memory does not
/// survive a nats-server restart. Its copies are still in the work queue, so it is
/// restored as it was (same seam, nothing purged) and delivers them.
fn lost_queue(trigger: &Trigger, queue_name: &str, work_queue: bool, missing: bool) -> Option<u64> {
    let had = trigger.status.as_ref()?.queue.as_ref()?;
    let same = placement::recorded_shard(trigger).is_some() && had.stream == queue_name;
    (work_queue && missing && same).then_some(had.routed_after)
}

/// Re-creates a lost queue consumer with the seam it had.
async fn restore(
    trigger: &Trigger,
    key: &ObjectKey,
    delivery: &EffectiveDelivery,
    queue: &QueueStream,
    routed_after: u64,
    ctx: &Context,
) -> Result<(), Error> {
    let durable = naming::consumer_name(&key.name);
    queue
        .stream
        .create_consumer(consumer::desired_config(
            trigger,
            delivery,
            (routed_after, queue.shard),
            true,
        )?)
        .await
        .map_err(|e| Error::StreamRejected {
            stream: queue.name.clone(),
            message: format!("consumer {durable}: {e}"),
        })?;
    ctx.event(
        trigger,
        EventType::Warning,
        "ConsumerRestored",
        "ReconcileConsumer",
        format!(
            "restored queue {durable} on stream {} (nats-server lost it); events it had not acknowledged are delivered again",
            queue.name
        ),
    )
    .await;
    Ok(())
}

/// Creates the queue (its backfill first); returns the Broker sequence it is routed
/// after. On a work queue its consumer's state is kept in memory.
async fn create(
    trigger: &Trigger,
    key: &ObjectKey,
    delivery: &EffectiveDelivery,
    (queue, work_queue): (&QueueStream, bool),
    events: &Stream<()>,
    reasons: &str,
    ctx: &Context,
) -> Result<u64, Error> {
    let (namespace, name) = (&key.namespace, &key.name);
    let durable = naming::consumer_name(name);
    let events_name = naming::stream_name(namespace, &trigger.spec.broker);
    let queue_name = &queue.name;
    let last = events_last_sequence(&ctx.jetstream, &events_name).await?;
    // The backfill first: a queue whose backfill was lost in a crash between the two
    // would silently miss the history.
    replace_backfill(trigger, key, events, &events_name).await?;
    // Copies left on the subject (routed for an earlier queue of this name, or under
    // the filter before a change) are not owed to this one.
    purge_subject(queue, key, &trigger.spec.broker).await?;
    let desired = consumer::desired_config(trigger, delivery, (last, queue.shard), work_queue)?;
    queue
        .stream
        .create_consumer(desired)
        .await
        .map_err(|e| Error::StreamRejected {
            stream: queue_name.clone(),
            message: format!("consumer {durable}: {e}"),
        })?;
    // A consumer of the design before queues reads the whole Broker stream: gone.
    delete_owned(events, &durable, key).await?;
    let note = if reasons.is_empty() {
        format!(
            "created queue {durable} on stream {queue_name}; events after sequence {last} of the Broker are routed to it"
        )
    } else {
        format!("recreated queue {durable}: {reasons}")
    };
    ctx.event(
        trigger,
        EventType::Normal,
        "ConsumerCreated",
        "ReconcileConsumer",
        note,
    )
    .await;
    Ok(last)
}

async fn events_last_sequence(
    jetstream: &async_nats::jetstream::Context,
    name: &str,
) -> Result<u64, Error> {
    let mut stream = jetstream
        .get_stream(name)
        .await
        .map_err(|e| Error::nats(format!("cannot read stream {name}"), e))?;
    let info = stream
        .info()
        .await
        .map_err(|e| Error::nats(format!("cannot read stream {name}"), e))?;
    Ok(info.state.last_sequence)
}

/// Creates the backfill consumer anew (or removes a stale one) for a queue being created.
async fn replace_backfill(
    trigger: &Trigger,
    key: &ObjectKey,
    events: &Stream<()>,
    events_name: &str,
) -> Result<(), Error> {
    let durable = naming::backfill_consumer_name(&key.name);
    delete_owned(events, &durable, key).await?;
    if let Some(config) = consumer::backfill_config(trigger)? {
        events
            .create_consumer::<pull::Config>(config)
            .await
            .map_err(|e| Error::StreamRejected {
                stream: events_name.to_owned(),
                message: format!("consumer {durable}: {e}"),
            })?;
    }
    Ok(())
}

/// Whether the backfill still runs; deletes it once it has copied everything owed.
async fn backfill_progress(
    trigger: &Trigger,
    key: &ObjectKey,
    events: &Stream<()>,
    routed_after: u64,
    ctx: &Context,
) -> Result<bool, Error> {
    let durable = naming::backfill_consumer_name(&key.name);
    match events.consumer_info(&durable).await {
        Ok(info) if consumer::backfill_done(&info, routed_after) => {
            events
                .delete_consumer(&durable)
                .await
                .map_err(|e| Error::nats(format!("cannot delete consumer {durable}"), e))?;
            ctx.event(
                trigger,
                EventType::Normal,
                "BackfillCompleted",
                "ReconcileConsumer",
                format!("copied the matching history up to Broker sequence {routed_after} into the queue"),
            )
            .await;
            Ok(false)
        }
        Ok(_) => Ok(true),
        Err(e) if matches!(e.kind(), ConsumerInfoErrorKind::NotFound) => Ok(false),
        Err(e) => Err(Error::nats(format!("cannot read consumer {durable}"), e)),
    }
}

/// Deletes consumer `durable` of `stream` if Trigger `key` owns it.
async fn delete_owned(stream: &Stream<()>, durable: &str, key: &ObjectKey) -> Result<bool, Error> {
    match stream.consumer_info(durable).await {
        Ok(info)
            if info.config.metadata.get(consumer::OWNER_KEY)
                == Some(&consumer::owner_value(&key.namespace, &key.name)) =>
        {
            stream
                .delete_consumer(durable)
                .await
                .map_err(|e| Error::nats(format!("cannot delete consumer {durable}"), e))?;
            Ok(true)
        }
        Ok(_) => {
            tracing::warn!(consumer = %durable, "consumer is not owned by this Trigger; leaving it");
            Ok(false)
        }
        Err(e)
            if matches!(
                e.kind(),
                ConsumerInfoErrorKind::NotFound | ConsumerInfoErrorKind::StreamNotFound
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(Error::nats(format!("cannot read consumer {durable}"), e)),
    }
}

/// Removes every copy queued on Trigger `key`'s subject of queue stream `queue` of Broker
/// `broker`.
async fn purge_subject(queue: &QueueStream, key: &ObjectKey, broker: &str) -> Result<(), Error> {
    let (namespace, name) = (&key.namespace, &key.name);
    queue
        .stream
        .purge()
        .filter(naming::queue_shard_subject(
            namespace,
            broker,
            queue.shard,
            name,
        ))
        .await
        .map(|_| ())
        .map_err(|e| {
            Error::nats(
                format!("cannot purge {name}'s copies from {}", queue.name),
                e,
            )
        })
}

/// Deletes everything the Trigger owns in the streams of Broker `broker`: its queue,
/// its backfill, and a consumer of the design before queues. Returns whether the
/// queue was there.
pub async fn delete(
    trigger: &Trigger,
    key: &ObjectKey,
    broker: &str,
    ctx: &Context,
) -> Result<bool, Error> {
    if !ctx.nats.is_connected() {
        return Err(Error::nats_down(format!(
            "cannot delete the queue of {}: not connected",
            key.name
        )));
    }
    let (namespace, name) = (&key.namespace, &key.name);
    let durable = naming::consumer_name(name);
    let mut deleted = false;
    for shard in placement::candidates(trigger, key, broker, ctx).await? {
        let stream_name = naming::queue_shard_stream_name(namespace, broker, shard);
        let stream = match ctx.jetstream.get_stream_no_info(&stream_name).await {
            Ok(stream) => stream,
            Err(e) if stream_missing(&e) => continue,
            Err(e) => {
                return Err(Error::nats(format!("cannot read stream {stream_name}"), e));
            }
        };
        let queue = QueueStream {
            shard,
            name: stream_name,
            stream,
        };
        if delete_owned(&queue.stream, &durable, key).await? {
            // A work queue keeps what nobody reads until it ages out: the copies go too.
            purge_subject(&queue, key, broker).await?;
            deleted = true;
            break;
        }
    }
    let events_name = naming::stream_name(namespace, broker);
    match ctx.jetstream.get_stream_no_info(&events_name).await {
        Ok(events) => {
            deleted |= delete_owned(&events, &durable, key).await?;
            delete_owned(&events, &naming::backfill_consumer_name(name), key).await?;
        }
        Err(e) if stream_missing(&e) => {}
        Err(e) => {
            return Err(Error::nats(format!("cannot read stream {events_name}"), e));
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger_with_queue(broker: &str) -> Trigger {
        crate::fixtures::trigger_with_queue(
            broker,
            &naming::queue_stream_name("shop", broker),
            &naming::queue_subject("shop", broker, "orders"),
            41,
        )
    }

    #[test]
    fn only_a_work_queue_consumer_that_vanished_is_restored_with_its_seam() {
        let t = trigger_with_queue("b");
        let stream = naming::queue_stream_name("shop", "b");
        assert_eq!(lost_queue(&t, &stream, true, true), Some(41));
        // Deleted on purpose (a change): a new queue, not a restored one.
        assert_eq!(lost_queue(&t, &stream, true, false), None);
        // Interest retention dropped its copies with it: nothing to restore.
        assert_eq!(lost_queue(&t, &stream, false, true), None);
        // The queue recorded is another Broker's: this one is new.
        let moved = trigger_with_queue("other");
        assert_eq!(lost_queue(&moved, &stream, true, true), None);
        // A Trigger that never had a queue.
        let mut fresh = t.clone();
        fresh.status = None;
        assert_eq!(lost_queue(&fresh, &stream, true, true), None);
    }
}
