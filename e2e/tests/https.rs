//! https end to end, with certificates the test makes: the dispatcher delivers to an
//! https subscriber it trusts through `--ca-bundle` and reports why it cannot deliver
//! to one it does not trust; the ingress serves https (`herald send` reaches it, the
//! Broker's address is https, the sources adapter sends to it) and new connections get
//! a certificate renewed in place; unusable certificate files stop a component at
//! start, naming the file.

use std::process::Output;
use std::time::Duration;

use herald_api::Broker;
use herald_api::conditions::ConditionStatus::False;
use herald_api::trigger::condition;
use herald_api::{DeliverySpec, Trigger, TriggerSpec};
use herald_e2e::certs::{TestPki, presented_certificate};
use herald_e2e::kubectl::{apply, example};
use herald_e2e::manifests::{self, broker_destination, cron_to, event_source, to_uri};
use herald_e2e::process::{Dispatcher, Ingress, Operator, Sources, herald_command};
use herald_e2e::stack::Stack;
use herald_e2e::subscriber::Subscriber;
use herald_e2e::{await_condition, await_ready, eventually, has_condition, nats_url, with_temp_ns};
use k8s_openapi::api::core::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

const WAIT: Duration = Duration::from_secs(30);

/// A Trigger on the example Broker to `url`, given up after one attempt; waits until Ready.
async fn trigger(client: &Client, ns: &str, name: &str, url: &str) {
    let spec = TriggerSpec {
        delivery: Some(DeliverySpec {
            retry: Some(0),
            ..DeliverySpec::default()
        }),
        ..to_uri(url)
    };
    herald_e2e::ready_trigger(client, ns, name, spec, WAIT).await;
}

/// Runs `herald <args>` off the test's runtime.
async fn herald(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || herald_command().args(args).output().expect("run herald"))
        .await
        .expect("herald ran")
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

#[tokio::test]
async fn an_https_subscriber_is_delivered_to_when_its_ca_is_given() {
    with_temp_ns("https-sub", |client, ns| async move {
        let pki = TestPki::new("subscriber");
        let nats = nats_url();
        let mut stack = Stack::without_dispatcher(client.clone(), &ns, &nats, &[]).await;
        stack.dispatcher =
            Some(Dispatcher::start_with(&ns, &nats, &["--ca-bundle", &pki.path("ca.crt")]).await);
        let subscriber = Subscriber::https_accepting(&pki).await;
        assert!(subscriber.url.starts_with("https://"), "{}", subscriber.url);
        trigger(&client, &ns, "secure", &subscriber.url).await;
        stack.send("over-tls", "t", "s", "{}").await;
        subscriber
            .wait_for("the event over https", WAIT, |d| {
                d.iter().any(|(e, s)| e.id() == "over-tls" && *s == 202)
            })
            .await;
    })
    .await;
}

#[tokio::test]
async fn an_untrusted_https_subscriber_gets_nothing_and_the_reason_is_reported() {
    with_temp_ns("https-untrusted", |client, ns| async move {
        let pki = TestPki::new("untrusted");
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let subscriber = Subscriber::https_accepting(&pki).await;
        trigger(&client, &ns, "untrusted", &subscriber.url).await;
        stack.send("not-trusted", "t", "s", "{}").await;
        let events: Api<Event> = Api::namespaced(client.clone(), &ns);
        let note = eventually("the drop is reported with its reason", WAIT, || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some("EventDropped"))
                .find_map(|e| e.message)
        })
        .await;
        assert!(
            note.contains("invalid peer certificate") && note.contains(&subscriber.url),
            "{note}"
        );
        assert_eq!(
            subscriber.count(),
            0,
            "no request passes an untrusted handshake"
        );
    })
    .await;
}

/// A Trigger on the example Broker to an https subscriber at `url`, trusting `ca_certs`
/// for it (JSON, so the PEM needs no YAML quoting).
fn trigger_with_ca_certs(ns: &str, name: &str, url: &str, ca_certs: &str) {
    let trigger = serde_json::json!({
        "apiVersion": "eventing.herald.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": name},
        "spec": {
            "broker": "default",
            "subscriber": {"uri": url, "caCerts": ca_certs},
            "delivery": {"retry": 0},
        },
    });
    apply(ns, &trigger.to_string());
}

#[tokio::test]
async fn a_trigger_s_own_ca_certs_are_trusted_for_its_subscriber() {
    with_temp_ns("https-ca-certs", |client, ns| async move {
        let pki = TestPki::new("ca-certs");
        // The dispatcher has no --ca-bundle: only the Trigger trusts the test CA.
        let stack = Stack::start(client.clone(), &ns, &nats_url()).await;
        let subscriber = Subscriber::https_accepting(&pki).await;
        let ca = std::fs::read_to_string(pki.file("ca.crt")).expect("the test CA");
        trigger_with_ca_certs(&ns, "own-ca", &subscriber.url, &ca);
        let triggers: Api<Trigger> = Api::namespaced(client.clone(), &ns);
        await_ready(&triggers, "own-ca", WAIT).await;
        stack.send("own-ca-event", "t", "s", "{}").await;
        subscriber
            .wait_for("the event over https, trusted through caCerts", WAIT, |d| {
                d.iter().any(|(e, s)| e.id() == "own-ca-event" && *s == 202)
            })
            .await;

        // Certificates that do not parse leave the subscriber unresolved, saying why.
        trigger_with_ca_certs(&ns, "bad-ca", &subscriber.url, "not a certificate");
        let bad = await_condition(
            &triggers,
            "bad-ca",
            WAIT,
            has_condition(
                condition::SUBSCRIBER_RESOLVED,
                False,
                Some("SubscriberNotResolved"),
            ),
        )
        .await;
        let conditions = herald_e2e::field(&bad, "/status/conditions").to_string();
        assert!(
            conditions.contains("caCerts holds no PEM certificate"),
            "{conditions}"
        );
    })
    .await;
}

/// Puts the PKI's `<who>.crt`/`.key` where the ingress reads its certificate.
fn mount(pki: &TestPki, who: &str) {
    std::fs::copy(pki.file(&format!("{who}.key")), pki.file("tls.key")).expect("copy key");
    std::fs::copy(pki.file(&format!("{who}.crt")), pki.file("tls.crt")).expect("copy cert");
}

#[tokio::test]
async fn the_ingress_serves_https_and_renews_its_certificate_in_place() {
    with_temp_ns("https-ingress", |client, ns| async move {
        let pki = TestPki::new("ingress");
        mount(&pki, "server");
        let nats = nats_url();
        let (cert, key) = (pki.path("tls.crt"), pki.path("tls.key"));
        let tls_flags = [
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-reload-interval",
            "1s",
        ];
        let ingress = Ingress::start_with(&ns, &nats, &tls_flags).await;
        assert!(ingress.url().starts_with("https://"));
        let _operator = Operator::start_with_ingress(&ns, &nats, "solo", &ingress.url()).await;
        apply(
            &ns,
            &std::fs::read_to_string(example("broker.yaml")).expect("examples/broker.yaml"),
        );
        let brokers: Api<Broker> = Api::namespaced(client.clone(), &ns);
        let broker = await_ready(&brokers, "default", WAIT).await;
        let address = broker.status.and_then(|s| s.address).map(|a| a.url);
        assert_eq!(address, Some(format!("{}/{ns}/default", ingress.url())));
        let _dispatcher = Dispatcher::start(&ns, &nats).await;
        let subscriber = Subscriber::accepting().await;
        trigger(&client, &ns, "all", &subscriber.url).await;

        // `herald send --to` finds the https address and trusts it through the bundle.
        let to = format!("{ns}/default");
        let ca = pki.path("ca.crt");
        let send = |id: &'static str| {
            strings(&[
                "send",
                "--to",
                &to,
                "--type",
                "t",
                "--id",
                id,
                "--ca-bundle",
                &ca,
            ])
        };
        eventually("herald send over https is accepted", WAIT, || async {
            herald(send("first")).await.status.success().then_some(())
        })
        .await;
        subscriber
            .wait_for("the event sent over https", WAIT, |d| {
                d.iter().any(|(e, _)| e.id() == "first")
            })
            .await;

        // The sources adapter sends to the Broker's https address with the same bundle.
        let _sources = Sources::start_with(&ns, &nats, &["--ca-bundle", &ca]).await;
        let ticks = cron_to("* * * * * *", broker_destination("default"));
        manifests::apply(&client, &ns, &event_source("ticks", ticks)).await;
        subscriber
            .wait_for("a cron tick sent over https", WAIT, |d| {
                d.iter().any(|(e, _)| e.type_() == "dev.herald.cron.tick")
            })
            .await;

        // Without the CA the certificate is refused, and herald send says so.
        let untrusted = herald(strings(&["send", "--to", &to, "--type", "t"])).await;
        let stderr = String::from_utf8_lossy(&untrusted.stderr);
        assert_eq!(untrusted.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("invalid peer certificate"), "{stderr}");

        // Renewal: the files change in place; new connections get the new certificate.
        let ca = std::fs::read(pki.file("ca.crt")).expect("the CA");
        assert_eq!(
            presented_certificate(ingress.port, &ca).await,
            CertificateDer::from_pem_file(pki.file("server.crt"))
                .ok()
                .map(|c| c.to_vec())
        );
        pki.issue_server("renewed");
        mount(&pki, "renewed");
        let renewed = CertificateDer::from_pem_file(pki.file("renewed.crt"))
            .ok()
            .map(|c| c.to_vec());
        eventually(
            "new connections get the renewed certificate",
            WAIT,
            || async { (presented_certificate(ingress.port, &ca).await == renewed).then_some(()) },
        )
        .await;
        let after = herald(send("after-renewal")).await;
        assert!(
            after.status.success(),
            "{}",
            String::from_utf8_lossy(&after.stderr)
        );
        subscriber
            .wait_for("the event sent after the renewal", WAIT, |d| {
                d.iter().any(|(e, _)| e.id() == "after-renewal")
            })
            .await;
    })
    .await;
}

#[tokio::test]
async fn unusable_certificate_files_stop_the_components_naming_the_file() {
    let missing = "/nonexistent/herald-e2e/ca.crt";
    for args in [
        strings(&["dispatcher", "--ca-bundle", missing]),
        strings(&["sources", "--ca-bundle", missing]),
        strings(&[
            "ingress",
            "--tls-cert",
            missing,
            "--tls-key",
            "/nonexistent/herald-e2e/tls.key",
        ]),
        strings(&[
            "send",
            "--url",
            "https://127.0.0.1:1/a/b",
            "--type",
            "t",
            "--ca-bundle",
            missing,
        ]),
    ] {
        let out = tokio::time::timeout(WAIT, herald(args.clone()))
            .await
            .expect("refused at once, before connecting anywhere");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started: {stderr}");
        assert!(stderr.contains(missing), "{args:?}: {stderr}");
    }
}
