//! One event, one attempt: filter, POST in binary mode, then ack, retry (NAK with the
//! backoff delay, so JetStream redelivers it later), dead-letter or drop. A
//! CloudEvent in a 2xx answer is a reply and is published into the Trigger's Broker
//! before the event is acked.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use herald_api::delivery::EffectiveDelivery;
use herald_api::naming;
use herald_cloudevents::CloudEvent;
use hyper::HeaderMap;

pub use crate::attempts::Attempts;

use crate::desired::TriggerDelivery;
use crate::metrics::{Metrics, Outcome};
use herald_runtime::outbound::{self, answer, answer::Cut};

/// Most bytes of a failed answer's body that are read: what the dead-letter
/// attributes keep of it.
const ERROR_DATA_LIMIT: usize = 1024;
/// Most bytes of a successful answer that are read: a reply is one event, and one
/// event is at most NATS' default largest payload (and the ingress's default
/// `--max-body-bytes`). A longer answer is still a delivery; its reply is dropped.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;
/// Delay before the dead-letter sink is tried again after it failed.
const DEAD_LETTER_RETRY: Duration = Duration::from_secs(5);

/// The result of one HTTP attempt.
#[derive(Debug)]
pub enum Attempt {
    Answered {
        status: u16,
        headers: HeaderMap,
        /// Response body: at most [`MAX_ANSWER_BYTES`] of a 2xx answer, at most
        /// [`ERROR_DATA_LIMIT`] of another.
        body: Bytes,
        /// Why the body was not read to its end, if it was not.
        cut: Option<Cut>,
    },
    /// No answer within the delivery timeout.
    TimedOut,
    /// The connection failed, or the event's Job failed.
    Failed(String),
    /// The egress policy refused the destination: final, sending again cannot help.
    Refused(String),
    /// The Trigger's transform failed for this event: final, the same program on
    /// the same event fails again. Nothing was sent.
    Untransformable(herald_transform::RunError),
    /// The event's Job (a Trigger with `job`) completed.
    Completed,
    /// The apiserver refused the event's Job or Secret as invalid: final, the same
    /// Job is refused again.
    Rejected(String),
}

impl Attempt {
    fn status(&self) -> u16 {
        match self {
            Self::Answered { status, .. } => *status,
            _ => 0,
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Answered {
                status,
                cut: Some(cut @ (Cut::TooSlow | Cut::Broken)),
                ..
            } => format!("HTTP {status} ({})", cut.describe()),
            Self::Answered { status, .. } => format!("HTTP {status}"),
            Self::TimedOut => "timed out".into(),
            Self::Failed(e) | Self::Refused(e) | Self::Rejected(e) => e.clone(),
            Self::Completed => "the Job completed".into(),
            Self::Untransformable(e) => format!("transform failed: {e}"),
        }
    }
}

/// Extension attribute with the replies an event may still cause: a subscriber that
/// answers every event with one it receives again would loop forever. Knative's name,
/// so a loop through Knative and Herald Brokers is bounded too.
pub const REPLY_TTL_ATTRIBUTE: &str = "knativebrokerttl";
/// Replies in a row an event from a producer may cause (Knative's default).
pub const DEFAULT_REPLY_TTL: u32 = 255;

/// The time to live of a reply to `answered`, or `None` when it must not be sent.
/// A missing or unreadable value counts as the default; a larger one is capped.
#[must_use]
pub fn reply_ttl(answered: &CloudEvent) -> Option<u32> {
    let ttl = answered
        .get(REPLY_TTL_ATTRIBUTE)
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(DEFAULT_REPLY_TTL)
        .min(DEFAULT_REPLY_TTL);
    ttl.checked_sub(1).filter(|left| *left > 0)
}

/// Why a subscriber's reply was not published (the event is delivered again).
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    #[error("invalid reply: {0}")]
    Invalid(#[from] herald_cloudevents::http::RequestError),
    #[error(transparent)]
    Publish(#[from] async_nats::jetstream::context::PublishError),
}

/// What to do with an event after attempt number `attempt` (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered.
    Ack,
    /// Try again after this delay.
    Retry(Duration),
    /// Give up: dead-letter sink, or drop.
    GiveUp,
}

/// Knative's delivery contract: 2xx succeeds; what [`outbound::is_retryable`] says,
/// timeouts and connection errors are retried while retries remain (after
/// `Retry-After` on 429 and 503, capped); anything else is final, and so is a
/// destination the egress policy refuses.
#[must_use]
pub fn verdict(attempt: &Attempt, number: u32, delivery: &EffectiveDelivery) -> Verdict {
    let retryable = match attempt {
        Attempt::Answered { status, .. } if (200..300).contains(status) => return Verdict::Ack,
        Attempt::Completed => return Verdict::Ack,
        Attempt::Answered { status, .. } => {
            hyper::StatusCode::from_u16(*status).is_ok_and(outbound::is_retryable)
        }
        Attempt::TimedOut | Attempt::Failed(_) => true,
        Attempt::Refused(_) | Attempt::Untransformable(_) | Attempt::Rejected(_) => false,
    };
    if retryable && number <= delivery.retry {
        let backoff = delivery.backoff(number);
        // A subscriber that says when to come back (429/503 `Retry-After`) is heeded,
        // up to `retryAfterMax`, but never retried sooner than the backoff.
        let asked = match attempt {
            Attempt::Answered {
                status, headers, ..
            } => answer::retry_after(*status, headers),
            _ => None,
        };
        Verdict::Retry(asked.map_or(backoff, |asked| {
            backoff.max(asked.min(delivery.retry_after_max))
        }))
    } else {
        Verdict::GiveUp
    }
}

/// Shared by every Trigger's loop.
pub struct Deliverer {
    /// HTTP clients for `http://` and `https://` destinations (keep-alive pools).
    pub http: crate::clients::Clients,
    /// For publishing replies.
    pub jetstream: jetstream::Context,
    pub metrics: Metrics,
    /// Dropped events to report as Kubernetes Events (none in benchmarks and sidecars).
    pub drops: Option<std::sync::Arc<crate::reports::DropReports>>,
    /// Tokens for subscribers that set `audience` (none in sidecar mode).
    pub tokens: Option<herald_runtime::token::TokenSource>,
    /// Attempts made per event.
    pub attempts: Attempts,
    /// Leader moves that silence open pulls.
    pub moves: crate::moves::LeaderMoves,
    /// Deliveries in flight across all Triggers, bounded (`--max-in-flight`) and
    /// shared fairly, so one Trigger cannot starve the others.
    pub slots: std::sync::Arc<crate::slots::Slots>,
    /// How many dispatchers share each Trigger's rate limit (`--replicas`).
    pub rate_sharers: u32,
    /// Runs the events of Triggers with a `job` (none in sidecars and benchmarks).
    pub jobs: Option<std::sync::Arc<crate::jobs::Jobs>>,
}

impl Deliverer {
    /// POSTs `event` to `url` in binary mode, trusting `ca_certs` too for https; the
    /// answer, body included, must come within `timeout`. A status that came in time
    /// counts even if its body did not (see [`answer`]). With `prefer_reply` the
    /// request says `Prefer: reply`, as Knative's brokers do: a reply would be published.
    pub async fn post(
        &self,
        url: &str,
        event: &CloudEvent,
        timeout: Duration,
        audience: Option<&str>,
        ca_certs: Option<&str>,
        prefer_reply: bool,
    ) -> Attempt {
        let http = match self.http.for_destination(ca_certs) {
            Ok(http) => http,
            Err(e) => {
                return Attempt::Failed(format!(
                    "cannot send to {url}: {}",
                    herald_runtime::tls::error_chain(&e)
                ));
            }
        };
        let mut request = match outbound::request(url, event) {
            Ok(r) => r,
            Err(e) => return Attempt::Failed(e.to_string()),
        };
        if prefer_reply {
            request.headers_mut().insert(
                hyper::header::HeaderName::from_static("prefer"),
                hyper::header::HeaderValue::from_static("reply"),
            );
        }
        if let Some(audience) = audience {
            match self.bearer(audience, url).await {
                Ok(value) => {
                    request
                        .headers_mut()
                        .insert(hyper::header::AUTHORIZATION, value);
                }
                Err(attempt) => return attempt,
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let response = match outbound::send(&http, request, timeout).await {
            Ok(response) => response,
            Err(outbound::SendError::TimedOut { .. }) => return Attempt::TimedOut,
            Err(e @ outbound::SendError::Refused { .. }) => return Attempt::Refused(e.to_string()),
            Err(e) => return Attempt::Failed(e.to_string()),
        };
        let (parts, body) = response.into_parts();
        let status = parts.status.as_u16();
        let limit = if parts.status.is_success() {
            MAX_ANSWER_BYTES
        } else {
            ERROR_DATA_LIMIT
        };
        let (body, cut) = answer::read(body, limit, deadline).await;
        Attempt::Answered {
            status,
            headers: parts.headers,
            body,
            cut,
        }
    }

    /// `Bearer <token>` for `audience`, to be sent to `url`: only to the host the
    /// audience names (the operator refuses other Triggers; checked again here), and
    /// never one the apiserver accepts. Those two are [`Attempt::Refused`]: no retry
    /// can change them.
    async fn bearer(
        &self,
        audience: &str,
        url: &str,
    ) -> Result<hyper::header::HeaderValue, Attempt> {
        herald_api::audience::check(audience, url).map_err(|e| Attempt::Refused(e.to_string()))?;
        let Some(tokens) = &self.tokens else {
            return Err(Attempt::Failed(format!(
                "the subscriber wants a token for audience {audience}, but this dispatcher has no --token-service-account"
            )));
        };
        let token = tokens.token(audience).await.map_err(|e| {
            if e.is_retryable() {
                Attempt::Failed(e.to_string())
            } else {
                Attempt::Refused(e.to_string())
            }
        })?;
        herald_runtime::token::bearer(&token).map_err(|e| Attempt::Failed(e.to_string()))
    }

    /// Handles one message of a Trigger's queue.
    pub async fn handle(&self, plan: &TriggerDelivery, msg: jetstream::Message) {
        let (sequence, published) = match msg.info() {
            Ok(info) => (info.stream_sequence, info.published),
            Err(e) => {
                tracing::warn!(error = %e, "message without JetStream metadata; skipping");
                return;
            }
        };
        let number = self.attempts.made(&plan.stream, sequence).saturating_add(1);
        let outcome = |o| self.metrics.outcome(&plan.namespace, &plan.trigger, o);
        let event = match herald_cloudevents::nats::decode(
            msg.headers.as_ref(),
            msg.payload.clone(),
        ) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(trigger = %plan.trigger, error = %e, "not a CloudEvent; removing it from this Trigger");
                ack(&msg, AckKind::Term).await;
                outcome(Outcome::Malformed);
                return;
            }
        };
        // Routing already applied the filters; a copy routed under filters that have
        // changed since (or a message no router stamped) is checked against the
        // current ones.
        let routed_under = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(naming::HEADER_FILTER_VERSION))
            .map(async_nats::HeaderValue::as_str);
        if routed_under != Some(plan.filter_version.as_str())
            && !crate::filtering::matches(&plan.filter, &event)
        {
            ack(&msg, AckKind::Ack).await;
            outcome(Outcome::Filtered);
            return;
        }
        if number > plan.delivery.attempts() {
            // Retries were used up before; only the dead-letter sink was missing.
            self.give_up(
                plan,
                &msg,
                &event,
                &Attempt::Failed("retries used up earlier".into()),
                number,
            )
            .await;
            return;
        }
        let transformed = match self.transform(plan, &msg, &event, number).await {
            crate::transforming::Transformed::Settled => return,
            crate::transforming::Transformed::AsIs => None,
            crate::transforming::Transformed::New(e) => Some(e),
        };
        let attempt = self
            .attempt(plan, transformed.as_ref().unwrap_or(&event), number)
            .await;
        if matches!(attempt, Attempt::Refused(_)) {
            outcome(Outcome::Refused);
        }
        match verdict(&attempt, number, &plan.delivery) {
            Verdict::Ack => {
                if let Attempt::Answered {
                    headers, body, cut, ..
                } = &attempt
                    && let Err(e) = self
                        .publish_reply(plan, &event, headers, body.clone(), *cut)
                        .await
                {
                    tracing::warn!(trigger = %plan.trigger, error = %e, "could not publish the reply; the event will be delivered again");
                    ack(&msg, AckKind::Nak(Some(Duration::from_secs(1)))).await;
                    outcome(Outcome::Retried);
                    return;
                }
                ack(&msg, AckKind::Ack).await;
                self.attempts.settle(&plan.stream, sequence);
                outcome(Outcome::Delivered);
                let age = time::OffsetDateTime::now_utc() - published;
                self.metrics.latency(
                    &plan.namespace,
                    &plan.trigger,
                    age.as_seconds_f64().max(0.0),
                );
            }
            Verdict::Retry(delay) => {
                tracing::debug!(trigger = %plan.trigger, id = event.id(), attempt = number, error = %attempt.describe(), ?delay, "delivery failed; retrying");
                self.attempts.record(&plan.stream, sequence, number);
                ack(&msg, AckKind::Nak(Some(delay))).await;
                outcome(Outcome::Retried);
            }
            Verdict::GiveUp => self.give_up(plan, &msg, &event, &attempt, number).await,
        }
    }

    /// Attempt `number` at `event`: a POST to the subscriber, or for a Trigger with a
    /// `job` a Job (see [`crate::jobs`]).
    async fn attempt(&self, plan: &TriggerDelivery, event: &CloudEvent, number: u32) -> Attempt {
        match (&plan.job, &self.jobs) {
            (Some(job), Some(jobs)) => jobs.run(plan, job, event, number).await,
            (Some(_), None) => Attempt::Failed("this dispatcher does not run Jobs".into()),
            (None, _) => {
                self.post(
                    &plan.subscriber,
                    event,
                    plan.delivery.timeout,
                    plan.subscriber_audience.as_deref(),
                    plan.subscriber_ca_certs.as_deref(),
                    plan.accepts_replies,
                )
                .await
            }
        }
    }

    /// A reply (a CloudEvent in the answer) is published into the Trigger's Broker,
    /// with one hop fewer to live than the event it answers; at none, it is dropped.
    /// A reply whose body was `cut` is dropped too: a part of an event is not one.
    async fn publish_reply(
        &self,
        plan: &TriggerDelivery,
        answered: &CloudEvent,
        headers: &HeaderMap,
        body: Bytes,
        cut: Option<Cut>,
    ) -> Result<(), ReplyError> {
        let is_event = headers.contains_key("ce-specversion")
            || headers
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.starts_with("application/cloudevents"));
        if !is_event {
            return Ok(());
        }
        if let Some(cut) = cut {
            tracing::warn!(trigger = %plan.trigger, id = answered.id(), "reply dropped, the event counts as delivered: {} ({MAX_ANSWER_BYTES} bytes)", cut.describe());
            self.metrics
                .outcome(&plan.namespace, &plan.trigger, Outcome::ReplyDropped);
            return Ok(());
        }
        let (_, events) = herald_cloudevents::http::decode(headers, body)?;
        if !plan.accepts_replies {
            tracing::warn!(trigger = %plan.trigger, id = answered.id(), "reply dropped: Broker {} has spec.auth and does not accept replies (spec.auth.acceptReplies)", plan.broker);
            self.metrics
                .outcome(&plan.namespace, &plan.trigger, Outcome::ReplyDropped);
            return Ok(());
        }
        let Some(ttl) = reply_ttl(answered) else {
            tracing::warn!(trigger = %plan.trigger, id = answered.id(), "reply dropped: its event is the end of {DEFAULT_REPLY_TTL} replies in a row (a reply loop?)");
            self.metrics
                .outcome(&plan.namespace, &plan.trigger, Outcome::ReplyDropped);
            return Ok(());
        };
        for mut reply in events {
            reply.set(REPLY_TTL_ATTRIBUTE, ttl.to_string());
            let subject = naming::event_subject(&plan.namespace, &plan.broker, reply.type_());
            let (headers, payload) = herald_cloudevents::nats::encode(&reply);
            self.jetstream
                .publish_with_headers(subject, headers, payload)
                .await?
                .await?;
        }
        Ok(())
    }

    /// Retries are used up (or the failure is final): dead-letter sink, else drop.
    pub(crate) async fn give_up(
        &self,
        plan: &TriggerDelivery,
        msg: &jetstream::Message,
        event: &CloudEvent,
        last: &Attempt,
        number: u32,
    ) {
        let outcome = |o| self.metrics.outcome(&plan.namespace, &plan.trigger, o);
        let Some(sink) = &plan.dead_letter_sink else {
            tracing::warn!(trigger = %plan.trigger, id = event.id(), attempts = number, error = %last.describe(), "event dropped: retries used up and no dead-letter sink");
            ack(msg, AckKind::Term).await;
            self.settle(plan, msg);
            outcome(Outcome::Dropped);
            if let Some(drops) = &self.drops {
                drops.note(&plan.namespace, &plan.trigger, number, last.describe());
            }
            return;
        };
        let mut dead = event.clone();
        dead.set("knativeerrordest", plan.subscriber.as_str());
        dead.set("knativeerrorcode", last.status().to_string());
        if let Attempt::Answered { body, .. } = last
            && !body.is_empty()
        {
            let text =
                String::from_utf8_lossy(&body[..body.len().min(ERROR_DATA_LIMIT)]).into_owned();
            dead.set("knativeerrordata", text);
        }
        dead.set("heralderror", last.describe());
        dead.set("heraldattempts", number.to_string());
        dead.set(
            "heraldtrigger",
            format!("{}/{}", plan.namespace, plan.trigger),
        );
        let sink_ca_certs = plan
            .delivery
            .dead_letter_sink
            .as_ref()
            .and_then(|d| d.ca_certs.as_deref());
        match self
            .post(
                sink,
                &dead,
                plan.delivery.timeout,
                None,
                sink_ca_certs,
                false,
            )
            .await
        {
            Attempt::Answered { status, .. } if (200..300).contains(&status) => {
                ack(msg, AckKind::Ack).await;
                self.settle(plan, msg);
                outcome(Outcome::DeadLettered);
            }
            // Trying a refused sink again cannot help: the event is dropped, reported.
            Attempt::Refused(why) => {
                tracing::warn!(trigger = %plan.trigger, id = event.id(), error = %why, "event dropped: the dead-letter sink is refused");
                ack(msg, AckKind::Term).await;
                self.settle(plan, msg);
                outcome(Outcome::Refused);
                outcome(Outcome::Dropped);
                if let Some(drops) = &self.drops {
                    let reason = format!("{}; dead-letter sink: {why}", last.describe());
                    drops.note(&plan.namespace, &plan.trigger, number, reason);
                }
            }
            failed => {
                tracing::warn!(trigger = %plan.trigger, id = event.id(), error = %failed.describe(), "dead-letter sink failed; trying again later");
                if let Ok(info) = msg.info() {
                    self.attempts
                        .record(&plan.stream, info.stream_sequence, number);
                }
                ack(msg, AckKind::Nak(Some(DEAD_LETTER_RETRY))).await;
            }
        }
    }

    fn settle(&self, plan: &TriggerDelivery, msg: &jetstream::Message) {
        if let Ok(info) = msg.info() {
            self.attempts.settle(&plan.stream, info.stream_sequence);
        }
    }
}

pub(crate) async fn ack(msg: &jetstream::Message, kind: AckKind) {
    // JetStream redelivers after the ack wait: at least once holds if this fails.
    match tokio::time::timeout(crate::pull::ACK_SEND_LIMIT, msg.ack_with(kind)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, ?kind, "acknowledgement failed"),
        Err(_) => tracing::warn!(
            ?kind,
            "the NATS client took no acknowledgement for {:?}",
            crate::pull::ACK_SEND_LIMIT
        ),
    }
}

#[cfg(test)]
#[path = "deliver_tests.rs"]
mod tests;
