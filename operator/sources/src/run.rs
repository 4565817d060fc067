//! The running side of cron and NATS sources: one task per EventSource.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use futures::StreamExt;
use herald_cloudevents::CloudEvent;
use tokio::sync::watch;

use crate::resolved::{CRON_TYPE, Kind, NATS_TYPE, ResolvedSource};
use crate::sink::Sender;

/// How long after a tick an adapter that (re)starts still fires it. Replicas and
/// restarts fire the same tick with the same id, which a Broker stores once.
const TICK_GRACE: Duration = Duration::from_secs(5);

/// The cron event of `tick`: its id is the tick's time, so every replica emits the
/// same event for the same tick.
pub(crate) fn cron_event(plan: &ResolvedSource, tick: chrono::DateTime<Utc>) -> CloudEvent {
    let when = tick.to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut event = plan.new_event(&when, CRON_TYPE);
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

async fn run_cron(plan: Arc<ResolvedSource>, sender: Sender, mut stop: watch::Receiver<bool>) {
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

/// What a NATS source connects with: the adapter's own connection (lent only to
/// sources the operator found confined, see [`herald_api::nats_source`]), or a
/// connection of the source's own to its `url` and/or with its credentials.
#[derive(Clone)]
pub(crate) struct NatsAccess {
    /// The adapter's connection.
    pub default: async_nats::Client,
    /// The adapter's server URL(s), for a source with credentials but no URL.
    pub default_url: String,
    /// For reading the source's credentials Secret at each (re)connect.
    pub kube: kube::Client,
}

/// Why a NATS source is not being read (it is tried again after a pause).
#[derive(Debug, thiserror::Error)]
enum NatsSourceError {
    #[error("not a NATS source")]
    NotNats,
    #[error("the NATS credentials are unavailable ({0}); not connecting without them")]
    NoCredentials(#[source] crate::SecretError),
    #[error(transparent)]
    Unconfined(herald_api::nats_source::ConfinementError),
    #[error("the credentials are not a .creds file: {0}")]
    BadCredentials(#[source] std::io::Error),
    #[error("bad NATS URL {servers}: {source}")]
    BadUrl {
        servers: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Connect(#[from] async_nats::ConnectError),
    #[error("stream {stream}: {source}")]
    Stream {
        stream: String,
        #[source]
        source: async_nats::jetstream::context::GetStreamError,
    },
    #[error("consumer {durable}: {source}")]
    Consumer {
        durable: String,
        #[source]
        source: async_nats::jetstream::stream::ConsumerError,
    },
    #[error(transparent)]
    Pull(#[from] async_nats::jetstream::consumer::StreamError),
    #[error(transparent)]
    Message(#[from] async_nats::jetstream::consumer::pull::MessagesError),
    #[error(transparent)]
    Subscribe(#[from] async_nats::SubscribeError),
    #[error("the consumer ended")]
    ConsumerEnded,
    #[error("the subscription ended")]
    SubscriptionEnded,
}

async fn connect(
    plan: &ResolvedSource,
    access: &NatsAccess,
) -> Result<async_nats::Client, NatsSourceError> {
    let Kind::Nats {
        url,
        subject,
        queue_group,
        jetstream,
        credentials,
    } = &plan.kind
    else {
        return Err(NatsSourceError::NotNats);
    };
    let credentials = match credentials {
        // Never fall back to the adapter's identity when the source's own is missing.
        Some(secret) => {
            let bytes = crate::secret_value(&access.kube, &plan.namespace, secret)
                .await
                .map_err(NatsSourceError::NoCredentials)?;
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        None => None,
    };
    if url.is_none() && credentials.is_none() {
        let names = herald_api::nats_source::ReadNames {
            queue_group: queue_group.clone(),
            jetstream: jetstream.clone(),
        };
        herald_api::nats_source::confinement(&plan.namespace, subject, &names)
            .map_err(NatsSourceError::Unconfined)?;
        return Ok(access.default.clone());
    }
    let options = match &credentials {
        Some(creds) => async_nats::ConnectOptions::with_credentials(creds)
            .map_err(NatsSourceError::BadCredentials)?,
        None => async_nats::ConnectOptions::new(),
    };
    let servers = url.as_deref().unwrap_or(&access.default_url);
    let servers: Vec<async_nats::ServerAddr> = servers
        .split(',')
        .map(|u| u.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<_, _>>()
        .map_err(|source| NatsSourceError::BadUrl {
            servers: servers.to_owned(),
            source,
        })?;
    Ok(options
        .name(format!("herald-sources {}/{}", plan.namespace, plan.name))
        .connect(servers)
        .await?)
}

async fn forward(plan: &ResolvedSource, sender: &Sender, message: &async_nats::Message) -> bool {
    let event = nats_event(plan, message);
    sender
        .send(&plan.namespace, &plan.name, &plan.sink, &event)
        .await
        .is_ok()
}

/// Reads the source until the stream ends or `stop` fires; `Err` to retry.
async fn consume(
    plan: &ResolvedSource,
    sender: &Sender,
    client: async_nats::Client,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), NatsSourceError> {
    let Kind::Nats {
        subject,
        queue_group,
        jetstream,
        ..
    } = &plan.kind
    else {
        return Ok(());
    };
    if let Some((stream, durable)) = jetstream {
        use async_nats::jetstream::{AckKind, consumer::pull};
        let context = async_nats::jetstream::new(client);
        let stream =
            context
                .get_stream(stream)
                .await
                .map_err(|source| NatsSourceError::Stream {
                    stream: stream.clone(),
                    source,
                })?;
        let consumer = stream
            .get_or_create_consumer(
                durable,
                pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: subject.clone(),
                    ..pull::Config::default()
                },
            )
            .await
            .map_err(|source| NatsSourceError::Consumer {
                durable: durable.clone(),
                source,
            })?;
        let mut messages = consumer.messages().await?;
        loop {
            tokio::select! {
                next = messages.next() => match next {
                    Some(Ok(m)) => {
                        // Acknowledged only once the sink took it; otherwise redelivered later.
                        let kind = if forward(plan, sender, &m).await {
                            AckKind::Ack
                        } else {
                            AckKind::Nak(Some(Duration::from_secs(5)))
                        };
                        if let Err(e) = m.ack_with(kind).await {
                            tracing::warn!(source = %plan.name, error = %e, "acknowledgement failed");
                        }
                    }
                    Some(Err(e)) => return Err(e.into()),
                    None => return Err(NatsSourceError::ConsumerEnded),
                },
                _ = stop.changed() => return Ok(()),
            }
        }
    }
    let mut messages = client
        .queue_subscribe(subject.clone(), queue_group.clone())
        .await?;
    loop {
        tokio::select! {
            next = messages.next() => match next {
                Some(m) => {
                    forward(plan, sender, &m).await;
                }
                None => return Err(NatsSourceError::SubscriptionEnded),
            },
            _ = stop.changed() => return Ok(()),
        }
    }
}

async fn run_nats(
    plan: Arc<ResolvedSource>,
    sender: Sender,
    access: NatsAccess,
    mut stop: watch::Receiver<bool>,
) {
    let mut pause = Duration::from_millis(250);
    while !*stop.borrow() {
        let result = match connect(&plan, &access).await {
            Ok(client) => consume(&plan, &sender, client, &mut stop).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(source = %plan.name, error = %e, retry_in = ?pause, "NATS source interrupted");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}

/// The event of a NATS message: its subject as `subject`, its payload as data.
pub(crate) fn nats_event(plan: &ResolvedSource, message: &async_nats::Message) -> CloudEvent {
    let header = |name: &str| {
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
    };
    let id = header("Nats-Msg-Id").unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut event = plan.new_event(&id, NATS_TYPE);
    event.set("subject", message.subject.as_str());
    event.set(
        "datacontenttype",
        header("Content-Type").unwrap_or_else(|| "application/octet-stream".into()),
    );
    event.data = Some(message.payload.clone());
    event
}

/// Starts the task of a cron or NATS source (webhooks are served by the HTTP server).
pub(crate) fn spawn(
    plan: Arc<ResolvedSource>,
    sender: Sender,
    nats: NatsAccess,
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
    use herald_api::schedule::Schedule;
    use std::collections::BTreeMap;

    #[test]
    fn cron_events_are_the_same_for_the_same_tick() {
        let plan = ResolvedSource {
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
