//! A stand-in kubelet: the control plane here has no kubelet, so Pods stay Pending.
//! [`ReplicaRunner`] watches the Pods of a namespace and runs each container's command
//! as a local process, the way a kubelet would run the container, so a consumer
//! Deployment really consumes and the autoscaling loop runs end to end.
//!
//! What it does as a kubelet would: each process gets only its container's
//! environment (plus `PATH`), `$(VAR)` references in env values, command and args
//! are expanded, the Pod's status is set to Running and Ready, and a Pod being deleted
//! has its processes stopped (SIGTERM) before the runner confirms the deletion.
//!
//! Each Pod runs as its ServiceAccount: where a kubelet mounts the account's token, the
//! runner writes a kubeconfig with that token (from the account's token Secret) and
//! sets `KUBECONFIG`, so a process sees exactly what its account may see.
//!
//! Pods that run to completion (`restartPolicy` `Never` or `OnFailure`: a Job's) end as
//! a kubelet ends them: when every process exited the Pod's phase becomes `Succeeded`
//! (all exited 0) or `Failed`, with each container `terminated` and its exit code, so
//! the real Job controller marks the Job `Complete` or `Failed`. Their Secret volumes
//! are written to a local directory per Pod (waiting a moment for a Secret that does
//! not exist yet, as a kubelet retries the mount); other Pods see no volumes.
//!
//! Where it must differ: all pods share 127.0.0.1, so every env var named `PORT` or
//! ending in `_PORT` gets a fresh free port per Pod (the same original value maps to
//! the same new port within a Pod, so a sidecar still finds its neighbour), and a
//! command named `herald` runs `$HERALD_BIN`. Images are ignored. Processes share the
//! host's file system, so a mounted Secret is not at its `mountPath`: the mount path is
//! rewritten to the local directory in env values, command and args (a program that
//! finds the file through an env var or an argument works unchanged; one that opens
//! the `mountPath` written in its own code would not). `OnFailure` restarts are not
//! made: the Pod fails.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::process::{free_port, herald_bin};

/// One line a container printed on stdout.
#[derive(Clone, Debug)]
pub struct Line {
    /// When the runner read it.
    pub at: Instant,
    /// Pod name.
    pub pod: String,
    /// Container name.
    pub container: String,
    /// The line.
    pub text: String,
}

type Running = Arc<Mutex<HashMap<String, Vec<Child>>>>;
/// Pods run to completion: the task that waits for their processes (aborting it kills
/// them).
type Finishing = Arc<Mutex<HashMap<String, JoinHandle<()>>>>;

/// The processes of Pods that run to completion, counted as they run.
#[derive(Default)]
struct Completions {
    tasks: Finishing,
    running: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
    finished: std::sync::atomic::AtomicUsize,
}

/// Runs the containers of matching Pods as local processes until dropped.
pub struct ReplicaRunner {
    task: JoinHandle<()>,
    lines: Arc<Mutex<Vec<Line>>>,
    running: Running,
    completions: Arc<Completions>,
}

impl ReplicaRunner {
    /// Starts running the Pods of `namespace` that match `selector` (a label selector).
    #[must_use]
    pub fn start(client: Client, namespace: &str, selector: &str) -> Self {
        let api: Api<Pod> = Api::namespaced(client, namespace);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let running: Running = Arc::default();
        let completions = Arc::new(Completions::default());
        let config = watcher::Config::default().labels(selector);
        let (task_lines, task_running) = (lines.clone(), running.clone());
        let task_completions = completions.clone();
        let task = tokio::spawn(async move {
            let mut pods = std::pin::pin!(watcher(api.clone(), config).default_backoff());
            while let Some(event) = pods.next().await {
                let (pod, gone) = match event {
                    Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => (pod, false),
                    Ok(watcher::Event::Delete(pod)) => (pod, true),
                    Ok(_) => continue,
                    Err(e) => {
                        eprintln!("replica runner: watch failed: {e}");
                        continue;
                    }
                };
                let ran = Ran {
                    running: &task_running,
                    lines: &task_lines,
                    completions: &task_completions,
                };
                handle(&api, pod, gone, &ran).await;
            }
        });
        Self {
            task,
            lines,
            running,
            completions,
        }
    }

    /// Everything the containers printed so far.
    #[must_use]
    pub fn lines(&self) -> Vec<Line> {
        self.lines.lock().expect("lines").clone()
    }

    /// The first line containing `needle`, with when it was read.
    #[must_use]
    pub fn first_line_with(&self, needle: &str) -> Option<Line> {
        self.lines
            .lock()
            .expect("lines")
            .iter()
            .find(|l| l.text.contains(needle))
            .cloned()
    }

    /// How many Pods have processes running.
    #[must_use]
    pub fn running_pods(&self) -> usize {
        self.running.lock().expect("running").len()
    }

    /// The most Pods that run to completion (Jobs') whose processes ran at once.
    #[must_use]
    pub fn peak_completion_pods(&self) -> usize {
        self.completions
            .peak
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many Pods that run to completion have finished (their phase set).
    #[must_use]
    pub fn finished_completion_pods(&self) -> usize {
        self.completions
            .finished
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for ReplicaRunner {
    fn drop(&mut self) {
        self.task.abort();
        // Children are killed on drop (kill_on_drop).
        self.running.lock().map(|mut r| r.clear()).ok();
        if let Ok(mut tasks) = self.completions.tasks.lock() {
            for (_, task) in tasks.drain() {
                task.abort();
            }
        }
    }
}

/// What the runner keeps track of.
struct Ran<'a> {
    running: &'a Running,
    lines: &'a Arc<Mutex<Vec<Line>>>,
    completions: &'a Arc<Completions>,
}

async fn handle(api: &Api<Pod>, pod: Pod, gone: bool, ran: &Ran<'_>) {
    let Ran {
        running,
        lines,
        completions,
    } = ran;
    let name = pod.name_any();
    let deleting = pod.metadata.deletion_timestamp.is_some();
    if gone || deleting {
        if let Some(task) = completions.tasks.lock().expect("tasks").remove(&name) {
            task.abort();
        }
        let children = running.lock().expect("running").remove(&name);
        for mut child in children.unwrap_or_default() {
            stop(&mut child).await;
        }
        if deleting && !gone {
            // A kubelet confirms the deletion once the containers are gone.
            let _ = api
                .delete(&name, &DeleteParams::default().grace_period(0))
                .await;
        }
        return;
    }
    if running.lock().expect("running").contains_key(&name)
        || completions.tasks.lock().expect("tasks").contains_key(&name)
    {
        return;
    }
    let Some(spec) = &pod.spec else { return };
    let to_completion = matches!(spec.restart_policy.as_deref(), Some("Never" | "OnFailure"));
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if to_completion && matches!(phase, Some("Succeeded" | "Failed")) {
        return;
    }
    // Only Jobs' pods get their Secrets: the consumer tests were written for
    // containers that see no volume, and keep that.
    let mounts = if to_completion {
        match crate::runner_volumes::secret_volumes(api, &pod).await {
            Ok(mounts) => mounts,
            Err(e) => {
                eprintln!("replica runner: pod {name}: {e}");
                return;
            }
        }
    } else {
        crate::runner_volumes::Mounts::default()
    };
    let ports = remap_ports(&spec.containers);
    let account = spec.service_account_name.as_deref().unwrap_or("default");
    let kubeconfig = match account_kubeconfig(api, &pod, account).await {
        Ok(path) => Some(path),
        Err(e) => {
            eprintln!("replica runner: pod {name} runs without API credentials: {e}");
            None
        }
    };
    let mut children = Vec::new();
    for container in &spec.containers {
        let paths = mounts.paths_for(container);
        let local = Local {
            ports: &ports,
            paths: &paths,
            kubeconfig: kubeconfig.as_deref(),
        };
        match start(&name, container, &local, lines) {
            Ok(child) => children.push((container.name.clone(), child)),
            Err(e) => eprintln!(
                "replica runner: pod {name} container {}: {e}",
                container.name
            ),
        }
    }
    let status = serde_json::json!({"status": {
        "phase": "Running",
        "podIP": "127.0.0.1",
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}],
    }});
    let _ = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await;
    // Running before the processes may end: a quick one must not be overtaken.
    if to_completion {
        let task = tokio::spawn(run_to_completion(
            api.clone(),
            name.clone(),
            children,
            Arc::clone(completions),
        ));
        completions
            .tasks
            .lock()
            .expect("tasks")
            .insert(name.clone(), task);
    } else {
        running
            .lock()
            .expect("running")
            .insert(name.clone(), children.into_iter().map(|(_, c)| c).collect());
    }
}

/// Waits for a run-to-completion Pod's processes, then sets its phase and each
/// container's exit code as a kubelet would. Aborted (the Pod deleted), the processes
/// are killed with it.
async fn run_to_completion(
    api: Api<Pod>,
    name: String,
    children: Vec<(String, Child)>,
    completions: Arc<Completions>,
) {
    use std::sync::atomic::Ordering::SeqCst;
    let now = completions.running.fetch_add(1, SeqCst) + 1;
    completions.peak.fetch_max(now, SeqCst);
    let mut statuses = Vec::new();
    let mut all_ok = !children.is_empty();
    for (container, mut child) in children {
        let code = child
            .wait()
            .await
            .ok()
            .and_then(|s| s.code())
            .unwrap_or(137);
        all_ok &= code == 0;
        statuses.push(serde_json::json!({
            "name": container, "ready": false, "restartCount": 0, "image": "runner", "imageID": "",
            "state": {"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }}},
        }));
    }
    completions.running.fetch_sub(1, SeqCst);
    let status = serde_json::json!({"status": {
        "phase": if all_ok { "Succeeded" } else { "Failed" },
        "conditions": [{"type": "Ready", "status": "False"}, {"type": "ContainersReady", "status": "False"}],
        "containerStatuses": statuses,
    }});
    if let Err(e) = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
    {
        eprintln!("replica runner: pod {name}: cannot set its phase: {e}");
    }
    completions.finished.fetch_add(1, SeqCst);
}

/// Sends SIGTERM and waits up to 5 s, then kills.
async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(std::time::Duration::from_secs(5), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}

fn is_port_variable(name: &str) -> bool {
    name == "PORT" || name.ends_with("_PORT")
}

/// A fresh port for every distinct value of a port variable in the Pod.
fn remap_ports(containers: &[Container]) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for var in containers.iter().flat_map(|c| c.env.iter().flatten()) {
        if let Some(value) = var.value.as_ref().filter(|_| is_port_variable(&var.name)) {
            map.entry(value.clone())
                .or_insert_with(|| free_port().to_string());
        }
    }
    map
}

/// Replaces `$(NAME)` with `vars[NAME]` where defined and `$$` with `$`, as
/// Kubernetes does.
fn expand(text: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(escaped) = after.strip_prefix('$') {
            out.push('$');
            rest = escaped;
            continue;
        }
        let Some(inner) = after.strip_prefix('(') else {
            out.push('$');
            rest = after;
            continue;
        };
        match inner.find(')') {
            Some(end) if vars.contains_key(&inner[..end]) => {
                out.push_str(&vars[&inner[..end]]);
                rest = &inner[end + 1..];
            }
            _ => {
                out.push_str("$(");
                rest = inner;
            }
        }
    }
    out.push_str(rest);
    out
}

/// What a container's process sees instead of the Pod's: ports, mounted files, API
/// credentials.
struct Local<'a> {
    ports: &'a HashMap<String, String>,
    /// Mount path to the local directory holding its files, longest first.
    paths: &'a [(String, String)],
    kubeconfig: Option<&'a str>,
}

impl Local<'_> {
    fn rewrite_paths(&self, text: String) -> String {
        self.paths.iter().fold(text, |text, (mount, local)| {
            text.replace(mount.as_str(), local)
        })
    }
}

/// Writes a kubeconfig that authenticates as ServiceAccount `account` of the Pod's
/// namespace (its token Secret) against the test apiserver; returns its path.
async fn account_kubeconfig(api: &Api<Pod>, pod: &Pod, account: &str) -> anyhow::Result<String> {
    use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
    let namespace = pod.namespace().unwrap_or_default();
    let client: Client = api.clone().into_client();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(client, &namespace);
    // The token controller creates the account's token Secret a moment after the account.
    for _ in 0..50 {
        let names: Vec<String> = accounts
            .get_opt(account)
            .await?
            .and_then(|sa| sa.secrets)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| r.name)
            .collect();
        for secret_name in names {
            let Some(secret) = secrets.get_opt(&secret_name).await? else {
                continue;
            };
            let data = secret.data.unwrap_or_default();
            let Some(token) = data.get("token") else {
                continue;
            };
            let own = kube::config::Kubeconfig::read()?;
            let cluster = own
                .clusters
                .first()
                .and_then(|c| c.cluster.clone())
                .ok_or_else(|| anyhow::anyhow!("the test kubeconfig has no cluster"))?;
            let config = serde_json::json!({
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "test", "cluster": {
                    "server": cluster.server,
                    "certificate-authority-data": cluster.certificate_authority_data,
                }}],
                "users": [{"name": account, "user": {"token": String::from_utf8_lossy(&token.0)}}],
                "contexts": [{"name": "pod", "context": {"cluster": "test", "user": account, "namespace": namespace}}],
                "current-context": "pod",
            });
            let path = crate::process::log_dir().join(format!("pod-{}.kubeconfig", pod.name_any()));
            std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
            return Ok(path.display().to_string());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    anyhow::bail!("ServiceAccount {namespace}/{account} has no token Secret")
}

fn start(
    pod: &str,
    container: &Container,
    local: &Local<'_>,
    lines: &Arc<Mutex<Vec<Line>>>,
) -> anyhow::Result<Child> {
    let mut vars = HashMap::new();
    for var in container.env.iter().flatten() {
        let Some(value) = &var.value else { continue };
        let value = if is_port_variable(&var.name) {
            local
                .ports
                .get(value)
                .cloned()
                .unwrap_or_else(|| value.clone())
        } else {
            local.rewrite_paths(expand(value, &vars))
        };
        vars.insert(var.name.clone(), value);
    }
    let command_line: Vec<String> = container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .map(|a| local.rewrite_paths(expand(a, &vars)))
        .collect();
    let Some((program, args)) = command_line.split_first() else {
        anyhow::bail!("no command: the runner needs `command` (it does not read images)");
    };
    let program = if program == "herald" {
        herald_bin()
    } else {
        program.into()
    };
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOSTNAME", pod)
        .envs(local.kubeconfig.map(|k| ("KUBECONFIG", k)))
        .envs(&vars)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(crate::process::log_file(&format!(
            "pod-{pod}-{}",
            container.name
        )))
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines, pod, name) = (lines.clone(), pod.to_owned(), container.name.clone());
    tokio::spawn(async move {
        let mut reader = BufReader::new(stdout).lines();
        while let Ok(Some(text)) = reader.next_line().await {
            lines.lock().expect("lines").push(Line {
                at: Instant::now(),
                pod: pod.clone(),
                container: name.clone(),
                text,
            });
        }
    });
    Ok(child)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_kubernetes() {
        let vars = HashMap::from([("P".to_owned(), "8080".to_owned())]);
        assert_eq!(
            expand("http://127.0.0.1:$(P)/x", &vars),
            "http://127.0.0.1:8080/x"
        );
        assert_eq!(expand("$(UNKNOWN) $(P", &vars), "$(UNKNOWN) $(P");
        assert_eq!(expand("a$$(P)b $ $$$(P)", &vars), "a$(P)b $ $8080");
    }
}
