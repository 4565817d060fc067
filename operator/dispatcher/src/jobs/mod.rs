//! Triggers with a `job`: each event runs as a Kubernetes Job (Knative's `JobSink`,
//! KEDA's `ScaledJob`). One attempt is one Job:
//!
//! ```text
//!  pull loop ─▶ Deliverer::handle ─▶ Jobs::run: create Job <trigger>-<hash(event)>-<attempt>
//!                                               create Secret (the event, owned by the Job)
//!                                               wait on the Job watch: Complete ─▶ ack
//!                                                                      Failed   ─▶ retry / dead letter
//!  sweeper: finished Jobs older than keepSucceeded / keepFailed ─▶ delete (Background)
//! ```
//!
//! - **Idempotent**: names are deterministic, so an event handled again (redelivered
//!   after a crash, a restart, a Trigger change) finds the Job already made for its
//!   attempt (`AlreadyExists`) and waits for it instead of starting a second.
//! - **Bounded**: the Trigger's queue hands out at most `maxRunning` events before
//!   acknowledgements, across all dispatchers (the operator sets the consumer's
//!   `max_ack_pending`), and each dispatcher delivers at most `maxRunning` at once.
//! - **Watched, not polled**: one watch of Herald's Jobs per watched namespace (or one
//!   for the cluster) wakes the attempts waiting on them.
//! - **Cleaned up** by Herald itself: `ttlSecondsAfterFinished` is not on everywhere
//!   (alpha, off, before Kubernetes 1.21), and Herald wants two keep times.
//!
//! While a Job runs, the pull loop keeps its event from redelivery with progress
//! acks, as it does for a slow subscriber.

pub mod build;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use herald_api::job::{self, EffectiveJob};
use herald_cloudevents::CloudEvent;
use herald_runtime::scope::{self, Stores};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;

use crate::deliver::Attempt;
use crate::desired::TriggerDelivery;

/// How often finished Jobs are looked at for deletion.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// How long past its `activeDeadlineSeconds` an attempt waits for its Job's outcome
/// before it counts as failed (the Job controller may be down or slow).
const OUTCOME_GRACE: Duration = Duration::from_secs(120);

/// What the dispatcher needs to run a Trigger's events as Jobs.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerJob {
    /// The Trigger's uid (its Jobs are its dependents).
    pub trigger_uid: String,
    /// The Trigger's `job` with defaults.
    pub job: EffectiveJob,
}

/// How `trigger`'s events run as Jobs, or `None` when it has no `job` (or one the operator
/// reports as invalid, which keeps the Trigger from Ready anyway).
#[must_use]
pub fn trigger_job(trigger: &herald_api::Trigger) -> Option<Arc<TriggerJob>> {
    let job = job::resolve(trigger.spec.job.as_ref()?).ok()?;
    Some(Arc::new(TriggerJob {
        trigger_uid: trigger.uid()?,
        job,
    }))
}

/// What a job Trigger's dead letters name as the destination that failed.
#[must_use]
pub fn destination(namespace: &str, trigger: &str) -> String {
    format!("job:{namespace}/{trigger}")
}

/// Herald's Jobs in the watched namespaces, and the client to make more.
pub struct Jobs {
    client: Client,
    known: Stores<Job>,
    changes: watch::Receiver<u64>,
}

impl Jobs {
    /// Starts watching Herald's Jobs in `namespaces` (all when empty) and deleting
    /// those kept long enough; both run for the life of the process.
    #[must_use]
    pub fn start(client: &Client, namespaces: &[String]) -> Arc<Self> {
        let (notify, changes) = watch::channel(0u64);
        let selector = format!(
            "{}={},{}",
            job::MANAGED_BY_LABEL,
            job::MANAGED_BY,
            job::JOB_TRIGGER_LABEL
        );
        let mut stores = Vec::new();
        for api in scope::apis::<Job>(client, namespaces) {
            let (store, writer) = reflector::store();
            stores.push(store);
            let notify = notify.clone();
            let config = watcher::Config::default().labels(&selector);
            let watch =
                reflector::reflector(writer, watcher(api, config).modify(scope::trim_for_cache))
                    .default_backoff()
                    .for_each(move |event| {
                        if let Err(e) = &event {
                            tracing::warn!(error = %e, "watching Jobs failed; retrying");
                        }
                        notify.send_modify(|n| *n = n.wrapping_add(1));
                        async {}
                    });
            tokio::spawn(watch);
        }
        let jobs = Arc::new(Jobs {
            client: client.clone(),
            known: Stores::from_stores(stores),
            changes,
        });
        tokio::spawn(jobs.clone().sweep());
        jobs
    }

    /// Runs attempt `attempt` of `event` for the job Trigger of `plan` and waits for
    /// its outcome: [`Attempt::Completed`], a failed attempt (retried with a new
    /// Job), or [`Attempt::Rejected`] when the apiserver refuses the Job or the event's
    /// Secret (final: the same Job is refused again).
    pub async fn run(
        &self,
        plan: &TriggerDelivery,
        job: &TriggerJob,
        event: &CloudEvent,
        attempt: u32,
    ) -> Attempt {
        let run = build::Run {
            namespace: &plan.namespace,
            trigger: &plan.trigger,
            trigger_uid: &job.trigger_uid,
            job: &job.job,
            event,
            attempt,
        };
        let name = run.name();
        let uid = match self.create(&run, &name).await {
            Ok(uid) => uid,
            Err(failed) => return failed,
        };
        let deadline = Duration::from_secs(
            u64::try_from(job.job.active_deadline_seconds).unwrap_or(u64::MAX / 2),
        ) + OUTCOME_GRACE;
        self.outcome(&plan.namespace, &name, &uid, deadline).await
    }

    /// Creates the Job and its Secret, or finds the Job made for this attempt
    /// before; returns the Job's uid.
    async fn create(&self, run: &build::Run<'_>, name: &str) -> Result<String, Attempt> {
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), run.namespace);
        let uid = match jobs.create(&PostParams::default(), &run.job()).await {
            Ok(created) => created.uid(),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                // Made before by a dispatcher that then lost the event (a crash, a
                // restart): wait for that Job rather than start a second.
                let found = jobs.get(name).await.map_err(|e| {
                    Attempt::Failed(format!("cannot read Job {name} made earlier: {e}"))
                })?;
                if !build::is_for(&found, run.trigger) {
                    return Err(Attempt::Rejected(format!(
                        "Job {name} exists and is not Herald's Job for Trigger {}",
                        run.trigger
                    )));
                }
                tracing::debug!(job = %name, "found the Job of this attempt; waiting for it");
                found.uid()
            }
            Err(e) => return Err(refused_or_failed(&format!("Job {name}"), e)),
        };
        let uid = uid.ok_or_else(|| Attempt::Failed(format!("Job {name} has no uid")))?;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), run.namespace);
        match secrets
            .create(&PostParams::default(), &run.secret(&uid))
            .await
        {
            Ok(_) => Ok(uid),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(uid),
            Err(e) => {
                // The Job cannot start without its event: it goes, and the attempt
                // failed (or is refused, e.g. an event too large for a Secret).
                let _ = jobs.delete(name, &DeleteParams::background()).await;
                Err(refused_or_failed(
                    &format!("the event Secret of Job {name}"),
                    e,
                ))
            }
        }
    }

    /// Waits until Job `namespace/name` (`uid`) finished, at most `deadline`.
    async fn outcome(&self, namespace: &str, name: &str, uid: &str, deadline: Duration) -> Attempt {
        let key = ObjectRef::<Job>::new(name).within(namespace);
        let mut changes = self.changes.clone();
        let mut seen = false;
        let give_up = tokio::time::sleep(deadline);
        tokio::pin!(give_up);
        loop {
            match self.known.get(&key) {
                Some(found) if found.metadata.uid.as_deref() == Some(uid) => {
                    seen = true;
                    if let Some(outcome) = build::outcome(&found) {
                        return outcome;
                    }
                }
                _ if seen => {
                    return Attempt::Failed(format!("Job {name} was deleted before it finished"));
                }
                _ => {}
            }
            tokio::select! {
                next = changes.changed() => {
                    if next.is_err() {
                        return Attempt::Failed("the watch of Jobs stopped".into());
                    }
                }
                () = &mut give_up => {
                    return Attempt::Failed(format!(
                        "Job {name} did not finish within its activeDeadlineSeconds and {OUTCOME_GRACE:?}"
                    ));
                }
            }
        }
    }

    /// Deletes finished Jobs kept long enough, with their pods and Secrets
    /// (background propagation), forever. Every dispatcher sweeps; a Job another one
    /// deleted first is simply gone.
    async fn sweep(self: Arc<Self>) {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let now = k8s_openapi::jiff::Timestamp::now().as_second();
            for found in self.known.state() {
                if !build::due_for_deletion(&found, now) {
                    continue;
                }
                let (Some(namespace), name) = (found.namespace(), found.name_any()) else {
                    continue;
                };
                let jobs: Api<Job> = Api::namespaced(self.client.clone(), &namespace);
                match jobs.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => tracing::debug!(job = %name, %namespace, "deleted a finished Job"),
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(e) => {
                        tracing::warn!(job = %name, %namespace, error = %e, "cannot delete a finished Job");
                    }
                }
            }
        }
    }
}

/// A creation the apiserver refused as invalid (400, 422: it would refuse it again)
/// is final; anything else may pass next time.
fn refused_or_failed(what: &str, error: kube::Error) -> Attempt {
    match error {
        kube::Error::Api(status) if matches!(status.code, 400 | 422) => {
            Attempt::Rejected(format!("the apiserver refused {what}: {}", status.message))
        }
        e => Attempt::Failed(format!("cannot create {what}: {e}")),
    }
}
