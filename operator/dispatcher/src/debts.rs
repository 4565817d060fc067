//! Debts: the Broker events a router evaluated before it knew a Trigger, past the
//! Trigger's seam. The router pays them before it routes anything else, so that the
//! Trigger's queue keeps Broker order.

use std::sync::RwLock;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use tokio::sync::watch;

use crate::lease::Keeper;
use crate::moves::MovesOf;
use crate::pull::{JETSTREAM_API_TIMEOUT, Stop};
use crate::router::{RETRY_DELAY, sleep_until_due, store_copy};
use crate::routes::{CatchUp, RouteTable};

/// Failed passes over the events owed to late-known Triggers before they are given up
/// (one a [`RETRY_DELAY`] apart: a stream leader election takes seconds, not minutes).
const MAX_REROUTE_FAILURES: u32 = 60;

/// Takes on, with the Broker's routing lease, what a predecessor may have left unpaid
/// ([`owe_on_takeover`]); a failure is logged and routing goes on.
pub(crate) async fn take_over(
    jetstream: &jetstream::Context,
    stream: &str,
    table: &RwLock<RouteTable>,
) {
    match owe_on_takeover(jetstream, stream, table).await {
        Ok(0) => {}
        Ok(owed) => {
            tracing::info!(%stream, triggers = owed, "owing recent Triggers what the previous router finished, in case it did not know them");
        }
        Err(e) => {
            tracing::warn!(%stream, error = %e, "cannot tell what the previous router finished; a Trigger it did not know may miss events");
        }
    }
}

/// Takes on the debts a predecessor may have left with the Broker's routing lease
/// ([`RouteTable::owe_on_takeover`]): for the Triggers whose events since their seam
/// were all stored within the last half of the Broker's duplicate window, the events
/// through the `router` consumer's ack floor. Returns how many Triggers are owed.
async fn owe_on_takeover(
    jetstream: &jetstream::Context,
    stream: &str,
    table: &RwLock<RouteTable>,
) -> anyhow::Result<usize> {
    // Both lookups answer with the info they need: no second request.
    let events = jetstream.get_stream(stream).await?;
    let window = events.cached_info().config.duplicate_window;
    let router: consumer::PullConsumer = jetstream
        .get_consumer_from_stream(herald_api::naming::ROUTER_CONSUMER, stream)
        .await?;
    let finished = router.cached_info().ack_floor.stream_sequence;
    if finished == 0 || window.is_zero() {
        return Ok(0);
    }
    // The first event stored since then: an ordered consumer starting at that time
    // says in its info whether there is one, and hands it over at once if so.
    let since = time::OffsetDateTime::now_utc() - window / 2;
    let recent = events
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartTime { start_time: since },
            ..consumer::pull::OrderedConfig::default()
        })
        .await?;
    if recent.cached_info().num_pending == 0 {
        return Ok(0);
    }
    let first = tokio::time::timeout(JETSTREAM_API_TIMEOUT, recent.messages().await?.next())
        .await
        .map_err(|_| anyhow::anyhow!("no event stored since {since} came in time"))?
        .ok_or_else(|| anyhow::anyhow!("no event stored since {since}"))??;
    let recent = first
        .info()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .stream_sequence;
    let mut table = table
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let before = table.catch_up.len();
    table.owe_on_takeover(recent, finished);
    Ok(table.catch_up.len() - before)
}

/// What the table owes to Triggers it learned of late, taken from it.
pub(crate) fn take_debts(table: &RwLock<RouteTable>) -> Vec<CatchUp> {
    std::mem::take(
        &mut table
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .catch_up,
    )
}

/// Pays `owed`, retrying a failed pass after a pause with whatever was owed since
/// (JetStream drops copies already stored, by id), and keeping the lease meanwhile:
/// another replica must not route later events while these are unpaid. A debt still
/// unpaid after [`MAX_REROUTE_FAILURES`] passes is given up, so that it cannot stop the
/// Broker's routing. `false` when the router must stop first; what is unpaid is then
/// owed again (paid when this replica routes the Broker next).
pub(crate) async fn pay_debts(
    jetstream: &jetstream::Context,
    stream: &str,
    table: &RwLock<RouteTable>,
    mut owed: Vec<CatchUp>,
    (moves, lease): (&mut MovesOf, &mut Keeper),
    stop: &mut watch::Receiver<Stop>,
) -> bool {
    let mut failures = 0u32;
    loop {
        match reroute(jetstream, stream, owed).await {
            Ok(()) => return true,
            Err(unpaid) if failures < MAX_REROUTE_FAILURES => {
                failures += 1;
                // Still owed, and still before anything routed from now on.
                table
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .owe_again(unpaid);
                let pause = tokio::time::sleep(RETRY_DELAY);
                tokio::pin!(pause);
                loop {
                    tokio::select! {
                        _ = stop.changed() => return false,
                        () = moves.moved() => return false,
                        () = sleep_until_due(lease.due()) => {
                            if !lease.keep().await {
                                return false;
                            }
                        }
                        () = &mut pause => break,
                    }
                }
                owed = take_debts(table);
            }
            Err(unpaid) => {
                for debt in unpaid {
                    tracing::error!(trigger = %debt.route.trigger, first = debt.first, last = debt.last,
                        attempts = failures + 1,
                        "gave up routing the events that arrived before this router knew the Trigger");
                }
                return true;
            }
        }
    }
}

/// Copies the Broker events the catch-ups owe (for each, `first..=last` that its
/// filter matches) into their routes' queues, each stored before the next: one pass
/// over the stream for all of them, so a Broker that gains 300 Triggers at once reads
/// its history once and asks JetStream for one consumer, not 300. When the pass
/// fails part way (a stream leader moving, a store timing out), what is still owed
/// comes back, from the first event not yet copied for every debt.
async fn reroute(
    jetstream: &jetstream::Context,
    stream: &str,
    debts: Vec<CatchUp>,
) -> Result<(), Vec<CatchUp>> {
    let debts: Vec<_> = debts.into_iter().filter(|d| d.first <= d.last).collect();
    let (Some(first), Some(last)) = (
        debts.iter().map(|d| d.first).min(),
        debts.iter().map(|d| d.last).max(),
    ) else {
        return Ok(());
    };
    let mut copied = vec![0u64; debts.len()];
    // The last Broker sequence whose copies are all stored.
    let mut done_through = first.saturating_sub(1);
    let result = async {
        let events = jetstream.get_stream_no_info(stream).await?;
        let consumer = events
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: first,
                },
                ..consumer::pull::OrderedConfig::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        loop {
            // A stall is a failure, not the end: the events up to `last` exist.
            let msg = tokio::time::timeout(JETSTREAM_API_TIMEOUT * 2, messages.next())
                .await
                .map_err(|_| anyhow::anyhow!("no event after sequence {done_through} in time"))?
                .ok_or_else(|| {
                    anyhow::anyhow!("the stream ended after sequence {done_through}")
                })??;
            let info = msg.info().map_err(|e| anyhow::anyhow!("{e}"))?;
            let (sequence, pending) = (info.stream_sequence, info.pending);
            if sequence > last {
                break;
            }
            if let Ok(event) =
                herald_cloudevents::nats::decode(msg.headers.as_ref(), msg.payload.clone())
            {
                for (debt, copied) in debts.iter().zip(copied.iter_mut()) {
                    if (debt.first..=debt.last).contains(&sequence)
                        && crate::filtering::matches(&debt.filter, &event)
                    {
                        store_copy(jetstream, &msg, sequence, &debt.route).await?;
                        *copied += 1;
                    }
                }
            }
            done_through = sequence;
            if pending == 0 || sequence == last {
                break;
            }
        }
        anyhow::Ok(())
    }
    .await;
    for (debt, copied) in debts.iter().zip(&copied) {
        let (trigger, first, last) = (&debt.route.trigger, debt.first, debt.last);
        match &result {
            Ok(()) => {
                tracing::info!(%trigger, first, last, copied, "routed events that arrived before this router knew the Trigger");
            }
            Err(e) => {
                tracing::warn!(%trigger, first, last, copied, error = %e, "could not yet route the events that arrived before this router knew the Trigger; trying again");
            }
        }
    }
    match result {
        Ok(()) => Ok(()),
        Err(_) => Err(crate::routes::still_owed(debts, done_through)),
    }
}
