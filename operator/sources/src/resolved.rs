//! What the adapter runs for each EventSource, derived purely from the EventSource
//! (its spec and the status the operator wrote: only Ready sources with a resolved sink).

use std::collections::BTreeMap;

use herald_api::common::SecretKeyRef;
use herald_api::eventsource::WEBHOOK_MAX_BODY_BYTES_LIMIT;
use herald_api::{EventSource, conditions};
use kube::ResourceExt;

use herald_api::schedule::Schedule;

pub const CRON_TYPE: &str = "dev.herald.cron.tick";
/// Default type of webhook events.
pub const WEBHOOK_TYPE: &str = "dev.herald.webhook.received";
/// Type of events forwarded from NATS.
pub const NATS_TYPE: &str = "dev.herald.nats.message";
/// Default signature header of webhooks.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// Default largest webhook body.
pub const WEBHOOK_MAX_BODY: usize = 1 << 20;

/// The CloudEvents `source` of everything EventSource `namespace/name` emits.
#[must_use]
pub fn source_uri(namespace: &str, name: &str) -> String {
    format!("/apis/eventing.herald.dev/v1alpha1/namespaces/{namespace}/eventsources/{name}")
}

/// A new event from EventSource `namespace/name` carrying its extension attributes.
#[must_use]
pub fn new_event(
    namespace: &str,
    name: &str,
    extensions: &BTreeMap<String, String>,
    id: &str,
    type_: &str,
) -> herald_cloudevents::CloudEvent {
    let mut event = herald_cloudevents::CloudEvent::new(id, &source_uri(namespace, name), type_);
    for (attribute, value) in extensions {
        event.set(attribute, value);
    }
    event
}

/// One EventSource as the adapter runs it: its spec with the sink the operator
/// resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedSource {
    pub namespace: String,
    pub name: String,
    /// Where events are sent (HTTP POST).
    pub sink: String,
    /// Extension attributes set on every event.
    pub extensions: BTreeMap<String, String>,
    /// What emits the events.
    pub kind: Kind,
}

/// The source kinds the shared adapter runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// A schedule.
    Cron {
        /// When.
        schedule: Schedule,
        /// Data of each event.
        data: Option<String>,
        content_type: String,
    },
    /// Signed webhooks on `/<namespace>/<name>`.
    Webhook {
        /// Signing key.
        secret: SecretKeyRef,
        /// Header with the signature (lower case).
        signature_header: String,
        event_type: String,
        /// Request headers copied into extensions.
        headers: Vec<String>,
        /// Largest body.
        max_body: usize,
    },
    /// NATS messages on a subject: core NATS, or a JetStream durable consumer.
    Nats {
        /// NATS URL(s); `None`: the server(s) the adapter uses.
        url: Option<String>,
        /// Subject (wildcards allowed).
        subject: String,
        /// Queue group shared by the adapter's replicas (core NATS).
        queue_group: String,
        /// JetStream: `(stream, durable consumer)`; acknowledged once the sink took it.
        jetstream: Option<(String, String)>,
        /// A Secret key holding a `.creds` file.
        credentials: Option<SecretKeyRef>,
    },
}

impl ResolvedSource {
    /// The CloudEvents `source` of this source's events.
    #[must_use]
    pub fn source(&self) -> String {
        source_uri(&self.namespace, &self.name)
    }

    /// A new event of this source (see [`new_event`]).
    #[must_use]
    pub fn new_event(&self, id: &str, type_: &str) -> herald_cloudevents::CloudEvent {
        new_event(&self.namespace, &self.name, &self.extensions, id, type_)
    }
}

/// A Ready EventSource as the adapter runs it, `None` otherwise (not Ready,
/// no sink yet, or a kind the adapter does not run).
#[must_use]
pub fn resolve(source: &EventSource) -> Option<ResolvedSource> {
    let status = source.status.as_ref()?;
    if !conditions::find(&status.conditions, "Ready").is_some_and(herald_api::Condition::is_true) {
        return None;
    }
    let sink = status.sink_uri.clone()?;
    let (namespace, name) = (source.namespace()?, source.name_any());
    let spec = &source.spec;
    let kind = if let Some(cron) = &spec.cron {
        Kind::Cron {
            schedule: Schedule::parse(&cron.schedule, cron.timezone.as_deref()).ok()?,
            data: cron.data.clone(),
            content_type: cron
                .content_type
                .clone()
                .unwrap_or_else(|| "application/json".into()),
        }
    } else if let Some(hook) = &spec.webhook {
        Kind::Webhook {
            secret: hook.secret_ref.clone(),
            signature_header: hook
                .signature_header
                .clone()
                .unwrap_or_else(|| SIGNATURE_HEADER.into())
                .to_ascii_lowercase(),
            event_type: hook
                .event_type
                .clone()
                .unwrap_or_else(|| WEBHOOK_TYPE.into()),
            headers: hook.headers.clone(),
            // The operator refuses a value that is unreadable or over the limit; the
            // clamp is for a source made Ready before it did.
            max_body: hook
                .max_body_bytes
                .as_ref()
                .and_then(|q| herald_api::quantity::parse_bytes(q).ok())
                .map(|n| n.min(WEBHOOK_MAX_BODY_BYTES_LIMIT))
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(WEBHOOK_MAX_BODY),
        }
    } else if let Some(nats) = &spec.nats {
        let names = nats.read_names(&namespace, &name);
        Kind::Nats {
            url: nats.url.clone(),
            subject: nats.subject.clone(),
            queue_group: names.queue_group,
            jetstream: names.jetstream,
            credentials: nats.credentials_secret_ref.clone(),
        }
    } else {
        return None;
    };
    Some(ResolvedSource {
        namespace,
        name,
        sink,
        extensions: spec
            .ce_overrides
            .as_ref()
            .map(|o| o.extensions.clone())
            .unwrap_or_default(),
        kind,
    })
}

/// An HTTP header name as a CloudEvents extension name (lower-case letters and digits).
#[must_use]
pub fn extension_name(header: &str) -> String {
    header
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_api::EventSourceStatus;
    use herald_api::conditions::{Condition, ConditionStatus};

    fn source(spec: &str, ready: bool) -> EventSource {
        let mut s = EventSource::new("tick", serde_yaml::from_str(spec).unwrap());
        s.metadata.namespace = Some("ns".into());
        s.status = Some(EventSourceStatus {
            conditions: vec![Condition::new(
                "Ready",
                ConditionStatus::from_bool(ready),
                "R",
                "",
            )],
            sink_uri: Some("http://sink/".into()),
            ..EventSourceStatus::default()
        });
        s
    }

    #[test]
    fn ready_sources_are_planned_with_defaults() {
        let cron = resolve(&source("sink: {uri: http://x}\ncron: {schedule: '*/2 * * * * *'}\nceOverrides: {extensions: {team: a}}", true)).unwrap();
        assert_eq!(cron.sink, "http://sink/");
        assert_eq!(cron.extensions.get("team").map(String::as_str), Some("a"));
        assert!(
            matches!(cron.kind, Kind::Cron { ref content_type, .. } if content_type == "application/json")
        );
        assert_eq!(
            cron.source(),
            "/apis/eventing.herald.dev/v1alpha1/namespaces/ns/eventsources/tick"
        );
        assert!(
            resolve(&source(
                "sink: {uri: http://x}\ncron: {schedule: '* * * * *'}",
                false
            ))
            .is_none()
        );

        let hook = resolve(&source("sink: {uri: http://x}\nwebhook: {secretRef: {name: s, key: k}, headers: [X-GitHub-Event]}", true)).unwrap();
        match hook.kind {
            Kind::Webhook {
                signature_header,
                event_type,
                max_body,
                ..
            } => {
                assert_eq!(
                    (signature_header.as_str(), event_type.as_str(), max_body),
                    (SIGNATURE_HEADER, WEBHOOK_TYPE, WEBHOOK_MAX_BODY)
                );
            }
            other => panic!("{other:?}"),
        }
        let nats = resolve(&source(
            "sink: {uri: http://x}\nnats: {subject: orders.>}",
            true,
        ))
        .unwrap();
        assert!(
            matches!(nats.kind, Kind::Nats { ref queue_group, .. } if queue_group == "herald_ns_tick")
        );
    }

    #[test]
    fn a_webhook_body_limit_over_the_most_allowed_is_clamped() {
        let hook = resolve(&source(
            "sink: {uri: http://x}\nwebhook: {secretRef: {name: s, key: k}, maxBodyBytes: 1Ti}",
            true,
        ))
        .unwrap();
        assert!(
            matches!(hook.kind, Kind::Webhook { max_body, .. } if max_body as u64 == WEBHOOK_MAX_BODY_BYTES_LIMIT)
        );
    }

    #[test]
    fn header_names_become_extension_names() {
        assert_eq!(extension_name("X-GitHub-Event"), "xgithubevent");
    }
}
