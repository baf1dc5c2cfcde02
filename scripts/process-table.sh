#!/usr/bin/env bash
# The host processes of a live sandbox, one row each: uid, Seccomp, NoNewPrivs,
# CapEff, whether it is dumpable (a non-dumpable process's /proc/PID/mem is root's
# whatever its uid), and the namespaces it does not share with the caller (the host's).
#   scripts/process-table.sh NAME [STATE_ROOT]
set -euo pipefail
name=$1
root=${2:-${ISOLA_STATE_DIR:-/run/isola}}
state=$root/$name/state.json
[ -f "$state" ] || { echo "process-table: no sandbox $name under $root" >&2; exit 2; }
pids=$(jq -r '[.vmm_pid] + .helper_pids | .[]' "$state")
all=()
for p in $pids; do
  all+=("$p")
  for c in $(cat "/proc/$p/task/$p/children" 2>/dev/null); do all+=("$c"); done
done
echo "| process | uid | Seccomp | NoNewPrivs | CapEff | dumpable | own namespaces |"
echo "|---|---|---|---|---|---|---|"
for p in "${all[@]}"; do
  [ -r "/proc/$p/status" ] || continue
  exe=$(tr '\0' ' ' < "/proc/$p/cmdline" | cut -d' ' -f1); exe=${exe##*/}
  f() { awk -v k="$1:" '$1 == k { print $2; exit }' "/proc/$p/status"; }
  owner=$(stat -c %u "/proc/$p/mem")
  uid=$(f Uid)
  if [ "$uid" = 0 ]; then dump=root; elif [ "$owner" = 0 ]; then dump=no; else dump=yes; fi
  ns=()
  for n in mnt pid net ipc uts user cgroup; do
    [ "$(readlink "/proc/$p/ns/$n")" = "$(readlink "/proc/$$/ns/$n")" ] || ns+=("$n")
  done
  [ "$(readlink "/proc/$p/root")" = / ] || ns+=("root:$(readlink "/proc/$p/root")")
  filters=$(f Seccomp_filters)
  echo "| $exe | $uid | $(f Seccomp) ($filters filters) | $(f NoNewPrivs) | $(f CapEff) | $dump | ${ns[*]:-} |"
done
