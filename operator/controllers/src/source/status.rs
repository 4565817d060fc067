//! The EventSource's conditions and status, built purely from what a reconcile
//! checked, resolved and applied.

use herald_api::conditions::{
    self, Condition, ConditionStatus, ConditionType as Type, Conditioned, Reason,
};
use herald_api::{EventSource, EventSourceStatus};

use super::validate::Runner;
use crate::error::Error;
use crate::trigger::resolve::ResolveError;

/// The conditions for a validated spec and a resolved (or not) sink (pure).
#[must_use]
pub fn desired_conditions(
    runner: &Result<Runner, Error>,
    sink: &Result<String, ResolveError>,
    bound: Option<&Result<Vec<String>, String>>,
    adapter: Option<&Result<String, (Reason, String)>>,
) -> Vec<Condition> {
    use ConditionStatus::{False, True};
    let sink_resolved = match sink {
        Ok(uri) => Condition::new(Type::SinkResolved, True, Reason::SinkResolved, uri.clone()),
        Err(e) => Condition::new(
            Type::SinkResolved,
            False,
            Reason::SinkNotResolved,
            e.to_string(),
        ),
    };
    let deployed = match runner {
        Ok(Runner::Shared(kind)) => Condition::new(
            Type::Deployed,
            True,
            Reason::SharedAdapter,
            format!("the {kind} source runs in the shared adapter, herald sources"),
        ),
        Ok(Runner::Binding) => match bound {
            Some(Ok(names)) if names.is_empty() => Condition::new(
                Type::Deployed,
                True,
                Reason::Bound,
                "no Deployment matches the selector yet; new ones are bound as they appear",
            ),
            Some(Ok(names)) => Condition::new(
                Type::Deployed,
                True,
                Reason::Bound,
                format!("K_SINK injected into Deployment(s) {}", names.join(", ")),
            ),
            Some(Err(m)) => Condition::new(Type::Deployed, False, Reason::BindingFailed, m.clone()),
            None => Condition::new(
                Type::Deployed,
                False,
                Reason::BindingPending,
                "Deployments are bound once the sink resolves",
            ),
        },
        Ok(Runner::Kubernetes) => match adapter {
            Some(Ok(message)) => Condition::new(
                Type::Deployed,
                True,
                Reason::AdapterDeployed,
                message.clone(),
            ),
            Some(Err((reason, message))) => Condition::new(Type::Deployed, False, reason, message),
            None => Condition::new(
                Type::Deployed,
                False,
                Reason::DeploymentPending,
                "the adapter is deployed once the sink resolves",
            ),
        },

        Err(e) => Condition::new(Type::Deployed, False, e.reason(), e.to_string()),
    };
    let ready = if let Err(e) = runner {
        Condition::new(Type::Ready, False, e.reason(), e.to_string())
    } else if !sink_resolved.is_true() {
        Condition::new(
            Type::Ready,
            False,
            &sink_resolved.reason,
            &sink_resolved.message,
        )
    } else if !deployed.is_true() {
        Condition::new(Type::Ready, False, &deployed.reason, &deployed.message)
    } else {
        Condition::new(
            Type::Ready,
            True,
            Reason::Ready,
            "events are sent to the sink",
        )
    };
    vec![sink_resolved, deployed, ready]
}

/// What one reconcile of an EventSource found out and did, from which its status is
/// built.
#[derive(Debug)]
pub struct Observed {
    /// The spec checked: which adapter runs it, or what is wrong.
    pub runner: Result<Runner, Error>,
    /// The sink's URL, or why it does not resolve.
    pub sink: Result<String, ResolveError>,
    /// A sink binding: the Deployments bound, or why binding failed (`None`: not tried).
    pub bound: Option<Result<Vec<String>, String>>,
    /// A `kubernetes` source: its adapter Deployment applied, or why not (`None`: not tried).
    pub adapter: Option<Result<String, (Reason, String)>>,
    /// The Deployments bound before this reconcile.
    pub previously_bound: Vec<String>,
}

/// The EventSource's status for what was observed (pure).
#[must_use]
pub fn build_status(
    source: &EventSource,
    o: &Observed,
    webhook_url: Option<String>,
    now: &str,
) -> EventSourceStatus {
    let previous = source.conditions();
    let desired = desired_conditions(&o.runner, &o.sink, o.bound.as_ref(), o.adapter.as_ref());
    let generation = source.metadata.generation;
    EventSourceStatus {
        observed_generation: generation,
        conditions: conditions::merge(previous, desired, now, generation),
        sink_uri: o.sink.as_ref().ok().cloned(),
        webhook_url,
        bound_deployments: match &o.bound {
            Some(Ok(names)) => names.clone(),
            Some(Err(_)) => o.previously_bound.clone(),
            None => Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::validate::validate;

    fn spec(yaml: &str) -> herald_api::EventSourceSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn ready_names_the_first_problem() {
        let ok: Result<Runner, Error> = Ok(Runner::Shared("cron"));
        let ready = |c: &[Condition]| conditions::find(c, "Ready").unwrap().clone();
        let all = desired_conditions(&ok, &Ok("http://sink".into()), None, None);
        assert!(ready(&all).is_true());
        let no_sink = desired_conditions(&ok, &Err(ResolveError::Nothing), None, None);
        assert_eq!(ready(&no_sink).reason, "SinkNotResolved");
        let k8s = validate(&spec(
            "sink: {uri: http://x}\nkubernetes: {resources: [{apiVersion: v1, kind: ConfigMap}], serviceAccountName: sa}",
        ));
        let k8s = k8s.map_err(Error::InvalidSource);
        assert_eq!(k8s.as_ref().ok(), Some(&Runner::Kubernetes));
        let forbidden = Err((
            Reason::Forbidden,
            "ServiceAccount sa may not list secrets in ns".to_owned(),
        ));
        let denied = desired_conditions(&k8s, &Ok("http://sink".into()), None, Some(&forbidden));
        assert_eq!(ready(&denied).reason, "Forbidden");
        assert!(ready(&denied).message.contains("may not list secrets"));
        let deployed = desired_conditions(
            &k8s,
            &Ok("http://sink".into()),
            None,
            Some(&Ok("ok".into())),
        );
        assert!(ready(&deployed).is_true());
        let jetstream = validate(&spec(
            "sink: {uri: http://x}\nnats: {subject: a, jetStream: {stream: S}}",
        ));
        assert_eq!(jetstream.ok(), Some(Runner::Shared("nats")));
        let bad = Err(Error::InvalidSource(
            crate::source::validate::SourceSpecError::NoKind,
        ));
        let invalid = desired_conditions(&bad, &Ok("http://sink".into()), None, None);
        assert_eq!(ready(&invalid).reason, "InvalidSpec");
    }
}
