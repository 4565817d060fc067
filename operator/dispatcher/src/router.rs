//! Routing: a Broker's events, each evaluated once against all its Triggers' filters
//! and copied to the queue of every Trigger that matches.
//!
//! Every dispatcher replica runs a router per Broker, but only the one holding the
//! Broker's routing lease (lease.rs) pulls the Broker stream's durable `router`
//! consumer, so copies reach the queues in Broker order; a replica that goes hands
//! the lease and what it held to another. A Broker event is acknowledged
//! only after JetStream stored every copy; a copy's `Nats-Msg-Id` is (Broker sequence, Trigger), so an event
//! routed twice — after a crash, or by the backfill and live routing both — is stored
//! once.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use herald_api::naming;
use herald_filter::CompiledFilter;
use tokio::sync::watch;

use crate::debts::{pay_debts, take_debts};
use crate::lease::Keeper;
use crate::moves::MovesOf;
use crate::pull::{JETSTREAM_API_TIMEOUT, PULL_EXPIRY, PULL_HEARTBEAT, Stop};
use crate::routes::{CatchUp, QueueCopy, Route, RouteTable};

/// Messages a router takes per pull.
const ROUTE_BATCH: usize = 256;
/// Pause between attempts to reopen a consumer.
const REOPEN_PAUSE: Duration = Duration::from_millis(500);
/// Broker events whose copies may await JetStream's acks at once.
const MAX_STORING: usize = 4096;
/// Copies one router may have awaiting JetStream's acks: below its own context's
/// limit, so it never waits for a permit that only its own unread acks would free.
const MAX_COPIES_IN_FLIGHT: usize = 16_384;
/// Delay before a Broker event whose copies could not all be stored is routed again.
pub(crate) const RETRY_DELAY: Duration = Duration::from_secs(1);
/// Routes one Broker's events until stopped.
pub async fn route_loop(
    jetstream: jetstream::Context,
    stream: String,
    table: Arc<RwLock<RouteTable>>,
    catch_up: Arc<tokio::sync::Notify>,
    (mut moves, mut lease): (MovesOf, Keeper),
    mut stop: watch::Receiver<Stop>,
) {
    // A context of its own: the acks a router waits for never hold up another
    // router's (or a delivery's reply), however many copies one Broker fans out to.
    let jetstream = jetstream::ContextBuilder::new()
        .timeout(JETSTREAM_API_TIMEOUT)
        .max_ack_inflight(4 * MAX_COPIES_IN_FLIGHT)
        .build(jetstream.client());
    while stop.borrow().is_running() {
        if !lease.may_route() {
            if !lease.try_take().await {
                tokio::select! {
                    () = tokio::time::sleep(crate::lease::RENEW_EVERY) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            if lease.holds() && !await_hand_over(&jetstream, &stream, &mut lease, &mut stop).await {
                continue;
            }
            tracing::info!(%stream, "routing this Broker");
            crate::debts::take_over(&jetstream, &stream, &table).await;
        }
        match open_router(&jetstream, &stream).await {
            Ok(messages) => {
                let sources = Sources {
                    messages,
                    moves: &mut moves,
                    lease: &mut lease,
                };
                route_from(&jetstream, &stream, &table, &catch_up, sources, &mut stop).await;
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
    lease.release().await;
}

/// Waits, keeping the lease, until the `router` consumer has no event unacknowledged:
/// what a previous holder held comes back to this router before any later event, so
/// the queues keep Broker order across the hand-over. At most the ack wait (then
/// everything it held has come back); `false` when the lease was lost or the router
/// stopped meanwhile.
async fn await_hand_over(
    jetstream: &jetstream::Context,
    stream: &str,
    lease: &mut Keeper,
    stop: &mut watch::Receiver<Stop>,
) -> bool {
    let deadline =
        tokio::time::Instant::now() + herald_api::delivery::ACK_WAIT + Duration::from_secs(1);
    loop {
        let quiet = match jetstream
            .get_consumer_from_stream::<consumer::pull::Config, _, _>(
                naming::ROUTER_CONSUMER,
                stream,
            )
            .await
        {
            Ok(consumer) => consumer.cached_info().num_ack_pending == 0,
            Err(_) => false,
        };
        if quiet || tokio::time::Instant::now() >= deadline {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.changed() => return false,
        }
        if lease
            .due()
            .is_some_and(|due| tokio::time::Instant::now() >= due)
            && !lease.keep().await
        {
            return false;
        }
    }
}

/// What a router reads besides its table: its pull, leader moves, and its lease.
struct Sources<'a> {
    messages: consumer::pull::Stream,
    moves: &'a mut MovesOf,
    lease: &'a mut Keeper,
}

async fn open_router(
    jetstream: &jetstream::Context,
    stream: &str,
) -> anyhow::Result<consumer::pull::Stream> {
    let consumer: consumer::PullConsumer = jetstream
        .get_consumer_from_stream(naming::ROUTER_CONSUMER, stream)
        .await
        .map_err(|e| anyhow::anyhow!("consumer router of stream {stream}: {e}"))?;
    Ok(consumer
        .stream()
        .max_messages_per_batch(ROUTE_BATCH)
        .expires(PULL_EXPIRY)
        .heartbeat(PULL_HEARTBEAT)
        .messages()
        .await?)
}

async fn route_from(
    jetstream: &jetstream::Context,
    stream: &str,
    table: &Arc<RwLock<RouteTable>>,
    catch_up: &tokio::sync::Notify,
    mut sources: Sources<'_>,
    stop: &mut watch::Receiver<Stop>,
) {
    let mut errors = 0u32;
    // Events whose copies were published, waiting for JetStream's acks: the router
    // goes on routing meanwhile (copies still go out in stream order, on one
    // connection), so a round trip per event never limits throughput.
    let mut storing = FuturesUnordered::new();
    let mut copies_in_flight = 0usize;
    loop {
        // Events owed to Triggers this router learned of late go out before any
        // event it routes from now on.
        let owed = take_debts(table);
        if !pay_debts(
            jetstream,
            stream,
            table,
            owed,
            (sources.moves, sources.lease),
            stop,
        )
        .await
        {
            break;
        }
        let first = tokio::select! {
            biased;
            _ = stop.changed() => break,
            () = sources.moves.moved() => break,
            () = catch_up.notified() => continue,
            () = sleep_until_due(sources.lease.due()) => {
                if sources.lease.keep().await {
                    continue;
                }
                break;
            }
            Some(stored) = storing.next(), if !storing.is_empty() => {
                copies_in_flight -= stored;
                continue;
            }
            next = sources.messages.next(), if storing.len() < MAX_STORING => next,
        };
        let mut batch = Vec::with_capacity(ROUTE_BATCH);
        match first {
            Some(Ok(msg)) => batch.push(msg),
            Some(Err(e)) => {
                errors += 1;
                tracing::warn!(error = %e, "routing pull failed");
                if errors >= 2 {
                    break;
                }
                continue;
            }
            None => break,
        }
        errors = 0;
        // Whatever else already arrived is decided under one lock.
        while batch.len() < ROUTE_BATCH {
            match futures::FutureExt::now_or_never(sources.messages.next()) {
                Some(Some(Ok(msg))) => batch.push(msg),
                _ => break,
            }
        }
        let (owed, decided) = decide(table, batch);
        // A Trigger added since the top of this loop: what it is owed precedes this
        // batch in the Broker, so it precedes it in the queue too.
        if !pay_debts(
            jetstream,
            stream,
            table,
            owed,
            (sources.moves, sources.lease),
            stop,
        )
        .await
        {
            break;
        }
        for (msg, sequence, copies) in decided {
            // Room for this event's copies first: their acks free it.
            while copies_in_flight + copies.len() > MAX_COPIES_IN_FLIGHT {
                match storing.next().await {
                    Some(stored) => copies_in_flight -= stored,
                    None => break,
                }
            }
            let mut acks = Vec::with_capacity(copies.len());
            for copy in &copies {
                acks.push(publish_copy(jetstream, &msg, sequence, copy).await);
            }
            copies_in_flight += acks.len();
            storing.push(settle(msg, sequence, acks));
        }
    }
    // What was published may still be stored: wait briefly, the rest comes back.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while storing.next().await.is_some() {}
    })
    .await;
}

/// Sleeps until `due`, or for ever without one.
pub(crate) async fn sleep_until_due(due: Option<tokio::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// A Broker event, its stream sequence, and the copies it needs.
type Decided = (jetstream::Message, u64, Vec<QueueCopy>);

/// The copies each Broker event of `batch` needs, decided under one lock of the table,
/// and what the table owed when they were decided (those events precede the batch).
fn decide(
    table: &Arc<RwLock<RouteTable>>,
    batch: Vec<jetstream::Message>,
) -> (Vec<CatchUp>, Vec<Decided>) {
    let mut table = table
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let owed = std::mem::take(&mut table.catch_up);
    // The catalog notes each event here, where it is decoded anyway: one lock per batch
    // and a map lookup per event.
    let catalog = table.catalog.clone();
    let mut catalog = catalog
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let now = std::time::SystemTime::now();
    let decided = batch
        .into_iter()
        .map(|msg| {
            let sequence = msg.info().map_or(0, |i| i.stream_sequence);
            let copies =
                match herald_cloudevents::nats::decode(msg.headers.as_ref(), msg.payload.clone()) {
                    Ok(event) => {
                        catalog.record(&event, now);
                        table.route_event(sequence, &event)
                    }
                    Err(e) => {
                        tracing::warn!(sequence, error = %e, "not a CloudEvent; not routed");
                        Vec::new()
                    }
                };
            (msg, sequence, copies)
        })
        .collect();
    (owed, decided)
}

/// Acknowledges Broker event `msg` once every copy is stored, or hands it back for
/// another try.
async fn settle(
    msg: jetstream::Message,
    sequence: u64,
    acks: Vec<Result<jetstream::context::PublishAckFuture, jetstream::context::PublishError>>,
) -> usize {
    let copies = acks.len();
    let mut stored = true;
    for ack in acks {
        let result = match ack {
            Ok(pending) => pending.await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(sequence, error = %e, "could not queue a copy; routing the event again");
            stored = false;
        }
    }
    let kind = if stored {
        AckKind::Ack
    } else {
        AckKind::Nak(Some(RETRY_DELAY))
    };
    match tokio::time::timeout(crate::pull::ACK_SEND_LIMIT, msg.ack_with(kind)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "routing acknowledgement failed; the event will be routed again");
        }
        Err(_) => {
            tracing::warn!(
                "the NATS client took no routing acknowledgement; the event will be routed again"
            );
        }
    }
    copies
}

/// Publishes one copy of Broker event `msg` (number `sequence`) to a queue.
async fn publish_copy(
    jetstream: &jetstream::Context,
    msg: &jetstream::Message,
    sequence: u64,
    copy: &QueueCopy,
) -> Result<jetstream::context::PublishAckFuture, jetstream::context::PublishError> {
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
}

/// Queues a copy of `msg` (Broker event `sequence`) for `route`; waits until it is stored.
pub(crate) async fn store_copy(
    jetstream: &jetstream::Context,
    msg: &jetstream::Message,
    sequence: u64,
    route: &Route,
) -> anyhow::Result<()> {
    let copy = crate::routes::copy_for(route, sequence);
    publish_copy(jetstream, msg, sequence, &copy)
        .await
        .map_err(anyhow::Error::msg)?
        .await?;
    Ok(())
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
    store_copy(jetstream, msg, sequence, route).await?;
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
                .expires(PULL_EXPIRY)
                .heartbeat(PULL_HEARTBEAT)
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
