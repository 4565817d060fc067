# shellcheck shell=bash
# e2e/controlplane/node.sh - a real node for the control plane (NODE=1): sourced by
# up.sh (node_up) and down.sh (node_down), never run.
#
# The node lives in a network namespace of its own, herald-node-<id>, joined to
# this machine by a veth pair on a /30 from 10.232.0.0/16 (the partition tests
# use 10.231.0.0/16). Inside it run containerd (CRI, runc, CNI bridge cni0 on
# 10.234.k.0/24 with host-local, loopback and portmap), the kubelet and
# kube-proxy (iptables mode): their iptables rules, ports and pod addresses are
# the namespace's own, so two planes with nodes never meet. kube-scheduler and
# the cluster DNS server run beside the control plane.
#
# From inside, what listens on this machine's 127.0.0.1 (the apiserver, nats-server,
# and the Herald processes and test servers of e2e) is reached at the host end of
# the veth: a DNAT rule, scoped to that veth, sends HOST_IP:<port> on to
# 127.0.0.1:<port> for every TCP port but DNS's (route_localnet on the veth only),
# and one in OUTPUT does the same for this machine's own connections to HOST_IP,
# so one address (HOST_IP:<port>) works from pods and from the host alike.
# The `kubernetes` Service's Endpoints point at HOST_IP, so in-cluster clients
# (ServiceAccount tokens, KUBERNETES_SERVICE_HOST) reach the real apiserver.
# Pods resolve *.svc.cluster.local through herald-cluster-dns on HOST_IP:53.

NODE_NAME=herald-node
NODE_CLUSTER_DOMAIN=cluster.local
NODE_PAUSE_IMAGE=docker.io/local/pause:3.2
NODE_KUBELET_PORT=10250
# Machine-wide sysctls the kubelet sets at start (restored right after it is up).
NODE_KUBELET_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

node_dirs() {   # sets the node's paths (also used by down.sh)
  NODE_DIR=$STATE/node
  NODE_SOCK=$NODE_DIR/containerd/containerd.sock
  NODE_ENV=$NODE_DIR/node.env
}

# ---------------------------------------------------------------- network
# The node's index k (0-255) comes from a checksum of $STATE, so the same STATE
# gets the same namespace again; an index whose /30 is already on this machine
# is skipped. The veth is 10.232.k.0/30 and the pods' bridge 10.234.k.0/24: the
# host routes that /24 through the veth, so the apiserver reaches webhooks and
# aggregated APIs in pods (--enable-aggregator-routing) and tests reach pod IPs.
node_pick_net() {
  if [[ -s $NODE_ENV ]]; then
    # shellcheck disable=SC1090
    source "$NODE_ENV"
    return
  fi
  local sum i k
  sum=$(printf '%s' "$STATE" | cksum | cut -d' ' -f1)
  for ((i = 0; i < 256; i++)); do
    k=$(((sum + i) % 256))
    ip -4 -o addr show | grep -q " 10\.232\.$k\.1/" || break
    ((i < 255)) || cp_die "no free 10.232.k.0/30 for the node's veth"
  done
  NODE_ID=$(printf '%02x' "$k")
  NODE_NETNS=herald-node-$NODE_ID
  NODE_VETH=hnode$NODE_ID
  NODE_HOST_IP=10.232.$k.1
  NODE_IP=10.232.$k.2
  NODE_POD_CIDR=10.234.$k.0/24
  mkdir -p "$NODE_DIR"
  printf '%s=%q\n' NODE_ID "$NODE_ID" NODE_NETNS "$NODE_NETNS" NODE_VETH "$NODE_VETH" \
    NODE_HOST_IP "$NODE_HOST_IP" NODE_IP "$NODE_IP" NODE_POD_CIDR "$NODE_POD_CIDR" >"$NODE_ENV"
}

in_node() { nsenter --net="/var/run/netns/$NODE_NETNS" "$@"; }

node_net_up() {
  if [[ ! -e /var/run/netns/$NODE_NETNS ]]; then
    cp_log "network namespace $NODE_NETNS, veth $NODE_VETH $NODE_HOST_IP <-> $NODE_IP"
    ip netns add "$NODE_NETNS"
  fi
  if ! ip link show "$NODE_VETH" >/dev/null 2>&1; then
    ip link add "$NODE_VETH" type veth peer name eth0 netns "$NODE_NETNS"
    ip addr add "$NODE_HOST_IP/30" dev "$NODE_VETH"
    ip link set "$NODE_VETH" up
    in_node ip addr add "$NODE_IP/30" dev eth0
    in_node ip link set lo up
    in_node ip link set eth0 up
    in_node ip route add default via "$NODE_HOST_IP"
    ip route add "$NODE_POD_CIDR" via "$NODE_IP" dev "$NODE_VETH"
  fi
  # Forwarding inside the namespace only (pods <-> services <-> the veth).
  in_node sysctl -qw net.ipv4.ip_forward=1
  sysctl -qw "net.ipv4.conf.$NODE_VETH.route_localnet=1"
  local rule
  for rule in "PREROUTING -i $NODE_VETH" "OUTPUT"; do
    # shellcheck disable=SC2086  # the chain and its match are words
    iptables -t nat -C $rule -d "$NODE_HOST_IP" -p tcp ! --dport 53 -j DNAT --to-destination 127.0.0.1 2>/dev/null ||
      iptables -t nat -A $rule -d "$NODE_HOST_IP" -p tcp ! --dport 53 -j DNAT --to-destination 127.0.0.1
  done
}

# ---------------------------------------------------------------- images
# The pause image (every pod's sandbox) from $CACHE/bin/pause, made once with
# buildah into an OCI archive and imported into each node's containerd.
node_pause_archive() {
  local archive=$CACHE/images/pause-3.2.oci.tar
  if [[ ! -s $archive ]]; then
    cp_log "building the pause image $NODE_PAUSE_IMAGE with buildah"
    mkdir -p "$CACHE/images"
    local storage=(--root "$CACHE/buildah/storage" --runroot "$CACHE/buildah/run" --storage-driver vfs)
    local ctr
    ctr=$(buildah "${storage[@]}" from scratch)
    buildah "${storage[@]}" copy "$ctr" "$CACHE/bin/pause" /pause >/dev/null
    buildah "${storage[@]}" config --entrypoint '["/pause"]' --user 65535:65535 "$ctr"
    buildah "${storage[@]}" commit --quiet "$ctr" "$NODE_PAUSE_IMAGE" >/dev/null
    buildah "${storage[@]}" push --quiet "$NODE_PAUSE_IMAGE" "oci-archive:$archive.part:$NODE_PAUSE_IMAGE"
    buildah "${storage[@]}" rm "$ctr" >/dev/null
    buildah "${storage[@]}" rmi "$NODE_PAUSE_IMAGE" >/dev/null
    mv "$archive.part" "$archive"
  fi
  NODE_PAUSE_ARCHIVE=$archive
}

# `busybox:1.36` for pods that need a shell (examples/trigger-job.yaml, the Job
# tests): the node pulls nothing, so the name is served by an image made here from
# Debian's busybox-static (1.35) — /bin/busybox and a link per applet.
NODE_BUSYBOX_IMAGE=docker.io/library/busybox:1.36
node_busybox_archive() {
  local archive=$CACHE/images/busybox-1.36.oci.tar
  if [[ ! -s $archive ]]; then
    cp_log "building $NODE_BUSYBOX_IMAGE from Debian's busybox-static with buildah"
    mkdir -p "$CACHE/images"
    local storage=(--root "$CACHE/buildah/storage" --runroot "$CACHE/buildah/run" --storage-driver vfs)
    local ctr rootfs
    rootfs=$(mktemp -d /tmp/herald-busybox.XXXXXX)
    install -D -m 0755 /bin/busybox "$rootfs/bin/busybox"
    /bin/busybox --list | while read -r applet; do
      [[ $applet == busybox ]] || ln -s busybox "$rootfs/bin/$applet"
    done
    ctr=$(buildah "${storage[@]}" from scratch)
    buildah "${storage[@]}" copy "$ctr" "$rootfs" / >/dev/null
    buildah "${storage[@]}" config --cmd '["sh"]' --env PATH=/bin "$ctr"
    buildah "${storage[@]}" commit --quiet "$ctr" "$NODE_BUSYBOX_IMAGE" >/dev/null
    buildah "${storage[@]}" push --quiet "$NODE_BUSYBOX_IMAGE" "oci-archive:$archive.part:$NODE_BUSYBOX_IMAGE"
    buildah "${storage[@]}" rm "$ctr" >/dev/null
    buildah "${storage[@]}" rmi "$NODE_BUSYBOX_IMAGE" >/dev/null
    rm -rf "$rootfs"
    mv "$archive.part" "$archive"
  fi
  NODE_BUSYBOX_ARCHIVE=$archive
}

# ---------------------------------------------------------------- config files
node_write_config() {
  mkdir -p "$NODE_DIR"/{containerd,cni/net.d,cni/ipam,kubelet/pki,kubelet/plugins}
  cat >"$NODE_DIR/containerd/config.toml" <<EOF
version = 2
root = "$NODE_DIR/containerd/root"
state = "$NODE_DIR/containerd/state"
[grpc]
  address = "$NODE_SOCK"
[ttrpc]
  address = "$NODE_SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$NODE_DIR/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$NODE_PAUSE_IMAGE"
  # This machine's root lacks CAP_SYS_RESOURCE: runc dies setting the sandbox's
  # oom_score_adj -998 ("can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_DIR/cni/net.d"
EOF
  cat >"$NODE_DIR/cni/net.d/10-herald.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "herald-pods",
  "plugins": [
    {
      "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$NODE_DIR/cni/ipam",
        "ranges": [[{"subnet": "$NODE_POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  # The node's components reach the apiserver through the veth; its serving
  # certificate names 'kubernetes', not HOST_IP.
  local ca
  ca=$(base64 -w0 <"$PKI/ca.crt")
  cat >"$NODE_DIR/kubeconfig.new" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: herald-cp
  cluster:
    server: https://$NODE_HOST_IP:$APISERVER_PORT
    tls-server-name: kubernetes
    certificate-authority-data: $ca
users:
- name: node
  user:
    token: $ADMIN_TOKEN
contexts:
- name: herald-cp
  context: {cluster: herald-cp, user: node}
current-context: herald-cp
EOF
  chmod 600 "$NODE_DIR/kubeconfig.new" && mv "$NODE_DIR/kubeconfig.new" "$NODE_DIR/kubeconfig"
  write_kubeconfig "$NODE_DIR/host.kubeconfig"   # kube-scheduler, cluster DNS (127.0.0.1)
}

# In-cluster clients find the apiserver through the `kubernetes` Service; with
# --endpoint-reconciler-type none nobody writes its Endpoints, so we do.
node_kubernetes_endpoints() {
  kubectl --kubeconfig "$NODE_DIR/host.kubeconfig" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Endpoints
metadata: {name: kubernetes, namespace: default}
subsets:
- addresses: [{ip: $NODE_HOST_IP}]
  ports: [{name: https, port: $APISERVER_PORT, protocol: TCP}]
EOF
}

# ---------------------------------------------------------------- checks
node_ctr() { ctr --address "$NODE_SOCK" "$@"; }
containerd_ok() { node_ctr version >/dev/null 2>&1; }
kubelet_ok() {
  [[ $(kubectl --kubeconfig "$NODE_DIR/host.kubeconfig" get node "$NODE_NAME" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}
kube_proxy_ok() { in_node curl -sf --max-time 2 http://127.0.0.1:10256/healthz >/dev/null 2>&1; }
scheduler_ok() { sleep 1; }   # no ports (--port=0 --secure-port=0); alive is all we can ask
cluster_dns_ok() { "$NODE_DNS_BIN" --check "kubernetes.default.svc.$NODE_CLUSTER_DOMAIN" --server "$NODE_HOST_IP:53" >/dev/null 2>&1; }

# ---------------------------------------------------------------- up
node_dns_bin() {   # sets NODE_DNS_BIN, building it with cargo unless CLUSTER_DNS_BIN is given
  local running
  if [[ -n ${CLUSTER_DNS_BIN:-} ]]; then
    NODE_DNS_BIN=$(readlink -f "$CLUSTER_DNS_BIN")
  elif running=$(lookup herald-cluster-dns); then
    # Already serving (up.sh run again on this STATE, perhaps from inside a test
    # whose cargo holds the build lock): the binary it runs.
    NODE_DNS_BIN=${running#* }
  else
    local root target
    root=$(cd "$HERE/../.." && pwd)
    command -v cargo >/dev/null || cp_die "NODE=1 builds herald-cluster-dns with cargo; install Rust or set CLUSTER_DNS_BIN"
    cp_log "cargo build -p herald-e2e --bin herald-cluster-dns"
    (cd "$root" && cargo build --locked -q -p herald-e2e --bin herald-cluster-dns) ||
      cp_die "building herald-cluster-dns failed"
    target=${CARGO_TARGET_DIR:-$root/target}
    NODE_DNS_BIN=$target/debug/herald-cluster-dns
  fi
  [[ -x $NODE_DNS_BIN ]] || cp_die "no herald-cluster-dns at $NODE_DNS_BIN"
}

node_up() {
  node_dirs
  need_pkgs containerd runc containernetworking-plugins iptables conntrack buildah busybox-static
  node_dns_bin
  node_pause_archive
  node_busybox_archive
  node_pick_net
  node_net_up
  node_write_config
  node_kubernetes_endpoints
  bring_up containerd "CRI socket $NODE_SOCK" containerd_ok -- nsenter --net="/var/run/netns/$NODE_NETNS" \
    "$(command -v containerd)" --config "$NODE_DIR/containerd/config.toml"
  local archive
  for archive in "$NODE_PAUSE_ARCHIVE" "$NODE_BUSYBOX_ARCHIVE"; do
    node_ctr -n k8s.io images import "$archive" >/dev/null ||
      cp_die "importing $archive into containerd failed"
  done

  bring_up herald-cluster-dns "answers on $NODE_HOST_IP:53" cluster_dns_ok -- "$NODE_DNS_BIN" \
    --kubeconfig "$NODE_DIR/host.kubeconfig" --listen "$NODE_HOST_IP:53" --domain "$NODE_CLUSTER_DOMAIN"

  bring_up kube-scheduler "process alive" scheduler_ok -- "$CACHE/bin/kube-scheduler" \
    --kubeconfig "$NODE_DIR/host.kubeconfig" --leader-elect=false --port=0 --secure-port=0 \
    --profiling=false

  # --cgroups-per-qos=false etc.: a test node without system reservations or
  # evictions. --address/--node-ip: the apiserver reaches it (logs, exec) on NODE_IP.
  # --node-status-update-frequency=4s: Ready ~6 s sooner (the first status after
  # registration still says NotReady; the next one comes after this period).
  # A Node left from an earlier run (down.sh keeps etcd) would say Ready before
  # this kubelet has registered: start from none.
  local saved=''
  if ! lookup kubelet >/dev/null; then
    kubectl --kubeconfig "$NODE_DIR/host.kubeconfig" delete node "$NODE_NAME" --ignore-not-found >/dev/null
    saved=$(sysctl "${NODE_KUBELET_SYSCTLS[@]}" | tr -d ' ')
  fi
  bring_up kubelet "node $NODE_NAME Ready" kubelet_ok -- nsenter --net="/var/run/netns/$NODE_NETNS" \
    "$CACHE/bin/kubelet" --kubeconfig "$NODE_DIR/kubeconfig" \
    --container-runtime=remote --container-runtime-endpoint="unix://$NODE_SOCK" \
    --image-service-endpoint="unix://$NODE_SOCK" --runtime-request-timeout=5m \
    --cgroup-driver=cgroupfs --fail-swap-on=false --pod-infra-container-image="$NODE_PAUSE_IMAGE" \
    --root-dir "$NODE_DIR/kubelet" --cert-dir "$NODE_DIR/kubelet/pki" \
    --volume-plugin-dir "$NODE_DIR/kubelet/volume-plugins" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --address "$NODE_IP" \
    --port "$NODE_KUBELET_PORT" --read-only-port=0 --healthz-bind-address=127.0.0.1 \
    --cgroups-per-qos=false --enforce-node-allocatable= --eviction-hard= \
    --image-gc-high-threshold=100 --image-gc-low-threshold=99 \
    --cluster-dns "$NODE_HOST_IP" --cluster-domain "$NODE_CLUSTER_DOMAIN" \
    --sync-frequency=10s --serialize-image-pulls=false --kube-api-qps=50 --kube-api-burst=100 \
    --node-status-update-frequency=4s

  # The kubelet (1.20) sets these machine-wide sysctls once at start (e.g.
  # kernel.panic_on_oops=1); --protect-kernel-defaults would refuse to start
  # instead. Put back what the machine had: nothing else here needs them.
  if [[ -n $saved ]]; then
    # shellcheck disable=SC2086  # one name=value per word
    sysctl -qw $saved || cp_log "warning: could not restore the sysctls the kubelet changed: $saved"
  fi

  # --masquerade-all: service traffic between two pods on the bridge returns
  # through the namespace's stack (no br_netfilter needed). conntrack limits
  # are machine-wide sysctls: left alone.
  bring_up kube-proxy "healthz on 10256" kube_proxy_ok -- nsenter --net="/var/run/netns/$NODE_NETNS" \
    "$CACHE/bin/kube-proxy" --kubeconfig "$NODE_DIR/kubeconfig" --proxy-mode iptables \
    --hostname-override "$NODE_NAME" --cluster-cidr "$NODE_POD_CIDR" --masquerade-all \
    --conntrack-max-per-core=0 --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0 \
    --healthz-bind-address 127.0.0.1:10256 --metrics-bind-address 127.0.0.1:10249
  {
    printf 'export %s=%q\n' HERALD_NODE "$NODE_NAME" HERALD_NODE_NETNS "$NODE_NETNS" \
      HERALD_NODE_CONTAINERD "$NODE_SOCK" HERALD_NODE_HOST_IP "$NODE_HOST_IP"
  } >>"$STATE/env"
  cp_log "node $NODE_NAME up (netns $NODE_NETNS)"
}

# ---------------------------------------------------------------- down
# Called by down.sh before the control plane stops. Order: the kubelet (it
# would restart containers), every container of this containerd (shims outlive
# containerd), containerd and the rest, then mounts, netns and DNAT rules.
node_down() {
  node_dirs
  [[ -s $NODE_ENV ]] || return 0
  # shellcheck disable=SC1090
  source "$NODE_ENV"
  local entry name pid rule
  node_stop_recorded kubelet
  if [[ -S $NODE_SOCK ]] && node_ctr version >/dev/null 2>&1; then
    local netns_inodes=() task
    while read -r task pid _; do
      [[ $pid =~ ^[0-9]+$ ]] || continue
      netns_inodes+=("$(stat -L -c %i "/proc/$pid/ns/net" 2>/dev/null)")
      node_ctr -n k8s.io tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true
    done < <(node_ctr -n k8s.io tasks ls 2>/dev/null | awk 'NR > 1 {print $1, $2}')
    sleep 0.5
    for task in $(node_ctr -n k8s.io tasks ls -q 2>/dev/null); do
      node_ctr -n k8s.io tasks delete -f "$task" >/dev/null 2>&1 || true
    done
    for task in $(node_ctr -n k8s.io containers ls -q 2>/dev/null); do
      node_ctr -n k8s.io containers delete "$task" >/dev/null 2>&1 || true
    done
    # The pods' network namespaces that containerd pinned under /var/run/netns.
    local f
    for f in /var/run/netns/cni-*; do
      [[ -e $f ]] || continue
      for entry in "${netns_inodes[@]}"; do
        [[ -n $entry && $(stat -L -c %i "$f" 2>/dev/null) == "$entry" ]] || continue
        umount "$f" 2>/dev/null; rm -f "$f"
      done
    done
  fi
  # containerd last: kube-proxy and the rest do not need it, and its shims are gone.
  node_stop_recorded kube-proxy kube-scheduler herald-cluster-dns
  node_stop_recorded containerd
  # Shims started by this containerd name its socket on their command line.
  while read -r pid; do
    [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null && cp_log "killed leftover shim pid $pid"
  done < <(ps -eo pid=,args= | awk -v s="-address $NODE_SOCK" 'index($0, s) {print $1}')
  # Secret volumes, overlay rootfs: whatever is still mounted under the node's dir.
  findmnt -rn -o TARGET | awk -v d="$NODE_DIR/" 'index($0, d) == 1' | sort -r |
    while read -r entry; do umount -l "$entry" 2>/dev/null || true; done
  # Container logs that CRI wrote for this node's pods (kubelet's fixed /var/log/pods).
  if [[ -d $NODE_DIR/kubelet/pods ]]; then
    for entry in "$NODE_DIR"/kubelet/pods/*; do
      [[ -d $entry ]] && rm -rf /var/log/pods/*_"$(basename "$entry")"
    done
  fi
  for rule in "PREROUTING -i $NODE_VETH" "OUTPUT"; do
    # shellcheck disable=SC2086  # the chain and its match are words
    iptables -t nat -D $rule -d "$NODE_HOST_IP" -p tcp ! --dport 53 -j DNAT --to-destination 127.0.0.1 2>/dev/null || true
  done
  ip link del "$NODE_VETH" 2>/dev/null || true
  ip netns del "$NODE_NETNS" 2>/dev/null || true
  rm -f "$NODE_ENV"
  cp_log "node $NODE_NAME stopped (netns $NODE_NETNS removed)"
}
node_stop_recorded() {   # NAME...: TERM those recorded processes together, wait, KILL
  local name pid st _e entry stopping=()
  [[ -f $STATE/pids ]] || return 0
  while read -r name pid st _e; do
    [[ " $* " == *" $name "* ]] || continue
    if cp_alive "$pid" "$st"; then
      kill -TERM "$pid" 2>/dev/null || true
      stopping+=("$name $pid $st")
    fi
  done <"$STATE/pids"
  local deadline=$((SECONDS + ${STOP_TIMEOUT:-20}))
  for entry in "${stopping[@]}"; do
    read -r name pid st <<<"$entry"
    while cp_alive "$pid" "$st" && ((SECONDS < deadline)); do sleep 0.1; done
    cp_alive "$pid" "$st" && kill -KILL "$pid" 2>/dev/null
    cp_log "$name stopped"
  done
  awk -v names=" $* " 'index(names, " " $1 " ") == 0' "$STATE/pids" >"$STATE/pids.new" &&
    mv "$STATE/pids.new" "$STATE/pids"
}
