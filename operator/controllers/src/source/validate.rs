//! The EventSource's spec checked in one pure step: exactly one kind of source, and
//! what that kind needs. Only a valid spec is bound or deployed.

use herald_api::EventSource;
use herald_api::eventsource::{EventSourceSpec, WEBHOOK_MAX_BODY_BYTES_LIMIT};
use herald_api::nats_source::{ConfinementError, SharedNats};
use herald_api::schedule::{Schedule, ScheduleError};

use crate::reconcile::ObjectKey;

/// What makes an EventSource's spec unusable; the text is the condition's message.
#[derive(Debug, thiserror::Error)]
pub enum SourceSpecError {
    #[error("set exactly one of cron, kubernetes, webhook, nats and sinkBinding")]
    NoKind,
    /// The kinds set, joined with `and`.
    #[error("set exactly one of cron, kubernetes, webhook, nats and sinkBinding (found {0})")]
    SeveralKinds(String),
    #[error(
        "ceOverrides.extensions: {0:?} is not a CloudEvents attribute name (1-20 lower-case letters and digits)"
    )]
    ExtensionName(String),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error("webhook.maxBodyBytes: {0}")]
    MaxBodyBytes(#[source] herald_api::quantity::ParseBytesError),
    /// The limit as written.
    #[error(
        "webhook.maxBodyBytes: {0} is more than the most allowed, {WEBHOOK_MAX_BODY_BYTES_LIMIT} bytes (8Mi): each body is held in memory until the sink took it"
    )]
    MaxBodyTooLarge(String),
    #[error(transparent)]
    SharedNats(#[from] ConfinementError),
}

/// Which adapter runs a valid spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    /// The shared `herald sources` adapter.
    Shared(&'static str),
    /// The operator binds the user's Deployments to the sink.
    Binding,
    /// A Deployment of its own, as the user's ServiceAccount.
    Kubernetes,
}

/// Checks the spec (pure): exactly one kind, and what that kind needs.
pub fn validate(spec: &EventSourceSpec) -> Result<Runner, SourceSpecError> {
    let kinds: Vec<&str> = [
        ("cron", spec.cron.is_some()),
        ("kubernetes", spec.kubernetes.is_some()),
        ("webhook", spec.webhook.is_some()),
        ("nats", spec.nats.is_some()),
        ("sinkBinding", spec.sink_binding.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    match kinds.as_slice() {
        [] => return Err(SourceSpecError::NoKind),
        [_] => {}
        many => return Err(SourceSpecError::SeveralKinds(many.join(" and "))),
    }
    if let Some(overrides) = &spec.ce_overrides {
        for name in overrides.extensions.keys() {
            let valid = !name.is_empty()
                && name.len() <= 20
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            if !valid {
                return Err(SourceSpecError::ExtensionName(name.clone()));
            }
        }
    }
    if let Some(cron) = &spec.cron {
        Schedule::parse(&cron.schedule, cron.timezone.as_deref())?;
        return Ok(Runner::Shared("cron"));
    }
    if let Some(webhook) = &spec.webhook {
        if let Some(max) = &webhook.max_body_bytes {
            let bytes =
                herald_api::quantity::parse_bytes(max).map_err(SourceSpecError::MaxBodyBytes)?;
            if bytes > WEBHOOK_MAX_BODY_BYTES_LIMIT {
                return Err(SourceSpecError::MaxBodyTooLarge(max.0.clone()));
            }
        }
        return Ok(Runner::Shared("webhook"));
    }
    if spec.sink_binding.is_some() {
        return Ok(Runner::Binding);
    }
    if spec.nats.is_some() {
        return Ok(Runner::Shared("nats"));
    }
    Ok(Runner::Kubernetes)
}

/// Checks `source` (pure): [`validate`], and for a `nats` source whether its namespace
/// may read through Herald's own connection.
pub fn validate_source(
    source: &EventSource,
    key: &ObjectKey,
    shared_nats: &SharedNats,
) -> Result<Runner, SourceSpecError> {
    let runner = validate(&source.spec)?;
    if let Some(nats) = &source.spec.nats {
        shared_nats.check(&key.namespace, &key.name, nats)?;
    }
    Ok(runner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::status::desired_conditions;
    use herald_api::conditions;

    fn spec(yaml: &str) -> EventSourceSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn exactly_one_kind() {
        assert!(
            validate(&spec("sink: {uri: http://x}"))
                .unwrap_err()
                .to_string()
                .contains("exactly one")
        );
        let both = validate(&spec(
            "sink: {uri: http://x}\ncron: {schedule: '* * * * *'}\nnats: {subject: a}",
        ));
        assert!(both.unwrap_err().to_string().contains("cron and nats"));
        assert_eq!(
            validate(&spec(
                "sink: {uri: http://x}\ncron: {schedule: '*/2 * * * * *'}"
            ))
            .ok(),
            Some(Runner::Shared("cron"))
        );
    }

    #[test]
    fn bad_schedules_and_extensions_are_reported() {
        let bad = validate(&spec(
            "sink: {uri: http://x}\ncron: {schedule: 'every minute'}",
        ));
        assert!(bad.unwrap_err().to_string().contains("cron.schedule"));
        let bad = validate(&spec(
            "sink: {uri: http://x}\nceOverrides: {extensions: {Team-Name: a}}\nwebhook: {secretRef: {name: s, key: k}}",
        ));
        assert!(bad.unwrap_err().to_string().contains("Team-Name"));
    }

    #[test]
    fn a_webhook_body_limit_is_bounded() {
        let webhook = |max: &str| {
            validate(&spec(&format!(
                "sink: {{uri: http://x}}\nwebhook: {{secretRef: {{name: s, key: k}}, maxBodyBytes: {max}}}"
            )))
        };
        assert_eq!(webhook("8Mi").ok(), Some(Runner::Shared("webhook")));
        assert_eq!(webhook("'8388608'").ok(), Some(Runner::Shared("webhook")));
        let over = webhook("'8388609'").unwrap_err().to_string();
        assert!(
            over.contains("webhook.maxBodyBytes: 8388609 is more than"),
            "{over}"
        );
        assert!(
            webhook("1Gi")
                .unwrap_err()
                .to_string()
                .contains("most allowed")
        );
        let unreadable = webhook("lots").unwrap_err().to_string();
        assert!(
            unreadable.contains("webhook.maxBodyBytes: invalid byte size"),
            "{unreadable}"
        );
        let invalid = desired_conditions(
            &webhook("1Gi").map_err(crate::error::Error::InvalidSource),
            &Ok("http://sink".into()),
            None,
            None,
        );
        assert_eq!(
            conditions::find(&invalid, "Ready").unwrap().reason,
            "InvalidSpec"
        );
    }
}
