#!/usr/bin/env bash
# Fuzzes everything a guest, an image or a peer controls, each target for a few
# seconds (libFuzzer): the agent protocol's frame decoder, the agent's request handling
# (JSON → spec → setup on the recording syscalls), isola-vmm's vsock, net and block queue
# processing on mock guest memory, its balloon queues (with real discards), its virtio-mmio registers, its kernel loader, and
# image layer unpacking and manifests. Seeds are in fuzz/corpus/<target>/; crashes
# land in fuzz/artifacts/<target>/ (copy them into the corpus and a regression test).
# Usage: scripts/fuzz.sh [seconds per target] [target…]   (default 10, all targets)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-10}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame_decoder agent_requests vsock_queues net_queues block_queues balloon_queues mmio_transport kernel_loader layer_unpack image_manifest cp_extract)
tools=${ISOLA_CACHE:-$HOME/.cache/isola}/tools
export PATH="$tools/bin:$PATH"
export CARGO_TARGET_DIR=${ISOLA_CACHE:-$HOME/.cache/isola}/fuzz-target
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$repo/fuzz"
# Nightly when installed; otherwise the stable compiler told to accept cargo-fuzz's
# flags, without a sanitizer (libFuzzer's coverage guidance still works).
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz run)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz run --sanitizer none)
fi
failed=0
for t in "${targets[@]}"; do
  corpus=$work/$t
  mkdir -p "$corpus"
  cp "$repo/fuzz/corpus/$t/"* "$corpus/"
  if "${fuzz[@]}" "$t" "$corpus" -- -max_total_time="$secs" -rss_limit_mb=2048 > "$work/$t.log" 2>&1; then
    runs=$(grep -o 'Done [0-9]* runs' "$work/$t.log" | tail -1)
    echo "fuzz $t: $runs in ${secs}s, no crash"
    echo "test result: ok. 1 passed; 0 failed; (fuzz $t)"
  else
    tail -40 "$work/$t.log"
    echo "test result: FAILED. 0 passed; 1 failed; (fuzz $t)"
    failed=1
  fi
done
exit $failed
