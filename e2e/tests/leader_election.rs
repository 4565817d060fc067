//! Two operators: only the Lease holder reconciles; the other takes over when it dies.

use std::time::Duration;

use herald_api::Broker;
use herald_e2e::kubectl::{apply, example};
use herald_e2e::process::{HeraldCommand, Operator, free_port};
use herald_e2e::{await_ready, eventually, nats_url, with_temp_ns};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

const RECONCILES: &str = "herald_operator_reconciles_total{kind=\"Broker\"}";

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("herald-operator")
        .await
        .ok()??
        .spec?
        .holder_identity
}

#[tokio::test]
async fn only_the_leader_reconciles_and_the_follower_takes_over() {
    with_temp_ns("leader", |client, ns| async move {
        let mut a = Operator::start(&ns, &nats_url(), "op-a").await;
        let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
        eventually("op-a holds the lease", Duration::from_secs(20), || async {
            (holder(&leases).await.as_deref() == Some("op-a")).then_some(())
        })
        .await;
        let mut b = Operator::start(&ns, &nats_url(), "op-b").await;

        let manifest = std::fs::read_to_string(example("broker.yaml")).unwrap();
        apply(&ns, &manifest);
        let brokers: Api<Broker> = Api::namespaced(client.clone(), &ns);
        await_ready(&brokers, "default", Duration::from_secs(30)).await;
        // Give a misbehaving follower every chance to reconcile too.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(a.metric(RECONCILES).await >= 1.0, "the leader reconciled");
        assert!(
            (b.metric(RECONCILES).await - 0.0).abs() < f64::EPSILON,
            "the follower must not reconcile"
        );
        assert!((b.metric("herald_operator_is_leader").await - 0.0).abs() < f64::EPSILON);
        assert_eq!(holder(&leases).await.as_deref(), Some("op-a"));

        a.kill().await;
        eventually(
            "op-b takes over the lease",
            Duration::from_secs(20),
            || async { (holder(&leases).await.as_deref() == Some("op-b")).then_some(()) },
        )
        .await;
        apply(&ns, &manifest.replace("name: default", "name: second"));
        await_ready(&brokers, "second", Duration::from_secs(30)).await;
        assert!(
            b.metric(RECONCILES).await >= 1.0,
            "the new leader reconciles"
        );
        assert!(b.is_running());
    })
    .await;
}

/// `herald operator` run by hand, without `--lease-namespace`: the Lease goes where
/// it runs (`POD_NAMESPACE` here, as in a pod); a namespace that does not exist is
/// a clear error and a failed exit, not a WARN repeated forever.
#[tokio::test]
async fn the_lease_lives_where_the_operator_runs_and_a_missing_namespace_fails_fast() {
    with_temp_ns("lease-home", |client, ns| async move {
        let missing = format!("{ns}-missing");
        // No admin port of its own: it must exit before it would serve one.
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            HeraldCommand::new("operator", &ns, &nats_url())
                .args(["--metrics-addr", "127.0.0.1:0"])
                .env("POD_NAMESPACE", &missing)
                .env_remove("HERALD_LEASE_NAMESPACE")
                .output(),
        )
        .await
        .expect("the operator must exit when its lease namespace is missing");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "exit status {:?}", out.status);
        assert!(
            stderr.contains(&format!("{missing:?} does not exist")),
            "stderr: {stderr}"
        );

        let mut operator = HeraldCommand::new("operator", &ns, &nats_url())
            .admin(free_port())
            .args(["--identity", "from-pod-namespace"])
            .env("POD_NAMESPACE", &ns)
            .env_remove("HERALD_LEASE_NAMESPACE")
            .logs(&format!("{ns}-from-pod-namespace"))
            .spawn()
            .await;
        let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
        eventually(
            "the Lease in POD_NAMESPACE",
            Duration::from_secs(30),
            || async {
                (holder(&leases).await.as_deref() == Some("from-pod-namespace")).then_some(())
            },
        )
        .await;
        operator.kill().await.unwrap();
    })
    .await;
}
