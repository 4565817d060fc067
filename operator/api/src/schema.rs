//! Hand-written schema fragments for fields whose Rust type says less than the CRD
//! should (durations with a pattern, opaque nested filters, pod templates).

use schemars::{Schema, SchemaGenerator, json_schema};

/// A duration string; see [`crate::duration`].
pub fn duration(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "pattern": crate::duration::SCHEMA_PATTERN,
    })
}

/// A byte size: an integer, or a string quantity such as `512Mi`.
pub fn byte_size(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-int-or-string": true,
        "anyOf": [{ "type": "integer" }, { "type": "string" }],
    })
}

/// An object whose inner structure Herald validates itself (recursive filters,
/// content patterns): the apiserver keeps it as written.
pub fn opaque_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// A list of opaque objects (nested `all` / `any` filters).
pub fn opaque_object_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
    })
}

/// A `PodTemplateSpec`. The full upstream schema would make the CRD hundreds of
/// kilobytes (too big for client-side `kubectl apply`); the apiserver validates the
/// template anyway when the operator creates the Deployment from it.
pub fn pod_template(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}
