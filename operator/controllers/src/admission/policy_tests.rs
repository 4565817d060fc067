use super::*;

fn trigger_spec(yaml: &str) -> TriggerSpec {
    serde_yaml::from_str(yaml).unwrap()
}

fn source_spec(yaml: &str) -> EventSourceSpec {
    serde_yaml::from_str(yaml).unwrap()
}

const CONSUMER_TRIGGER: &str = "broker: default\nconsumer:\n  template:\n    spec:\n      serviceAccountName: admin\n      containers: [{name: app, image: app:1}]\n";

/// How the test apiserver serves kinds: Secrets and config maps in namespaces, Nodes not.
fn served(resource: &KubernetesResource) -> Option<ServedKind> {
    let (group, plural, namespaced) = match resource.kind.as_str() {
        "Secret" => ("", "secrets", true),
        "ConfigMap" => ("", "configmaps", true),
        "Deployment" => ("apps", "deployments", true),
        "Node" => ("", "nodes", false),
        _ => return None,
    };
    Some(ServedKind {
        group: group.into(),
        plural: plural.into(),
        namespaced,
    })
}

fn shown(needs: &Needs) -> Vec<String> {
    match needs {
        Needs::All(all) => all.iter().map(ToString::to_string).collect(),
        other => panic!("expected permissions, got {other:?}"),
    }
}

#[test]
fn a_push_trigger_needs_nothing() {
    let spec = trigger_spec("broker: default\nsubscriber: {uri: http://x}\n");
    assert_eq!(trigger("ns", &spec, None), Needs::Nothing);
}

#[test]
fn a_consumer_trigger_needs_the_right_to_create_deployments() {
    let spec = trigger_spec(CONSUMER_TRIGGER);
    assert_eq!(
        shown(&trigger("ns", &spec, None)),
        ["create deployments.apps in namespace ns"]
    );
}

#[test]
fn an_update_that_only_rescales_a_consumer_needs_nothing_and_a_new_template_does() {
    let old = trigger_spec(CONSUMER_TRIGGER);
    let mut rescaled = old.clone();
    rescaled.consumer.as_mut().unwrap().scaling.max_replicas = Some(9);
    rescaled.filters = Vec::new();
    assert_eq!(trigger("ns", &rescaled, Some(&old)), Needs::Nothing);

    let mut other_account = old.clone();
    let template = &mut other_account.consumer.as_mut().unwrap().template;
    template.spec.as_mut().unwrap().service_account_name = Some("root".into());
    assert_eq!(
        shown(&trigger("ns", &other_account, Some(&old))),
        ["create deployments.apps in namespace ns"]
    );

    // A push Trigger turned into a consumer is a new request too.
    let push = trigger_spec("broker: default\nsubscriber: {uri: http://x}\n");
    assert!(matches!(trigger("ns", &old, Some(&push)), Needs::All(_)));
}

const JOB_TRIGGER: &str = "broker: default\njob:\n  template:\n    spec:\n      serviceAccountName: admin\n      containers: [{name: app, image: app:1}]\n";

#[test]
fn a_job_trigger_needs_the_right_to_create_jobs_and_secrets_and_only_a_new_template_asks_again() {
    let old = trigger_spec(JOB_TRIGGER);
    let both = [
        "create jobs.batch in namespace ns",
        "create secrets in namespace ns",
    ];
    assert_eq!(shown(&trigger("ns", &old, None)), both);
    let mut more_at_once = old.clone();
    let job = more_at_once.job.as_mut().unwrap();
    job.max_running = Some(5);
    job.keep_failed = Some("1h".into());
    assert_eq!(trigger("ns", &more_at_once, Some(&old)), Needs::Nothing);
    let mut other_account = old.clone();
    let template = &mut other_account.job.as_mut().unwrap().template;
    template.spec.as_mut().unwrap().service_account_name = Some("root".into());
    assert_eq!(shown(&trigger("ns", &other_account, Some(&old))), both);
    // A consumer Trigger turned into a job is a new request too.
    let consumer = trigger_spec(CONSUMER_TRIGGER);
    assert_eq!(shown(&trigger("ns", &old, Some(&consumer))), both);
}

#[test]
fn a_kubernetes_source_needs_list_watch_where_it_reads_and_the_right_to_run_its_account() {
    let spec = source_spec(
        "sink: {uri: http://x}\nkubernetes:\n  serviceAccountName: watcher\n  resources:\n  - {apiVersion: v1, kind: Secret, namespaces: [kube-system, other]}\n  - {apiVersion: apps/v1, kind: Deployment}\n",
    );
    assert_eq!(
        shown(&event_source("ns", &spec, None, served)),
        [
            "create deployments.apps in namespace ns",
            "list secrets in namespace kube-system",
            "watch secrets in namespace kube-system",
            "list secrets in namespace other",
            "watch secrets in namespace other",
            "list deployments.apps in namespace ns",
            "watch deployments.apps in namespace ns",
        ]
    );
}

#[test]
fn cluster_scoped_kinds_and_an_empty_namespace_are_checked_cluster_wide() {
    let spec = source_spec(
        "sink: {uri: http://x}\nkubernetes:\n  serviceAccountName: watcher\n  resources:\n  - {apiVersion: v1, kind: Node, namespaces: [ns]}\n  - {apiVersion: v1, kind: ConfigMap, namespaces: ['']}\n",
    );
    let needs = shown(&event_source("ns", &spec, None, served));
    assert!(
        needs.contains(&"list nodes cluster-wide".to_owned()),
        "{needs:?}"
    );
    assert!(
        needs.contains(&"watch configmaps cluster-wide".to_owned()),
        "{needs:?}"
    );
}

#[test]
fn a_kind_the_apiserver_does_not_serve_is_refused_unchecked() {
    let spec = source_spec(
        "sink: {uri: http://x}\nkubernetes:\n  serviceAccountName: watcher\n  resources: [{apiVersion: example.com/v1, kind: Widget}]\n",
    );
    let Needs::Refuse(message) = event_source("ns", &spec, None, served) else {
        panic!("an unknown kind must be refused");
    };
    let message = message.to_string();
    assert!(message.contains("Widget in example.com/v1"), "{message}");
}

#[test]
fn any_change_to_a_kubernetes_source_is_checked_and_none_is_not() {
    let old = source_spec(
        "sink: {uri: http://x}\nkubernetes:\n  serviceAccountName: watcher\n  resources: [{apiVersion: v1, kind: Secret}]\n",
    );
    assert_eq!(event_source("ns", &old, Some(&old), served), Needs::Nothing);
    // Pointing someone else's Secret watch at a new sink is reading those Secrets.
    let mut redirected = old.clone();
    redirected.sink.uri = Some("http://attacker".into());
    assert!(matches!(
        event_source("ns", &redirected, Some(&old), served),
        Needs::All(_)
    ));
}

#[test]
fn a_sink_binding_needs_the_right_to_patch_deployments_and_other_sources_nothing() {
    let binding = source_spec("sink: {uri: http://x}\nsinkBinding: {matchLabels: {app: web}}\n");
    assert_eq!(
        shown(&event_source("ns", &binding, None, served)),
        ["patch deployments.apps in namespace ns"]
    );
    let cron = source_spec("sink: {uri: http://x}\ncron: {schedule: '* * * * *'}\n");
    assert_eq!(event_source("ns", &cron, None, served), Needs::Nothing);
}

#[test]
fn the_verdict_names_every_missing_permission_and_why() {
    let needed = vec![
        Access::deployments("create", "ns", CONSUMER),
        Access {
            verb: "list",
            group: String::new(),
            resource: "secrets".into(),
            namespace: None,
            name: None,
            because: WATCH,
        },
    ];
    assert_eq!(verdict("alice", &needed, &[true, true]), Ok(()));
    let denied = verdict("alice", &needed, &[false, true])
        .unwrap_err()
        .to_string();
    assert!(
        denied.starts_with("alice may not create deployments.apps in namespace ns;"),
        "{denied}"
    );
    assert!(denied.contains(CONSUMER), "{denied}");
    assert!(!denied.contains("secrets"), "{denied}");
    let both = verdict("alice", &needed, &[false, false])
        .unwrap_err()
        .to_string();
    assert!(both.contains("list secrets cluster-wide"), "{both}");
}

#[test]
fn an_answer_missing_counts_as_denied() {
    let needed = vec![Access::deployments("create", "ns", CONSUMER)];
    assert!(verdict("alice", &needed, &[]).is_err());
}

#[test]
fn naming_a_secret_needs_the_right_to_read_it() {
    let webhook =
        source_spec("sink: {uri: http://x}\nwebhook: {secretRef: {name: github-key, key: k}}\n");
    assert_eq!(
        shown(&event_source("ns", &webhook, None, served)),
        ["get secrets github-key in namespace ns"]
    );
    // Unchanged on update: the Secret was the creator's to name.
    assert_eq!(
        event_source("ns", &webhook, Some(&webhook), served),
        Needs::Nothing
    );
    let nats = source_spec(
        "sink: {uri: http://x}\nnats: {url: 'nats://n:4222', subject: a, credentialsSecretRef: {name: team-creds, key: c}}\n",
    );
    assert_eq!(
        shown(&event_source("ns", &nats, Some(&webhook), served)),
        ["get secrets team-creds in namespace ns"]
    );

    let guarded: BrokerSpec =
        serde_yaml::from_str("auth: {bearerTokenSecretRef: {name: other-team-token, key: t}}")
            .unwrap();
    assert_eq!(
        shown(&broker("ns", &guarded, None)),
        ["get secrets other-team-token in namespace ns"]
    );
    assert_eq!(broker("ns", &guarded, Some(&guarded)), Needs::Nothing);
    assert_eq!(broker("ns", &BrokerSpec::default(), None), Needs::Nothing);
}
