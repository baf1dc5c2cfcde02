#!/usr/bin/env bash
# Runs a job inside L1: a Debian Linux under QEMU TCG whose emulated AMD SVM gives it a
# real (non-PVM) /dev/kvm, so isola-vmm boots real guests there. L1 sees this machine's
# root read-only (9p) under a RAM overlay, so the job runs the repo's own binaries;
# OUTDIR is shared read-write as /l1out. Exits with the job's exit code.
#   scripts/nested/l1.sh JOB [OUTDIR]      JOB: a bash script, run in the repo as /l1out/job.sh
# Env: L1_MEM (MiB, 6144), L1_CPUS (1), L1_TIMEOUT (s, 1500).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
job=$1
out=$(realpath -m "${2:-$repo/target/l1-out}")
cache=${ISOLA_CACHE:-$HOME/.cache/isola}/l1
mkdir -p "$cache" "$out"
rm -f "$out/rc" "$out/job.log" "$out/heartbeat"
cp "$job" "$out/job.sh"

# The L1 kernel: Debian's current one, downloaded and extracted (never installed), cached.
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9].*\)/\1/p' | head -1)
if [ -z "$pkg" ]; then
  pkg=$(cat "$cache/current" 2>/dev/null || true)
  [ -n "$pkg" ] || { echo "l1: cannot name Debian's kernel package (apt-cache depends linux-image-amd64)"; exit 2; }
fi
kver=${pkg#linux-image-}
dir=$cache/$kver
if [ ! -f "$dir/ok" ]; then
  rm -rf "$dir" && mkdir -p "$dir"
  (cd "$dir" && apt-get download "$pkg" >/dev/null 2>&1) || { echo "l1: cannot download $pkg"; exit 2; }
  dpkg -x "$dir"/*.deb "$dir/root"
  depmod -b "$dir/root" "$kver"
  rm -f "$dir"/*.deb
  touch "$dir/ok"
fi
echo "$pkg" > "$cache/current"
mods=$dir/root/lib/modules/$kver

# The initramfs: static busybox, the modules that mount 9p and overlayfs, and the first stage.
initrd=$dir/initrd-$(sha256sum "$repo/scripts/nested/initramfs-init" | cut -c1-12).cpio.gz
if [ ! -f "$initrd" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/bin" "$tmp/modules"
  cp "$(command -v busybox)" "$tmp/bin/busybox"
  file -L "$tmp/bin/busybox" | grep -q 'statically linked' || { echo "l1: busybox must be static (apt-get install busybox-static)"; exit 2; }
  cp "$repo/scripts/nested/initramfs-init" "$tmp/init"
  for m in 9pnet_virtio 9p virtio_pci overlay; do
    modprobe -d "$dir/root" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
  done | awk '!seen[$0]++' | while read -r ko; do
    cp "$ko" "$tmp/modules/" && basename "$ko" >> "$tmp/modules/order"
  done
  (cd "$tmp" && find . | cpio -o -H newc --quiet | gzip -1) > "$initrd.tmp" && mv "$initrd.tmp" "$initrd"
fi

cmdline="console=ttyS0 panic=-1 quiet loglevel=3 isola.stage2=$repo/scripts/nested/stage2.sh"
cmdline+=" isola.cwd=$repo isola.modules=$mods"
# -xsave: QEMU 7.2's TCG does not forward L1's XSETBV intercept; L2 falls back anyway.
serial=$out/serial.log
: > "$serial"
# One vCPU: with two, L1's kernel wedged (soft lockups in both vCPUs, or no heartbeat)
# about once per batch under QEMU 7.2's emulated SVM; one vCPU runs the batch as fast
# here (TCG threads share two host cores anyway) without waits between vCPUs.
timeout -k 10 "${L1_TIMEOUT:-1500}" qemu-system-x86_64 -accel tcg,thread=multi -cpu max,-xsave \
  -m "${L1_MEM:-6144}" -smp "${L1_CPUS:-1}" -nodefaults -display none -serial "file:$serial" -no-reboot \
  -kernel "$dir/root/boot/vmlinuz-$kver" -initrd "$initrd" -append "$cmdline" \
  -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap" \
  -virtfs "local,path=$out,mount_tag=l1out,security_model=none" </dev/null &
qemu=$!
# QEMU 7.2's emulated SVM sometimes wedges L1's own kernel: a panic, or a vCPU stuck for
# good (soft lockups that only grow). Such an L1 is stopped at once, not left to its
# timeout, so the caller can boot it again. The serial line carries only L1's kernel and
# stage2 (the job writes to /l1out/job.log): nothing a test prints can look like that.
died=
while kill -0 "$qemu" 2>/dev/null; do
  stuck=$(grep -oE 'soft lockup - CPU#[0-9]+ stuck for [0-9]+s' "$serial" | grep -oE '[0-9]+s$' | tr -d s | sort -n | tail -1 || true)
  # Or wedged without a word: its heartbeat (stage2.sh, every 10 s) stopped for 120 s.
  silent=0
  [ -f "$out/heartbeat" ] && silent=$(( $(date +%s) - $(stat -c %Y "$out/heartbeat") ))
  if grep -q 'Kernel panic' "$serial" || [ "${stuck:-0}" -ge 45 ] || [ "$silent" -ge 120 ]; then
    died=1; kill "$qemu" 2>/dev/null; break
  fi
  sleep 2
done
wait "$qemu" || true
grep -q 'Kernel panic' "$serial" && died=1
cat "$serial" "$out/job.log" 2>/dev/null || true
if [ -n "$died" ] && [ ! -f "$out/rc" ]; then
  why="a vCPU stuck for ${stuck:-0} s"; [ "$silent" -ge 120 ] && why="no heartbeat for $silent s"
  grep -q 'Kernel panic' "$serial" && why="a kernel panic"
  echo "l1: L1's kernel died ($why); stopped it"; exit 3
fi
[ -f "$out/rc" ] || { echo "l1: the L1 guest ended without the job's exit code (boot failure or timeout)"; exit 3; }
exit "$(cat "$out/rc")"
