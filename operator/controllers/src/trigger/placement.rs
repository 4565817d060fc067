//! Which of its Broker's queue streams holds a Trigger's queue.
//!
//! nats-server's work per acknowledgement grows with the consumers of the stream (it
//! asks each whether it still needs the message), so a Broker's queues are spread over
//! queue streams of at most `--triggers-per-queue-stream` Triggers each
//! ([`naming::DEFAULT_TRIGGERS_PER_QUEUE_STREAM`]). A queue is placed once, when it is
//! created, in the first stream with room (a new stream when all are full), and stays
//! there: the Trigger's `status.queue` records the stream and subject, which routers,
//! dispatchers, the autoscaler and consumer Deployments use. The bound is kept
//! approximately: two Triggers placed at the same moment may both take a last place.

use async_nats::jetstream::consumer;
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::stream::{self, RetentionPolicy, Stream};
use herald_api::{Trigger, naming};
use kube::ResourceExt;

use crate::broker::queue::{later_shards, shard_config};
use crate::context::Context;
use crate::error::Error;
use crate::reconcile::ObjectKey;

/// One of a Broker's queue streams.
pub struct QueueStream {
    /// Its number among the Broker's queue streams (0: the first).
    pub shard: u32,
    /// Its name.
    pub name: String,
    /// A handle on it.
    pub stream: Stream<()>,
}

/// The queue stream number the Trigger's status records for its current Broker, if
/// the stream and subject recorded agree with each other (pure).
#[must_use]
pub fn recorded_shard(trigger: &Trigger) -> Option<u32> {
    let queue = trigger.status.as_ref()?.queue.as_ref()?;
    if queue.broker != trigger.spec.broker {
        return None;
    }
    let namespace = trigger.namespace().unwrap_or_default();
    let shard = naming::queue_shard_of_subject(&queue.subject)?;
    let agrees = queue.stream == naming::queue_shard_stream_name(&namespace, &queue.broker, shard)
        && queue.subject
            == naming::queue_shard_subject(&namespace, &queue.broker, shard, &trigger.name_any());
    agrees.then_some(shard)
}

async fn open(
    namespace: &str,
    broker: &str,
    shard: u32,
    ctx: &Context,
) -> Result<QueueStream, Error> {
    let name = naming::queue_shard_stream_name(namespace, broker, shard);
    let stream = ctx
        .jetstream
        .get_stream_no_info(&name)
        .await
        .map_err(|e| Error::nats(format!("cannot read stream {name}"), e))?;
    Ok(QueueStream {
        shard,
        name,
        stream,
    })
}

async fn queue_consumer(
    queue: &QueueStream,
    durable: &str,
) -> Result<Option<consumer::Config>, Error> {
    match queue.stream.consumer_info(durable).await {
        Ok(info) => Ok(Some(info.config)),
        Err(e) if matches!(e.kind(), ConsumerInfoErrorKind::NotFound) => Ok(None),
        Err(e) => Err(Error::nats(
            format!("cannot read consumer {durable} of {}", queue.name),
            e,
        )),
    }
}

/// The Trigger's queue stream and its queue consumer there, if it has one: where its
/// status says, else (no status to go by: a crash before it was written) the first
/// stream, then each later one. Without a consumer, the stream is the recorded one or
/// the first.
pub async fn find(
    trigger: &Trigger,
    key: &ObjectKey,
    ctx: &Context,
) -> Result<(QueueStream, Option<consumer::Config>), Error> {
    let namespace = &key.namespace;
    let broker = &trigger.spec.broker;
    let durable = naming::consumer_name(&key.name);
    let recorded = recorded_shard(trigger);
    let queue = open(namespace, broker, recorded.unwrap_or(0), ctx).await?;
    if let Some(found) = queue_consumer(&queue, &durable).await? {
        return Ok((queue, Some(found)));
    }
    if recorded.is_none() {
        for shard in later_shards(namespace, broker, ctx).await? {
            let later = open(namespace, broker, shard, ctx).await?;
            if let Some(found) = queue_consumer(&later, &durable).await? {
                return Ok((later, Some(found)));
            }
        }
    }
    Ok((queue, None))
}

/// What JetStream says of stream `name` (one STREAM.INFO).
async fn stream_info(name: &str, ctx: &Context) -> Result<stream::Info, Error> {
    let mut stream = ctx
        .jetstream
        .get_stream(name)
        .await
        .map_err(|e| Error::nats(format!("cannot read stream {name}"), e))?;
    Ok(stream
        .info()
        .await
        .map_err(|e| Error::nats(format!("cannot read stream {name}"), e))?
        .clone())
}

/// A queue stream of Broker `namespace/broker` with room for one more queue: the first
/// with fewer than `capacity` consumers, else a new one made like the first.
pub async fn place(
    namespace: &str,
    broker: &str,
    capacity: u32,
    ctx: &Context,
) -> Result<QueueStream, Error> {
    let has_room =
        |info: &stream::Info| u32::try_from(info.state.consumer_count).is_ok_and(|n| n < capacity);
    let first = stream_info(&naming::queue_stream_name(namespace, broker), ctx).await?;
    if has_room(&first) {
        return open(namespace, broker, 0, ctx).await;
    }
    let mut last = 0;
    for shard in later_shards(namespace, broker, ctx).await? {
        last = shard;
        let name = naming::queue_shard_stream_name(namespace, broker, shard);
        if has_room(&stream_info(&name, ctx).await?) {
            return open(namespace, broker, shard, ctx).await;
        }
    }
    let shard = last + 1;
    let mut config = shard_config(&first.config, namespace, broker, shard);
    // Always a work queue, even beside a first stream made before work queues.
    config.retention = RetentionPolicy::WorkQueue;
    let name = config.name.clone();
    // Another reconcile may have made it a moment ago: then this uses it too.
    if let Err(e) = ctx.jetstream.get_or_create_stream(config).await {
        return Err(Error::StreamRejected {
            stream: name,
            message: e.to_string(),
        });
    }
    tracing::info!(stream = %name, %namespace, %broker, "made another queue stream for the Broker");
    open(namespace, broker, shard, ctx).await
}

/// Whether queue stream `queue` is a work queue (queue streams made before work queues
/// kept interest retention).
pub async fn is_work_queue(queue: &QueueStream, ctx: &Context) -> Result<bool, Error> {
    Ok(stream_info(&queue.name, ctx).await?.config.retention == RetentionPolicy::WorkQueue)
}

/// The queue streams the Trigger's queue on Broker `broker` may be in: the recorded
/// one, else all of the Broker's.
pub async fn candidates(
    trigger: &Trigger,
    key: &ObjectKey,
    broker: &str,
    ctx: &Context,
) -> Result<Vec<u32>, Error> {
    let namespace = &key.namespace;
    let recorded = trigger
        .status
        .as_ref()
        .and_then(|s| s.queue.as_ref())
        .filter(|q| q.broker == broker)
        .and_then(|q| naming::queue_shard_of_subject(&q.subject));
    if let Some(shard) = recorded {
        return Ok(vec![shard]);
    }
    let mut all = vec![0];
    all.extend(later_shards(namespace, broker, ctx).await?);
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(stream: &str, subject: &str) -> Trigger {
        crate::fixtures::trigger_with_queue("b", stream, subject, 0)
    }

    #[test]
    fn the_recorded_queue_stream_counts_only_when_stream_and_subject_agree() {
        let first = trigger("HERALDQ_shop_b", "heraldq.shop.b.orders");
        assert_eq!(recorded_shard(&first), Some(0));
        let third = trigger("HERALDQ_shop_b_S2", "heraldq.shop.b.2.orders");
        assert_eq!(recorded_shard(&third), Some(2));
        assert_eq!(
            recorded_shard(&trigger("HERALDQ_shop_b", "heraldq.shop.b.2.orders")),
            None,
            "a subject of another stream"
        );
        assert_eq!(
            recorded_shard(&trigger("HERALDQ_shop_b", "heraldq.shop.b.billing")),
            None,
            "another Trigger's subject"
        );
        let mut moved = first.clone();
        moved.spec.broker = "other".into();
        assert_eq!(recorded_shard(&moved), None, "another Broker's queue");
        let mut fresh = first;
        fresh.status = None;
        assert_eq!(recorded_shard(&fresh), None);
    }
}
