//! The `CustomResourceDefinition`s of Herald, as `herald crds` prints them and as
//! `crds/` holds them.
//!
//! The derive generates each schema from the Rust types; this module adds the
//! constraints the types cannot express but the apiserver can enforce (exactly one of
//! a set of fields, at least one of `ref`/`uri`).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::CustomResourceExt;

use crate::{Broker, EventSource, EventType, Trigger};

/// Every Herald CRD, each with its cross-field constraints.
#[must_use]
pub fn all() -> Vec<CustomResourceDefinition> {
    let mut trigger = Trigger::crd();
    with_spec(&mut trigger, |spec| {
        spec.one_of = Some(required_each(&["subscriber", "consumer", "job"]));
        if let Some(subscriber) = property(spec, &["subscriber"]) {
            require_ref_or_uri(subscriber);
        }
        if let Some(sink) = property(spec, &["delivery", "deadLetterSink"]) {
            require_ref_or_uri(sink);
        }
    });

    let mut broker = Broker::crd();
    with_spec(&mut broker, |spec| {
        if let Some(sink) = property(spec, &["delivery", "deadLetterSink"]) {
            require_ref_or_uri(sink);
        }
    });

    let mut source = EventSource::crd();
    with_spec(&mut source, |spec| {
        spec.one_of = Some(required_each(&[
            "cron",
            "kubernetes",
            "webhook",
            "nats",
            "sinkBinding",
        ]));
        if let Some(sink) = property(spec, &["sink"]) {
            require_ref_or_uri(sink);
        }
    });

    vec![broker, trigger, source, EventType::crd()]
}

/// One YAML document per CRD, separated by `---`, as `kubectl apply -f` reads them.
#[must_use]
pub fn to_yaml(crds: &[CustomResourceDefinition]) -> String {
    crds.iter()
        .map(|crd| serde_yaml::to_string(crd).unwrap_or_else(|e| format!("# cannot render: {e}\n")))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The file name under `crds/` for a CRD: `<plural>.<group>.yaml`.
#[must_use]
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

fn with_spec(crd: &mut CustomResourceDefinition, edit: impl FnOnce(&mut JSONSchemaProps)) {
    let spec = crd
        .spec
        .versions
        .first_mut()
        .and_then(|v| v.schema.as_mut())
        .and_then(|s| s.open_api_v3_schema.as_mut())
        .and_then(|root| root.properties.as_mut())
        .and_then(|props| props.get_mut("spec"));
    if let Some(spec) = spec {
        edit(spec);
    }
}

fn property<'a>(schema: &'a mut JSONSchemaProps, path: &[&str]) -> Option<&'a mut JSONSchemaProps> {
    path.iter()
        .try_fold(schema, |s, key| s.properties.as_mut()?.get_mut(*key))
}

fn required_each(fields: &[&str]) -> Vec<JSONSchemaProps> {
    fields
        .iter()
        .map(|f| JSONSchemaProps {
            required: Some(vec![(*f).to_owned()]),
            ..Default::default()
        })
        .collect()
}

fn require_ref_or_uri(destination: &mut JSONSchemaProps) {
    destination.any_of = Some(required_each(&["ref", "uri"]));
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray;
    use std::path::PathBuf;

    fn crds_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../crds")
    }

    /// The committed `crds/` must be exactly what the types generate.
    /// Regenerate with `cargo run -p herald -- crds --output-dir crds`.
    #[test]
    fn committed_crds_match_the_types() {
        for crd in all() {
            let path = crds_dir().join(file_name(&crd));
            let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!("{} is missing ({e}); regenerate crds/", path.display())
            });
            assert_eq!(
                committed,
                to_yaml(std::slice::from_ref(&crd)),
                "{} drifted from the Rust types; run `cargo run -p herald -- crds --output-dir crds`",
                path.display()
            );
        }
    }

    #[test]
    fn one_of_constraints_are_present() {
        let crds = all();
        let yaml = to_yaml(&crds);
        assert!(yaml.contains("oneOf"));
        let source = crds
            .iter()
            .find(|c| c.spec.names.kind == "EventSource")
            .unwrap();
        let spec = &source.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap()
            .properties
            .as_ref()
            .unwrap()["spec"];
        assert_eq!(spec.one_of.as_ref().map(Vec::len), Some(5));
    }

    #[test]
    fn every_field_has_a_description() {
        fn walk(path: &str, schema: &JSONSchemaProps, missing: &mut Vec<String>) {
            for (name, child) in schema.properties.iter().flatten() {
                let here = format!("{path}.{name}");
                if child.description.as_deref().is_none_or(str::is_empty)
                    && name != "metadata"
                    && name != "apiVersion"
                    && name != "kind"
                {
                    missing.push(here.clone());
                }
                walk(&here, child, missing);
                if let Some(JSONSchemaPropsOrArray::Schema(item)) = &child.items {
                    walk(&format!("{here}[]"), item, missing);
                }
            }
        }
        let mut missing = Vec::new();
        for crd in all() {
            let root = crd.spec.versions[0]
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap();
            walk(&crd.spec.names.kind, root, &mut missing);
        }
        assert!(
            missing.is_empty(),
            "fields without a description (kubectl explain): {missing:#?}"
        );
    }
}
