#!/usr/bin/env bash
# e2e/harness/down.sh - stop exactly the processes that up.sh recorded in $STATE/pids.
#
# A recorded PID is signalled only while /proc/PID still shows the start time
# recorded for it, so a reused PID is never hit. Nothing is matched by name.
# SIGTERM goes first to everything except etcd; once those have exited, etcd
# gets it. Any of those same processes still alive after $STOP_TIMEOUT seconds
# gets SIGKILL.
#   PURGE=1  also delete $STATE afterwards (etcd data, JetStream store, certs).
set -uo pipefail

STATE=${STATE:-/tmp/herald-dev}
STOP_TIMEOUT=${STOP_TIMEOUT:-20}
PURGE=${PURGE:-0}
PIDS=$STATE/pids

log() { printf '[down.sh] %s\n' "$*" >&2; }
proc_starttime() { [[ -r /proc/$1/stat ]] && sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20; }
same_proc() { [[ $(proc_starttime "$1") == "$2" ]]; }

stop_wave() {   # lines "name pid starttime exe": TERM all, wait, KILL leftovers
  local line name pid st alive=()
  for line in "$@"; do
    read -r name pid st _ <<<"$line"
    [[ $pid =~ ^[0-9]+$ && $st =~ ^[0-9]+$ ]] || { log "skipping malformed line: $line"; continue; }
    if same_proc "$pid" "$st"; then
      log "SIGTERM $name (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      alive+=("$name $pid $st")
    else
      log "$name (pid $pid) is not running any more"
    fi
  done
  local deadline=$((SECONDS + STOP_TIMEOUT)) entry
  for entry in "${alive[@]}"; do
    read -r name pid st <<<"$entry"
    while same_proc "$pid" "$st" && ((SECONDS < deadline)); do sleep 0.1; done
    if same_proc "$pid" "$st"; then
      log "SIGKILL $name (pid $pid): still alive after ${STOP_TIMEOUT}s"
      kill -KILL "$pid" 2>/dev/null || true
    else
      log "$name stopped"
    fi
  done
}

if [[ ! -s $PIDS ]]; then
  log "nothing recorded in $PIDS"
else
  exec 8>"$STATE/.up.lock"
  flock -w 120 8 || log "warning: $STATE/.up.lock busy; going on"
  first=() last=()
  while IFS= read -r line; do
    [[ -n $line ]] || continue
    if [[ $line == etcd\ * ]]; then last+=("$line"); else first+=("$line"); fi
  done <"$PIDS"
  ((${#first[@]})) && stop_wave "${first[@]}"
  ((${#last[@]})) && stop_wave "${last[@]}"   # etcd after its clients
  rm -f "$PIDS" "$STATE"/run/*.pid
fi

if [[ $PURGE == 1 && -d $STATE ]]; then
  log "removing $STATE"
  rm -rf -- "$STATE"
fi
