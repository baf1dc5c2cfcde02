#!/usr/bin/env bash
# Sets up a Debian 12 machine for isola (idempotent; run as root):
#   - Debian packages (QEMU, the 6.12 kernel source and its build tools, cpio)
#   - the guest kernel from kernel-config/ (cached under ~/.cache/isola)
#   - the guest initramfs from rootfs/
#   - release builds of isola, isola-vmm, containerd-shim-isola-v2, isola-runtime and isola-console
# and installs the guest into ${ISOLA_GUEST_DIR:-/var/lib/isola/guest}.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
guest_dir=${ISOLA_GUEST_DIR:-/var/lib/isola/guest}
packages=(qemu-system-x86 linux-source-6.12 build-essential flex bison bc libelf-dev libssl-dev cpio xz-utils file busybox-static util-linux runc libseccomp-dev libcap-ng-dev docker-registry skopeo iproute2 iptables nftables containerd containernetworking-plugins protobuf-compiler bsdutils jq kmod apache2-utils docker.io podman erofs-utils)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo not found (install Rust with rustup)" >&2; exit 1; }

# vhost-device-vsock: the vhost-user vsock daemon of the QEMU backend (crates.io).
tools=${ISOLA_CACHE:-$HOME/.cache/isola}/tools
if [ ! -x "$tools/bin/vhost-device-vsock" ]; then
  echo "setup: building vhost-device-vsock (once; cached in $tools)"
  cargo install -q --locked vhost-device-vsock --root "$tools"
fi
ln -sf "$tools/bin/vhost-device-vsock" /usr/local/bin/vhost-device-vsock
# virtiofsd: shares each sandbox's directory with its guest (virtio-fs, QEMU backend).
if [ ! -x "$tools/bin/virtiofsd" ]; then
  echo "setup: building virtiofsd (once; cached in $tools)"
  cargo install -q --locked virtiofsd --root "$tools"
fi
ln -sf "$tools/bin/virtiofsd" /usr/local/bin/virtiofsd
# cargo-fuzz (and the nightly toolchain it drives) for scripts/fuzz.sh.
if [ ! -x "$tools/bin/cargo-fuzz" ]; then
  echo "setup: building cargo-fuzz (once; cached in $tools)"
  cargo install -q --locked cargo-fuzz --root "$tools"
fi
# (scripts/fuzz.sh falls back to stable when nightly cannot be installed offline.)
rustup toolchain list | grep -q '^nightly' || rustup toolchain install --profile minimal nightly || true

echo "setup: guest kernel (first build takes a few minutes; cached after)"
kernel_out=$("$repo/kernel-config/build.sh" | tail -1)
echo "setup: guest initramfs"
initrd=$("$repo/rootfs/build.sh" | tail -1)
echo "setup: isola binaries"
cargo build -q --release --manifest-path "$repo/Cargo.toml" -p isola-cli -p isola-vmm -p containerd-shim-isola -p isola-runtime -p isola-sandbox

mkdir -p "$guest_dir"
install -m 0644 "$kernel_out/vmlinux" "$guest_dir/vmlinux.tmp" && mv "$guest_dir/vmlinux.tmp" "$guest_dir/vmlinux"
install -m 0644 "$kernel_out/bzImage" "$guest_dir/bzImage.tmp" && mv "$guest_dir/bzImage.tmp" "$guest_dir/bzImage"
install -m 0644 "$initrd" "$guest_dir/initramfs.cpio.tmp" && mv "$guest_dir/initramfs.cpio.tmp" "$guest_dir/initramfs.cpio"
"$repo/scripts/busybox-rootfs.sh" /var/lib/isola/busybox-rootfs >/dev/null
echo "setup: guest installed in $guest_dir; busybox rootfs in /var/lib/isola/busybox-rootfs; binaries in $repo/target/release"
