#!/usr/bin/env bash
# The end-to-end scenarios under isola-vmm on a real KVM: boots L1 (scripts/nested/l1.sh:
# nested KVM under QEMU TCG) and runs the e2e tests there, one test per process, with
# isola pinned to the isola-vmm backend. Their "test result" lines are what
# scripts/test.sh counts.
#   scripts/nested/tests.sh [BINARY[:FILTER]…]   (default: the list below)
# Env: NESTED_BUDGET (s, 1800; 3600 for NESTED_SET=full): the most all L1 attempts together may take.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
# The default is the core that only a real KVM can test: isola-vmm booting Linux, its
# vCPUs, net and fs devices, jail and seccomp, templates (snapshot/restore, alone and
# through the shim), the shim starting isola-vmm for ctr (three containerd_ctr tests) and
# kill -9 cleanup; templates also resize a clone through isola-vmm's balloon
# (memory_resize and memory_reclaim run in the full set). The container semantics
# above the VM (images, exec, stdio, limits) are the same on both backends and run under QEMU in the main
# e2e step. A 2-core CI machine emulating SVM gives L1 about 20 minutes; each extra test
# is another chance for QEMU 7.2's emulated SVM to kill L1's kernel.
#   NESTED_SET=full: every test of the container binaries below (about 50 minutes).
wanted=("$@")
core=(linux_guest:under_isola_vmm linux_guest:the_same_test_guest linux_guest:console_on_a_terminal guest_machine
  containers:run_prints_output containers:rootfs_and_volumes_over_virtio_fs
  containers:containers_reach_the_outside containers:detached_sandbox
  isolation:every_sandbox_process_is_confined isolation:a_container_cannot_reach_the_agent
  templates shim_templates chaos:isola_run containerd_ctr:a_missing_program_fails_at_create
  containerd_ctr:killing_the_vmm_or_the_shim containerd_ctr:the_vm_runs_in_the_tasks_cgroup
  image_disks:an_image_runs_from_its_disk)
full=(containers linux_guest isolation images image_disks memory_resize memory_reclaim guest_machine templates shim_templates chaos:isola_run containerd_ctr)
if [ ${#wanted[@]} -eq 0 ]; then
  if [ "${NESTED_SET:-core}" = full ]; then wanted=("${full[@]}"); else wanted=("${core[@]}"); fi
fi
declare -A exe
while IFS='=' read -r name path; do exe[$name]=$path; done < <(
  cargo test -q -p isola-e2e --no-run --message-format=json 2>/dev/null |
    jq -r 'select(.executable != null and .target.kind[0] == "test") | "\(.target.name)=\(.executable)"')
out=$repo/target/l1-out
rm -rf "$out" && mkdir -p "$out/done"
job=$repo/target/l1-job.sh
{
  echo 'set -u; fail=0'
  # Pinned: a run that cannot use isola-vmm fails instead of falling back to QEMU.
  # Templates off: each scenario boots as it always did and sees only its own VMs (a
  # background template maker would show in its leak checks); tests/templates.rs
  # turns them on with a configuration of its own.
  echo 'mkdir -p /etc/isola && printf "hypervisor = \"isola-vmm\"\ntemplates = false\n" > /etc/isola/config.toml'
  echo 'target/debug/isola info || fail=1'
  # One test per process, each result kept in /l1out/done/N: when L1's kernel dies the
  # next boot goes on from the test it was in, not from the first one.
  cat <<'RUN'
run() {  # run N BINARY TEST
  local n=$1 bin=$2 t=$3 rc=0
  if [ -f "/l1out/done/$n" ]; then cat "/l1out/done/$n"; grep -q '^test result: ok' "/l1out/done/$n" || fail=1; return; fi
  echo "$n" > /l1out/current; sync
  local crashes; crashes=$(cat "/l1out/crashes.$n" 2>/dev/null || echo 0)
  if [ "$crashes" -ge 2 ]; then
    echo "test result: FAILED. 0 passed; 1 failed; ($t: L1's kernel died twice while it ran)" | tee "/l1out/done/$n"
    fail=1; return
  fi
  # A test that hangs is stopped and L1's state shown, so the rest still runs.
  ISOLA_NESTED=1 timeout -k 10 600 "$bin" --exact "$t" --test-threads=1 --color never > /l1out/cur 2>&1 || rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    { echo "nested: $t did not finish in 600 s; L1 state:"; ps -eo pid,stat,wchan:32,etime,args | grep -v ' \[' | tail -25
      dmesg | tail -20; echo "test result: FAILED. 0 passed; 1 failed; ($t timed out)"; } >> /l1out/cur
  elif ! grep -q '^test result:' /l1out/cur; then
    echo "test result: FAILED. 0 passed; 1 failed; ($t exited $rc without a result)" >> /l1out/cur
  fi
  # A failure's kernel side (OOM kills, KVM errors, crashes), which the test cannot see.
  if [ "$rc" != 0 ]; then
    { echo "nested: L1 kernel messages about the failure:"
      dmesg | grep -iE 'oom|out of memory|killed process|kvm|segfault|general protection|traps:' | tail -20; } >> /l1out/cur
  fi
  [ "$rc" = 0 ] || fail=1
  mv /l1out/cur "/l1out/done/$n"; sync
  cat "/l1out/done/$n"
}
RUN
  n=0
  for w in "${wanted[@]}"; do
    name=${w%%:*}; filter=${w#"$name"}; filter=${filter#:}
    [ -n "${exe[$name]:-}" ] || { echo "nested: no e2e test binary named $name" >&2; exit 2; }
    echo "echo '== nested KVM (isola-vmm in L1): $name $filter =='"
    # Not the benches (bench_*): emulator times in L1 mean nothing, and the ctr bench's
    # back-to-back VMs wedged L1 and then timed out its guest in one run here.
    tests=$("${exe[$name]}" --list --format terse $filter | sed -n 's/: test$//p' | grep -v '^bench_' || true)
    [ -n "$tests" ] || { echo "nested: $name has no test matching '$filter'" >&2; exit 2; }
    while read -r t; do
      n=$((n + 1))
      printf 'run %d %q %q\n' "$n" "${exe[$name]}" "$t"
    done <<< "$tests"
  done
  # For the record (not a test): the host processes of a live sandbox under isola-vmm.
  cat <<'TABLE'
echo '== nested: the processes of a live isola-vmm sandbox (scripts/process-table.sh) =='
if target/debug/isola run -d --name l1-table --rootfs /var/lib/isola/busybox-rootfs -- sleep 120 >/dev/null; then
  scripts/process-table.sh l1-table || true
fi
target/debug/isola rm -f l1-table >/dev/null 2>&1 || true
TABLE
  # A filter kill the tests did not notice (a VMM dying after its guest's last word)
  # is still a failure: the kernel logs each one (audit type 1326). Counted over the last
  # boot only, which is the boot that ran whatever was left.
  cat <<'CHECK'
n=$(dmesg | grep -c 'type=1326')
if [ "$n" = 0 ]; then echo 'test result: ok. 1 passed; 0 failed; (no seccomp kill in L1)'
else dmesg | grep 'type=1326' | tail -5; echo "test result: FAILED. 0 passed; 1 failed; (seccomp kills in L1: $n)"; fail=1; fi
CHECK
  echo 'exit $fail'
} > "$job"
# QEMU 7.2's emulated SVM sometimes kills L1's own kernel (a panic, or soft lockups in
# kvm_amd, never in L2); l1.sh stops such an L1 at once (rc 3). Then L1 boots again and
# goes on from the test it died in, while the budget lasts: an earlier boot's lines are
# kept but not counted (the last boot shows every result again), and each retry is said.
log=$repo/target/l1-tests.log
budget=1800; [ "${NESTED_SET:-core}" = full ] && budget=3600
deadline=$((SECONDS + ${NESTED_BUDGET:-$budget}))
for attempt in 1 2 3 4 5; do
  rc=0
  left=$((deadline - SECONDS))
  L1_TIMEOUT=$left "$repo/scripts/nested/l1.sh" "$job" "$out" > "$log" 2>&1 || rc=$?
  if [ "$rc" = 3 ] && grep -q '^l1: L1.s kernel died' "$log" && [ "$attempt" != 5 ] &&
     [ $((deadline - SECONDS)) -gt 300 ]; then
    sed "s/^test result:/[L1 died, boot $attempt] test result:/" "$log"
    cur=$(cat "$out/current" 2>/dev/null || true)
    if [ -n "$cur" ] && [ ! -f "$out/done/$cur" ]; then
      echo $(( $(cat "$out/crashes.$cur" 2>/dev/null || echo 0) + 1 )) > "$out/crashes.$cur"
    fi
    echo "nested: L1's kernel died (emulated SVM) in test $cur; booting L1 again to go on from there (retry $attempt)"
    continue
  fi
  cat "$log"
  [ "$rc" = 3 ] && echo "test result: FAILED. 0 passed; 1 failed; (nested: L1 ended without finishing, boot $attempt)"
  exit "$rc"
done
