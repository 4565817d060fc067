//! What a `nats` EventSource may read, and under which names.
//!
//! A source with its own `url` or `credentialsSecretRef` reads with its own identity:
//! the NATS server decides what it may see. A source with neither would read through
//! Herald's own connection, whose credentials reach every Broker's stream, so there it
//! is confined: only in namespaces the platform team allows, never on Herald's
//! subjects or the server's system subjects, never on Herald's streams, and under
//! queue-group and durable names that start with its namespace, so that a source of
//! one namespace can neither read another namespace's events nor take a share of
//! another source's messages.

use crate::eventsource::NatsSource;
use crate::naming::{QUEUE_SUBJECT_ROOT, SUBJECT_ROOT};

/// The queue group and JetStream durable of a source with none given:
/// `herald_<namespace>_<name>`. Kubernetes names hold no `_`, so the namespace part
/// is unambiguous (`herald-a-b-c` could be namespace `a-b`, or `a` with source
/// `b-c`); a `.` of the name, which a durable may not hold, becomes `_`.
#[must_use]
pub fn derived_name(namespace: &str, name: &str) -> String {
    format!("herald_{namespace}_{}", name.replace('.', "_"))
}

/// The names a source reads under, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadNames {
    /// Queue group of core NATS subscriptions.
    pub queue_group: String,
    /// JetStream stream and durable consumer, if it reads a stream.
    pub jetstream: Option<(String, String)>,
}

impl NatsSource {
    /// Whether the source reads through Herald's own NATS connection (no `url`, no
    /// credentials of its own).
    #[must_use]
    pub fn uses_herald_connection(&self) -> bool {
        self.url.is_none() && self.credentials_secret_ref.is_none()
    }

    /// The queue group and durable of source `namespace/name`.
    #[must_use]
    pub fn read_names(&self, namespace: &str, name: &str) -> ReadNames {
        let derived = derived_name(namespace, name);
        ReadNames {
            queue_group: self.queue_group.clone().unwrap_or_else(|| derived.clone()),
            jetstream: self.jet_stream.as_ref().map(|js| {
                (
                    js.stream.clone(),
                    js.durable.clone().unwrap_or_else(|| derived.clone()),
                )
            }),
        }
    }
}

/// Which namespaces may read through Herald's own NATS connection (`herald operator
/// --shared-nats-namespaces`). None by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedNats {
    namespaces: Vec<String>,
}

impl SharedNats {
    /// From the flag's values; `*` allows every namespace.
    #[must_use]
    pub fn new(namespaces: Vec<String>) -> Self {
        Self { namespaces }
    }

    fn allows(&self, namespace: &str) -> bool {
        self.namespaces.iter().any(|n| n == "*" || n == namespace)
    }

    /// Why source `namespace/name` may not run as specified, if it may not: only a
    /// source on Herald's connection is checked.
    ///
    /// # Errors
    /// The refusal, naming the field and what to do instead.
    pub fn check(
        &self,
        namespace: &str,
        name: &str,
        source: &NatsSource,
    ) -> Result<(), ConfinementError> {
        if !source.uses_herald_connection() {
            return Ok(());
        }
        if !self.allows(namespace) {
            return Err(ConfinementError::NamespaceNotAllowed(namespace.to_owned()));
        }
        confinement(
            namespace,
            &source.subject,
            &source.read_names(namespace, name),
        )
    }
}

/// Why a source may not read through Herald's own NATS connection as specified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfinementError {
    #[error(
        "nats: with no url and no credentialsSecretRef the source would read through Herald's own NATS connection, which namespace {0} may not use (the platform team allows namespaces with `herald operator --shared-nats-namespaces`); give the url of your NATS server, or credentials of your own"
    )]
    NamespaceNotAllowed(String),
    #[error("nats.subject {subject:?}: {why}")]
    Subject {
        subject: String,
        why: SubjectProblem,
    },
    #[error(
        "nats.queueGroup {group:?}: on Herald's NATS it must start with {own} (or be left out), so that sources of different namespaces never share one"
    )]
    QueueGroup { group: String, own: String },
    #[error(
        "nats.jetStream.stream {0:?}: Herald's streams and key-value or object stores may not be read by a source"
    )]
    Stream(String),
    #[error(
        "nats.jetStream.durable {durable:?}: on Herald's NATS it must start with {own} (or be left out), so that a source cannot take another's messages"
    )]
    Durable { durable: String, own: String },
}

/// Why a subject's first token is not the source's to read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectProblem {
    #[error(
        "on Herald's NATS a subject must start with a literal token; a wildcard there would reach Herald's own subjects"
    )]
    Wildcard,
    /// The root of Herald's own subjects.
    #[error("{0}.> holds the events of Herald's Brokers; read a Broker with a Trigger")]
    Herald(String),
    #[error(
        "subjects starting with $ or _ are the NATS server's own ($JS, $SYS, $KV, _INBOX, ...)"
    )]
    Server,
}

/// What a source on Herald's connection may not touch (checked by the operator, and
/// again by the adapter before it lends its connection).
///
/// # Errors
/// The first field that reaches outside the source's share, and why.
pub fn confinement(
    namespace: &str,
    subject: &str,
    names: &ReadNames,
) -> Result<(), ConfinementError> {
    let first = subject.split('.').next().unwrap_or_default();
    let subject_error = |why| ConfinementError::Subject {
        subject: subject.to_owned(),
        why,
    };
    if first == "*" || first.starts_with('>') {
        return Err(subject_error(SubjectProblem::Wildcard));
    }
    if first == SUBJECT_ROOT || first == QUEUE_SUBJECT_ROOT {
        return Err(subject_error(SubjectProblem::Herald(first.to_owned())));
    }
    if first.starts_with('$') || first.starts_with('_') {
        return Err(subject_error(SubjectProblem::Server));
    }
    let own = format!("herald_{namespace}_");
    if !names.queue_group.starts_with(&own) {
        return Err(ConfinementError::QueueGroup {
            group: names.queue_group.clone(),
            own,
        });
    }
    if let Some((stream, durable)) = &names.jetstream {
        let upper = stream.to_ascii_uppercase();
        if upper.starts_with("HERALD") || upper.starts_with("KV_") || upper.starts_with("OBJ_") {
            return Err(ConfinementError::Stream(stream.clone()));
        }
        if !durable.starts_with(&own) {
            return Err(ConfinementError::Durable {
                durable: durable.clone(),
                own,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventsource::NatsJetStreamSource;

    fn source(subject: &str) -> NatsSource {
        NatsSource {
            subject: subject.into(),
            ..NatsSource::default()
        }
    }

    fn allowed() -> SharedNats {
        SharedNats::new(vec!["team".into()])
    }

    #[test]
    fn derived_names_cannot_collide_across_namespaces() {
        // With `-` as separator both were herald-a-b-c.
        assert_ne!(derived_name("a", "b-c"), derived_name("a-b", "c"));
        assert_eq!(derived_name("team", "orders.eu"), "herald_team_orders_eu");
    }

    #[test]
    fn herald_s_connection_is_lent_only_to_allowed_namespaces() {
        let legacy = source("legacy.orders.>");
        assert_eq!(allowed().check("team", "s", &legacy), Ok(()));
        let refused = allowed()
            .check("other", "s", &legacy)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("--shared-nats-namespaces"), "{refused}");
        assert!(SharedNats::default().check("team", "s", &legacy).is_err());
        assert_eq!(
            SharedNats::new(vec!["*".into()]).check("x", "s", &legacy),
            Ok(())
        );
    }

    #[test]
    fn a_source_with_its_own_url_or_credentials_is_not_confined() {
        let mut own = source("herald.victim.orders.>");
        own.url = Some("nats://legacy:4222".into());
        assert_eq!(SharedNats::default().check("team", "s", &own), Ok(()));
        let mut creds = source("$JS.API.>");
        creds.credentials_secret_ref = Some(crate::common::SecretKeyRef {
            name: "n".into(),
            key: "k".into(),
        });
        assert_eq!(SharedNats::default().check("team", "s", &creds), Ok(()));
    }

    #[test]
    fn herald_s_and_the_server_s_subjects_are_out_of_reach() {
        for subject in [
            "herald.victim.orders.>",
            "heraldq.victim.t.x",
            ">",
            "*.victim.>",
            "$JS.API.>",
            "$SYS.>",
            "$KV.x.>",
            "_INBOX.>",
        ] {
            let err = allowed().check("team", "s", &source(subject));
            assert!(err.is_err(), "{subject} was allowed");
        }
        assert_eq!(allowed().check("team", "s", &source("heraldic.>")), Ok(()));
    }

    #[test]
    fn another_namespace_s_queue_group_or_durable_cannot_be_named() {
        let mut group = source("legacy.>");
        group.queue_group = Some(derived_name("victim", "s"));
        assert!(
            allowed()
                .check("team", "s", &group)
                .unwrap_err()
                .to_string()
                .contains("queueGroup")
        );
        group.queue_group = Some("herald_team_workers".into());
        assert_eq!(allowed().check("team", "s", &group), Ok(()));

        let mut durable = source("legacy.>");
        durable.jet_stream = Some(NatsJetStreamSource {
            stream: "LEGACY".into(),
            durable: Some(derived_name("victim", "s")),
        });
        assert!(
            allowed()
                .check("team", "s", &durable)
                .unwrap_err()
                .to_string()
                .contains("durable")
        );
        durable.jet_stream = Some(NatsJetStreamSource {
            stream: "LEGACY".into(),
            durable: None,
        });
        assert_eq!(allowed().check("team", "s", &durable), Ok(()));
    }

    #[test]
    fn herald_s_streams_cannot_be_read() {
        for stream in [
            "HERALD_victim_orders",
            "HERALDQ_victim_t",
            "KV_config",
            "herald_x",
        ] {
            let mut s = source("legacy.>");
            s.jet_stream = Some(NatsJetStreamSource {
                stream: stream.into(),
                durable: None,
            });
            assert!(
                allowed().check("team", "s", &s).is_err(),
                "{stream} was allowed"
            );
        }
    }
}
