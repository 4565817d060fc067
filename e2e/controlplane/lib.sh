# shellcheck shell=bash
# e2e/controlplane/lib.sh - helpers shared by up.sh, down.sh and smoke.sh.
# Sourced, never run. Defines STATE/CACHE resolution, logging and the
# "is this still the process we started" test.

CP_DEFAULT_STATE=/tmp/herald-dev
CP_DEFAULT_CACHE=/var/cache/herald-k8s
# shellcheck disable=SC2034  # used by up.sh and smoke.sh
# The five loopback ports, in the order they are picked and written to $STATE/ports.
CP_PORT_VARS=(ETCD_PORT ETCD_PEER_PORT APISERVER_PORT NATS_PORT NATS_MONITOR_PORT)

# STATE wins over HERALD_CP_STATE (exported by a previous eval of up.sh), so a
# script that passes STATE=... explicitly never lands on the developer's plane.
cp_resolve_dirs() {
  STATE=${STATE:-${HERALD_CP_STATE:-$CP_DEFAULT_STATE}}
  CACHE=${CACHE:-${HERALD_CP_CACHE:-$CP_DEFAULT_CACHE}}
  [[ $STATE == /* ]] || STATE=$PWD/$STATE
  [[ $CACHE == /* ]] || CACHE=$PWD/$CACHE
  STATE=${STATE%/} CACHE=${CACHE%/}
  case $STATE in
    '' | /tmp | /var | /var/tmp | /root | /home | "${HOME:-/root}")
      cp_die "refusing STATE=${STATE:-/}: use a directory of its own" ;;
  esac
}

CP_T0=${EPOCHREALTIME/[.,]/}
cp_log() {
  local now=${EPOCHREALTIME/[.,]/}
  printf '[%s %5.1fs] %s\n' "${CP_NAME:-cp}" "$(((now - CP_T0) / 100000))e-1" "$*" >&2
}
cp_die() { cp_log "ERROR: $*"; exit 1; }

# Print the leading comment block of the calling script (its usage text).
cp_usage() { sed -n '2,/^[^#]/{/^#/{s/^# \{0,1\}//;p}}' "$1"; }
# The one argument a harness script takes: -h/--help prints its header comment.
cp_args() {   # SCRIPT [ARG]
  case ${2:-} in
    -h | --help) cp_usage "$1"; exit 0 ;;
    '') ;;
    *) echo "$CP_NAME: unknown argument '$2' (try --help)" >&2; exit 2 ;;
  esac
}

# Start time of a process (field 22 of /proc/PID/stat, in clock ticks since
# boot). A PID together with its start time names one process for good, so a
# recycled PID is never mistaken for ours.
cp_starttime() {
  local stat
  [[ $1 =~ ^[0-9]+$ ]] && { stat=$(<"/proc/$1/stat"); } 2>/dev/null || return 1
  stat=${stat##*) }   # the command name may contain spaces and ')'
  local -a f
  read -ra f <<<"$stat"
  printf '%s\n' "${f[19]}"
}
cp_alive() { [[ $(cp_starttime "$1" 2>/dev/null) == "$2" ]]; }   # PID STARTTIME
