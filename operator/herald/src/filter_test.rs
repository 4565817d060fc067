//! `herald filter test`: does this Trigger's filter match this event? Like
//! EventBridge's `TestEventPattern`, for debugging filters before deploying them.
//!
//! It compiles the filter exactly as the operator does (`TriggerSpec::filter_parts`
//! and `CompiledFilter::from_parts`) and evaluates it exactly as the dispatcher does
//! (`herald_dispatcher::filtering::matches`), so its answer is the dispatcher's.
//! Prints `match`, `no match` or `invalid: <reason>`; exits 0, 1 or 2.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use herald_api::TriggerSpec;
use herald_filter::CompiledFilter;

/// `herald filter` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum FilterCommand {
    /// Test a Trigger's filter against an event: prints match, no match or invalid.
    #[command(
        after_help = "Exit status: 0 match, 1 no match, 2 invalid filter or event.\n\n\
Examples:\n  herald filter test --filter examples/trigger.yaml --event event.json\n  \
echo '{\"filters\":[{\"cesql\":\"type LIKE %.created\"}]}' > f.json\n  \
herald filter test --filter f.json --event - < event.json\n\n\
The filter file is a Trigger manifest, its spec, or just {filter: ..., filters: [...]}\n\
(YAML or JSON). The event is one CloudEvent in the JSON format."
    )]
    Test(FilterTestArgs),
}

/// Flags of `herald filter test`.
#[derive(clap::Args, Debug)]
pub struct FilterTestArgs {
    /// Trigger manifest, spec, or `{filter, filters}` (YAML or JSON; `-` for stdin).
    #[arg(long)]
    pub filter: PathBuf,
    /// The event, a CloudEvent in the JSON format (`-` for stdin).
    #[arg(long)]
    pub event: PathBuf,
}

/// Runs a `herald filter` subcommand.
pub fn run(command: &FilterCommand) -> ExitCode {
    let FilterCommand::Test(args) = command;
    match test(args) {
        Ok(true) => {
            println!("match");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("no match");
            ExitCode::from(1)
        }
        Err(reason) => {
            println!("invalid: {reason}");
            ExitCode::from(2)
        }
    }
}

fn read(path: &Path) -> Result<String, String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        return Ok(text);
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Compiles the filter file the way the operator does.
fn compile(text: &str) -> Result<CompiledFilter, String> {
    let document: serde_json::Value = serde_yaml::from_str(text)
        .map_err(|e| format!("the filter file is not YAML or JSON: {e}"))?;
    let mut spec = document.get("spec").cloned().unwrap_or(document);
    if let Some(object) = spec.as_object_mut() {
        // Only the filters matter here; a bare {filter, filters} file has no broker.
        object.entry("broker").or_insert_with(|| "-".into());
    }
    let spec: TriggerSpec = serde_json::from_value(spec)
        .map_err(|e| format!("the filter file is not a Trigger spec: {e}"))?;
    let (attributes, filters) = spec.filter_parts();
    CompiledFilter::from_parts(attributes, &filters).map_err(|e| e.to_string())
}

fn test(args: &FilterTestArgs) -> Result<bool, String> {
    let filter = compile(&read(&args.filter)?)?;
    let event = herald_cloudevents::json::parse_structured(read(&args.event)?.as_bytes())
        .map_err(|e| format!("event: {e}"))?;
    event.validate().map_err(|e| format!("event: {e}"))?;
    Ok(herald_dispatcher::filtering::matches(&filter, &event))
}
