#!/usr/bin/env bash
# e2e/down.sh - stop the local Herald that e2e/up.sh started (its Herald processes
# first, then the control plane). PURGE=1 also deletes its state directory.
set -Euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export STATE=${HERALD_DEV_STATE:-/tmp/herald-dev}
starttime() { [[ -r /proc/$1/stat ]] && sed 's/^.*) //' "/proc/$1/stat" | cut -d' ' -f20; }
for name in herald-display herald-sources herald-dispatcher herald-operator herald-ingress; do
  record=$STATE/$name.pid
  if [[ -s $record ]] && read -r pid st <"$record" && [[ $(starttime "$pid" 2>/dev/null) == "$st" ]]; then
    kill -TERM "$pid" && echo "stopping $name (pid $pid)" >&2
    for _ in $(seq 100); do [[ $(starttime "$pid" 2>/dev/null) == "$st" ]] || break; sleep 0.1; done
  fi
  rm -f "$record"
done
"$ROOT/e2e/controlplane/down.sh"
