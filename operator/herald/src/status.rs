//! `herald status`: Brokers, Triggers and EventSources at a glance — ready or not and
//! why, backlog, replicas — and every condition that is not True, with its message.
//!
//! Exit codes: 0 when everything shown is Ready, 1 when something is not, 2 when the
//! Kubernetes API could not be read.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use herald_api::conditions::{self, Condition, ConditionType, Conditioned, Readiness};
use herald_api::{Broker, EventSource, Trigger};
use kube::api::ListParams;
use kube::{Api, ResourceExt};

/// Flags of `herald status`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  herald status              # every namespace\n  \
herald status -n shop      # one namespace; exit 1 if anything is not Ready"
)]
pub struct StatusArgs {
    /// Only this namespace (default: all namespaces).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Kubeconfig (default: `KUBECONFIG`, `~/.kube/config` or in-cluster).
    #[arg(long, env = "HERALD_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
}

/// Runs `herald status`.
pub fn run(args: &StatusArgs) -> ExitCode {
    let fetched = crate::block_on(fetch(args));
    match fetched {
        Ok((brokers, triggers, sources)) => {
            let (text, all_ready) = render(&brokers, &triggers, &sources);
            print!("{text}");
            if all_ready {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("herald status: cannot read Herald objects: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn fetch(args: &StatusArgs) -> anyhow::Result<(Vec<Broker>, Vec<Trigger>, Vec<EventSource>)> {
    let client = herald_runtime::kube_client(args.kubeconfig.as_deref()).await?;
    let lp = ListParams::default();
    macro_rules! list {
        ($kind:ty) => {{
            let api: Api<$kind> = match &args.namespace {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            };
            api.list(&lp).await?.items
        }};
    }
    Ok((list!(Broker), list!(Trigger), list!(EventSource)))
}

fn ready(list: &[Condition]) -> (&str, &str) {
    let readiness = conditions::readiness(list);
    (readiness.status().as_str(), readiness.reason())
}

/// Lays `rows` out in columns under `header`.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

fn dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".to_owned())
}

/// Every condition that is not True, as readable lines.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn note(&mut self, kind: &str, obj: &impl ResourceExt, list: &[Condition]) {
        let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
        // `Ready` repeats the first failing sub-condition; show it only when it is alone.
        let failing: Vec<&Condition> = list.iter().filter(|c| !c.is_true()).collect();
        let explained = failing.iter().any(|c| c.type_ != ConditionType::Ready);
        for c in failing
            .into_iter()
            .filter(|c| !(explained && c.type_ == ConditionType::Ready))
        {
            self.0.push(format!(
                "{kind} {ns}/{name}: {}={} {}: {}",
                c.type_,
                c.status.as_str(),
                c.reason,
                c.message
            ));
        }
        if conditions::readiness(list) == Readiness::NotReconciled {
            self.0.push(format!(
                "{kind} {ns}/{name}: not reconciled yet (is the operator running?)"
            ));
        }
    }
}

fn broker_row(b: &Broker, problems: &mut Problems) -> Vec<String> {
    let list = b.conditions();
    problems.note("Broker", b, list);
    let (status, reason) = ready(list);
    let url = b
        .status
        .as_ref()
        .and_then(|s| s.address.as_ref())
        .map(|a| a.url.clone());
    vec![
        b.namespace().unwrap_or_default(),
        b.name_any(),
        status.into(),
        reason.into(),
        dash(url),
    ]
}

fn trigger_row(t: &Trigger, problems: &mut Problems) -> Vec<String> {
    let status = t.status.as_ref();
    let list = t.conditions();
    problems.note("Trigger", t, list);
    let (ready_status, reason) = ready(list);
    let replicas = status.and_then(|s| s.autoscaling.as_ref()).map(|a| {
        format!(
            "{}/{}",
            a.current_replicas.unwrap_or(0),
            a.desired_replicas.unwrap_or(0)
        )
    });
    let delivers_to = if t.spec.consumer.is_some() {
        Some(format!(
            "Deployment {}",
            herald_api::naming::consumer_deployment_name(&t.name_any())
        ))
    } else {
        status.and_then(|s| s.subscriber_uri.clone())
    };
    vec![
        t.namespace().unwrap_or_default(),
        t.name_any(),
        t.spec.broker.clone(),
        ready_status.into(),
        reason.into(),
        dash(status.and_then(|s| s.backlog).map(|b| b.to_string())),
        dash(replicas),
        dash(delivers_to),
    ]
}

fn source_row(s: &EventSource, problems: &mut Problems) -> Vec<String> {
    let list = s.conditions();
    problems.note("EventSource", s, list);
    let (status, reason) = ready(list);
    vec![
        s.namespace().unwrap_or_default(),
        s.name_any(),
        status.into(),
        reason.into(),
    ]
}

/// The report and whether every object is Ready (pure, for tests).
#[must_use]
pub fn render(brokers: &[Broker], triggers: &[Trigger], sources: &[EventSource]) -> (String, bool) {
    let mut out = String::new();
    let mut problems = Problems::default();
    let rows: Vec<_> = brokers
        .iter()
        .map(|b| broker_row(b, &mut problems))
        .collect();
    let _ = writeln!(out, "BROKERS ({})", rows.len());
    table(
        &mut out,
        &["NAMESPACE", "NAME", "READY", "REASON", "URL"],
        &rows,
    );
    let rows: Vec<_> = triggers
        .iter()
        .map(|t| trigger_row(t, &mut problems))
        .collect();
    let _ = writeln!(out, "\nTRIGGERS ({})", rows.len());
    table(
        &mut out,
        &[
            "NAMESPACE",
            "NAME",
            "BROKER",
            "READY",
            "REASON",
            "BACKLOG",
            "REPLICAS",
            "DELIVERS TO",
        ],
        &rows,
    );
    if !sources.is_empty() {
        let rows: Vec<_> = sources
            .iter()
            .map(|s| source_row(s, &mut problems))
            .collect();
        let _ = writeln!(out, "\nEVENTSOURCES ({})", rows.len());
        table(&mut out, &["NAMESPACE", "NAME", "READY", "REASON"], &rows);
    }
    let all_ready = problems.0.is_empty();
    if !all_ready {
        let _ = writeln!(out, "\nNOT READY");
        for p in &problems.0 {
            let _ = writeln!(out, "  {p}");
        }
    }
    (out, all_ready)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_api::conditions::ConditionStatus;
    use herald_api::{BrokerStatus, TriggerStatus};

    fn broker(ready: bool) -> Broker {
        let mut b = Broker::new("default", serde_yaml::from_str("{}").unwrap());
        b.metadata.namespace = Some("shop".into());
        b.status = Some(BrokerStatus {
            conditions: vec![Condition::new(
                "Ready",
                ConditionStatus::from_bool(ready),
                if ready { "Ready" } else { "NatsUnavailable" },
                "NATS is unavailable: connection refused",
            )],
            ..BrokerStatus::default()
        });
        b
    }

    #[test]
    fn everything_ready_exits_zero_and_lists_objects() {
        let mut t = Trigger::new(
            "orders",
            serde_yaml::from_str("broker: default\nsubscriber: {uri: http://x}").unwrap(),
        );
        t.metadata.namespace = Some("shop".into());
        t.status = Some(TriggerStatus {
            conditions: vec![Condition::new("Ready", ConditionStatus::True, "Ready", "")],
            backlog: Some(7),
            subscriber_uri: Some("http://x/".into()),
            ..TriggerStatus::default()
        });
        let (text, ok) = render(&[broker(true)], &[t], &[]);
        assert!(ok, "{text}");
        assert!(
            text.contains("orders") && text.contains("http://x/") && text.contains(" 7 "),
            "{text}"
        );
        assert!(!text.contains("NOT READY"));
    }

    #[test]
    fn problems_are_listed_with_reason_and_message() {
        let unreconciled = Trigger::new(
            "new",
            serde_yaml::from_str("broker: default\nsubscriber: {uri: http://x}").unwrap(),
        );
        let (text, ok) = render(&[broker(false)], &[unreconciled], &[]);
        assert!(!ok);
        assert!(
            text.contains("Broker shop/default: Ready=False NatsUnavailable: NATS is unavailable"),
            "{text}"
        );
        assert!(text.contains("/new: not reconciled yet"), "{text}");
    }
}
