//! `herald transform test`: what does this Trigger's transform make of this event?
//! Like `herald filter test`, for trying transforms out before deploying them.
//!
//! It compiles the transform exactly as the operator and the dispatcher do
//! (`TransformSpec::parts` and `Transform::from_parts`) and applies it with the
//! dispatcher's budget, so its answer is the dispatcher's. Prints the transformed
//! event (JSON format), `failed: <reason>` or `invalid: <reason>`; exits 0, 1 or 2.

use std::path::PathBuf;
use std::process::ExitCode;

use herald_api::trigger::{InputTemplate, TransformSpec};
use herald_cloudevents::CloudEvent;
use herald_transform::Transform;
use serde_json::Value;

use crate::filter_test::{Invalid, parse, read};

/// `herald transform` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum TransformCommand {
    /// Apply a Trigger's transform to an event: prints the event it delivers.
    #[command(
        after_help = "Exit status: 0 transformed, 1 the transform failed for this event, 2 invalid transform or event.\n\n\
Examples:\n  herald transform test --trigger examples/trigger-transform.yaml --event event.json\n  \
herald transform test --transform '.type = \"order.big\" | .data |= {id}' --event - < event.json\n  \
herald transform test --template template.yaml --event event.json\n\n\
The trigger file is a Trigger manifest, its spec, or just {transform: ...}; the\n\
template file is {paths: {name: $.data.x}, data: \"...<name>...\"}. JSON or YAML.\n\
The event is one CloudEvent in the JSON format."
    )]
    Test(TransformTestArgs),
    /// Internal: a dispatcher's transform worker process (requests on stdin).
    #[command(hide = true)]
    Worker,
}

/// Flags of `herald transform test`.
#[derive(clap::Args, Debug)]
pub struct TransformTestArgs {
    /// Trigger manifest, spec or `{transform: ...}` (JSON or YAML; `-` for stdin).
    #[arg(long, group = "source")]
    pub trigger: Option<PathBuf>,
    /// A jq program.
    #[arg(long, group = "source")]
    pub transform: Option<String>,
    /// An input template, `{paths, data}` (JSON or YAML; `-` for stdin).
    #[arg(long, group = "source")]
    pub template: Option<PathBuf>,
    /// The event, a CloudEvent in the JSON format (`-` for stdin).
    #[arg(long)]
    pub event: PathBuf,
}

/// What the test found.
#[derive(Debug)]
enum Answer {
    Transformed(CloudEvent),
    Failed(String),
}

/// Runs a `herald transform` subcommand.
pub fn run(command: &TransformCommand) -> ExitCode {
    let args = match command {
        TransformCommand::Test(args) => args,
        TransformCommand::Worker => {
            return match herald_transform::worker::serve() {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("herald transform worker: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    match test(args) {
        Ok(Answer::Transformed(event)) => {
            let json: Value =
                serde_json::from_slice(&herald_cloudevents::json::to_structured(&event))
                    .unwrap_or(Value::Null);
            println!("{json:#}");
            ExitCode::SUCCESS
        }
        Ok(Answer::Failed(reason)) => {
            println!("failed: {reason}");
            ExitCode::from(1)
        }
        Err(reason) => {
            println!("invalid: {reason}");
            ExitCode::from(2)
        }
    }
}

fn test(args: &TransformTestArgs) -> Result<Answer, Invalid> {
    let spec = if let Some(program) = &args.transform {
        TransformSpec {
            jq: Some(program.clone()),
            template: None,
        }
    } else if let Some(path) = &args.template {
        let template: InputTemplate =
            serde_json::from_value(parse(&read(path)?)?).map_err(Invalid::NotATemplate)?;
        TransformSpec {
            jq: None,
            template: Some(template),
        }
    } else if let Some(path) = &args.trigger {
        from_trigger(&read(path)?)?
    } else {
        return Err(Invalid::NoTransformGiven);
    };
    evaluate(&spec, &read(&args.event)?)
}

/// The transform of a Trigger manifest, its spec, or `{transform: ...}`; in a file
/// of several YAML documents, the first that has one.
fn from_trigger(text: &str) -> Result<TransformSpec, Invalid> {
    for document in text.split("\n---") {
        if document.trim().is_empty() {
            continue;
        }
        let document = parse(document)?;
        let spec = document.get("spec").unwrap_or(&document);
        if let Some(transform) = spec.get("transform") {
            return serde_json::from_value(transform.clone()).map_err(Invalid::NotATransform);
        }
    }
    Err(Invalid::NoTransform)
}

/// Applies `spec` to the CloudEvent in `event_text`.
fn evaluate(spec: &TransformSpec, event_text: &str) -> Result<Answer, Invalid> {
    let (jq, template) = spec.parts();
    let transform = Transform::from_parts(jq, template)?.ok_or(Invalid::EmptyTransform)?;
    let event = herald_cloudevents::json::parse_structured(event_text.as_bytes())?;
    event.validate()?;
    Ok(match transform.apply(&event) {
        Ok(event) => Answer::Transformed(event),
        Err(e) => Answer::Failed(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"specversion": "1.0", "id": "1", "source": "/shop",
        "type": "order.created", "data": {"id": "A-1", "amount": 250}}"#;

    fn jq(program: &str) -> TransformSpec {
        TransformSpec {
            jq: Some(program.into()),
            template: None,
        }
    }

    #[test]
    fn a_jq_transform_gives_the_new_event() {
        let Ok(Answer::Transformed(e)) = evaluate(&jq(r#".type = "order.big""#), EVENT) else {
            panic!("transformed")
        };
        assert_eq!(e.type_(), "order.big");
    }

    #[test]
    fn failures_and_invalid_transforms_are_told_apart() {
        assert!(matches!(
            evaluate(&jq("empty"), EVENT),
            Ok(Answer::Failed(_))
        ));
        let invalid = evaluate(&jq(".type ="), EVENT).unwrap_err().to_string();
        assert!(invalid.starts_with("transform.jq: 1:"), "{invalid}");
        assert!(
            evaluate(&jq("."), "{}")
                .unwrap_err()
                .to_string()
                .starts_with("event: ")
        );
    }

    #[test]
    fn trigger_files_and_templates() {
        let manifest = "apiVersion: eventing.herald.dev/v1alpha1\nkind: Trigger\nspec:\n  broker: b\n  \
                        transform:\n    template:\n      paths: {id: $.data.id}\n      data: '{\"order\": <id>}'\n";
        let spec = from_trigger(manifest).unwrap();
        let Ok(Answer::Transformed(e)) = evaluate(&spec, EVENT) else {
            panic!("transformed")
        };
        assert_eq!(e.data.as_deref(), Some(&br#"{"order": "A-1"}"#[..]));
        assert!(from_trigger("broker: b").is_err());
        let example = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/trigger-transform.yaml"
        ))
        .unwrap();
        assert!(
            from_trigger(&example).unwrap().jq.is_some(),
            "the first Trigger's"
        );
    }
}
