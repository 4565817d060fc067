//! Herald on a nats-server that requires TLS with client certificates and a user:
//! the server really refuses what lacks either, and every component, configured
//! through the `HERALD_NATS_*` variables the chart sets, carries an event end to end.

use std::time::Duration;

use herald_api::Trigger;
use herald_api::conditions::ConditionStatus::True;
use herald_api::trigger::condition;
use herald_e2e::manifests::{apply, to_uri, trigger};
use herald_e2e::process::herald_command;
use herald_e2e::secure_nats::{PASSWORD, SecureNatsServer, USER};
use herald_e2e::stack::Stack;
use herald_e2e::subscriber::Subscriber;
use herald_e2e::{await_condition, with_temp_ns};
use kube::Api;

const WAIT: Duration = Duration::from_secs(30);

/// Tries one connection (no retries) with the given options; the error text if refused.
async fn refused(server: &SecureNatsServer, options: async_nats::ConnectOptions) -> Option<String> {
    let attempt = tokio::time::timeout(
        Duration::from_secs(10),
        options
            .connection_timeout(Duration::from_secs(3))
            .connect(server.url()),
    )
    .await;
    match attempt {
        Ok(Ok(client)) => {
            // Authentication errors can arrive just after the handshake.
            client.flush().await.err().map(|e| e.to_string())
        }
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("timed out".into()),
    }
}

#[tokio::test]
async fn the_server_refuses_clients_without_tls_client_certificate_or_user() {
    let server = SecureNatsServer::start("refuse").await;
    let tls = || {
        async_nats::ConnectOptions::new()
            .add_root_certificates(server.file("ca.crt"))
            .require_tls(true)
    };
    let with_cert =
        || tls().add_client_certificate(server.file("client.crt"), server.file("client.key"));

    let plain = refused(
        &server,
        async_nats::ConnectOptions::new().user_and_password(USER.into(), PASSWORD.into()),
    )
    .await;
    assert!(
        plain.is_some(),
        "no CA: the server's certificate must not be trusted"
    );
    let no_cert = refused(
        &server,
        tls().user_and_password(USER.into(), PASSWORD.into()),
    )
    .await;
    assert!(
        no_cert.is_some(),
        "TLS without a client certificate must be refused"
    );
    let wrong_password = refused(
        &server,
        with_cert().user_and_password(USER.into(), "wrong".into()),
    )
    .await;
    assert!(wrong_password.is_some(), "a wrong password must be refused");
    let no_user = refused(&server, with_cert()).await;
    assert!(no_user.is_some(), "a client without a user must be refused");
    let good = refused(
        &server,
        with_cert().user_and_password(USER.into(), PASSWORD.into()),
    )
    .await;
    assert_eq!(good, None, "certificate + user must get in");
    let nkey = refused(&server, with_cert().nkey(server.nkey_seed.clone())).await;
    assert_eq!(nkey, None, "certificate + NKey must get in");
}

#[tokio::test]
async fn events_flow_through_a_tls_and_auth_only_nats() {
    with_temp_ns("nats-tls", |client, ns| async move {
        let server = SecureNatsServer::start("flow").await;
        // Operator, ingress and dispatcher get CA, client certificate and user from the
        // environment; the Broker only gets Ready if the operator reached JetStream.
        let stack = Stack::start(client.clone(), &ns, &server.url()).await;
        let subscriber = Subscriber::accepting().await;
        apply(&client, &ns, &trigger("tls", to_uri(&subscriber.url))).await;
        let triggers: Api<Trigger> = Api::namespaced(client.clone(), &ns);
        await_condition(&triggers, "tls", WAIT, has_ready()).await;
        stack
            .send("tls-1", "secure.test", "/e2e", r#"{"n":1}"#)
            .await;
        subscriber
            .wait_for("the event delivered over TLS", WAIT, |d| {
                d.iter().any(|(e, _)| e.id() == "tls-1")
            })
            .await;

        // The NKey user, through `herald tail` (flags this time, not the environment).
        let path = |name: &str| server.file(name).display().to_string();
        let tail = herald_command()
            .args([
                "tail",
                &format!("{ns}/default"),
                "--from",
                "all",
                "--count",
                "1",
                "--json",
            ])
            .args([
                "--nats-url",
                &server.url(),
                "--nats-nkey",
                &server.nkey_seed,
            ])
            .args([
                "--nats-tls-ca",
                &path("ca.crt"),
                "--nats-tls-cert",
                &path("client.crt"),
            ])
            .args(["--nats-tls-key", &path("client.key"), "--nats-tls-required"])
            .output()
            .expect("herald tail runs");
        let printed = String::from_utf8_lossy(&tail.stdout);
        assert!(
            tail.status.success() && printed.contains("tls-1"),
            "tail: {printed} {}",
            String::from_utf8_lossy(&tail.stderr)
        );

        // A seed that is not one is refused at start, not retried forever.
        let bad = herald_command()
            .args([
                "tail",
                &format!("{ns}/default"),
                "--nats-url",
                &server.url(),
            ])
            .args(["--nats-nkey", "SUnot-a-seed"])
            .output()
            .expect("herald tail runs");
        assert!(!bad.status.success());
        let err = String::from_utf8_lossy(&bad.stderr);
        assert!(err.contains("not an NKey seed"), "{err}");
    })
    .await;
}

fn has_ready() -> impl kube::runtime::wait::Condition<Trigger> {
    herald_e2e::has_condition(condition::READY, True, None)
}
