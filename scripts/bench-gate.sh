#!/usr/bin/env bash
# The regression gate: `isola bench ab` of the merge-base build of isola-vmm (A) against
# this tree's (B) on the cheap test-guest boot phases, interleaved in one session. It
# fails only when a phase is significantly slower (alpha 0.01 over all phases, and a
# change of the median of at least 10 %): ratios measured side by side, never absolute
# times. BENCH_BASE=REV picks another base. Prints a test-result line for test.sh.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
base=${BENCH_BASE:-$(git merge-base HEAD origin/main 2>/dev/null || git rev-parse HEAD)}
base=$(git rev-parse "$base")
cache=${ISOLA_CACHE:-$HOME/.cache/isola}/bench-gate
bin=$cache/vmm-$base
if [ ! -x "$bin" ]; then
  echo "bench-gate: building isola-vmm at ${base:0:12} (once; cached in $cache)"
  mkdir -p "$cache"
  wt=$(mktemp -d "$cache/tree.XXXX")
  trap 'git -C "$repo" worktree remove --force "$wt" 2>/dev/null || rm -rf "$wt"' EXIT
  git worktree add -q --detach "$wt" "$base"
  CARGO_TARGET_DIR=$cache/target cargo build -q --release --manifest-path "$wt/Cargo.toml" -p isola-vmm
  cp "$cache/target/release/isola-vmm" "$bin.tmp" && mv "$bin.tmp" "$bin"
fi
cargo build -q --release -p isola-cli -p isola-vmm
set +e
target/release/isola bench ab -n 15 --warmup 2 --a "$bin" --b target/release/isola-vmm \
  --alpha 0.01 --min-effect 10 --fail-on-slower --json target/bench-gate.json --svg target/bench-gate.svg
rc=$?
set -e
case $rc in
  0) echo "test result: ok. 1 passed; 0 failed; (bench gate against ${base:0:12})" ;;
  3) echo "test result: FAILED. 0 passed; 1 failed; (bench gate: significantly slower than ${base:0:12})"; exit 1 ;;
  *) echo "test result: FAILED. 0 passed; 1 failed; (bench gate could not run: exit $rc)"; exit 1 ;;
esac
