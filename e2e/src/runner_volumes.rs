//! Secret volumes for the stand-in kubelet ([`crate::runner`]): each Secret a Pod
//! mounts is written to a local directory, and each container's mount paths map to
//! those directories.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::{Api, ResourceExt};

/// How long a Pod waits for a Secret it mounts to exist (a kubelet retries the mount).
const SECRET_WAIT: Duration = Duration::from_secs(15);

/// The local directory of each Secret volume of a Pod, by volume name.
#[derive(Default)]
pub struct Mounts(HashMap<String, PathBuf>);

impl Mounts {
    /// `(mountPath, local directory)` for each Secret volume `container` mounts,
    /// longest mount path first (so a nested mount is rewritten before its parent).
    #[must_use]
    pub fn paths_for(&self, container: &Container) -> Vec<(String, String)> {
        let mut paths: Vec<(String, String)> = container
            .volume_mounts
            .iter()
            .flatten()
            .filter_map(|m| {
                let local = self.0.get(&m.name)?;
                Some((
                    m.mount_path.trim_end_matches('/').to_owned(),
                    local.display().to_string(),
                ))
            })
            .collect();
        paths.sort_by_key(|(mount, _)| std::cmp::Reverse(mount.len()));
        paths
    }
}

/// Writes every Secret `pod` mounts to a directory of its own (waiting up to
/// [`SECRET_WAIT`] for one that does not exist yet; one that still does not is left
/// out, and the Pod runs without it).
pub async fn secret_volumes(api: &Api<Pod>, pod: &Pod) -> anyhow::Result<Mounts> {
    let secrets: Api<Secret> = Api::namespaced(
        api.clone().into_client(),
        &pod.namespace().unwrap_or_default(),
    );
    let mut dirs = HashMap::new();
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    for volume in volumes {
        let Some(secret_name) = volume.secret.as_ref().and_then(|s| s.secret_name.clone()) else {
            continue;
        };
        let secret = match wait_for(&secrets, &secret_name).await {
            Ok(secret) => secret,
            Err(e) => {
                eprintln!(
                    "replica runner: pod {} runs without volume {}: {e}",
                    pod.name_any(),
                    volume.name
                );
                continue;
            }
        };
        let dir = crate::process::log_dir().join(format!("pod-{}-{}", pod.name_any(), volume.name));
        std::fs::create_dir_all(&dir)?;
        for (key, value) in secret.data.unwrap_or_default() {
            std::fs::write(dir.join(key), value.0)?;
        }
        for (key, value) in secret.string_data.unwrap_or_default() {
            std::fs::write(dir.join(key), value)?;
        }
        dirs.insert(volume.name.clone(), dir);
    }
    Ok(Mounts(dirs))
}

async fn wait_for(secrets: &Api<Secret>, name: &str) -> anyhow::Result<Secret> {
    let deadline = tokio::time::Instant::now() + SECRET_WAIT;
    loop {
        if let Some(secret) = secrets.get_opt(name).await? {
            return Ok(secret);
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("Secret {name} does not exist (waited {SECRET_WAIT:?})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
