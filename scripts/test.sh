#!/usr/bin/env bash
# Runs every test: unit, KVM test guests, and end-to-end with the real Linux guest.
# Sets the machine up first (scripts/setup.sh is idempotent and cached).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
scripts/setup.sh
# Lints that are errors (an unsafe block without // SAFETY:, among others) fail the run.
cargo clippy -q --workspace --all-targets
cargo build -q --workspace
# Unit and integration tests in parallel; the microVM tests one at a time (2 cores, TCG).
{ cargo test --workspace --exclude isola-e2e 2>&1 && scripts/fuzz.sh 10 && cargo test -p isola-e2e -- --test-threads=1 2>&1; } | tee target/test-output.txt
# Cargo prints one "test result" line per test binary; add them up for one closing line.
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f; exit (f > 0) }' target/test-output.txt
