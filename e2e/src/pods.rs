//! Pods on the test cluster's real node: the plane runs with `NODE=1`
//! (e2e/controlplane/node.sh), so the kubelet starts the pods Herald makes — consumer
//! Deployments, Jobs per event, source adapters — from the image
//! `operator/herald/build-image.sh` put into the node's containerd.
//!
//! [`PodWatch`] follows a namespace's pods by label and reads what their containers
//! print through the apiserver (`pods/log`, served by the kubelet), keeping the logs
//! of pods that finish or go, so a test can still read them after a Job's pod is
//! deleted or a consumer scaled to zero.
//!
//! Pods reach the test's processes (nats-server, the ingress) on this machine at
//! [`node_host_ip`]: the node's veth forwards every TCP port of that address to the
//! same port on 127.0.0.1, and so does this machine for its own connections, so one
//! URL from [`pod_facing`] serves both sides.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::task::JoinHandle;

/// How long a test waits for a pod to start and do its first piece of work. An idle
/// node starts one in ~7 s with the image present; with the whole suite on two cores
/// scheduling, sandbox and container start take several times that.
pub const POD_START: Duration = Duration::from_secs(90);

/// The node's address for this machine (`HERALD_NODE_HOST_IP`, exported by
/// `e2e/controlplane/up.sh` with `NODE=1`); `None` on a plane without a node.
#[must_use]
pub fn node_host_ip() -> Option<String> {
    std::env::var("HERALD_NODE_HOST_IP")
        .ok()
        .filter(|ip| !ip.is_empty())
}

/// The Herald image on the node (`HERALD_IMAGE`; by default the tag the operator's
/// `--sidecar-image` defaults to, which `e2e/test.sh` builds).
#[must_use]
pub fn herald_image() -> String {
    std::env::var("HERALD_IMAGE")
        .unwrap_or_else(|_| format!("ghcr.io/herald-dev/herald:{}", env!("CARGO_PKG_VERSION")))
}

/// `url` as pods reach it: `127.0.0.1` becomes the node's address for this machine.
/// On a plane without a node, `url` unchanged.
#[must_use]
pub fn pod_facing(url: &str) -> String {
    match node_host_ip() {
        Some(ip) => url.replace("127.0.0.1", &ip),
        None => url.to_owned(),
    }
}

/// One line a container printed.
#[derive(Clone, Debug)]
pub struct Line {
    /// When the container printed it (the kubelet's timestamp).
    pub at: DateTime<Utc>,
    /// Pod name.
    pub pod: String,
    /// Container name.
    pub container: String,
    /// The line.
    pub text: String,
}

/// What the watch saw of the pods.
#[derive(Default)]
struct Seen {
    /// Pods that exist, with their containers' names.
    present: BTreeMap<String, Vec<String>>,
    /// Pods in phase Running and not being deleted.
    running: BTreeSet<String>,
    /// The most pods seen Running at once.
    peak_running: usize,
    /// Pods seen in phase Succeeded or Failed.
    finished: BTreeSet<String>,
    /// Logs of pods that finished or are going, by (pod, container).
    kept: HashMap<(String, String), Vec<Line>>,
}

/// Follows the pods of a namespace that match a label selector until dropped.
pub struct PodWatch {
    api: Api<Pod>,
    seen: Arc<Mutex<Seen>>,
    task: JoinHandle<()>,
}

impl PodWatch {
    /// Starts following the pods of `namespace` that match `selector`.
    #[must_use]
    pub fn start(client: Client, namespace: &str, selector: &str) -> Self {
        let api: Api<Pod> = Api::namespaced(client, namespace);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let config = watcher::Config::default().labels(selector);
        let (task_api, task_seen) = (api.clone(), seen.clone());
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher(task_api.clone(), config).default_backoff());
            // A watch that breaks (an apiserver restart) lists the pods again: those
            // deleted meanwhile are gone from the new list, without a Delete event.
            let mut relisted: Option<BTreeSet<String>> = None;
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::Init) => relisted = Some(BTreeSet::new()),
                    Ok(watcher::Event::InitDone) => {
                        if let Some(listed) = relisted.take() {
                            let mut seen = task_seen.lock().expect("seen");
                            seen.present.retain(|pod, _| listed.contains(pod));
                            seen.running.retain(|pod| listed.contains(pod));
                        }
                    }
                    Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                        if let Some(listed) = relisted.as_mut() {
                            listed.insert(pod.name_any());
                        }
                        if note(&task_seen, &pod) {
                            // Finished or going: keep what it printed while it can be read.
                            tokio::spawn(keep_logs(task_api.clone(), task_seen.clone(), pod));
                        }
                    }
                    Ok(watcher::Event::Delete(pod)) => {
                        let mut seen = task_seen.lock().expect("seen");
                        seen.present.remove(&pod.name_any());
                        seen.running.remove(&pod.name_any());
                    }
                    Err(e) => eprintln!("pod watch: {e}"),
                }
            }
        });
        Self { api, seen, task }
    }

    /// Everything the containers printed so far, in order of time.
    pub async fn lines(&self) -> Vec<Line> {
        let (present, mut by_container) = {
            let seen = self.seen.lock().expect("seen");
            (seen.present.clone(), seen.kept.clone())
        };
        for (pod, containers) in present {
            for container in containers {
                if let Some(lines) = read_logs(&self.api, &pod, &container).await {
                    keep_longer(&mut by_container, (pod.clone(), container), lines);
                }
            }
        }
        let mut lines: Vec<Line> = by_container.into_values().flatten().collect();
        lines.sort_by_key(|l| l.at);
        lines
    }

    /// The first line containing `needle`.
    pub async fn first_line_with(&self, needle: &str) -> Option<Line> {
        self.lines()
            .await
            .into_iter()
            .find(|l| l.text.contains(needle))
    }

    /// Pods that exist and have not finished (being deleted included).
    #[must_use]
    pub fn existing_pods(&self) -> usize {
        let seen = self.seen.lock().expect("seen");
        seen.present
            .keys()
            .filter(|p| !seen.finished.contains(*p))
            .count()
    }

    /// Pods in phase Running now.
    #[must_use]
    pub fn running_pods(&self) -> usize {
        self.seen.lock().expect("seen").running.len()
    }

    /// The most pods seen Running at once (a lower bound: the kubelet reports a
    /// container's start about once a second).
    #[must_use]
    pub fn peak_running_pods(&self) -> usize {
        self.seen.lock().expect("seen").peak_running
    }

    /// Pods seen in phase Succeeded or Failed (a Job's, run to completion).
    #[must_use]
    pub fn finished_pods(&self) -> usize {
        self.seen.lock().expect("seen").finished.len()
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Records `pod`; whether its logs should be kept now (it finished, or is going).
fn note(seen: &Mutex<Seen>, pod: &Pod) -> bool {
    let name = pod.name_any();
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or_default();
    let deleting = pod.metadata.deletion_timestamp.is_some();
    let exited = status
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()))
        });
    let mut seen = seen.lock().expect("seen");
    seen.present.insert(name.clone(), containers);
    if phase == "Running" && !deleting {
        seen.running.insert(name.clone());
        seen.peak_running = seen.peak_running.max(seen.running.len());
    } else {
        seen.running.remove(&name);
    }
    let finished = matches!(phase, "Succeeded" | "Failed");
    if finished {
        seen.finished.insert(name);
    }
    finished || deleting || exited
}

/// Reads what `pod`'s containers printed into `seen.kept`.
async fn keep_logs(api: Api<Pod>, seen: Arc<Mutex<Seen>>, pod: Pod) {
    let name = pod.name_any();
    let containers: Vec<String> = pod
        .spec
        .map(|s| s.containers.into_iter().map(|c| c.name).collect())
        .unwrap_or_default();
    for container in containers {
        if let Some(lines) = read_logs(&api, &name, &container).await {
            let mut seen = seen.lock().expect("seen");
            keep_longer(&mut seen.kept, (name.clone(), container), lines);
        }
    }
}

/// Keeps `lines` for `key` unless more were kept already (a later read of a container
/// holds everything an earlier one did).
fn keep_longer(
    kept: &mut HashMap<(String, String), Vec<Line>>,
    key: (String, String),
    lines: Vec<Line>,
) {
    let kept = kept.entry(key).or_default();
    if lines.len() >= kept.len() {
        *kept = lines;
    }
}

/// What `container` of `pod` printed, or `None` when it cannot be read (not started,
/// or gone).
async fn read_logs(api: &Api<Pod>, pod: &str, container: &str) -> Option<Vec<Line>> {
    let params = LogParams {
        container: Some(container.to_owned()),
        timestamps: true,
        ..LogParams::default()
    };
    let text = api.logs(pod, &params).await.ok()?;
    Some(
        text.lines()
            .filter_map(|line| {
                let (at, text) = line.split_once(' ').unwrap_or((line, ""));
                Some(Line {
                    at: DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc),
                    pod: pod.to_owned(),
                    container: container.to_owned(),
                    text: text.to_owned(),
                })
            })
            .collect(),
    )
}
