//! Making a Trigger's queue (and, while it is needed, its backfill) exist in JetStream,
//! and removing them: the I/O half of [`super::consumer`].

use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::context::{ConsumerInfoErrorKind, GetStreamErrorKind};
use async_nats::jetstream::stream::Stream;
use herald_api::delivery::EffectiveDelivery;
use herald_api::trigger::QueueStatus;
use herald_api::{Trigger, naming};
use kube::ResourceExt;
use kube::runtime::events::EventType;

use super::consumer;
use crate::context::Context;
use crate::error::Error;

fn unavailable(what: &str, e: &dyn std::fmt::Display) -> Error {
    Error::NatsUnavailable(format!("{what}: {e}"))
}

fn stream_missing(e: &async_nats::jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), GetStreamErrorKind::JetStream(js) if js.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// Makes the Trigger's queue consumer (and its backfill, while one is owed) match;
/// returns the queue as the status shows it.
pub async fn ensure(
    trigger: &Trigger,
    delivery: &EffectiveDelivery,
    ctx: &Context,
) -> Result<QueueStatus, Error> {
    if !ctx.nats.is_connected() {
        return Err(Error::NatsUnavailable(
            "not connected to any NATS server".into(),
        ));
    }
    let namespace = trigger.namespace().unwrap_or_default();
    let name = trigger.name_any();
    let broker = &trigger.spec.broker;
    let queue_name = naming::queue_stream_name(&namespace, broker);
    let events_name = naming::stream_name(&namespace, broker);
    let durable = naming::consumer_name(&name);
    let queue = ctx
        .jetstream
        .get_stream_no_info(&queue_name)
        .await
        .map_err(|e| unavailable(&format!("cannot read stream {queue_name}"), &e))?;
    let rejected = |stream: &str, e: &dyn std::fmt::Display| Error::StreamRejected {
        stream: stream.to_owned(),
        message: format!("consumer {durable}: {e}"),
    };
    let existing = match queue.consumer_info(&durable).await {
        Ok(info) => Some(info.config),
        Err(e) if matches!(e.kind(), ConsumerInfoErrorKind::NotFound) => None,
        Err(e) => return Err(unavailable(&format!("cannot read consumer {durable}"), &e)),
    };
    if let Some(existing) = &existing
        && existing.metadata.get(consumer::OWNER_KEY)
            != Some(&consumer::owner_value(&namespace, &name))
    {
        return Err(Error::ConsumerNotOwned {
            stream: queue_name,
            consumer: durable,
        });
    }
    // An existing queue keeps the seam it was created with; a new one starts after
    // the Broker's last event.
    let recreate = match &existing {
        Some(found) => {
            let desired =
                consumer::desired_config(trigger, delivery, consumer::routed_after(found))?;
            let reasons = consumer::recreate_reasons(found, &desired);
            if reasons.is_empty() {
                if consumer::needs_update(found, &desired) {
                    queue
                        .update_consumer(desired)
                        .await
                        .map_err(|e| rejected(&queue_name, &e))?;
                }
                None
            } else {
                queue
                    .delete_consumer(&durable)
                    .await
                    .map_err(|e| rejected(&queue_name, &e))?;
                Some(reasons.join(", "))
            }
        }
        None => Some(String::new()),
    };
    let events = ctx
        .jetstream
        .get_stream_no_info(&events_name)
        .await
        .map_err(|e| unavailable(&format!("cannot read stream {events_name}"), &e))?;
    let routed_after = match recreate {
        Some(reasons) => create(trigger, delivery, &queue, &events, &reasons, ctx).await?,
        None => existing.as_ref().map_or(0, consumer::routed_after),
    };
    // Only a Trigger that starts in the past has (had) a backfill to look at.
    let backfilling = if consumer::backfill_config(trigger)?.is_some() {
        backfill_progress(trigger, &events, routed_after, ctx).await?
    } else {
        false
    };
    Ok(QueueStatus {
        broker: broker.clone(),
        stream: queue_name,
        subject: naming::queue_subject(&namespace, broker, &name),
        routed_after,
        backfilling,
    })
}

/// Creates the queue (its backfill first); returns the Broker sequence it is routed after.
async fn create(
    trigger: &Trigger,
    delivery: &EffectiveDelivery,
    queue: &Stream<()>,
    events: &Stream<()>,
    reasons: &str,
    ctx: &Context,
) -> Result<u64, Error> {
    let namespace = trigger.namespace().unwrap_or_default();
    let name = trigger.name_any();
    let durable = naming::consumer_name(&name);
    let events_name = naming::stream_name(&namespace, &trigger.spec.broker);
    let queue_name = naming::queue_stream_name(&namespace, &trigger.spec.broker);
    let last = events_last_sequence(&ctx.jetstream, &events_name).await?;
    // The backfill first: a queue whose backfill was lost in a crash between the two
    // would silently miss the history.
    replace_backfill(trigger, events, &events_name).await?;
    let desired = consumer::desired_config(trigger, delivery, last)?;
    queue
        .create_consumer(desired)
        .await
        .map_err(|e| Error::StreamRejected {
            stream: queue_name.clone(),
            message: format!("consumer {durable}: {e}"),
        })?;
    // A consumer of the design before queues reads the whole Broker stream: gone.
    delete_owned(events, &durable, &namespace, &name).await?;
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
        .map_err(|e| unavailable(&format!("cannot read stream {name}"), &e))?;
    let info = stream
        .info()
        .await
        .map_err(|e| unavailable(&format!("cannot read stream {name}"), &e))?;
    Ok(info.state.last_sequence)
}

/// Creates the backfill consumer anew (or removes a stale one) for a queue being created.
async fn replace_backfill(
    trigger: &Trigger,
    events: &Stream<()>,
    events_name: &str,
) -> Result<(), Error> {
    let namespace = trigger.namespace().unwrap_or_default();
    let name = trigger.name_any();
    let durable = naming::backfill_consumer_name(&name);
    delete_owned(events, &durable, &namespace, &name).await?;
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
    events: &Stream<()>,
    routed_after: u64,
    ctx: &Context,
) -> Result<bool, Error> {
    let name = trigger.name_any();
    let durable = naming::backfill_consumer_name(&name);
    match events.consumer_info(&durable).await {
        Ok(info) if consumer::backfill_done(&info, routed_after) => {
            events
                .delete_consumer(&durable)
                .await
                .map_err(|e| unavailable(&format!("cannot delete consumer {durable}"), &e))?;
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
        Err(e) => Err(unavailable(&format!("cannot read consumer {durable}"), &e)),
    }
}

/// Deletes consumer `durable` of `stream` if Trigger `namespace/name` owns it.
async fn delete_owned(
    stream: &Stream<()>,
    durable: &str,
    namespace: &str,
    name: &str,
) -> Result<bool, Error> {
    match stream.consumer_info(durable).await {
        Ok(info)
            if info.config.metadata.get(consumer::OWNER_KEY)
                == Some(&consumer::owner_value(namespace, name)) =>
        {
            stream
                .delete_consumer(durable)
                .await
                .map_err(|e| unavailable(&format!("cannot delete consumer {durable}"), &e))?;
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
        Err(e) => Err(unavailable(&format!("cannot read consumer {durable}"), &e)),
    }
}

/// Deletes everything the Trigger owns in the streams of Broker `broker`: its queue,
/// its backfill, and a consumer of the design before queues. Returns whether the
/// queue was there.
pub async fn delete(trigger: &Trigger, broker: &str, ctx: &Context) -> Result<bool, Error> {
    if !ctx.nats.is_connected() {
        return Err(Error::NatsUnavailable(format!(
            "cannot delete the queue of {}: not connected",
            trigger.name_any()
        )));
    }
    let namespace = trigger.namespace().unwrap_or_default();
    let name = trigger.name_any();
    let durable = naming::consumer_name(&name);
    let mut deleted = false;
    for stream_name in [
        naming::queue_stream_name(&namespace, broker),
        naming::stream_name(&namespace, broker),
    ] {
        let stream = match ctx.jetstream.get_stream_no_info(&stream_name).await {
            Ok(s) => s,
            Err(e) if stream_missing(&e) => continue,
            Err(e) => {
                return Err(unavailable(
                    &format!("cannot read stream {stream_name}"),
                    &e,
                ));
            }
        };
        deleted |= delete_owned(&stream, &durable, &namespace, &name).await?;
        delete_owned(
            &stream,
            &naming::backfill_consumer_name(&name),
            &namespace,
            &name,
        )
        .await?;
    }
    Ok(deleted)
}
