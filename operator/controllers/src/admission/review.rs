//! One `AdmissionReview`: read the object, work out what Herald would do for the
//! requester ([`super::policy`]), ask the apiserver whether the *requester* may do it
//! (`SubjectAccessReview`s with their name, uid, groups and extra), answer.
//!
//! Every failure to decide (an object that does not parse, an apiserver that does not
//! answer) is a denial: the webhook is the check, so it fails closed like its
//! `failurePolicy: Fail`.

use std::collections::BTreeMap;

use herald_api::eventsource::KubernetesResource;
use herald_api::eventsource::group_version;
use herald_api::{Broker, EventSource, Trigger};
use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, GroupVersionKind, Status};
use kube::discovery::Scope;
use serde::de::DeserializeOwned;

use super::policy::{self, Access, Needs, ServedKind};

/// Why a request could not be decided.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The object (or the old object) is not a valid Trigger/EventSource.
    #[error("cannot read the {kind}")]
    Object {
        /// `Trigger` or `EventSource`.
        kind: &'static str,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// A CREATE or UPDATE without the object.
    #[error("the request carries no {kind}")]
    NoObject {
        /// `Trigger` or `EventSource`.
        kind: &'static str,
    },
    /// A `SubjectAccessReview` failed.
    #[error("cannot ask the apiserver whether you may {access}")]
    AccessReview {
        /// The question.
        access: String,
        /// The apiserver's error.
        #[source]
        source: kube::Error,
    },
}

/// Answers `review`: the response the apiserver expects, always.
pub async fn answer(
    client: &Client,
    review: AdmissionReview<DynamicObject>,
) -> AdmissionReview<DynamicObject> {
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(e) => return AdmissionResponse::invalid(e).into_review(),
    };
    let response = AdmissionResponse::from(&request);
    let response = match decide(client, &request).await {
        Ok(Ok(())) => response,
        Ok(Err(denied)) => {
            tracing::info!(
                user = %request.user_info.username.as_deref().unwrap_or_default(),
                kind = %request.kind.kind,
                namespace = %request.namespace.as_deref().unwrap_or_default(),
                name = %request.name,
                %denied,
                "admission denied"
            );
            refuse(response, &denied.to_string(), "Forbidden", 403)
        }
        Err(e) => {
            let message = herald_runtime::tls::error_chain(&e);
            tracing::warn!(error = %message, kind = %request.kind.kind, name = %request.name, "admission undecided; denied");
            refuse(response, &message, "InternalError", 500)
        }
    };
    response.into_review()
}

/// `response` as a refusal the requester reads as an ordinary API error: 403 for
/// missing rights (as RBAC's own), 500 when no decision could be made.
fn refuse(
    response: AdmissionResponse,
    message: &str,
    reason: &str,
    code: u16,
) -> AdmissionResponse {
    let mut response = response.deny(message);
    response.result = Status::failure(message, reason).with_code(code);
    response
}

/// `Ok(Ok(()))` to allow, `Ok(Err(denied))` to deny.
async fn decide(
    client: &Client,
    request: &AdmissionRequest<DynamicObject>,
) -> Result<Result<(), policy::Denied>, ReviewError> {
    if !matches!(request.operation, Operation::Create | Operation::Update)
        || request.kind.group != herald_api::GROUP
    {
        return Ok(Ok(()));
    }
    let namespace = request.namespace.clone().unwrap_or_default();
    let needs = match request.kind.kind.as_str() {
        "Trigger" => trigger_needs(request, &namespace)?,
        "EventSource" => source_needs(client, request, &namespace).await?,
        "Broker" => {
            let (new, old) = objects::<Broker>(request, "Broker")?;
            policy::broker(&namespace, &new.spec, old.as_ref().map(|o| &o.spec))
        }
        _ => Needs::Nothing,
    };
    let needed = match needs {
        Needs::Nothing => return Ok(Ok(())),
        Needs::Refuse(message) => return Ok(Err(message)),
        Needs::All(needed) => needed,
    };
    let allowed = futures::future::try_join_all(
        needed
            .iter()
            .map(|access| may(client, &request.user_info, access)),
    )
    .await?;
    let user = request.user_info.username.as_deref().unwrap_or("you");
    Ok(policy::verdict(user, &needed, &allowed))
}

fn trigger_needs(
    request: &AdmissionRequest<DynamicObject>,
    namespace: &str,
) -> Result<Needs, ReviewError> {
    let (new, old) = objects::<Trigger>(request, "Trigger")?;
    Ok(policy::trigger(
        namespace,
        &new.spec,
        old.as_ref().map(|o| &o.spec),
    ))
}

async fn source_needs(
    client: &Client,
    request: &AdmissionRequest<DynamicObject>,
    namespace: &str,
) -> Result<Needs, ReviewError> {
    let (new, old) = objects::<EventSource>(request, "EventSource")?;
    let old = old.map(|o| o.spec);
    // Discovery only when the policy will look: a changed kubernetes source.
    let served = match &new.spec.kubernetes {
        Some(kubernetes) if old.as_ref() != Some(&new.spec) => {
            served_kinds(client, &kubernetes.resources).await
        }
        _ => BTreeMap::new(),
    };
    Ok(policy::event_source(
        namespace,
        &new.spec,
        old.as_ref(),
        |resource| {
            served
                .get(&(resource.api_version.clone(), resource.kind.clone()))
                .cloned()
        },
    ))
}

/// The request's object (which CREATE and UPDATE always carry) and old object as `K`.
fn objects<K: DeserializeOwned>(
    request: &AdmissionRequest<DynamicObject>,
    kind: &'static str,
) -> Result<(K, Option<K>), ReviewError> {
    let parse = |obj: &Option<DynamicObject>| -> Result<Option<K>, ReviewError> {
        obj.as_ref()
            .map(|o| {
                serde_json::to_value(o)
                    .and_then(serde_json::from_value)
                    .map_err(|source| ReviewError::Object { kind, source })
            })
            .transpose()
    };
    let object = parse(&request.object)?.ok_or(ReviewError::NoObject { kind })?;
    Ok((object, parse(&request.old_object)?))
}

/// How the apiserver serves each of `resources`' kinds; kinds it does not serve are
/// left out (the policy refuses them).
async fn served_kinds(
    client: &Client,
    resources: &[KubernetesResource],
) -> BTreeMap<(String, String), ServedKind> {
    let mut served = BTreeMap::new();
    for resource in resources {
        let key = (resource.api_version.clone(), resource.kind.clone());
        if served.contains_key(&key) {
            continue;
        }
        let (group, version) = group_version(&resource.api_version);
        let gvk = GroupVersionKind::gvk(group, version, &resource.kind);
        if let Ok((api_resource, capabilities)) = kube::discovery::pinned_kind(client, &gvk).await {
            served.insert(
                key,
                ServedKind {
                    group: api_resource.group,
                    plural: api_resource.plural,
                    namespaced: capabilities.scope == Scope::Namespaced,
                },
            );
        }
    }
    served
}

/// Whether the requester (`user`) may do `access`, as the apiserver's authorizer says.
async fn may(client: &Client, user: &UserInfo, access: &Access) -> Result<bool, ReviewError> {
    let review = access_review(user, access);
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .map_err(|source| ReviewError::AccessReview {
            access: access.to_string(),
            source,
        })?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// The `SubjectAccessReview` asking whether `user` may do `access` (pure).
#[must_use]
pub fn access_review(user: &UserInfo, access: &Access) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: user.username.clone(),
            uid: user.uid.clone(),
            groups: user.groups.clone(),
            extra: user.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                namespace: access.namespace.clone(),
                verb: Some(access.verb.to_owned()),
                group: Some(access.group.clone()),
                resource: Some(access.resource.clone()),
                name: access.name.clone(),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `AdmissionReview` as kube-apiserver sends it for `kubectl apply` of a Trigger.
    fn review(
        operation: &str,
        object: &serde_json::Value,
        old: &serde_json::Value,
    ) -> AdmissionRequest<DynamicObject> {
        let review: AdmissionReview<DynamicObject> = serde_json::from_value(serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "eventing.herald.dev", "version": "v1alpha1", "kind": "Trigger"},
                "resource": {"group": "eventing.herald.dev", "version": "v1alpha1", "resource": "triggers"},
                "name": "t",
                "namespace": "shop",
                "operation": operation,
                "userInfo": {"username": "alice", "uid": "a-1", "groups": ["devs", "system:authenticated"]},
                "object": object,
                "oldObject": old,
                "dryRun": false,
            },
        }))
        .unwrap();
        review.try_into().unwrap()
    }

    fn trigger_object(spec: &serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "eventing.herald.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": "t", "namespace": "shop"},
            "spec": spec,
        })
    }

    #[test]
    fn a_consumer_trigger_from_the_apiserver_needs_create_deployments_in_its_namespace() {
        let consumer = trigger_object(&serde_json::json!({
            "broker": "default",
            "consumer": {"template": {"spec": {"containers": [{"name": "app", "image": "app"}]}}},
        }));
        let request = review("CREATE", &consumer, &serde_json::Value::Null);
        let Needs::All(needed) = trigger_needs(&request, "shop").unwrap() else {
            panic!("a consumer needs a permission");
        };
        assert_eq!(needed.len(), 1);
        assert_eq!(
            needed[0].to_string(),
            "create deployments.apps in namespace shop"
        );
        // The same object again (a finalizer added, say): nothing to ask.
        let request = review("UPDATE", &consumer, &consumer);
        assert_eq!(trigger_needs(&request, "shop").unwrap(), Needs::Nothing);
    }

    #[test]
    fn a_review_without_its_object_is_an_error_not_an_admission() {
        let request = review("CREATE", &serde_json::Value::Null, &serde_json::Value::Null);
        assert!(matches!(
            trigger_needs(&request, "shop"),
            Err(ReviewError::NoObject { kind: "Trigger" })
        ));
    }

    #[test]
    fn a_refusal_reads_as_rbac_s_own_403() {
        let trigger = trigger_object(&serde_json::json!({"broker": "b"}));
        let request = review("CREATE", &trigger, &serde_json::Value::Null);
        let response = refuse(
            AdmissionResponse::from(&request),
            "alice may not",
            "Forbidden",
            403,
        );
        assert!(!response.allowed);
        assert_eq!(response.uid, request.uid);
        assert_eq!(response.result.code, 403);
        assert_eq!(response.result.reason, "Forbidden");
        assert_eq!(response.result.message, "alice may not");
    }

    #[test]
    fn the_access_review_asks_about_the_requester_with_everything_the_apiserver_knows() {
        let user = UserInfo {
            username: Some("system:serviceaccount:ns:requester".into()),
            uid: Some("u-1".into()),
            groups: Some(vec!["system:serviceaccounts".into()]),
            extra: Some(BTreeMap::from([(
                "authentication.kubernetes.io/pod-name".into(),
                vec!["p".into()],
            )])),
        };
        let access = Access {
            verb: "list",
            group: String::new(),
            resource: "secrets".into(),
            namespace: None,
            name: None,
            because: "test",
        };
        let spec = access_review(&user, &access).spec;
        assert_eq!(spec.user, user.username);
        assert_eq!(spec.uid, user.uid);
        assert_eq!(spec.groups, user.groups);
        assert_eq!(spec.extra, user.extra);
        let attributes = spec.resource_attributes.unwrap();
        assert_eq!(attributes.namespace, None, "cluster-wide");
        assert_eq!(attributes.verb.as_deref(), Some("list"));
        assert_eq!(attributes.resource.as_deref(), Some("secrets"));
        assert_eq!(attributes.group.as_deref(), Some(""));
    }
}
