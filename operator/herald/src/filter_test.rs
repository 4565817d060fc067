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
use serde_json::{Value, json};

/// `herald filter` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum FilterCommand {
    /// Test a Trigger's filter against an event: prints match, no match or invalid.
    #[command(
        after_help = "Exit status: 0 match, 1 no match, 2 invalid filter or event.\n\n\
Examples:\n  herald filter test --filter examples/trigger.yaml --event event.json\n  \
echo '{\"filters\":[{\"cesql\":\"type LIKE %.created\"}]}' > f.json\n  \
herald filter test --filter f.json --event - < event.json\n  \
echo '{\"data\":{\"state\":[\"running\"]}}' > pattern.json\n  \
herald filter test --filter pattern.json --event event.json\n\n\
The filter file is a Trigger manifest, its spec, just {filter: ..., filters: [...]},\n\
or a bare content pattern (an object without those keys, as in filters[].pattern).\n\
JSON or YAML. The event is one CloudEvent in the JSON format."
    )]
    Test(FilterTestArgs),
}

/// Flags of `herald filter test`.
#[derive(clap::Args, Debug)]
pub struct FilterTestArgs {
    /// Trigger manifest, spec, `{filter, filters}` or a content pattern (JSON or YAML;
    /// `-` for stdin).
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

/// Why `herald filter test` or `herald transform test` cannot give an answer
/// (printed as `invalid: <reason>`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Invalid {
    #[error("cannot read {what}: {source}")]
    Unreadable {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the filter file is neither JSON ({json}) nor YAML ({yaml})")]
    NeitherJsonNorYaml {
        json: serde_json::Error,
        #[source]
        yaml: serde_yaml::Error,
    },
    #[error(
        "the filter file must hold an object (a Trigger manifest, its spec, \
         {{filter, filters}} or a content pattern), found {0}"
    )]
    NotAnObject(&'static str),
    /// A bare pattern's error, at its path within the pattern.
    #[error("{path}: {reason}")]
    Pattern {
        path: String,
        reason: herald_filter::FilterErrorReason,
    },
    #[error("the filter file is not a Trigger spec: {0}")]
    NotATriggerSpec(#[source] serde_json::Error),
    #[error(transparent)]
    Filter(#[from] herald_filter::FilterError),
    #[error("event: {0}")]
    Event(#[from] herald_cloudevents::EventError),
    #[error("the template file is not {{paths, data}}: {0}")]
    NotATemplate(#[source] serde_json::Error),
    #[error("give --trigger, --transform or --template")]
    NoTransformGiven,
    #[error("transform: {0}")]
    NotATransform(#[source] serde_json::Error),
    #[error("the trigger file has no transform (spec.transform)")]
    NoTransform,
    #[error(transparent)]
    Transform(#[from] herald_transform::TransformError),
    #[error("the transform sets neither jq nor template")]
    EmptyTransform,
}

pub(crate) fn read(path: &Path) -> Result<String, Invalid> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|source| Invalid::Unreadable {
                what: "stdin".into(),
                source,
            })?;
        return Ok(text);
    }
    std::fs::read_to_string(path).map_err(|source| Invalid::Unreadable {
        what: path.display().to_string(),
        source,
    })
}

/// Keys of a Trigger manifest or spec: a document with one of them is a Trigger.
const TRIGGER_KEYS: [&str; 11] = [
    "apiVersion",
    "kind",
    "metadata",
    "spec",
    "broker",
    "filter",
    "filters",
    "subscriber",
    "consumer",
    "delivery",
    "startPosition",
];

/// Parses the filter file. JSON first: YAML's escapes are not JSON's (a surrogate
/// pair such as `"\ud83d\ude80"` is valid JSON and invalid YAML).
pub(crate) fn parse(text: &str) -> Result<Value, Invalid> {
    serde_json::from_str(text).or_else(|json| {
        serde_yaml::from_str(text).map_err(|yaml| Invalid::NeitherJsonNorYaml { json, yaml })
    })
}

/// Compiles the filter file the way the operator does.
fn compile(text: &str) -> Result<CompiledFilter, Invalid> {
    let document = parse(text)?;
    let Value::Object(object) = &document else {
        return Err(Invalid::NotAnObject(herald_filter::json_kind(&document)));
    };
    if !object.keys().any(|k| TRIGGER_KEYS.contains(&k.as_str())) {
        // A bare content pattern: compiled as the one entry of `filters`.
        return CompiledFilter::from_filter(&json!({ "pattern": document })).map_err(|e| {
            Invalid::Pattern {
                path: e
                    .path
                    .strip_prefix("filters[0].")
                    .unwrap_or(&e.path)
                    .to_owned(),
                reason: e.reason,
            }
        });
    }
    let mut spec = document.get("spec").cloned().unwrap_or(document);
    if let Some(object) = spec.as_object_mut() {
        // Only the filters matter here; a bare {filter, filters} file has no broker.
        object.entry("broker").or_insert_with(|| "-".into());
    }
    let spec: TriggerSpec = serde_json::from_value(spec).map_err(Invalid::NotATriggerSpec)?;
    let (attributes, filters) = spec.filter_parts();
    Ok(CompiledFilter::from_parts(attributes, &filters)?)
}

/// Whether the filter in `filter_text` matches the CloudEvent in `event_text`.
fn evaluate(filter_text: &str, event_text: &str) -> Result<bool, Invalid> {
    let filter = compile(filter_text)?;
    let event = herald_cloudevents::json::parse_structured(event_text.as_bytes())?;
    event.validate()?;
    Ok(herald_dispatcher::filtering::matches(&filter, &event))
}

fn test(args: &FilterTestArgs) -> Result<bool, Invalid> {
    evaluate(&read(&args.filter)?, &read(&args.event)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"specversion": "1.0", "id": "1", "source": "aws.ec2",
        "type": "EC2 Instance State-change Notification",
        "datacontenttype": "application/json",
        "data": {"state": "running", "name": "\ud83d\ude80 launch", "note": null}}"#;

    fn run(filter: &str) -> Result<bool, String> {
        evaluate(filter, EVENT).map_err(|e| e.to_string())
    }

    #[test]
    fn json_with_surrogate_pair_escapes() {
        let filter = r#"{"filters": [{"pattern": {"data": {"name": ["\ud83d\ude80 launch"]}}}]}"#;
        assert_eq!(run(filter), Ok(true));
        assert_eq!(
            run(r#"{"data": {"name": [{"prefix": "\ud83d\ude80"}]}}"#),
            Ok(true)
        );
    }

    #[test]
    fn yaml_still_works() {
        let manifest = "apiVersion: eventing.herald.dev/v1\nkind: Trigger\nspec:\n  broker: default\n  \
                        filters:\n    - pattern:\n        data:\n          state: [running]\n";
        assert_eq!(run(manifest), Ok(true));
        assert_eq!(run("data:\n  state: [stopped]\n"), Ok(false));
    }

    #[test]
    fn a_bare_pattern_is_a_pattern() {
        assert_eq!(run(r#"{"data": {"state": ["running"]}}"#), Ok(true));
        assert_eq!(run(r#"{"source": ["aws.s3"]}"#), Ok(false));
        assert_eq!(
            run(r#"{"data": {"note": [{"anything-but": {"prefix": ["init", "test"]}}]}}"#),
            Ok(true)
        );
        let error = run(r#"{"data": {"state": [{"anything-but": {"prefix": ""}}]}}"#)
            .expect_err("an empty prefix is refused");
        assert!(
            error.starts_with("pattern.data.state[0].anything-but.prefix: "),
            "{error}"
        );
    }

    #[test]
    fn non_objects_are_refused() {
        for document in [r#"["data"]"#, r#""x""#, "5", "null", "true"] {
            let error = run(document).expect_err(document);
            assert!(error.contains("must hold an object"), "{document}: {error}");
        }
        assert!(run("{\"filters\": [{\"pattern\": [1]}]}").is_err());
    }

    #[test]
    fn trigger_specs_without_filters_match_everything() {
        assert_eq!(run(r#"{"broker": "default"}"#), Ok(true));
        assert_eq!(run(r#"{"filters": []}"#), Ok(true));
    }
}
