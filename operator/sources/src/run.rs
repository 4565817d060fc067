//! The running side of cron and NATS sources: one task per EventSource.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use futures::StreamExt;
use herald_cloudevents::CloudEvent;
use tokio::sync::watch;

use crate::plan::{CRON_TYPE, Kind, NATS_TYPE, SourcePlan};
use crate::sink::Sender;

/// How long after a tick an adapter that (re)starts still fires it. Replicas and
/// restarts fire the same tick with the same id, which a Broker stores once.
const TICK_GRACE: Duration = Duration::from_secs(5);

/// A new event from `plan` with the plan's extensions.
pub(crate) fn new_event(plan: &SourcePlan, id: &str, type_: &str) -> CloudEvent {
    let mut event = CloudEvent::new(id, &plan.source(), type_);
    for (name, value) in &plan.extensions {
        event.set(name, value);
    }
    event
}

/// The cron event of `tick`: its id is the tick's time, so every replica emits the
/// same event for the same tick.
pub(crate) fn cron_event(plan: &SourcePlan, tick: chrono::DateTime<Utc>) -> CloudEvent {
    let when = tick.to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut event = new_event(plan, &when, CRON_TYPE);
    event.set("time", &when);
    if let Kind::Cron {
        data: Some(data),
        content_type,
        ..
    } = &plan.kind
    {
        event.set("datacontenttype", content_type);
        event.data = Some(Bytes::from(data.clone()));
    }
    event
}

async fn run_cron(plan: Arc<SourcePlan>, sender: Sender, mut stop: watch::Receiver<bool>) {
    let Kind::Cron { schedule, .. } = &plan.kind else {
        return;
    };
    let grace = chrono::Duration::from_std(TICK_GRACE).unwrap_or_default();
    let mut last = schedule.last_at_or_before(Utc::now(), grace);
    if let Some(tick) = last {
        let _ = sender
            .send(
                &plan.namespace,
                &plan.name,
                &plan.sink,
                &cron_event(&plan, tick),
            )
            .await;
    }
    loop {
        let Some(next) = schedule.next_after(last.unwrap_or_else(Utc::now).max(Utc::now() - grace))
        else {
            tracing::warn!(source = %plan.name, "the schedule has no next tick");
            return;
        };
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        let event = cron_event(&plan, next);
        // Sending may retry for a while; the next tick is scheduled from this one.
        let _ = sender
            .send(&plan.namespace, &plan.name, &plan.sink, &event)
            .await;
        last = Some(next);
    }
}

async fn run_nats(
    plan: Arc<SourcePlan>,
    sender: Sender,
    default: async_nats::Client,
    mut stop: watch::Receiver<bool>,
) {
    let Kind::Nats {
        url,
        subject,
        queue_group,
    } = &plan.kind
    else {
        return;
    };
    let mut pause = Duration::from_millis(250);
    while !*stop.borrow() {
        let client = match url {
            None => Ok(default.clone()),
            Some(url) => async_nats::connect(url.as_str())
                .await
                .map_err(|e| e.to_string()),
        };
        let subscription = match client {
            Ok(c) => c
                .queue_subscribe(subject.clone(), queue_group.clone())
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match subscription {
            Ok(mut messages) => {
                pause = Duration::from_millis(250);
                loop {
                    tokio::select! {
                        message = messages.next() => match message {
                            Some(m) => {
                                let event = nats_event(&plan, &m);
                                let _ = sender.send(&plan.namespace, &plan.name, &plan.sink, &event).await;
                            }
                            None => break,
                        },
                        _ = stop.changed() => return,
                    }
                }
            }
            Err(e) => tracing::warn!(source = %plan.name, error = %e, "cannot subscribe"),
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}

/// The event of a NATS message: its subject as `subject`, its payload as data.
pub(crate) fn nats_event(plan: &SourcePlan, message: &async_nats::Message) -> CloudEvent {
    let header = |name: &str| {
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
    };
    let id = header("Nats-Msg-Id").unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut event = new_event(plan, &id, NATS_TYPE);
    event.set("subject", message.subject.as_str());
    event.set(
        "datacontenttype",
        header("Content-Type").unwrap_or_else(|| "application/octet-stream".into()),
    );
    event.data = Some(message.payload.clone());
    event
}

/// Starts the task of a cron or NATS plan (webhooks are served by the HTTP server).
pub(crate) fn spawn(
    plan: Arc<SourcePlan>,
    sender: Sender,
    nats: async_nats::Client,
    stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    match plan.kind {
        Kind::Cron { .. } => Some(tokio::spawn(run_cron(plan, sender, stop))),
        Kind::Nats { .. } => Some(tokio::spawn(run_nats(plan, sender, nats, stop))),
        Kind::Webhook { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Schedule;
    use std::collections::BTreeMap;

    #[test]
    fn cron_events_are_the_same_for_the_same_tick() {
        let plan = SourcePlan {
            namespace: "ns".into(),
            name: "tick".into(),
            sink: "http://sink".into(),
            extensions: BTreeMap::from([("team".into(), "a".into())]),
            kind: Kind::Cron {
                schedule: Schedule::parse("* * * * *", None).unwrap(),
                data: Some("{\"hello\":1}".into()),
                content_type: "application/json".into(),
            },
        };
        let tick = chrono::DateTime::parse_from_rfc3339("2026-01-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let (a, b) = (cron_event(&plan, tick), cron_event(&plan, tick));
        assert_eq!(a.id(), b.id());
        assert_eq!(a.id(), "2026-01-01T10:00:00Z");
        assert_eq!(a.type_(), CRON_TYPE);
        assert_eq!(a.get("team"), Some("a"));
        assert_eq!(a.get("datacontenttype"), Some("application/json"));
        assert_eq!(a.data.as_deref(), Some(&b"{\"hello\":1}"[..]));
    }
}
