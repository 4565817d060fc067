//! Trigger transforms: reshape an event after filtering, right before delivery.
//!
//! Two kinds, one per Trigger (`spec.transform`):
//!
//! * **`jq`**: a jq program (run by the [jaq](https://github.com/01mf02/jaq) crates)
//!   over the event in the CloudEvents JSON format. Its one output, an object, is the
//!   new event: attributes and `data`. The result must be a valid CloudEvent.
//! * **`template`**: EventBridge's input transformer (`InputPathsMap` +
//!   `InputTemplate`): values picked from the event by JSON paths fill the
//!   `<placeholders>` of a template that becomes the new `data`; attributes stay.
//!
//! ```text
//!  operator (Trigger reconcile)                   dispatcher (per event, after filtering)
//!  TriggerSpec.transform                          CloudEvent
//!     │ Transform::from_parts                        │ Transform::apply: jq in a worker process
//!     ▼                                              ▼ (killed past the time budget)
//!  Ok(Transform) │ Err(TransformError)            Ok(new event) → POST to the subscriber
//!                └▶ TransformValid=False          Err(RunError) → dead-letter the original
//! ```
//!
//! Everything a user can get wrong in the program is reported when it is compiled,
//! with the position ([`TransformError`]); what depends on the event is a
//! [`RunError`] for that event only. See [`worker`] (and [`run`] without workers)
//! for what is bounded and how.

mod error;
mod jq;
mod path;
pub mod run;
mod template;
pub mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use error::{RunError, TransformError};
use herald_cloudevents::CloudEvent;
pub use run::Budget;

/// A compiled transform, cheap to clone and share between deliveries.
#[derive(Clone)]
pub struct Transform {
    kind: Kind,
    budget: Budget,
}

#[derive(Clone)]
enum Kind {
    Jq(Arc<jq::Program>),
    Template(Arc<template::Template>),
}

impl std::fmt::Debug for Transform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Jq(p) => write!(f, "Transform::Jq({:?})", p.source()),
            Kind::Template(_) => f.write_str("Transform::Template"),
        }
    }
}

impl Transform {
    /// Compiles a Trigger's `transform`: exactly one of a jq program and a template
    /// (`paths`, `data`). `Ok(None)` when there is neither.
    pub fn from_parts(
        jq: Option<&str>,
        template: Option<(&BTreeMap<String, String>, &str)>,
    ) -> Result<Option<Transform>, TransformError> {
        match (jq, template) {
            (None, None) => Ok(None),
            (Some(_), Some(_)) => Err(TransformError::Both),
            (Some(program), None) => Self::jq(program).map(Some),
            (None, Some((paths, data))) => Self::template(paths, data).map(Some),
        }
    }

    /// Compiles a jq program.
    pub fn jq(program: &str) -> Result<Transform, TransformError> {
        Ok(Transform {
            kind: Kind::Jq(Arc::new(jq::Program::compile(program)?)),
            budget: Budget::default(),
        })
    }

    /// Compiles an input template.
    pub fn template(
        paths: &BTreeMap<String, String>,
        data: &str,
    ) -> Result<Transform, TransformError> {
        Ok(Transform {
            kind: Kind::Template(Arc::new(template::Template::compile(paths, data)?)),
            budget: Budget::default(),
        })
    }

    /// The same transform with another budget.
    #[must_use]
    pub fn with_budget(mut self, budget: Budget) -> Self {
        self.budget = budget;
        self
    }

    /// The transformed event, a valid CloudEvent, or why there is none. Blocks the
    /// calling thread for about the time budget at most, twice when it waits for a
    /// busy worker (call it from a blocking context).
    pub fn apply(&self, event: &CloudEvent) -> Result<CloudEvent, RunError> {
        let result = match &self.kind {
            // Templates are a single pass over the template: no budget needed.
            Kind::Template(t) => t.apply(event, self.budget.max_output_bytes),
            Kind::Jq(program) => {
                let input = herald_cloudevents::json::to_structured(event);
                let max = self.budget.max_output_bytes;
                let output = if let Some(pool) = worker::pool() {
                    let request = worker::request(program.source(), &input, max);
                    let mut answer = pool.run(&request, &self.budget)?;
                    if let Some(error) = answer.get("error").and_then(serde_json::Value::as_str) {
                        return Err(RunError::Worker(error.to_owned()));
                    }
                    answer["output"].take()
                } else {
                    let program = program.clone();
                    run::bounded(&self.budget, move || program.run(&input, max))??
                };
                from_structured(&output, max)
            }
        }?;
        result.validate().map_err(RunError::Invalid)?;
        Ok(result)
    }
}

impl Transform {
    /// A worker's part: runs the jq program on `event` (JSON format) in this thread.
    fn run_jq_here(&self, event: &[u8], max: usize) -> Result<serde_json::Value, RunError> {
        match &self.kind {
            Kind::Jq(program) => program.run(event, max),
            Kind::Template(_) => Err(RunError::Worker("not a jq program".into())),
        }
    }
}

/// The event in the CloudEvents JSON format, as a JSON value.
fn structured(event: &CloudEvent) -> serde_json::Value {
    let text = herald_cloudevents::json::to_structured(event);
    serde_json::from_slice(&text).unwrap_or(serde_json::Value::Null)
}

/// The event a JSON object in the CloudEvents JSON format describes (not yet validated).
fn from_structured(value: &serde_json::Value, max: usize) -> Result<CloudEvent, RunError> {
    let serde_json::Value::Object(_) = value else {
        return Err(RunError::NotAnObject(herald_filter::json_kind(value)));
    };
    let text = serde_json::to_vec(value).map_err(|e| RunError::Output(e.to_string()))?;
    if text.len() > max {
        return Err(RunError::TooLarge(max));
    }
    herald_cloudevents::json::parse_structured(&text).map_err(RunError::Invalid)
}

#[cfg(test)]
mod tests;
