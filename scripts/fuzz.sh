#!/usr/bin/env bash
# Fuzzes the agent protocol's frame decoder for a few seconds (libFuzzer, nightly).
# Usage: scripts/fuzz.sh [seconds]   (default 10). Crashes land in fuzz/artifacts/.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-10}
tools=${ISOLA_CACHE:-$HOME/.cache/isola}/tools
export PATH="$tools/bin:$PATH"
export CARGO_TARGET_DIR=${ISOLA_CACHE:-$HOME/.cache/isola}/fuzz-target
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
cp "$repo"/fuzz/corpus/frame_decoder/* "$corpus/"
cd "$repo/fuzz"
# Nightly when installed; otherwise the stable compiler told to accept cargo-fuzz's
# flags, without a sanitizer (libFuzzer's coverage guidance still works).
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz run)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz run --sanitizer none)
fi
if "${fuzz[@]}" frame_decoder "$corpus" -- -max_total_time="$secs" > "$corpus/log" 2>&1; then
  runs=$(grep -o 'Done [0-9]* runs' "$corpus/log" | tail -1)
  echo "fuzz frame_decoder: $runs in ${secs}s, no crash"
  echo "test result: ok. 1 passed; 0 failed; (fuzz frame_decoder)"
else
  tail -40 "$corpus/log"
  echo "test result: FAILED. 0 passed; 1 failed; (fuzz frame_decoder)"
  exit 1
fi
