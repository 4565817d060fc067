#!/usr/bin/env bash
# e2e/down.sh - stop the local Herald that e2e/up.sh started (operator first, then
# the control plane). PURGE=1 also deletes its state directory.
set -Euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export STATE=${HERALD_DEV_STATE:-/tmp/herald-dev}
starttime() { [[ -r /proc/$1/stat ]] && sed 's/^.*) //' "/proc/$1/stat" | cut -d' ' -f20; }
if [[ -s $STATE/herald-operator.pid ]] && read -r pid st <"$STATE/herald-operator.pid"; then
  if [[ $(starttime "$pid" 2>/dev/null) == "$st" ]]; then
    kill -TERM "$pid" && echo "stopping herald operator (pid $pid)" >&2
    for _ in $(seq 100); do [[ $(starttime "$pid" 2>/dev/null) == "$st" ]] || break; sleep 0.1; done
  fi
  rm -f "$STATE/herald-operator.pid"
fi
"$ROOT/e2e/harness/down.sh"
