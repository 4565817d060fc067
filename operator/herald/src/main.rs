//! `herald`: one binary for every Herald component and the user tools.
//!
//! `main` only parses the command line and hands off; each subcommand lives in the
//! crate that owns it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use herald_controllers::config::OperatorArgs;
use herald_dispatcher::config::DispatcherArgs;
use herald_ingress::config::IngressArgs;

mod display;
mod filter_test;
mod send;
mod status;
mod tail;
mod transform_test;
mod types;

// mimalloc: the ingress and dispatcher allocate per event; glibc's malloc showed up
// at ~10 % of the ingress profile (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Kubernetes-native eventing on NATS JetStream.
#[derive(Parser, Debug)]
#[command(name = "herald", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the operator: reconciles Brokers, Triggers and EventSources.
    #[command(
        after_help = "Example:\n  herald operator --nats-url nats://nats:4222 --metrics-addr 0.0.0.0:9090"
    )]
    Operator(Box<OperatorArgs>),
    /// Run the ingress: the shared CloudEvents HTTP endpoint of every Broker.
    #[command(
        after_help = "Example:\n  herald ingress --listen 0.0.0.0:8080 --nats-url nats://nats:4222\n\nProducers POST CloudEvents (binary, structured or batch mode) to\nhttp://<ingress>/<namespace>/<broker>; 202 means JetStream stored them."
    )]
    Ingress(Box<IngressArgs>),
    /// Run the dispatcher: delivers each Ready Trigger's events to its subscriber.
    #[command(
        after_help = "Example:\n  herald dispatcher --nats-url nats://nats:4222\n\nSeveral dispatchers share the work of every Trigger; events not yet\nacknowledged when one stops are delivered again."
    )]
    Dispatcher(Box<DispatcherArgs>),
    /// Run the EventSource adapter: cron schedules, signed webhooks and NATS subjects.
    #[command(
        after_help = "Example:\n  herald sources --nats-url nats://nats:4222 --listen 0.0.0.0:8080\n\nWebhook sources are served at http://<sources>/<namespace>/<eventsource>;\nseveral replicas share the work (cron ticks are deduplicated by the Broker)."
    )]
    Sources(Box<herald_sources::config::SourcesArgs>),
    /// Send one CloudEvent to a Broker.
    Send(Box<send::SendArgs>),
    /// Show Brokers, Triggers and EventSources: ready or not and why, backlog, replicas.
    Status(status::StatusArgs),
    /// List the event types each Broker carries: sources, counts, last seen, inferred schema.
    Types(types::TypesArgs),
    /// Print a Broker's events as they arrive, or replay them.
    Tail(Box<tail::TailArgs>),
    /// Receive events over HTTP and print them (a subscriber for trying Triggers out).
    Display(display::DisplayArgs),
    /// Work with Trigger filters.
    Filter {
        #[command(subcommand)]
        command: filter_test::FilterCommand,
    },
    /// Work with Trigger transforms.
    Transform {
        #[command(subcommand)]
        command: transform_test::TransformCommand,
    },
    /// Print Herald's custom resource definitions (CRDs) as YAML.
    #[command(
        after_help = "Examples:\n  herald crds | kubectl apply -f -\n  herald crds --output-dir crds/\n  herald crds --reference > docs/reference.md"
    )]
    Crds {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long, value_name = "DIR", conflicts_with = "reference")]
        output_dir: Option<PathBuf>,
        /// Print the API reference (Markdown) generated from the CRD schemas instead.
        #[arg(long)]
        reference: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Operator(args) => herald_controllers::run_operator(*args),
        Command::Ingress(args) => herald_ingress::run_ingress(*args),
        Command::Dispatcher(args) => herald_dispatcher::run_dispatcher(*args),
        Command::Sources(args) => herald_sources::run_sources(*args),
        Command::Send(args) => return send::run(&args),
        Command::Status(args) => return status::run(&args),
        Command::Types(args) => return types::run(&args),
        Command::Tail(args) => return tail::run(&args),
        Command::Display(args) => return display::run(&args),
        Command::Filter { command } => return filter_test::run(&command),
        Command::Transform { command } => return transform_test::run(&command),
        Command::Crds {
            output_dir,
            reference,
        } => print_crds(output_dir, reference),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a one-shot command's `work` on a runtime of its own: single-threaded, as a
/// command waits on one thing at a time.
fn block_on<T, E: From<std::io::Error>>(work: impl Future<Output = Result<T, E>>) -> Result<T, E> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(work)
}

fn print_crds(output_dir: Option<PathBuf>, reference: bool) -> anyhow::Result<()> {
    let crds = herald_api::crds::all();
    if reference {
        print!("{}", herald_api::reference::markdown(&crds));
        return Ok(());
    }
    match output_dir {
        None => print!("{}", herald_api::crds::to_yaml(&crds)),
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            for crd in &crds {
                let path = dir.join(herald_api::crds::file_name(crd));
                std::fs::write(&path, herald_api::crds::to_yaml(std::slice::from_ref(crd)))?;
                eprintln!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// clap checks flag names only when a command is parsed: every subcommand at once
    /// here, so two flattened groups claiming one name fail a test, not a start.
    #[test]
    fn every_subcommand_s_flags_are_consistent() {
        super::Cli::command().debug_assert();
    }
}
