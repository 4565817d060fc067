//! Running the real `kubectl`, as users do.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs `kubectl ARGS` with `stdin` piped in; returns the whole output.
#[must_use]
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new("kubectl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl must be on PATH (e2e/controlplane/up.sh installs it)");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write kubectl stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("kubectl ran")
}

/// Applies a manifest into `namespace`; panics with kubectl's message on failure.
pub fn apply(namespace: &str, manifest: &str) {
    let out = kubectl(&["apply", "-n", namespace, "-f", "-"], Some(manifest));
    assert!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Applies a manifest expected to be refused; returns kubectl's error message.
#[must_use]
pub fn apply_refused(namespace: &str, manifest: &str) -> String {
    let out = kubectl(&["apply", "-n", namespace, "-f", "-"], Some(manifest));
    assert!(
        !out.status.success(),
        "kubectl apply unexpectedly accepted:\n{manifest}"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The path of a file under the repository's `examples/`.
#[must_use]
pub fn example(name: &str) -> String {
    format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"))
}
