#!/usr/bin/env bash
# Runs every test: unit, KVM test guests, end-to-end with the real Linux guest, and
# the end-to-end tests again under isola-vmm inside nested KVM (scripts/nested/).
# Sets the machine up first (scripts/setup.sh is idempotent and cached).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
mkdir -p target
times=target/test-times.txt
: > "$times"
timed() {
  local t0=$SECONDS rc=0
  "$@" || rc=$?
  echo "$(( SECONDS - t0 )) s  $*" >> "$times"
  return $rc
}
timed scripts/setup.sh
# Lints that are errors (an unsafe block without // SAFETY:, among others) fail the run.
timed cargo clippy -q --workspace --all-targets
timed cargo build -q --workspace
# Unit and integration tests in parallel; the microVM tests one at a time (2 cores, TCG).
# Every step runs even when an earlier one failed (--no-fail-fast: every test binary);
# a step that fails without a failing test (a build error, a fuzz crash) counts as one.
out=target/test-output.txt
: > "$out"
step() {
  local log=target/test-step.txt
  if ! timed "$@" 2>&1 | tee "$log"; then
    grep -q '^test result: FAILED' "$log" || echo "test result: FAILED. 0 passed; 1 failed; (step failed: $*)" | tee -a "$log"
  fi
  cat "$log" >> "$out"
}
step cargo test --no-fail-fast --workspace --exclude isola-e2e
step scripts/fuzz.sh 10
step scripts/bench-gate.sh
step cargo test --no-fail-fast -p isola-e2e -- --test-threads=1
# The ctr and pause-container CRI flows again on containerd 2.3 (task API v3); the
# sandbox-API pod is in containerd2, which always runs on 2.3.
step env ISOLA_CONTAINERD=2.3 cargo test --no-fail-fast -p isola-e2e --test containerd_ctr --test containerd_cri -- --test-threads=1
# The same e2e binaries under isola-vmm on a real KVM: nested, in one L1 guest.
step scripts/nested/tests.sh
echo "time per step:"
cat "$times"
# Cargo prints one "test result" line per test binary; add them up for one closing line.
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f; exit (f > 0) }' "$out"
