//! `herald types`: the event-type catalog — which types each Broker carries, from
//! which sources, how many and when last, and (with `--schema`) the JSON Schema
//! inferred from their data.
//!
//! Exit codes: 0 when at least one `EventType` is shown, 1 when none matched (nothing
//! recorded yet, or a wrong namespace or Broker), 2 when the Kubernetes API could not
//! be read.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use herald_api::EventType;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

/// Flags of `herald types`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  herald types                       # every namespace\n  \
herald types -n shop --broker default\n  \
herald types -n shop --type com.example.order.created --schema\n\n\
Exit codes: 0 types shown, 1 none recorded (yet), 2 the Kubernetes API could not be read."
)]
pub struct TypesArgs {
    /// Only this namespace (default: all namespaces).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Only the types of this Broker.
    #[arg(long, short = 'b')]
    pub broker: Option<String>,
    /// Only this event type (exactly).
    #[arg(long = "type", short = 't')]
    pub event_type: Option<String>,
    /// Also print each type's inferred JSON Schema and sources.
    #[arg(long)]
    pub schema: bool,
    /// Kubeconfig (default: `KUBECONFIG`, `~/.kube/config` or in-cluster).
    #[arg(long, env = "HERALD_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
}

/// Runs `herald types`.
pub fn run(args: &TypesArgs) -> ExitCode {
    let fetched = crate::block_on(fetch(args));
    match fetched {
        Ok(types) => {
            let shown = select(types, args);
            print!("{}", render(&shown, args.schema));
            if shown.is_empty() {
                eprintln!(
                    "herald types: no event types recorded{} (the dispatchers write them within ~10 s of the first event)",
                    args.broker
                        .as_deref()
                        .map(|b| format!(" for Broker {b}"))
                        .unwrap_or_default()
                );
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("herald types: cannot read EventTypes: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn fetch(args: &TypesArgs) -> anyhow::Result<Vec<EventType>> {
    let client = herald_runtime::kube_client(args.kubeconfig.as_deref()).await?;
    let api: Api<EventType> = match &args.namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let mut params = ListParams::default();
    if let Some(broker) = &args.broker {
        params = params.labels(&format!(
            "{}={}",
            herald_api::eventtype::BROKER_LABEL,
            herald_api::naming::label_value(broker)
        ));
    }
    Ok(api.list(&params).await?.items)
}

/// The `EventTypes` the flags ask for, by namespace, Broker and type.
fn select(types: Vec<EventType>, args: &TypesArgs) -> Vec<EventType> {
    let mut shown: Vec<EventType> = types
        .into_iter()
        .filter(|t| args.broker.as_ref().is_none_or(|b| &t.spec.broker == b))
        .filter(|t| args.event_type.as_ref().is_none_or(|e| &t.spec.type_ == e))
        .collect();
    shown.sort_by(|a, b| {
        (a.namespace(), &a.spec.broker, &a.spec.type_).cmp(&(
            b.namespace(),
            &b.spec.broker,
            &b.spec.type_,
        ))
    });
    shown
}

/// The table (and schemas), pure for tests.
#[must_use]
pub fn render(types: &[EventType], schemas: bool) -> String {
    let header = [
        "NAMESPACE",
        "BROKER",
        "TYPE",
        "SOURCE",
        "COUNT",
        "LAST SEEN",
    ];
    let rows: Vec<[String; 6]> = types
        .iter()
        .map(|t| {
            let status = t.status.clone().unwrap_or_default();
            [
                t.namespace().unwrap_or_default(),
                t.spec.broker.clone(),
                t.spec.type_.clone(),
                status.source.unwrap_or_else(|| "-".into()),
                status.count.to_string(),
                status.last_seen.unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 6]| {
        let text: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(header);
    for row in &rows {
        line(row.each_ref().map(String::as_str));
    }
    if schemas {
        for t in types {
            let status = t.status.clone().unwrap_or_default();
            let _ = writeln!(
                out,
                "\n{}/{} {} ({} events; schema from {} samples)",
                t.namespace().unwrap_or_default(),
                t.spec.broker,
                t.spec.type_,
                status.count,
                status.schema_samples.unwrap_or(0)
            );
            for p in &status.sources {
                let _ = writeln!(out, "  source {}: {}", p.pattern, p.count);
            }
            let schema = status.schema.as_ref().map_or_else(
                || "  (no JSON data seen)".to_owned(),
                |s| serde_json::to_string_pretty(s).unwrap_or_default(),
            );
            let _ = writeln!(out, "{schema}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_api::eventtype::{EventTypeSpec, EventTypeStatus, SourcePattern};

    fn event_type(ns: &str, broker: &str, type_: &str, count: i64) -> EventType {
        let mut t = EventType::new(
            &herald_api::eventtype::object_name(broker, type_),
            EventTypeSpec {
                broker: broker.into(),
                type_: type_.into(),
            },
        );
        t.metadata.namespace = Some(ns.into());
        t.status = Some(EventTypeStatus {
            count,
            last_seen: Some("2026-12-05T09:00:00Z".into()),
            source: Some("shop".into()),
            sources: vec![SourcePattern {
                pattern: "shop".into(),
                count,
            }],
            schema: Some(serde_json::json!({"type": "object"})),
            schema_samples: Some(4),
            ..EventTypeStatus::default()
        });
        t
    }

    fn args(broker: Option<&str>, event_type: Option<&str>) -> TypesArgs {
        TypesArgs {
            namespace: None,
            broker: broker.map(str::to_owned),
            event_type: event_type.map(str::to_owned),
            schema: false,
            kubeconfig: None,
        }
    }

    #[test]
    fn types_are_listed_sorted_and_filtered() {
        let all = vec![
            event_type("shop", "default", "order.paid", 3),
            event_type("shop", "default", "order.created", 12),
            event_type("shop", "audit", "login", 1),
        ];
        let shown = select(all.clone(), &args(Some("default"), None));
        let text = render(&shown, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("NAMESPACE  BROKER   TYPE"), "{text}");
        assert!(
            lines[1].contains("order.created") && lines[1].contains(" 12 "),
            "{text}"
        );
        assert!(lines[2].contains("order.paid"), "{text}");
        assert!(lines[1].ends_with("2026-12-05T09:00:00Z"), "{text}");
        assert_eq!(select(all.clone(), &args(None, Some("login"))).len(), 1);
        assert!(select(all, &args(Some("none"), None)).is_empty());
    }

    #[test]
    fn schemas_are_printed_on_request() {
        let text = render(&[event_type("shop", "default", "order.created", 12)], true);
        assert!(
            text.contains("shop/default order.created (12 events; schema from 4 samples)"),
            "{text}"
        );
        assert!(text.contains("  source shop: 12"), "{text}");
        assert!(text.contains("\"type\": \"object\""), "{text}");
    }
}
