#!/usr/bin/env bash
# Builds the isola guest kernel (vmlinux + bzImage) from a kernel tree with our fragment.
#   kernel-config/build.sh            -> Debian's linux-source-6.12
#   KERNEL_SRC=/path/to/tree build.sh -> any other tree (e.g. one with PVM guest support)
# Output is cached under ${ISOLA_CACHE:-~/.cache/isola}/kernel/<key>/ keyed by source and
# fragment, so a second run is instant. Prints the output directory on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${ISOLA_CACHE:-$HOME/.cache/isola}
fragment=$here/isola.config
jobs=${JOBS:-$(nproc)}

if [ -n "${KERNEL_SRC:-}" ]; then
  src=$(cd "$KERNEL_SRC" && pwd)
  src_id=$(cd "$src" && { git rev-parse HEAD 2>/dev/null || make -s kernelversion; })
else
  tarball=$(ls /usr/src/linux-source-6.12.tar.* 2>/dev/null | head -1 || true)
  if [ -z "$tarball" ]; then
    echo "build.sh: no /usr/src/linux-source-6.12.tar.*: apt-get install linux-source-6.12" >&2
    exit 1
  fi
  src_id=$(sha256sum "$tarball" | cut -c1-16)
  src=$cache/src/linux-$src_id
  if [ ! -f "$src/Makefile" ]; then
    mkdir -p "$cache/src"
    tmp=$(mktemp -d "$cache/src/unpack.XXXX")
    tar -xf "$tarball" -C "$tmp" --strip-components=1
    mv "$tmp" "$src"
  fi
fi
key=$(printf '%s\n' "$src_id" "$(sha256sum "$fragment" "$0" | cut -c1-64)" | sha256sum | cut -c1-16)
out=$cache/kernel/$key
# What isolation rests on, checked on every kernel we hand out (cached ones too).
hardened() {
  if grep -q '^CONFIG_VSOCKETS_LOOPBACK=y' "$1"; then
    echo "build.sh: $1 has CONFIG_VSOCKETS_LOOPBACK=y: guest processes could reach the agent" >&2
    return 1
  fi
  local want
  for want in CONFIG_STACKPROTECTOR_STRONG CONFIG_RANDOMIZE_BASE CONFIG_RANDOMIZE_MEMORY; do
    if ! grep -q "^$want=y" "$1"; then
      echo "build.sh: $1 lacks $want=y: guests would lose their stack canaries or KASLR" >&2
      return 1
    fi
  done
}
if [ -f "$out/vmlinux" ] && [ -f "$out/bzImage" ] && [ -f "$out/config" ]; then
  hardened "$out/config"
  echo "$out"
  exit 0
fi

build=$cache/build/$key
# A new fragment starts from the newest earlier build tree: kbuild tracks which files
# each CONFIG_ symbol touches, so only those are rebuilt (minutes instead of half an hour).
if [ ! -d "$build" ]; then
  seed=$(ls -td "$cache"/build/*/ 2>/dev/null | head -1 || true)
  if [ -n "$seed" ] && [ -f "$seed/.config" ]; then cp -a "${seed%/}" "$build.tmp" && mv "$build.tmp" "$build"; fi
fi
mkdir -p "$build"
make -s -C "$src" O="$build" allnoconfig >/dev/null
"$src/scripts/kconfig/merge_config.sh" -m -O "$build" "$build/.config" "$fragment" >/dev/null
make -s -C "$src" O="$build" olddefconfig >/dev/null
# Kconfig silently drops options whose dependencies are missing: insist on every one.
missing=0
while IFS= read -r line; do
  case "$line" in CONFIG_*=n) want="# ${line%=n} is not set" ;; CONFIG_*) want=$line ;; *) continue ;; esac
  if ! grep -qxF "$want" "$build/.config"; then
    if [[ "$line" == *=n ]] && ! grep -q "^${line%=n}=" "$build/.config"; then continue; fi
    echo "build.sh: $line did not survive olddefconfig" >&2; missing=1
  fi
done < "$fragment"
[ "$missing" = 0 ] || exit 1
hardened "$build/.config"
make -s -C "$src" O="$build" -j"$jobs" vmlinux bzImage
mkdir -p "$out.tmp"
cp "$build/vmlinux" "$out.tmp/vmlinux"
cp "$build/arch/x86/boot/bzImage" "$out.tmp/bzImage"
cp "$build/.config" "$out.tmp/config"
rm -rf "$out" && mv "$out.tmp" "$out"
echo "$out"
