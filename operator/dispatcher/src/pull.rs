//! One Trigger's pull loop: fetch from its durable consumer, deliver at most
//! `maxInFlight` at once, and keep every message it holds alive with progress acks.
//!
//! The consumer's ack wait is short ([`ACK_WAIT`]), so a message lost with a dead
//! dispatcher or a dead NATS connection comes back within seconds. What this loop
//! holds — waiting for a free slot or being delivered, for up to the delivery timeout
//! and beyond — is kept from redelivery by a `+WPI` ("working") ack every third of the
//! ack wait.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_nats::Subject;
use async_nats::jetstream;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use herald_api::delivery::ACK_WAIT;
use tokio::sync::watch;

use crate::deliver::Deliverer;
use crate::desired::TriggerDelivery;

/// How long a JetStream API call of the dispatcher may take: while a lost stream
/// leader is replaced such calls go unanswered, and a shorter wait retries sooner.
pub const JETSTREAM_API_TIMEOUT: Duration = Duration::from_secs(2);
/// First and longest pause between attempts to reopen a Trigger's consumer: short,
/// because an open is one cheap request and every second waited is delivery lost.
const REOPEN_PAUSE: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(1));
/// How long one pull request stays open (every pull of the dispatcher: Trigger
/// queues, routers, backfills).
pub const PULL_EXPIRY: Duration = Duration::from_secs(60);
/// How often nats-server confirms an open pull that has nothing to deliver.
pub const PULL_HEARTBEAT: Duration = Duration::from_secs(15);
/// How often held messages are marked as in progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(ACK_WAIT.as_secs() / 3);
/// How long a loop waits to hand acks (progress, naks) to the NATS client: a client
/// that takes no commands must not hold the loop, and an ack not sent costs at most
/// an early redelivery.
pub const ACK_SEND_LIMIT: Duration = Duration::from_secs(2);

/// What a loop is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Keep going.
    Running,
    /// Stop at once: cancel deliveries in flight and hand every held event back (the
    /// Trigger was deleted or changed, or its subscriber went away).
    Now,
    /// Stop taking new events; let deliveries in flight finish until the deadline,
    /// then hand back what is left (shutdown).
    Drain(tokio::time::Instant),
}

impl Stop {
    /// Whether the loop should go on.
    #[must_use]
    pub fn is_running(&self) -> bool {
        *self == Stop::Running
    }
}

/// Decrements the in-flight gauge when a delivery ends, however it ends (a delivery
/// cancelled with its loop included).
struct InFlight(prometheus::IntGauge);

impl InFlight {
    fn start(gauge: &prometheus::IntGauge) -> Self {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Pulls a Trigger's queue and delivers until stopped; reopens the consumer with
/// backoff when the stream breaks.
pub async fn pull_loop(
    plan: Arc<TriggerDelivery>,
    deliverer: Arc<Deliverer>,
    mut stop: watch::Receiver<Stop>,
) {
    let max_in_flight = usize::try_from(plan.delivery.max_in_flight)
        .unwrap_or(1)
        .max(1);
    // One gate for the life of the loop: reopening the pull must not refill the burst.
    let gate = plan
        .delivery
        .rate_limit
        .and_then(|rate| crate::rate::RateGate::new(rate.share(deliverer.rate_sharers)))
        .map(Arc::new);
    let mut pause = REOPEN_PAUSE.0;
    while stop.borrow().is_running() {
        match open(&deliverer.jetstream, &plan, max_in_flight).await {
            Ok(messages) => {
                pause = REOPEN_PAUSE.0;
                let pull = Pull {
                    messages,
                    max_in_flight,
                    gate: gate.clone(),
                };
                deliver_from(&plan, &deliverer, pull, &mut stop).await;
            }
            Err(e) => {
                tracing::warn!(trigger = %plan.trigger, error = %e, retry_in = ?pause, "cannot open the Trigger's consumer");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {}
        }
        pause = (pause * 2).min(REOPEN_PAUSE.1);
    }
}

/// One open pull stream and how fast its messages may be delivered.
struct Pull {
    messages: jetstream::consumer::pull::Stream,
    max_in_flight: usize,
    gate: Option<Arc<crate::rate::RateGate>>,
}

/// Delivers from one open pull stream until it breaks (two errors in a row) or the
/// loop is stopped; waits for the deliveries in flight, hands back what waits.
async fn deliver_from(
    plan: &Arc<TriggerDelivery>,
    deliverer: &Arc<Deliverer>,
    pull: Pull,
    stop: &mut watch::Receiver<Stop>,
) {
    let Pull {
        mut messages,
        max_in_flight,
        gate,
    } = pull;
    let client = deliverer.jetstream.client();
    // Everything the stream fetched is taken at once (up to twice a batch), so it is
    // covered by progress acks instead of ageing unseen in the client's buffer.
    let max_waiting = 2 * fetch_batch(max_in_flight);
    // Messages waiting or in flight, by a number of our own, with their ack subjects.
    let mut waiting: VecDeque<(u64, jetstream::Message)> = VecDeque::new();
    let mut held: HashMap<u64, Subject> = HashMap::new();
    let mut received = 0u64;
    let mut in_flight = FuturesUnordered::new();
    let share = Arc::new(deliverer.slots.share());
    let mut moves = deliverer.moves.watch(&plan.stream, &plan.consumer);
    let mut progress =
        tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut errors = 0u32;
    loop {
        while in_flight.len() < max_in_flight
            && let Some((number, msg)) = waiting.pop_front()
        {
            let (plan, deliverer, share) = (plan.clone(), deliverer.clone(), share.clone());
            let gate = gate.clone();
            in_flight.push(async move {
                // A held message waits for its turn and a slot under progress acks.
                if let Some(gate) = gate {
                    gate.wait().await;
                }
                let _slot = share.acquire().await;
                let _counted = InFlight::start(&deliverer.metrics.in_flight);
                deliverer.handle(&plan, msg).await;
                number
            });
        }
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            // The pull lived on a leader that is gone: reopen at once.
            () = moves.moved() => break,
            Some(number) = in_flight.next(), if !in_flight.is_empty() => {
                held.remove(&number);
            }
            _ = progress.tick(), if !held.is_empty() => {
                send_acks(&client, held.values(), b"+WPI", plan).await;
            }
            next = messages.next(), if waiting.len() < max_waiting => match next {
                Some(Ok(msg)) => {
                    errors = 0;
                    received += 1;
                    if let Some(reply) = &msg.reply {
                        held.insert(received, reply.clone());
                    }
                    waiting.push_back((received, msg));
                }
                Some(Err(e)) => {
                    errors += 1;
                    tracing::warn!(trigger = %plan.trigger, error = %e, "pulling failed");
                    if errors >= 2 {
                        break;
                    }
                }
                None => break,
            },
        }
    }
    // Not started: back to the consumer at once rather than after the ack wait.
    let not_started: Vec<Subject> = waiting
        .drain(..)
        .filter_map(|(number, _)| held.remove(&number))
        .collect();
    send_acks(&client, not_started.iter(), b"-NAK", plan).await;
    let deadline = match *stop.borrow() {
        Stop::Drain(deadline) => Some(deadline),
        // The stream broke: deliveries in flight still finish (their acks may land).
        Stop::Running => Some(tokio::time::Instant::now() + plan.delivery.timeout),
        Stop::Now => None,
    };
    if let Some(deadline) = deadline {
        let drained = tokio::time::sleep_until(deadline);
        tokio::pin!(drained);
        while !in_flight.is_empty() {
            tokio::select! {
                Some(number) = in_flight.next() => { held.remove(&number); }
                _ = progress.tick() => send_acks(&client, held.values(), b"+WPI", plan).await,
                () = &mut drained => break,
            }
        }
    }
    // Cancelled or out of time: what is still held goes back for redelivery now.
    drop(in_flight);
    send_acks(&client, held.values(), b"-NAK", plan).await;
}

/// Sends one ack of kind `ack` (`+WPI`, `-NAK`) to each of `replies`, for at most
/// [`ACK_SEND_LIMIT`] in all. Acks not sent only cost an early or late redelivery
/// (at least once holds either way).
async fn send_acks<'a>(
    client: &async_nats::Client,
    replies: impl Iterator<Item = &'a Subject>,
    ack: &'static [u8],
    plan: &TriggerDelivery,
) {
    let sending = async {
        for reply in replies {
            let _ = client.publish(reply.clone(), Bytes::from_static(ack)).await;
        }
    };
    if tokio::time::timeout(ACK_SEND_LIMIT, sending).await.is_err() {
        tracing::warn!(trigger = %plan.trigger, ack = %String::from_utf8_lossy(ack), "the NATS client took no acks for {ACK_SEND_LIMIT:?}");
    }
}

/// Messages per pull request.
fn fetch_batch(max_in_flight: usize) -> usize {
    max_in_flight.min(500)
}

async fn open(
    jetstream: &jetstream::Context,
    plan: &TriggerDelivery,
    max_in_flight: usize,
) -> anyhow::Result<jetstream::consumer::pull::Stream> {
    // One API call (CONSUMER.INFO), answered by the consumer's leader.
    let consumer: jetstream::consumer::PullConsumer = jetstream
        .get_consumer_from_stream(&plan.consumer, &plan.stream)
        .await
        .map_err(|e| {
            anyhow::anyhow!("consumer {} of stream {}: {e}", plan.consumer, plan.stream)
        })?;
    // Long pulls with slow heartbeats, so an idle Trigger costs nearly nothing: a
    // pull silenced by a leader move is reopened on JetStream's advisory (moves.rs);
    // heartbeats are only the safety net for an advisory missed.
    Ok(consumer
        .stream()
        .max_messages_per_batch(fetch_batch(max_in_flight))
        .expires(PULL_EXPIRY)
        .heartbeat(PULL_HEARTBEAT)
        .messages()
        .await?)
}
