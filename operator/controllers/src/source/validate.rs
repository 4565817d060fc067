//! The EventSource's spec checked in one pure step: exactly one kind of source, and
//! what that kind needs. Only a valid spec is bound or deployed.

use herald_api::EventSource;
use herald_api::eventsource::{EventSourceSpec, WEBHOOK_MAX_BODY_BYTES_LIMIT};
use herald_api::nats_source::SharedNats;
use herald_api::schedule::Schedule;

use crate::reconcile::ObjectKey;

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
pub fn validate(spec: &EventSourceSpec) -> Result<Runner, String> {
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
        [] => {
            return Err(
                "set exactly one of cron, kubernetes, webhook, nats and sinkBinding".into(),
            );
        }
        [_] => {}
        many => {
            return Err(format!(
                "set exactly one of cron, kubernetes, webhook, nats and sinkBinding (found {})",
                many.join(" and ")
            ));
        }
    }
    if let Some(overrides) = &spec.ce_overrides {
        for name in overrides.extensions.keys() {
            let valid = !name.is_empty()
                && name.len() <= 20
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            if !valid {
                return Err(format!(
                    "ceOverrides.extensions: {name:?} is not a CloudEvents attribute name (1-20 lower-case letters and digits)"
                ));
            }
        }
    }
    if let Some(cron) = &spec.cron {
        Schedule::parse(&cron.schedule, cron.timezone.as_deref()).map_err(|e| e.to_string())?;
        return Ok(Runner::Shared("cron"));
    }
    if let Some(webhook) = &spec.webhook {
        if let Some(max) = &webhook.max_body_bytes {
            let bytes = herald_api::quantity::parse_bytes(max)
                .map_err(|e| format!("webhook.maxBodyBytes: {e}"))?;
            if bytes > WEBHOOK_MAX_BODY_BYTES_LIMIT {
                return Err(format!(
                    "webhook.maxBodyBytes: {} is more than the most allowed, {WEBHOOK_MAX_BODY_BYTES_LIMIT} bytes (8Mi): each body is held in memory until the sink took it",
                    max.0
                ));
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
) -> Result<Runner, String> {
    let runner = validate(&source.spec)?;
    if let Some(nats) = &source.spec.nats {
        shared_nats
            .check(&key.namespace, &key.name, nats)
            .map_err(|e| e.to_string())?;
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
                .contains("exactly one")
        );
        let both = validate(&spec(
            "sink: {uri: http://x}\ncron: {schedule: '* * * * *'}\nnats: {subject: a}",
        ));
        assert!(both.unwrap_err().contains("cron and nats"));
        assert_eq!(
            validate(&spec(
                "sink: {uri: http://x}\ncron: {schedule: '*/2 * * * * *'}"
            )),
            Ok(Runner::Shared("cron"))
        );
    }

    #[test]
    fn bad_schedules_and_extensions_are_reported() {
        let bad = validate(&spec(
            "sink: {uri: http://x}\ncron: {schedule: 'every minute'}",
        ));
        assert!(bad.unwrap_err().contains("cron.schedule"));
        let bad = validate(&spec(
            "sink: {uri: http://x}\nceOverrides: {extensions: {Team-Name: a}}\nwebhook: {secretRef: {name: s, key: k}}",
        ));
        assert!(bad.unwrap_err().contains("Team-Name"));
    }

    #[test]
    fn a_webhook_body_limit_is_bounded() {
        let webhook = |max: &str| {
            validate(&spec(&format!(
                "sink: {{uri: http://x}}\nwebhook: {{secretRef: {{name: s, key: k}}, maxBodyBytes: {max}}}"
            )))
        };
        assert_eq!(webhook("8Mi"), Ok(Runner::Shared("webhook")));
        assert_eq!(webhook("'8388608'"), Ok(Runner::Shared("webhook")));
        let over = webhook("'8388609'").unwrap_err();
        assert!(
            over.contains("webhook.maxBodyBytes: 8388609 is more than"),
            "{over}"
        );
        assert!(webhook("1Gi").unwrap_err().contains("most allowed"));
        let unreadable = webhook("lots").unwrap_err();
        assert!(
            unreadable.contains("webhook.maxBodyBytes: invalid byte size"),
            "{unreadable}"
        );
        let invalid = desired_conditions(&webhook("1Gi"), &Ok("http://sink".into()), None, None);
        assert_eq!(
            conditions::find(&invalid, "Ready").unwrap().reason,
            "InvalidSpec"
        );
    }
}
