//! The API reference (`docs/reference.md`), generated from the CRD schemas so it
//! cannot disagree with what the apiserver enforces: `herald crds --reference`.

use std::fmt::Write as _;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};

fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn number(value: f64) -> String {
    format!("{value}")
}

/// "string, one of `a`, `b`; default `a`; 1–253 characters; required".
fn kind(schema: &JSONSchemaProps, required: bool) -> String {
    let mut parts = Vec::new();
    let mut base = if schema.x_kubernetes_preserve_unknown_fields == Some(true) {
        "object (free-form)".to_owned()
    } else if schema.x_kubernetes_int_or_string == Some(true) {
        "integer or string".to_owned()
    } else {
        schema.type_.clone().unwrap_or_else(|| "object".to_owned())
    };
    if let Some(format) = &schema.format {
        let _ = write!(base, " ({format})");
    }
    parts.push(base);
    if let Some(values) = &schema.enum_ {
        let names: Vec<String> = values
            .iter()
            .map(|v| {
                format!(
                    "`{}`",
                    v.0.as_str().map_or_else(|| v.0.to_string(), str::to_owned)
                )
            })
            .collect();
        parts.push(format!("one of {}", names.join(", ")));
    }
    match (schema.minimum, schema.maximum) {
        (Some(min), Some(max)) => parts.push(format!("{}–{}", number(min), number(max))),
        (Some(min), None) => parts.push(format!("≥ {}", number(min))),
        (None, Some(max)) => parts.push(format!("≤ {}", number(max))),
        (None, None) => {}
    }
    match (schema.min_length, schema.max_length) {
        (Some(min), Some(max)) => parts.push(format!("{min}–{max} characters")),
        (None, Some(max)) => parts.push(format!("at most {max} characters")),
        _ => {}
    }
    if schema
        .pattern
        .as_deref()
        .is_some_and(|p| p.contains("ms|s|m|h"))
    {
        parts.push("a duration: `30s`, `1m30s` or ISO-8601 `PT30S`".to_owned());
    }
    if let Some(default) = &schema.default {
        parts.push(format!("default `{}`", default.0));
    }
    if required {
        parts.push("**required**".to_owned());
    }
    parts.join("; ")
}

fn walk(out: &mut String, path: &str, schema: &JSONSchemaProps, required: bool) {
    if !path.is_empty() {
        let description = schema
            .description
            .as_deref()
            .map(one_line)
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| `{path}` | {} | {description} |",
            kind(schema, required)
        );
    }
    if let Some(properties) = &schema.properties {
        let required: &[String] = schema.required.as_deref().unwrap_or_default();
        for (name, child) in properties {
            let child_path = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            walk(out, &child_path, child, required.contains(name));
        }
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = &schema.items {
        if items.properties.is_some() {
            walk(out, &format!("{path}[]"), items, false);
        }
    }
    if let Some(JSONSchemaPropsOrBool::Schema(values)) = &schema.additional_properties {
        if values.properties.is_some() {
            walk(out, &format!("{path}{{}}"), values, false);
        }
    }
}

/// The reference of every CRD, as Markdown.
#[must_use]
pub fn markdown(crds: &[CustomResourceDefinition]) -> String {
    let mut out = String::from(
        "# API reference: `eventing.herald.dev/v1alpha1`\n\n\
         Generated from the CRD schemas by `herald crds --reference > docs/reference.md`; a \
         test fails when this file and the schemas drift apart. `kubectl explain <kind>.<field>` \
         shows the same text.\n",
    );
    for crd in crds {
        let names = &crd.spec.names;
        let Some(version) = crd.spec.versions.first() else {
            continue;
        };
        let Some(schema) = version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
        else {
            continue;
        };
        let _ = writeln!(out, "\n## {}\n", names.kind);
        if let Some(description) = &schema.description {
            let _ = writeln!(out, "{}\n", one_line(description));
        }
        let short = names.short_names.as_deref().unwrap_or_default().join(", ");
        let _ = writeln!(
            out,
            "`kubectl get {}` (short: `{short}`, category `herald`), namespaced.\n",
            names.plural
        );
        if let Some(columns) = &version.additional_printer_columns {
            let list: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
            let _ = writeln!(out, "Columns: {}.\n", list.join(", "));
        }
        let _ = writeln!(out, "| field | type | description |\n|---|---|---|");
        walk(&mut out, "", schema, false);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/reference.md` must be exactly what the schemas generate.
    #[test]
    fn committed_reference_matches_the_schemas() {
        let path =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/reference.md");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == markdown(&crate::crds::all()),
            "{} drifted from the CRD schemas; run `cargo run -p herald -- crds --reference > docs/reference.md`",
            path.display()
        );
    }

    #[test]
    fn fields_carry_type_constraints_and_descriptions() {
        let text = markdown(&crate::crds::all());
        assert!(
            text.contains("| `spec.broker` | string; 1–253 characters; **required** |"),
            "{text}"
        );
        assert!(text.contains("`spec.consumer.scaling.cooldownPeriod` | string; a duration"));
        assert!(text.contains("`spec.filters[].cesql`"));
        assert!(text.contains("one of `http`, `nats`; default `\"http\"`"));
    }
}
