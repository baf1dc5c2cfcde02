#!/usr/bin/env bash
# Boot benchmarks on a real KVM: isola-vmm against QEMU microvm with -accel kvm, both
# in the same L1 (scripts/nested/l1.sh), same kernel, initramfs, command line, memory
# and vCPUs. Absolute times are emulator times (L1 runs under QEMU TCG); the ratios
# between the two VMMs are what this measures. Results land in bench-results/nested/.
#   scripts/nested/bench.sh [RUNS]
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
runs=${1:-10}
cargo build -q --release -p isola-cli -p isola-vmm
out=$repo/bench-results/nested
mkdir -p "$out"
job=$repo/target/l1-bench-job.sh
cat > "$job" <<JOB
set -eu
target/release/isola info
target/release/isola bench boot -n $runs --warmup 2 --compare qemu --json /l1out/boot.json --svg /l1out/boot.svg
target/release/isola bench overhead --json /l1out/overhead.json 2>&1 || echo "overhead failed"
# Cold against restored from a template and the warm pool, same container; clone PSS.
target/release/isola bench start -n $runs --clones 4 --json /l1out/start.json 2>&1 || echo "start failed"
JOB
L1_TIMEOUT=${L1_TIMEOUT:-3000} scripts/nested/l1.sh "$job" "$out"
