#!/usr/bin/env bash
# e2e/controlplane/down.sh - stop the control plane that up.sh started in $STATE.
#
# Usage:
#   e2e/controlplane/down.sh                        # the plane in /tmp/herald-dev
#   STATE=/tmp/mine PURGE=1 e2e/controlplane/down.sh
#   e2e/controlplane/down.sh --help
#
# Signals exactly the processes recorded in $STATE/pids, and each only while its
# PID still has the recorded start time (a recycled PID is never hit); nothing
# is looked up by name. SIGTERM goes to kube-apiserver, kube-controller-manager
# and nats-server together, then to etcd once they are gone (with PURGE=1 the
# data is thrown away, so all four get it at once); whatever is still alive
# after STOP_TIMEOUT seconds gets SIGKILL.
# A real node (NODE=1, node.sh) goes first: the kubelet, every container of its
# containerd, containerd and the rest, its mounts, network namespace and DNAT rules.
# $STATE/ports is kept, so the next up.sh uses the same ports (and kubeconfig).
#
# Environment:
#   STATE, else HERALD_CP_STATE   state dir (default /tmp/herald-dev)
#   STOP_TIMEOUT=20   seconds to wait after SIGTERM
#   PURGE=1           also delete $STATE (etcd data, JetStream store, certs, logs)
set -Eeuo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CP_NAME=down.sh
# shellcheck source=lib.sh
source "$HERE/lib.sh"
# shellcheck source=node.sh
source "$HERE/node.sh"

cp_args "$0" "${1:-}"

cp_resolve_dirs
STOP_TIMEOUT=${STOP_TIMEOUT:-20}
PURGE=${PURGE:-0}
PIDS=$STATE/pids
trap 'cp_log "ERROR at line $LINENO: $BASH_COMMAND"' ERR

stop_group() {   # "NAME PID STARTTIME" ...: TERM them all, wait, KILL stragglers
  local entry name pid st running=()
  for entry in "$@"; do
    read -r name pid st <<<"$entry"
    if cp_alive "$pid" "$st"; then
      cp_log "SIGTERM $name (pid $pid)"
      if kill -TERM "$pid" 2>/dev/null; then running+=("$entry"); fi
    else
      cp_log "$name (pid $pid) is not running"
    fi
  done
  local deadline=$((SECONDS + STOP_TIMEOUT))
  for entry in "${running[@]}"; do
    read -r name pid st <<<"$entry"
    while cp_alive "$pid" "$st" && ((SECONDS < deadline)); do sleep 0.1; done
    if cp_alive "$pid" "$st"; then
      cp_log "SIGKILL $name (pid $pid): still running after ${STOP_TIMEOUT}s"
      kill -KILL "$pid" 2>/dev/null || true
    else
      cp_log "$name stopped"
    fi
  done
}

if [[ -s $PIDS ]]; then
  exec 8>"$STATE/.up.lock"   # not while an up.sh is starting things in this STATE
  flock -w 120 8 || cp_log "warning: $STATE/.up.lock is still held after 120 s; going on"
  node_down   # a real node (NODE=1) first: its pods and containerd, while the apiserver still runs
  clients=() etcd=()
  while read -r name pid st _; do
    [[ $pid =~ ^[0-9]+$ && $st =~ ^[0-9]+$ ]] || { cp_log "ignoring bad line in $PIDS: $name $pid $st"; continue; }
    if [[ $name == etcd && $PURGE != 1 ]]; then etcd+=("$name $pid $st"); else clients+=("$name $pid $st"); fi
  done <"$PIDS"
  ((${#clients[@]} == 0)) || stop_group "${clients[@]}"
  ((${#etcd[@]} == 0)) || stop_group "${etcd[@]}"   # last: the others write to it
  rm -f "$PIDS" "$STATE"/run/*.pid
else
  cp_log "nothing recorded in $PIDS"
fi

if [[ $PURGE == 1 && -d $STATE ]]; then
  # Only a directory that up.sh made (marker file, or the files it always writes).
  if [[ -e $STATE/.herald-controlplane || (-f $STATE/ports && -d $STATE/pki) ]]; then
    cp_log "removing $STATE"
    rm -rf -- "$STATE"
  else
    cp_die "PURGE=1: $STATE does not look like a control-plane state dir; not deleting it"
  fi
fi
exit 0
