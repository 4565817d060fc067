//! Routing: a Broker's events, each evaluated once against all its Triggers' filters
//! and copied to the queue of every Trigger that matches.
//!
//! The router of a Broker pulls the Broker stream's durable `router` consumer in a
//! priority group with a pinned client: of all dispatcher replicas, one routes a Broker
//! at a time (so each queue receives events in Broker order), and another takes over
//! within seconds when it goes. A Broker event is acknowledged only after JetStream
//! stored every copy; a copy's `Nats-Msg-Id` is (Broker sequence, Trigger), so an event
//! routed twice — after a crash, or by the backfill and live routing both — is stored
//! once.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer};
use futures::StreamExt;
use futures::future::join_all;
use herald_api::naming;
use herald_filter::CompiledFilter;
use tokio::sync::watch;

use crate::pull::{JETSTREAM_API_TIMEOUT, Stop};
use crate::routes::{QueueCopy, Route, RouteTable};

/// Messages a router takes per pull.
const ROUTE_BATCH: usize = 256;
/// Pull expiry: well below the pin timeout, so a live router never loses its pin.
const PULL_EXPIRY: Duration = Duration::from_secs(2);
/// Pause between attempts to reopen a consumer.
const REOPEN_PAUSE: Duration = Duration::from_millis(500);
/// Delay before a Broker event whose copies could not all be stored is routed again.
const RETRY_DELAY: Duration = Duration::from_secs(1);
/// How long a router may receive nothing before it checks whether events wait: a
/// standby whose takeover of the pin went unnoticed reopens instead of idling.
const IDLE_CHECK: Duration = Duration::from_secs(10);

/// Routes one Broker's events until stopped.
pub async fn route_loop(
    jetstream: jetstream::Context,
    stream: String,
    table: Arc<RwLock<RouteTable>>,
    mut stop: watch::Receiver<Stop>,
) {
    while stop.borrow().is_running() {
        match open_router(&jetstream, &stream).await {
            Ok((consumer, messages)) => {
                route_from(&jetstream, &table, &consumer, messages, &mut stop).await;
            }
            Err(e) => {
                tracing::warn!(%stream, error = %e, "cannot open the router consumer");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(REOPEN_PAUSE) => {}
            _ = stop.changed() => {}
        }
    }
}

async fn open_router(
    jetstream: &jetstream::Context,
    stream: &str,
) -> anyhow::Result<(consumer::PullConsumer, consumer::pull::Stream)> {
    let consumer: consumer::PullConsumer = jetstream
        .get_consumer_from_stream(naming::ROUTER_CONSUMER, stream)
        .await
        .map_err(|e| anyhow::anyhow!("consumer router of stream {stream}: {e}"))?;
    let messages = consumer
        .stream()
        .group(crate::ROUTER_GROUP)
        .max_messages_per_batch(ROUTE_BATCH)
        .expires(PULL_EXPIRY)
        .heartbeat(Duration::from_secs(1))
        .messages()
        .await?;
    Ok((consumer, messages))
}

async fn route_from(
    jetstream: &jetstream::Context,
    table: &Arc<RwLock<RouteTable>>,
    consumer: &consumer::PullConsumer,
    mut messages: consumer::pull::Stream,
    stop: &mut watch::Receiver<Stop>,
) {
    let mut errors = 0u32;
    let mut last_delivered = None;
    loop {
        let first = tokio::select! {
            biased;
            _ = stop.changed() => return,
            next = messages.next() => next,
            () = tokio::time::sleep(IDLE_CHECK) => {
                // Standing by is right while another router holds the pin and makes
                // progress; events waiting while nothing is delivered for a whole
                // check mean the pin is held by a router that is gone.
                match consumer.clone().info().await {
                    Ok(info) if info.num_pending > 0
                        && last_delivered == Some(info.delivered.stream_sequence) =>
                    {
                        tracing::warn!(stream = %info.stream_name, waiting = info.num_pending, "events wait and no router takes them; releasing the pin");
                        if let Ok(stream) = jetstream.get_stream_no_info(&info.stream_name).await {
                            let _ = stream.unpin_consumer(naming::ROUTER_CONSUMER, crate::ROUTER_GROUP).await;
                        }
                        return;
                    }
                    Ok(info) => last_delivered = Some(info.delivered.stream_sequence),
                    Err(_) => {}
                }
                continue;
            }
        };
        let mut batch = Vec::with_capacity(ROUTE_BATCH);
        match first {
            Some(Ok(msg)) => batch.push(msg),
            Some(Err(e)) => {
                errors += 1;
                tracing::warn!(error = %e, "routing pull failed");
                if errors >= 2 {
                    return;
                }
                continue;
            }
            None => return,
        }
        errors = 0;
        // Whatever else already arrived is routed with it, so acks pipeline.
        while batch.len() < ROUTE_BATCH {
            match futures::FutureExt::now_or_never(messages.next()) {
                Some(Some(Ok(msg))) => batch.push(msg),
                _ => break,
            }
        }
        route_batch(jetstream, table, batch).await;
    }
}

/// Routes a batch: all copies are published at once, then each Broker event is
/// acknowledged if all its copies were stored, else handed back for another try.
async fn route_batch(
    jetstream: &jetstream::Context,
    table: &Arc<RwLock<RouteTable>>,
    batch: Vec<jetstream::Message>,
) {
    let planned: Vec<(jetstream::Message, u64, Vec<QueueCopy>)> = {
        let mut table = table
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        batch
            .into_iter()
            .map(|msg| {
                let sequence = msg.info().map_or(0, |i| i.stream_sequence);
                let copies = match herald_cloudevents::nats::decode(
                    msg.headers.as_ref(),
                    msg.payload.clone(),
                ) {
                    Ok(event) => table.route_event(sequence, &event),
                    Err(e) => {
                        tracing::warn!(sequence, error = %e, "not a CloudEvent; not routed");
                        Vec::new()
                    }
                };
                (msg, sequence, copies)
            })
            .collect()
    };
    let stores = planned.iter().map(|(msg, sequence, copies)| async move {
        let mut acks = Vec::with_capacity(copies.len());
        for copy in copies {
            acks.push(publish_copy(jetstream, msg, *sequence, copy).await);
        }
        let mut stored = true;
        for ack in acks {
            let result = match ack {
                Ok(pending) => pending.await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::warn!(sequence, error = %e, "could not queue a copy; routing the event again");
                stored = false;
            }
        }
        stored
    });
    let results = join_all(stores).await;
    for ((msg, _, _), stored) in planned.iter().zip(results) {
        let kind = if stored {
            AckKind::Ack
        } else {
            AckKind::Nak(Some(RETRY_DELAY))
        };
        if let Err(e) = msg.ack_with(kind).await {
            tracing::warn!(error = %e, "routing acknowledgement failed; the event will be routed again");
        }
    }
}

/// Publishes one copy of Broker event `msg` (number `sequence`) to a queue.
async fn publish_copy(
    jetstream: &jetstream::Context,
    msg: &jetstream::Message,
    sequence: u64,
    copy: &QueueCopy,
) -> Result<jetstream::context::PublishAckFuture, String> {
    let mut headers = HeaderMap::new();
    if let Some(original) = &msg.headers {
        for (name, values) in original.iter() {
            let name: &str = name.as_ref();
            // The copy carries the event (its `ce-` and content-type headers), not the
            // server's bookkeeping of the original (`Nats-Msg-Id`, `Nats-Pin-Id`, ...).
            if name.len() >= 5 && name[..5].eq_ignore_ascii_case("nats-") {
                continue;
            }
            for value in values {
                headers.append(name, value.as_str());
            }
        }
    }
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        copy.message_id.as_str(),
    );
    headers.insert(
        naming::HEADER_BROKER_SEQUENCE,
        sequence.to_string().as_str(),
    );
    headers.insert(naming::HEADER_FILTER_VERSION, copy.filter_version.as_str());
    jetstream
        .publish_with_headers(copy.subject.clone(), headers, msg.payload.clone())
        .await
        .map_err(|e| e.to_string())
}

/// Copies the Broker events with sequence in `first..=last` that `filter` matches into
/// `route`'s queue: the events a router evaluated before it knew the Trigger.
pub async fn reroute(
    jetstream: jetstream::Context,
    stream: String,
    route: Route,
    filter: Arc<CompiledFilter>,
    first: u64,
    last: u64,
) {
    if first > last {
        return;
    }
    let result = async {
        let events = jetstream.get_stream_no_info(&stream).await?;
        let consumer = events
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: first,
                },
                ..consumer::pull::OrderedConfig::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        let mut copied = 0u64;
        while let Some(msg) = tokio::time::timeout(JETSTREAM_API_TIMEOUT * 2, messages.next())
            .await
            .ok()
            .flatten()
        {
            let msg = msg?;
            let info = msg.info().map_err(|e| anyhow::anyhow!("{e}"))?;
            let (sequence, pending) = (info.stream_sequence, info.pending);
            if sequence > last {
                break;
            }
            if copy_if_matching(&jetstream, &msg, sequence, &route, &filter).await? {
                copied += 1;
            }
            if pending == 0 || sequence == last {
                break;
            }
        }
        anyhow::Ok(copied)
    }
    .await;
    match result {
        Ok(copied) => {
            tracing::info!(trigger = %route.trigger, first, last, copied, "routed events that arrived before this router knew the Trigger");
        }
        Err(e) => {
            tracing::warn!(trigger = %route.trigger, first, last, error = %e, "could not route the events that arrived before this router knew the Trigger");
        }
    }
}

/// Queues `msg` for `route` if `filter` matches it; waits until it is stored.
async fn copy_if_matching(
    jetstream: &jetstream::Context,
    msg: &jetstream::Message,
    sequence: u64,
    route: &Route,
    filter: &CompiledFilter,
) -> anyhow::Result<bool> {
    let Ok(event) = herald_cloudevents::nats::decode(msg.headers.as_ref(), msg.payload.clone())
    else {
        return Ok(false);
    };
    if !crate::filtering::matches(filter, &event) {
        return Ok(false);
    }
    let copy = crate::routes::copy_for(route, sequence);
    publish_copy(jetstream, msg, sequence, &copy)
        .await
        .map_err(anyhow::Error::msg)?
        .await?;
    Ok(true)
}

/// Copies a Trigger's history (its backfill consumer, up to the queue's seam) into its
/// queue, until done or stopped. Several dispatchers may share one backfill.
pub async fn backfill_loop(
    jetstream: jetstream::Context,
    stream: String,
    consumer_name: String,
    route: Route,
    filter: Arc<CompiledFilter>,
    mut stop: watch::Receiver<Stop>,
) {
    while stop.borrow().is_running() {
        let result = async {
            let consumer: consumer::PullConsumer = jetstream
                .get_consumer_from_stream(&consumer_name, &stream)
                .await?;
            let mut messages = consumer
                .stream()
                .max_messages_per_batch(ROUTE_BATCH)
                .expires(Duration::from_secs(5))
                .heartbeat(Duration::from_secs(1))
                .messages()
                .await?;
            loop {
                let next = tokio::select! {
                    biased;
                    _ = stop.changed() => return anyhow::Ok(false),
                    next = messages.next() => next,
                };
                let Some(msg) = next else {
                    return Ok(false);
                };
                let msg = msg?;
                let sequence = msg
                    .info()
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                    .stream_sequence;
                if sequence <= route.routed_after {
                    copy_if_matching(&jetstream, &msg, sequence, &route, &filter).await?;
                }
                msg.ack_with(AckKind::Ack)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                if sequence >= route.routed_after {
                    // Past the seam: live routing has the rest.
                    return Ok(true);
                }
            }
        }
        .await;
        match result {
            Ok(true) => {
                tracing::info!(trigger = %route.trigger, "backfill reached live routing");
                let _ = stop.changed().await;
                return;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::debug!(trigger = %route.trigger, error = %e, "backfill interrupted; resuming");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(REOPEN_PAUSE) => {}
            _ = stop.changed() => {}
        }
    }
}
