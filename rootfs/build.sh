#!/usr/bin/env bash
# Builds the guest initramfs: a newc cpio whose /init is the static isola agent.
#   rootfs/build.sh [OUT]    (default: target/isola/initramfs.cpio)
# Prints the output path on its last line.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$repo/target/isola/initramfs.cpio}
target=x86_64-unknown-linux-gnu
# Static: the initramfs has no libc.
RUSTFLAGS="-C target-feature=+crt-static" cargo build -q --release --manifest-path "$repo/Cargo.toml" \
  -p isola-guest-agent --target "$target"
agent=$repo/target/$target/release/isola-agent
if ! ldd "$agent" 2>&1 | grep -qE "statically linked|not a dynamic executable"; then
  echo "rootfs/build.sh: $agent is dynamically linked" >&2
  exit 1
fi
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{dev,proc,sys,run,tmp,etc}
install -m 0755 "$agent" "$stage/init"
# The kernel opens /dev/console before /init runs, before devtmpfs is mounted.
mknod -m 0600 "$stage/dev/console" c 5 1
mknod -m 0666 "$stage/dev/null" c 1 3
mkdir -p "$(dirname "$out")"
(cd "$stage" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner 0:0 --quiet) > "$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
