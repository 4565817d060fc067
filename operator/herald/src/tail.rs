//! `herald tail`: print a Broker's events as they arrive (or replay them), optionally
//! filtered, straight from its JetStream stream with an ordered ephemeral consumer.
//! It needs only NATS, not the apiserver: stream and subjects follow from the name.

use anyhow::Context as _;
use std::process::ExitCode;

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use futures::StreamExt;
use herald_api::naming;
use herald_cloudevents::CloudEvent;
use herald_filter::CompiledFilter;
use herald_runtime::nats::NatsArgs;

/// Flags of `herald tail`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
herald tail default/orders\n  \
herald tail default/orders --from all --type com.example.order.created\n  \
herald tail team/b --from time=2026-11-23T07:00:00Z --filter \"source LIKE 'shop/%'\" --count 10")]
pub struct TailArgs {
    /// Broker as `namespace/name`.
    pub broker: String,
    /// Where to start: `new` (default), `all`, `time=<RFC 3339>` or `seq=<stream sequence>`.
    #[arg(long, default_value = "new")]
    pub from: String,
    /// Only events of this exact type (filtered by JetStream).
    #[arg(long = "type")]
    pub type_: Option<String>,
    /// Only events matching this CESQL expression.
    #[arg(long)]
    pub filter: Option<String>,
    /// Stop after this many events.
    #[arg(long)]
    pub count: Option<usize>,
    /// Print each event as one JSON line (structured mode) instead of a readable block.
    #[arg(long)]
    pub json: bool,
    /// NATS connection.
    #[command(flatten)]
    pub nats: NatsArgs,
}

fn deliver_policy(from: &str) -> anyhow::Result<DeliverPolicy> {
    match from.split_once('=') {
        None if from == "new" => Ok(DeliverPolicy::New),
        None if from == "all" => Ok(DeliverPolicy::All),
        Some(("seq", n)) => n
            .parse()
            .map(|start_sequence| DeliverPolicy::ByStartSequence { start_sequence })
            .with_context(|| format!("--from seq={n}: not a number")),
        Some(("time", t)) => {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map(|start_time| DeliverPolicy::ByStartTime { start_time })
                .with_context(|| format!("--from time={t}: not RFC 3339"))
        }
        _ => Err(anyhow::anyhow!(
            "--from {from:?}: use new, all, time=<RFC 3339> or seq=<n>"
        )),
    }
}

/// Runs `herald tail`; exit 0 when done (or interrupted), 2 on errors.
pub fn run(args: &TailArgs) -> ExitCode {
    match crate::block_on(tail(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald tail: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn tail(args: &TailArgs) -> anyhow::Result<()> {
    let (namespace, name) = args
        .broker
        .split_once('/')
        .with_context(|| format!("{:?}: expected NAMESPACE/NAME", args.broker))?;
    let policy = deliver_policy(&args.from)?;
    let filter = args
        .filter
        .as_deref()
        .map(|expr| {
            CompiledFilter::from_filter(&serde_json::json!({ "cesql": expr })).context("--filter")
        })
        .transpose()?;
    let options = async_nats::ConnectOptions::new().name("herald tail");
    let client = herald_runtime::nats::with_security(options, &args.nats)
        .await?
        .connect(&args.nats.urls)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", args.nats.urls.join(",")))?;
    let js = async_nats::jetstream::new(client);
    let stream_name = naming::stream_name(namespace, name);
    let stream = js.get_stream(&stream_name).await.with_context(|| {
        format!(
            "no stream {stream_name} for Broker {namespace}/{name} (does it exist and is it Ready?)"
        )
    })?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: policy,
            filter_subject: args
                .type_
                .as_deref()
                .map(|t| naming::event_subject(namespace, name, t))
                .unwrap_or_default(),
            ..OrderedConfig::default()
        })
        .await
        .with_context(|| format!("cannot read stream {stream_name}"))?;
    let mut messages = consumer.messages().await?;
    let mut printed = 0usize;
    loop {
        let next = tokio::select! {
            next = messages.next() => next,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(message) = next else { return Ok(()) };
        let message = message.context("reading the stream failed")?;
        let sequence = message
            .info()
            .map(|i| i.stream_sequence)
            .unwrap_or_default();
        let event = match herald_cloudevents::nats::decode(
            message.headers.as_ref(),
            message.payload.clone(),
        ) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("#{sequence}: not a CloudEvent ({e})");
                continue;
            }
        };
        if filter
            .as_ref()
            .is_some_and(|f| !herald_dispatcher::filtering::matches(f, &event))
        {
            continue;
        }
        print_event(sequence, &event, args.json);
        printed += 1;
        if args.count.is_some_and(|n| printed >= n) {
            return Ok(());
        }
    }
}

/// Prints one event: a JSON line, or a readable block.
pub fn print_event(sequence: u64, event: &CloudEvent, json: bool) {
    if json {
        println!(
            "{}",
            String::from_utf8_lossy(&herald_cloudevents::json::to_structured(event))
        );
        return;
    }
    println!(
        "--- #{sequence} {} from {} (id {})",
        event.type_(),
        event.source(),
        event.id()
    );
    for (name, value) in event.attributes() {
        if !matches!(name, "id" | "source" | "type" | "specversion") {
            println!("  {name}: {value}");
        }
    }
    if let Some(data) = &event.data {
        println!("  data: {}", String::from_utf8_lossy(data));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_positions_parse() {
        assert_eq!(deliver_policy("new").unwrap(), DeliverPolicy::New);
        assert_eq!(deliver_policy("all").unwrap(), DeliverPolicy::All);
        assert_eq!(
            deliver_policy("seq=42").unwrap(),
            DeliverPolicy::ByStartSequence { start_sequence: 42 }
        );
        assert!(matches!(
            deliver_policy("time=2026-11-23T07:00:00Z"),
            Ok(DeliverPolicy::ByStartTime { .. })
        ));
        for bad in ["yesterday", "seq=x", "time=now"] {
            assert!(deliver_policy(bad).is_err(), "{bad}");
        }
    }
}
