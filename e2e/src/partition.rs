//! A network namespace joined to the test's own by a veth pair, so that one NATS node
//! can run "on another host" and be cut off and reconnected by the test itself
//! (`ip link set ... down/up`). Needs root and iproute2, as `e2e/test.sh` has.

use std::process::Command;

/// The namespace, its veth pair and the /30 between them.
pub struct Netns {
    /// Namespace name (`ip netns exec <name> ...`).
    pub name: String,
    host_if: String,
    /// Address of the test's side of the link.
    pub host_ip: String,
    /// Address inside the namespace.
    pub inner_ip: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2) must be installed");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// Makes namespace `herald-<tag>` with a veth link to the test's namespace on
    /// 10.231.x.y/30 (`tag`: a short hex string, unique per test run).
    #[must_use]
    pub fn create(tag: &str) -> Self {
        let name = format!("herald-{tag}");
        let (host_link, inner_link) = (format!("hh{tag}"), format!("hn{tag}"));
        let n = u32::from_str_radix(tag, 16).unwrap_or(1);
        let (a, b) = ((n >> 8) & 0xff, (n & 0x3f) << 2);
        let (host_ip, inner_ip) = (
            format!("10.231.{a}.{}", b + 1),
            format!("10.231.{a}.{}", b + 2),
        );
        ip(&["netns", "add", &name]);
        let netns = Self {
            name,
            host_if: host_link,
            host_ip,
            inner_ip,
        };
        ip(&[
            "link",
            "add",
            &netns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &inner_link,
        ]);
        ip(&["link", "set", &inner_link, "netns", &netns.name]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", netns.host_ip),
            "dev",
            &netns.host_if,
        ]);
        ip(&["link", "set", &netns.host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", netns.name.as_str(), "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&[
            "addr",
            "add",
            &format!("{}/30", netns.inner_ip),
            "dev",
            &inner_link,
        ]);
        inside(&["link", "set", &inner_link, "up"]);
        inside(&["link", "set", "lo", "up"]);
        netns
    }

    /// Cuts the link: nothing passes either way until [`Netns::heal`].
    pub fn cut(&self) {
        ip(&["link", "set", &self.host_if, "down"]);
    }

    /// Restores the link.
    pub fn heal(&self) {
        ip(&["link", "set", &self.host_if, "up"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
    }
}
