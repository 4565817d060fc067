//! The EventSource controller: checks the spec (exactly one kind, a valid schedule,
//! valid extension names), resolves the sink, and writes `SinkResolved`, `Deployed`
//! and `Ready` plus `sinkUri` (and `webhookUrl` for webhooks). `cron`, `webhook` and
//! `nats` sources run in the shared adapter (`herald sources`), which picks up every
//! Ready EventSource; a `sinkBinding` injects the sink into the user's Deployments
//! ([`binding`]); a `kubernetes` source gets a Deployment of its own, as the user's
//! ServiceAccount ([`kubernetes`]). A finalizer unbinds Deployments when a binding goes
//! away.

pub mod binding;
pub mod kubernetes;

use std::future::Future;
use std::time::Duration;

use herald_api::conditions::{self, Condition, ConditionStatus, ConditionType as Type, Reason};
use herald_api::eventsource::{EventSourceSpec, WEBHOOK_MAX_BODY_BYTES_LIMIT};
use herald_api::{Broker, EventSource, EventSourceStatus};
use herald_sources::schedule::Schedule;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::context::Context;
use crate::error::Error;
use crate::reconcile::{ObjectKey, Reconciled, write_status};
use crate::trigger::resolve;

/// Re-checks the sink now and then (a Service's port may change).
const RESYNC: Duration = Duration::from_secs(60);

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

/// Finalizer held so that bound Deployments are unbound when the EventSource goes.
pub const FINALIZER: &str = "eventing.herald.dev/sinkbinding";

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
        Schedule::parse(&cron.schedule, cron.timezone.as_deref())?;
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

/// The conditions for a validated spec and a resolved (or not) sink (pure).
#[must_use]
pub fn desired_conditions(
    runner: &Result<Runner, String>,
    sink: &Result<String, String>,
    bound: Option<&Result<Vec<String>, String>>,
    adapter: Option<&Result<String, (Reason, String)>>,
) -> Vec<Condition> {
    use ConditionStatus::{False, True};
    let sink_resolved = match sink {
        Ok(uri) => Condition::new(Type::SinkResolved, True, Reason::SinkResolved, uri.clone()),
        Err(m) => Condition::new(
            Type::SinkResolved,
            False,
            Reason::SinkNotResolved,
            m.clone(),
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

        Err(m) => Condition::new(Type::Deployed, False, Reason::InvalidSpec, m.clone()),
    };
    let ready = if let Err(m) = runner {
        Condition::new(Type::Ready, False, Reason::InvalidSpec, m.clone())
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
    pub runner: Result<Runner, String>,
    /// The sink's URL, or why it does not resolve.
    pub sink: Result<String, String>,
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
    let previous = source
        .status
        .as_ref()
        .map(|s| &s.conditions[..])
        .unwrap_or_default();
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

/// EventSources whose sink is `broker`, for the watch mapping.
#[must_use]
pub fn sources_of(store: &Store<EventSource>, broker: &Broker) -> Vec<ObjectRef<EventSource>> {
    let (namespace, name) = (broker.namespace(), broker.name_any());
    store
        .state()
        .iter()
        .filter(|s| {
            s.spec.sink.reference.as_ref().is_some_and(|r| {
                r.kind == "Broker"
                    && r.name == name
                    && r.namespace.clone().or_else(|| s.namespace()) == namespace
            })
        })
        .map(|s| ObjectRef::from_obj(&**s))
        .collect()
}

impl Reconciled for EventSource {
    const KIND: &'static str = "EventSource";
    const FINALIZER: &'static str = FINALIZER;

    fn apply(
        &self,
        key: &ObjectKey,
        ctx: &Context,
    ) -> impl Future<Output = Result<Action, Error>> + Send {
        apply(self, key, ctx)
    }

    fn cleanup(
        &self,
        key: &ObjectKey,
        ctx: &Context,
    ) -> impl Future<Output = Result<Action, Error>> + Send {
        cleanup(self, key, ctx)
    }
}

fn bound_now(source: &EventSource) -> Vec<String> {
    source
        .status
        .as_ref()
        .map(|s| s.bound_deployments.clone())
        .unwrap_or_default()
}

async fn apply(source: &EventSource, key: &ObjectKey, ctx: &Context) -> Result<Action, Error> {
    let (namespace, name) = (&key.namespace, &key.name);
    let runner = validate(&source.spec).and_then(|runner| {
        let Some(nats) = &source.spec.nats else {
            return Ok(runner);
        };
        ctx.shared_nats
            .check(namespace, name, nats)
            .map(|()| runner)
    });
    let sink = resolve::resolve(&ctx.client, namespace, &source.spec.sink).await;
    let previously = bound_now(source);
    let bound = if let (Some(b), Ok(Runner::Binding), Ok(uri)) =
        (&source.spec.sink_binding, &runner, &sink)
    {
        let extensions = source.spec.ce_overrides.as_ref().map(|o| &o.extensions);
        Some(
            binding::bind(&ctx.client, namespace, b, uri, extensions, &previously)
                .await
                .map_err(|e| format!("cannot bind Deployments: {e}")),
        )
    } else {
        // Not (or no longer) a working binding: take back what was injected.
        if !previously.is_empty() {
            binding::unbind(&ctx.client, namespace, &previously).await?;
        }
        None
    };
    let adapter = match (&source.spec.kubernetes, &runner, &sink) {
        (Some(spec), Ok(Runner::Kubernetes), Ok(uri)) => Some(
            kubernetes::ensure(&ctx.client, source, spec, uri, &ctx.workload.sidecar_image).await?,
        ),
        _ => None,
    };
    let observed = Observed {
        runner,
        sink,
        bound,
        adapter,
        previously_bound: previously,
    };
    let webhook_url = source.spec.webhook.as_ref().map(|_| {
        format!(
            "{}/{namespace}/{name}",
            ctx.sources_url.trim_end_matches('/')
        )
    });
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = build_status(source, &observed, webhook_url, &now);
    write_status::<EventSource, _>(key, &status, ctx).await?;
    let was_ready = source
        .status
        .as_ref()
        .and_then(|s| conditions::find(&s.conditions, Type::Ready))
        .is_some_and(Condition::is_true);
    let ready = conditions::find(&status.conditions, Type::Ready);
    if let Some(ready) = ready.filter(|r| r.is_true() != was_ready) {
        let (kind, reason) = if ready.is_true() {
            (EventType::Normal, "SourceReady")
        } else {
            (EventType::Warning, ready.reason.as_str())
        };
        ctx.event(
            source,
            kind,
            reason,
            "ReconcileSource",
            ready.message.clone(),
        )
        .await;
    }
    Ok(Action::requeue(RESYNC))
}

async fn cleanup(source: &EventSource, key: &ObjectKey, ctx: &Context) -> Result<Action, Error> {
    let bound = bound_now(source);
    if !bound.is_empty() {
        binding::unbind(&ctx.client, &key.namespace, &bound).await?;
        ctx.event(
            source,
            EventType::Normal,
            "Unbound",
            "DeleteSource",
            format!("removed K_SINK from Deployment(s) {}", bound.join(", ")),
        )
        .await;
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn ready_names_the_first_problem() {
        let ok: Result<Runner, String> = Ok(Runner::Shared("cron"));
        let ready = |c: &[Condition]| conditions::find(c, "Ready").unwrap().clone();
        let all = desired_conditions(&ok, &Ok("http://sink".into()), None, None);
        assert!(ready(&all).is_true());
        let no_sink =
            desired_conditions(&ok, &Err("Broker ns/b does not exist".into()), None, None);
        assert_eq!(ready(&no_sink).reason, "SinkNotResolved");
        let k8s = validate(&spec(
            "sink: {uri: http://x}\nkubernetes: {resources: [{apiVersion: v1, kind: ConfigMap}], serviceAccountName: sa}",
        ));
        assert_eq!(k8s, Ok(Runner::Kubernetes));
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
        assert_eq!(jetstream, Ok(Runner::Shared("nats")));
        let invalid = desired_conditions(&Err("bad".into()), &Ok("http://sink".into()), None, None);
        assert_eq!(ready(&invalid).reason, "InvalidSpec");
    }
}
