//! The admission webhook: a Trigger or EventSource that makes Herald run pods, read
//! objects or patch Deployments is admitted only if the *requesting user* could do
//! that directly. Real apiserver (it calls the webhook and answers its
//! `SubjectAccessReview`s), the operator serving the webhook with the certificate it
//! issued itself, and a user who is a ServiceAccount with a token.
//!
//! The harness apiserver cannot reach Services, so the webhook configuration points
//! at `https://127.0.0.1:<port>`; it selects only this test's namespace (by a label),
//! so tests running alongside never meet it, and it is deleted before the namespace.

use std::time::Duration;

use herald_api::{Broker, EventSource, Trigger};
use herald_e2e::kubectl::kubectl;
use herald_e2e::manifests::{self, secret, service_account};
use herald_e2e::process::{Operator, free_port};
use herald_e2e::{eventually, nats_url, with_temp_ns};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
const NS_LABEL: &str = "e2e.herald.dev/admission";

/// Deletes the webhook configuration when dropped (also when the test panics): with
/// `failurePolicy: Fail` and the operator gone, it would refuse every later change to
/// the namespace's objects, the harness' own clean-up included.
struct WebhookConfig(String);

impl Drop for WebhookConfig {
    fn drop(&mut self) {
        let _ = kubectl(
            &[
                "delete",
                "validatingwebhookconfiguration",
                &self.0,
                "--ignore-not-found",
            ],
            None,
        );
    }
}

/// A webhook configuration as the chart's, pointed at `port` on loopback, without a
/// `caBundle` (the operator sets it), for namespaces labelled with `ns`.
async fn webhook_config(client: &Client, ns: &str, port: u16) -> WebhookConfig {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {NS_LABEL: ns}}})),
        )
        .await
        .expect("label the namespace");
    let name = format!("herald-e2e-{ns}");
    let config: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": name},
        "webhooks": [{
            "name": "requester.admission.eventing.herald.dev",
            "clientConfig": {"url": format!("https://127.0.0.1:{port}/validate")},
            "rules": [{
                "apiGroups": ["eventing.herald.dev"],
                "apiVersions": ["*"],
                "operations": ["CREATE", "UPDATE"],
                "resources": ["brokers", "triggers", "eventsources"],
                "scope": "Namespaced",
            }],
            "namespaceSelector": {"matchLabels": {NS_LABEL: ns}},
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 10,
        }],
    }))
    .expect("webhook configuration");
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &config)
        .await
        .expect("create the webhook configuration");
    WebhookConfig(name)
}

/// A client that authenticates as ServiceAccount `account` of `ns`, with a token
/// from `kubectl create token`, as that user would.
async fn client_as(ns: &str, account: &str) -> Client {
    let out = kubectl(&["create", "token", account, "-n", ns], None);
    assert!(
        out.status.success(),
        "kubectl create token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let mut config = kube::Config::infer().await.expect("kubeconfig");
    config.auth_info = serde_json::from_value(json!({ "token": token })).unwrap();
    Client::try_from(config).expect("client with the token")
}

fn trigger(name: &str, spec: &serde_json::Value) -> Trigger {
    serde_json::from_value(json!({
        "apiVersion": "eventing.herald.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("Trigger")
}

fn source(name: &str, spec: &serde_json::Value) -> EventSource {
    serde_json::from_value(json!({
        "apiVersion": "eventing.herald.dev/v1alpha1",
        "kind": "EventSource",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("EventSource")
}

fn consumer_spec(account: &str) -> serde_json::Value {
    json!({
        "broker": "default",
        "consumer": {"template": {"spec": {
            "serviceAccountName": account,
            "containers": [{"name": "app", "image": "app:1", "imagePullPolicy": "Never"}],
        }}},
    })
}

fn secret_watch_spec(namespaces: &[&str]) -> serde_json::Value {
    json!({
        "sink": {"uri": "http://sink.example"},
        "kubernetes": {
            "serviceAccountName": "default",
            "resources": [{"apiVersion": "v1", "kind": "Secret", "namespaces": namespaces}],
        },
    })
}

/// The webhook's denial: a 403 whose message names what is missing.
fn denial<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> String {
    match result {
        // Only the webhook's refusal: one from the apiserver's RBAC is a different test.
        Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("admission webhook") => {
            e.message
        }
        other => panic!("expected the webhook to deny (403), got {other:?}"),
    }
}

/// Retries `create` until the apiserver's RBAC cache has the new grant.
async fn admitted<K>(api: &Api<K>, object: &K)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    eventually(
        "the request to be admitted after the grant",
        WAIT,
        || async {
            match api.create(&PostParams::default(), object).await {
                Ok(_) => Some(()),
                Err(e) => {
                    eprintln!("not yet: {e}");
                    None
                }
            }
        },
    )
    .await;
}

/// The operator serving the webhook on a loopback port, and the configuration that
/// sends it this namespace's requests, once the apiserver trusts its certificate.
struct Webhook {
    // Dropped first: the configuration must go while the operator still answers.
    config: WebhookConfig,
    _operator: Operator,
    port: u16,
}

/// Starts an operator (`identity`) serving the webhook on `port`, managing `config`.
async fn operator_with_webhook(ns: &str, identity: &str, port: u16, config: &str) -> Operator {
    let address = format!("127.0.0.1:{port}");
    Operator::start_with_flags(
        ns,
        &nats_url(),
        identity,
        "http://ingress.test",
        &[
            "--admission-addr",
            &address,
            "--admission-webhook-config",
            config,
            "--admission-extra-names",
            "127.0.0.1",
        ],
    )
    .await
}

impl Webhook {
    async fn start(client: &Client, ns: &str) -> Self {
        let port = free_port();
        let config = webhook_config(client, ns, port).await;
        let operator = operator_with_webhook(ns, "admission", port, &config.0).await;
        // The operator issued its certificate into a Secret and made the apiserver
        // trust its CA.
        let configs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
        let ca_bundle = eventually("the operator to set the caBundle", WAIT, || async {
            let current = configs.get(&config.0).await.ok()?;
            current.webhooks?.first()?.client_config.ca_bundle.clone()
        })
        .await;
        let secret = Api::<Secret>::namespaced(client.clone(), ns)
            .get("herald-operator-admission-tls")
            .await
            .expect("the certificate's Secret");
        let data = secret.data.unwrap_or_default();
        assert_eq!(
            data.get("ca.crt"),
            Some(&ca_bundle),
            "the Secret's CA is trusted"
        );
        assert!(data.contains_key("tls.crt") && data.contains_key("tls.key"));
        Self {
            config,
            _operator: operator,
            port,
        }
    }
}

/// A rule allowing `verbs` on `resources` of API group `group`.
fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |list: &[&str]| list.iter().map(|&s| s.to_owned()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(strings(&[group])),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

/// Grants ServiceAccount `requester` of `ns` the `rules` in `namespace` with a `Role`
/// and `RoleBinding` called `name`.
async fn grant(client: &Client, namespace: &str, name: &str, ns: &str, rules: Vec<PolicyRule>) {
    let metadata = ObjectMeta {
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    };
    let role = Role {
        metadata: metadata.clone(),
        rules: Some(rules),
    };
    let binding = RoleBinding {
        metadata,
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "Role".to_owned(),
            name: name.to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: "requester".to_owned(),
            namespace: Some(ns.to_owned()),
            ..Subject::default()
        }]),
    };
    manifests::apply(client, namespace, &role).await;
    manifests::apply(client, namespace, &binding).await;
}

/// ServiceAccount `requester`, who may write Triggers and EventSources and nothing
/// else, and a client acting as it.
async fn requester(client: &Client, ns: &str) -> Client {
    manifests::apply(client, ns, &service_account("requester")).await;
    let author = rule(
        "eventing.herald.dev",
        &["brokers", "triggers", "eventsources"],
        &["get", "list", "watch", "create", "update", "patch"],
    );
    grant(client, ns, "herald-author", ns, vec![author]).await;
    let as_requester = client_as(ns, "requester").await;
    // Until the apiserver's RBAC cache has the binding, its own authorizer refuses
    // the requester before the webhook is asked.
    let brokers: Api<Broker> = Api::namespaced(as_requester.clone(), ns);
    let triggers: Api<Trigger> = Api::namespaced(as_requester.clone(), ns);
    let sources: Api<EventSource> = Api::namespaced(as_requester.clone(), ns);
    eventually("the requester's grant to take effect", WAIT, || async {
        let lists = (
            brokers.list(&ListParams::default()).await,
            triggers.list(&ListParams::default()).await,
            sources.list(&ListParams::default()).await,
        );
        matches!(lists, (Ok(_), Ok(_), Ok(_))).then_some(())
    })
    .await;
    as_requester
}

#[tokio::test]
async fn only_what_the_requester_may_do_themselves_is_admitted() {
    with_temp_ns("admission", |client, ns| async move {
        let webhook = Webhook::start(&client, &ns).await;
        let as_requester = requester(&client, &ns).await;
        let requester = format!("system:serviceaccount:{ns}:requester");
        let triggers: Api<Trigger> = Api::namespaced(as_requester.clone(), &ns);
        let sources: Api<EventSource> = Api::namespaced(as_requester, &ns);

        // The webhook answers (the TLS handshake with the issued certificate works):
        // a push Trigger runs nothing on the user's behalf and is admitted.
        let push = json!({"broker": "default", "subscriber": {"uri": "http://subscriber.example"}});
        admitted(&triggers, &trigger("push", &push)).await;

        // A consumer Trigger would run pods as any account: refused, naming the right.
        let consumer = trigger("consumer", &consumer_spec("default"));
        let message = denial(triggers.create(&PostParams::default(), &consumer).await);
        assert!(message.contains(&requester), "{message}");
        assert!(
            message.contains(&format!("create deployments.apps in namespace {ns}")),
            "{message}"
        );

        // Reading Secrets of another namespace: refused.
        let elsewhere = source("secrets-elsewhere", &secret_watch_spec(&["kube-system"]));
        let message = denial(sources.create(&PostParams::default(), &elsewhere).await);
        assert!(message.contains("list secrets in namespace kube-system"), "{message}");
        assert!(message.contains("watch secrets in namespace kube-system"), "{message}");
        // A cluster-scoped kind is read cluster-wide, whatever namespaces it lists.
        let nodes = json!({
            "sink": {"uri": "http://sink.example"},
            "kubernetes": {
                "serviceAccountName": "default",
                "resources": [{"apiVersion": "v1", "kind": "Node", "namespaces": [ns]}],
            },
        });
        let message = denial(sources.create(&PostParams::default(), &source("nodes", &nodes)).await);
        assert!(message.contains("list nodes cluster-wide"), "{message}");
        // Patching Deployments through a sink binding: refused.
        let binding = source(
            "binding",
            &json!({"sink": {"uri": "http://sink.example"}, "sinkBinding": {"matchLabels": {"app": "web"}}}),
        );
        let message = denial(sources.create(&PostParams::default(), &binding).await);
        assert!(
            message.contains(&format!("patch deployments.apps in namespace {ns}")),
            "{message}"
        );

        // An admin's consumer Trigger is admitted; the requester may rescale it (what
        // runs stays what the admin allowed) but not make it run as another account.
        Api::<Trigger>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &trigger("admins", &consumer_spec("default")))
            .await
            .expect("the admin may run consumers");
        let rescale = json!({"spec": {"consumer": {"scaling": {"maxReplicas": 3}}}});
        triggers
            .patch("admins", &PatchParams::default(), &Patch::Merge(&rescale))
            .await
            .expect("rescaling changes nothing that runs");
        let take_over = json!({"spec": {"consumer": {"template": {"spec": {"serviceAccountName": "admin-bot"}}}}});
        let message = denial(
            triggers
                .patch("admins", &PatchParams::default(), &Patch::Merge(&take_over))
                .await,
        );
        assert!(message.contains("create deployments.apps"), "{message}");

        // Granted the right, the same request is admitted.
        let deploy = rule("apps", &["deployments"], &["create"]);
        grant(&client, &ns, "deployer", &ns, vec![deploy]).await;
        admitted(&triggers, &consumer).await;
        // `create` is not `patch`: the sink binding stays refused.
        let message = denial(sources.create(&PostParams::default(), &binding).await);
        assert!(message.contains("patch deployments.apps"), "{message}");
        assert!(!message.contains("create deployments.apps"), "{message}");
        // Reading kube-system's Secrets still needs that right; granted, admitted.
        let message = denial(sources.create(&PostParams::default(), &elsewhere).await);
        assert!(!message.contains("create deployments.apps"), "{message}");
        let reader = format!("herald-e2e-secret-reader-{ns}");
        let read_secrets = rule("", &["secrets"], &["list", "watch"]);
        grant(&client, "kube-system", &reader, &ns, vec![read_secrets]).await;
        admitted(&sources, &elsewhere).await;
        let _ = kubectl(
            &[
                "delete",
                "-n",
                "kube-system",
                &format!("role/{reader}"),
                &format!("rolebinding/{reader}"),
            ],
            None,
        );
        drop(webhook);
    })
    .await;
}

/// Naming a Secret makes Herald read and use it (a Broker even publishes its token's
/// SHA-256): only someone who may read that Secret may name it.
#[tokio::test]
async fn naming_a_secret_needs_the_right_to_read_it() {
    with_temp_ns("admission-secrets", |client, ns| async move {
        let webhook = Webhook::start(&client, &ns).await;
        // Another team's token, kept in the same namespace.
        let token = secret("team-token", "token", "5f0c2a9e7d3b41e8a6c2f9d0b7e4a1c35f0c2a9e");
        manifests::apply(&client, &ns, &token).await;
        let as_requester = requester(&client, &ns).await;
        let brokers: Api<Broker> = Api::namespaced(as_requester.clone(), &ns);
        let sources: Api<EventSource> = Api::namespaced(as_requester, &ns);
        let broker: Broker = serde_json::from_value(json!({
            "apiVersion": "eventing.herald.dev/v1alpha1", "kind": "Broker",
            "metadata": {"name": "guarded"},
            "spec": {"auth": {"bearerTokenSecretRef": {"name": "team-token", "key": "token"}}},
        }))
        .expect("Broker");
        let hook = source(
            "hook",
            &json!({"sink": {"uri": "http://sink.example"}, "webhook": {"secretRef": {"name": "team-token", "key": "token"}}}),
        );
        for message in [
            denial(brokers.create(&PostParams::default(), &broker).await),
            denial(sources.create(&PostParams::default(), &hook).await),
        ] {
            assert!(message.contains(&format!("get secrets team-token in namespace {ns}")), "{message}");
        }
        // An open Broker names no Secret: admitted.
        let open: Broker = serde_json::from_value(json!({
            "apiVersion": "eventing.herald.dev/v1alpha1", "kind": "Broker",
            "metadata": {"name": "open"}, "spec": {},
        }))
        .expect("Broker");
        admitted(&brokers, &open).await;
        // Granted `get` on that one Secret, both are admitted.
        let read_token = PolicyRule {
            resource_names: Some(vec!["team-token".to_owned()]),
            ..rule("", &["secrets"], &["get"])
        };
        grant(&client, &ns, "token-reader", &ns, vec![read_token]).await;
        admitted(&brokers, &broker).await;
        admitted(&sources, &hook).await;
        drop(webhook);
    })
    .await;
}

/// A job Trigger runs a Job per event from its template and stores each event in a
/// Secret: only someone who may create both may write one.
#[tokio::test]
async fn a_job_trigger_needs_the_right_to_create_jobs_and_secrets() {
    with_temp_ns("admission-jobs", |client, ns| async move {
        let webhook = Webhook::start(&client, &ns).await;
        let triggers: Api<Trigger> = Api::namespaced(requester(&client, &ns).await, &ns);
        let job = trigger(
            "per-event",
            &json!({"broker": "default", "job": {"template": {"spec": {
                "containers": [{"name": "work", "image": "busybox"}],
            }}}}),
        );
        let message = denial(triggers.create(&PostParams::default(), &job).await);
        assert!(
            message.contains(&format!("create jobs.batch in namespace {ns}")),
            "{message}"
        );
        assert!(
            message.contains(&format!("create secrets in namespace {ns}")),
            "{message}"
        );
        let run_jobs = rule("batch", &["jobs"], &["create"]);
        grant(&client, &ns, "job-runner", &ns, vec![run_jobs]).await;
        // The apiserver's RBAC cache learns of the binding a moment later, so the
        // webhook may still see the old rights for the first request or two.
        let message = eventually("the denial to stop naming jobs.batch", WAIT, || async {
            let message = denial(triggers.create(&PostParams::default(), &job).await);
            (!message.contains("jobs.batch")).then_some(message)
        })
        .await;
        assert!(message.contains("create secrets"), "{message}");
        let write_secrets = rule("", &["secrets"], &["create"]);
        grant(&client, &ns, "secret-writer", &ns, vec![write_secrets]).await;
        admitted(&triggers, &job).await;
        drop(webhook);
    })
    .await;
}

fn der(pem: &[u8]) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem)
        .expect("PEM certificate")
        .to_vec()
}

#[tokio::test]
async fn every_replica_serves_the_one_certificate_and_a_renewal_keeps_the_ca() {
    with_temp_ns("admission-cert", |client, ns| async move {
        let webhook = Webhook::start(&client, &ns).await;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let secret = secrets.get("herald-operator-admission-tls").await.unwrap();
        let version = secret.metadata.resource_version.clone();
        let data = secret.data.unwrap_or_default();
        let (ca, cert) = (data["ca.crt"].0.clone(), data["tls.crt"].0.clone());
        assert_eq!(herald_e2e::certs::presented_certificate(webhook.port, &ca).await, Some(der(&cert)));

        // A second replica, standing by (the first holds the Lease), serves the same
        // certificate and writes nothing.
        let standby_port = free_port();
        let standby = operator_with_webhook(&ns, "standby", standby_port, &webhook.config.0).await;
        let served = eventually("the standby to serve", WAIT, || {
            herald_e2e::certs::presented_certificate(standby_port, &ca)
        })
        .await;
        assert_eq!(served, der(&cert), "one certificate for every replica");
        let unchanged = secrets.get("herald-operator-admission-tls").await.unwrap();
        assert_eq!(unchanged.metadata.resource_version, version);
        drop(standby);

        // The certificate is due (a day left): the next replica to start renews it,
        // with the same CA, so the caBundle stays and the old one is still trusted.
        let due = (std::time::SystemTime::now() + Duration::from_secs(86_400))
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string();
        secrets
            .patch(
                "herald-operator-admission-tls",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"eventing.herald.dev/cert-not-after": due}}})),
            )
            .await
            .unwrap();
        let renewing_port = free_port();
        let _renewing =
            operator_with_webhook(&ns, "renewing", renewing_port, &webhook.config.0).await;
        let renewed = eventually("the certificate to be renewed", WAIT, || async {
            let data = secrets.get("herald-operator-admission-tls").await.ok()?.data?;
            (data["tls.crt"].0 != cert).then_some(data)
        })
        .await;
        assert_eq!(renewed["ca.crt"].0, ca, "the CA stays");
        let new_cert = der(&renewed["tls.crt"].0);
        let served = eventually("the renewing replica to serve the new one", WAIT, || async {
            herald_e2e::certs::presented_certificate(renewing_port, &ca).await.filter(|c| *c == new_cert)
        })
        .await;
        assert_eq!(served, new_cert);
        // The first replica still presents the old certificate, and it is still good.
        assert_eq!(herald_e2e::certs::presented_certificate(webhook.port, &ca).await, Some(der(&cert)));
        let configs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
        let current = configs.get(&webhook.config.0).await.unwrap();
        let bundle = current.webhooks.unwrap()[0].client_config.ca_bundle.clone();
        assert_eq!(bundle.map(|b| b.0), Some(ca), "the caBundle stays");
        drop(webhook);
    })
    .await;
}
