use super::*;

fn settings() -> WorkloadSettings {
    WorkloadSettings {
        sidecar_image: "ghcr.io/herald-dev/herald:test".into(),
        nats_url: "nats://nats:4222".into(),
    }
}

fn trigger(consumer: &str) -> Trigger {
    let spec =
        format!("broker: orders\nfilters: [{{cesql: \"source = 'x'\"}}]\nconsumer:\n{consumer}");
    let mut t = Trigger::new("billing", serde_yaml::from_str(&spec).unwrap());
    t.metadata.namespace = Some("shop".into());
    t.metadata.uid = Some("uid-1".into());
    t
}

const HTTP: &str = "  port: 9000\n  path: /events\n  template:\n    metadata: {labels: {app: billing}}\n    spec:\n      containers:\n      - {name: app, image: billing:1}\n";

fn build(t: &Trigger, replicas: i32) -> Result<Deployment, ConsumerError> {
    build_with(t, Some(replicas))
}

fn build_with(t: &Trigger, replicas: Option<i32>) -> Result<Deployment, ConsumerError> {
    let plan = SidecarConfig::new("shop", &t.name_any(), &t.spec, None, None);
    desired_deployment(t, &plan, &settings(), replicas)
}

fn containers(d: &Deployment) -> &[Container] {
    &d.spec.template.spec.as_ref().unwrap().containers
}

fn env_of<'c>(c: &'c Container, name: &str) -> Option<&'c str> {
    c.env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)?
        .value
        .as_deref()
}

#[test]
fn http_mode_adds_the_sidecar_and_port() {
    let t = trigger(HTTP);
    let d = build(&t, 0).unwrap();
    assert_eq!(d.metadata.name.as_deref(), Some("billing-consumer"));
    assert_eq!(d.metadata.namespace.as_deref(), Some("shop"));
    let spec = &d.spec;
    assert_eq!(spec.replicas, Some(0));
    let applied = build_with(&t, None).unwrap();
    assert_eq!(
        applied.spec.replicas, None,
        "after creation the replicas are the autoscaler's, not in the reconcile's apply"
    );
    let selector = spec.selector.match_labels.as_ref().unwrap();
    assert_eq!(
        selector.get(TRIGGER_LABEL).map(String::as_str),
        Some("billing")
    );
    let pod_meta = spec.template.metadata.as_ref().unwrap();
    let pod_labels = pod_meta.labels.as_ref().unwrap();
    assert_eq!(
        pod_labels.get("app").map(String::as_str),
        Some("billing"),
        "user labels kept"
    );
    assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
    let [app, side] = containers(&d) else {
        panic!("expected the app and the sidecar")
    };
    assert_eq!(env_of(app, "PORT"), Some("9000"));
    assert_eq!(side.name, SIDECAR);
    assert_eq!(side.command.as_deref(), Some(&["herald".to_owned()][..]));
    assert_eq!(env_of(side, workload::ENV_CONSUMER_PORT), Some("9000"));
    assert_eq!(
        env_of(side, workload::ENV_SUBSCRIBER),
        Some("http://127.0.0.1:$(HERALD_CONSUMER_PORT)/events")
    );
    let plan: SidecarConfig =
        serde_json::from_str(env_of(side, workload::ENV_TRIGGER_PLAN).unwrap()).unwrap();
    assert_eq!((plan.broker.as_str(), plan.filters.len()), ("orders", 1));
    let owner = &d.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("Trigger", Some(true))
    );
}

#[test]
fn a_filter_change_changes_the_pod_template() {
    let a = build(&trigger(HTTP), 1).unwrap();
    let mut t = trigger(HTTP);
    t.spec.filters.clear();
    let b = build(&t, 1).unwrap();
    assert_ne!(a.spec.template, b.spec.template);
}

#[test]
fn user_port_variable_is_kept() {
    let t = trigger(
        "  template:\n    spec:\n      containers:\n      - name: app\n        image: a\n        env: [{name: PORT, value: '7000'}]\n",
    );
    let d = build(&t, 1).unwrap();
    assert_eq!(env_of(&containers(&d)[0], "PORT"), Some("7000"));
    assert_eq!(
        env_of(&containers(&d)[1], workload::ENV_CONSUMER_PORT),
        Some("8080"),
        "consumer.port (default 8080) is where the sidecar sends"
    );
}

#[test]
fn nats_mode_injects_connection_details_and_credentials() {
    let t = trigger(
        "  mode: nats\n  credentialsSecretRef: {name: nats-creds, key: user.creds}\n  template:\n    spec:\n      containers:\n      - {name: a, image: a}\n      - {name: b, image: b}\n",
    );
    let d = build(&t, 2).unwrap();
    let all = containers(&d);
    assert_eq!(all.len(), 2, "no sidecar in nats mode");
    for c in all {
        assert_eq!(env_of(c, workload::ENV_STREAM), Some("HERALDQ_shop_orders"));
        assert_eq!(env_of(c, workload::ENV_CONSUMER), Some("trigger_billing"));
        assert_eq!(env_of(c, workload::ENV_NATS_URL), Some("nats://nats:4222"));
        assert_eq!(
            env_of(c, workload::ENV_NATS_CREDS),
            Some("/var/run/secrets/herald/nats/nats.creds")
        );
    }
    let pod = d.spec.template.spec.unwrap();
    let volume = &pod.volumes.unwrap()[0];
    assert_eq!(
        volume.secret.as_ref().unwrap().secret_name.as_deref(),
        Some("nats-creds")
    );
}

#[test]
fn unusable_templates_are_refused_with_a_reason() {
    let cases = [
        ("  template: {}\n", "consumer.template.spec is required"),
        (
            "  template: {spec: {containers: []}}\n",
            "at least one container",
        ),
        (
            "  template: {spec: {containers: [{name: herald-dispatcher, image: x}]}}\n",
            "reserved",
        ),
        (
            "  path: events\n  template: {spec: {containers: [{name: a, image: x}]}}\n",
            "must start with '/'",
        ),
    ];
    for (consumer, expected) in cases {
        let err = build(&trigger(consumer), 1).unwrap_err().to_string();
        assert!(err.contains(expected), "{consumer}: {err}");
    }
    let mut no_consumer = trigger(HTTP);
    no_consumer.spec.consumer = None;
    assert!(build(&no_consumer, 1).is_err());
}

#[test]
fn the_sidecar_gets_nats_credentials_and_tls_files_the_app_does_not() {
    let t = trigger(&format!(
        "  credentialsSecretRef: {{name: nats-creds, key: user.creds}}\n  natsTls: {{secretName: nats-tls, clientCertificate: true}}\n{HTTP}"
    ));
    let d = build(&t, 1).unwrap();
    let (app, sidecar) = (&containers(&d)[0], &containers(&d)[1]);
    let dir = "/var/run/secrets/herald/nats-tls";
    for (var, value) in [
        (
            workload::ENV_NATS_CREDS,
            "/var/run/secrets/herald/nats/nats.creds".to_owned(),
        ),
        (workload::ENV_NATS_TLS_CA, format!("{dir}/ca.crt")),
        (workload::ENV_NATS_TLS_CERT, format!("{dir}/tls.crt")),
        (workload::ENV_NATS_TLS_KEY, format!("{dir}/tls.key")),
        (workload::ENV_NATS_TLS_REQUIRED, "true".to_owned()),
    ] {
        assert_eq!(env_of(sidecar, var), Some(value.as_str()), "{var}");
        assert_eq!(env_of(app, var), None, "the app gets no {var}");
    }
    let mounts: Vec<&str> = sidecar
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.as_str())
        .collect();
    assert_eq!(mounts, ["/var/run/secrets/herald/nats", dir]);
    assert!(app.volume_mounts.is_none());
    let volumes = d.spec.template.spec.unwrap().volumes.unwrap();
    let tls = volumes
        .iter()
        .find(|v| v.name == "herald-nats-tls")
        .unwrap();
    let keys: Vec<&str> = tls
        .secret
        .as_ref()
        .unwrap()
        .items
        .iter()
        .flatten()
        .map(|i| i.key.as_str())
        .collect();
    assert_eq!(keys, ["ca.crt", "tls.crt", "tls.key"]);
}

#[test]
fn nats_mode_containers_get_the_ca_without_a_client_certificate() {
    let t = trigger(
        "  mode: nats\n  natsTls: {secretName: nats-ca}\n  template:\n    spec:\n      containers:\n      - {name: a, image: a}\n",
    );
    let d = build(&t, 1).unwrap();
    let c = &containers(&d)[0];
    assert_eq!(
        env_of(c, workload::ENV_NATS_TLS_CA),
        Some("/var/run/secrets/herald/nats-tls/ca.crt")
    );
    assert_eq!(env_of(c, workload::ENV_NATS_TLS_REQUIRED), Some("true"));
    assert_eq!(env_of(c, workload::ENV_NATS_TLS_CERT), None);
    let volumes = d.spec.template.spec.unwrap().volumes.unwrap();
    assert_eq!(volumes.len(), 1);
    assert_eq!(
        volumes[0]
            .secret
            .as_ref()
            .unwrap()
            .items
            .as_ref()
            .unwrap()
            .len(),
        1,
        "only ca.crt"
    );
}
