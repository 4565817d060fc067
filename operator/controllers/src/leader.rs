//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several operator
//! replicas exactly one reconciles at a time.
//!
//! The holder renews the Lease every third of its duration. A candidate takes the
//! Lease over only when it is free or its holder has not renewed it for a whole
//! duration. Every write carries the `resourceVersion` it read, so two candidates
//! racing for an expired Lease cannot both win: the apiserver refuses the second.
//! The holder steps down when it has not renewed within two thirds of the duration,
//! however long an attempt hangs (`keep_renewing` in lib.rs), so it has stopped before
//! anyone may take over.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

/// The Lease's namespace: `--lease-namespace` if given, else where the operator
/// runs: `$POD_NAMESPACE` (the chart sets it), else the client's default namespace
/// (the in-cluster ServiceAccount's, or the kubeconfig context's).
#[must_use]
pub fn lease_namespace(
    explicit: Option<&str>,
    pod_namespace: Option<&str>,
    client_default: &str,
) -> String {
    explicit
        .or(pod_namespace)
        .filter(|ns| !ns.is_empty())
        .unwrap_or(client_default)
        .to_owned()
}

/// Fails with a message saying what to do when the Lease's namespace does not
/// exist: otherwise every attempt to take the Lease fails and the operator never
/// reconciles anything. Without RBAC to read Namespaces (the chart's operator runs
/// in that namespace anyway) there is nothing to check.
pub async fn ensure_lease_namespace(client: &kube::Client, namespace: &str) -> anyhow::Result<()> {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    match namespaces.get_opt(namespace).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => anyhow::bail!(
            "the leader-election namespace {namespace:?} does not exist: create it \
             (kubectl create namespace {namespace}) or pick another with --lease-namespace \
             (HERALD_LEASE_NAMESPACE)"
        ),
        Err(kube::Error::Api(status)) if status.code == 403 => {
            tracing::debug!(%namespace, "may not read Namespaces; not checking the lease namespace");
            Ok(())
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "checking that the lease namespace {namespace:?} exists"
        ))),
    }
}

/// What a candidate should do with the Lease it just read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// We hold it: renew.
    Renew,
    /// It is free or expired: take it over.
    TakeOver,
    /// Someone else holds it and renews it.
    Follow {
        /// Identity of the current holder.
        holder: String,
    },
}

/// Decides, from the Lease as read at `now`, what candidate `identity` should do.
#[must_use]
pub fn decide(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else {
        return Decision::TakeOver;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() {
        return Decision::TakeOver;
    }
    if holder == identity {
        return Decision::Renew;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    let last = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    match last {
        Some(renewed) if renewed + duration > now => Decision::Follow {
            holder: holder.to_owned(),
        },
        _ => Decision::TakeOver,
    }
}

/// One candidate for the Lease `namespace/name`.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl LeaseLock {
    /// A candidate called `identity` for the Lease `name` in `api`'s namespace.
    #[must_use]
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Self {
        Self {
            api,
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
        }
    }

    /// The candidate's identity.
    #[must_use]
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// How often the holder renews.
    #[must_use]
    pub fn renew_interval(&self) -> Duration {
        self.duration / 3
    }

    /// Acquires or renews the Lease once. `Ok(true)` when we hold it afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let decision = decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            now,
        );
        let seconds = i32::try_from(self.duration.as_secs())
            .unwrap_or(i32::MAX)
            .max(1);
        match (decision, current) {
            (Decision::Follow { holder }, _) => {
                tracing::debug!(%holder, "lease held by another operator");
                Ok(false)
            }
            (_, None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(seconds),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                Self::written(self.api.create(&PostParams::default(), &lease).await)
            }
            (decision, Some(mut lease)) => {
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                if decision == Decision::TakeOver {
                    spec.acquire_time = Some(MicroTime(now));
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                    spec.holder_identity = Some(self.identity.clone());
                }
                spec.lease_duration_seconds = Some(seconds);
                spec.renew_time = Some(MicroTime(now));
                // `replace` sends the resourceVersion we read: a concurrent writer makes it fail with 409.
                Self::written(
                    self.api
                        .replace(&self.name, &PostParams::default(), &lease)
                        .await,
                )
            }
        }
    }

    fn written(result: Result<Lease, kube::Error>) -> Result<bool, kube::Error> {
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (on shutdown), so another replica takes over without waiting for expiry.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!("released the leader lease"),
            Err(e) => {
                tracing::warn!(error = %e, "could not release the leader lease; it expires on its own");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_namespace_is_where_the_operator_runs_unless_given() {
        assert_eq!(
            lease_namespace(Some("ops"), Some("pod-ns"), "default"),
            "ops"
        );
        assert_eq!(lease_namespace(None, Some("pod-ns"), "default"), "pod-ns");
        assert_eq!(
            lease_namespace(None, None, "from-kubeconfig"),
            "from-kubeconfig"
        );
        assert_eq!(lease_namespace(None, Some(""), "default"), "default");
    }

    fn spec(holder: &str, renewed: Timestamp, secs: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_duration_seconds: Some(secs),
            renew_time: Some(MicroTime(renewed)),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn missing_or_free_lease_is_taken() {
        let now = Timestamp::now();
        assert_eq!(decide(None, "a", now), Decision::TakeOver);
        assert_eq!(
            decide(Some(&spec("", now, 15)), "a", now),
            Decision::TakeOver
        );
    }

    #[test]
    fn own_lease_is_renewed() {
        let now = Timestamp::now();
        assert_eq!(decide(Some(&spec("a", now, 15)), "a", now), Decision::Renew);
    }

    #[test]
    fn fresh_foreign_lease_is_followed_and_expired_one_taken() {
        let now = Timestamp::now();
        let fresh = spec("b", now - SignedDuration::from_secs(5), 15);
        assert_eq!(
            decide(Some(&fresh), "a", now),
            Decision::Follow { holder: "b".into() }
        );
        let stale = spec("b", now - SignedDuration::from_secs(16), 15);
        assert_eq!(decide(Some(&stale), "a", now), Decision::TakeOver);
    }
}
