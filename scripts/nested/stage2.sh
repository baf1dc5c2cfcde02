#!/bin/bash
# L1's second stage, PID 1 in the overlay of the host's root: set the machine up as a
# KVM host (kvm_amd on QEMU's emulated SVM), run the job named on the command line,
# leave its exit code in /l1out/rc and power off. bash as PID 1 reaps orphans.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
arg() { sed -n "s/.*isola\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir -p /dev/pts /dev/shm /l1out
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
ln -sf pts/ptmx /dev/ptmx
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
# A fresh /tmp (containerd's snapshots need a real tmpfs, not the overlay); a repo
# that lives under /tmp is carried over it.
repo=$(arg cwd)
case "$repo" in
  /tmp/*) mkdir -p /run/l1repo && mount --bind "$repo" /run/l1repo
    mount -t tmpfs tmpfs /tmp && mkdir -p "$repo" && mount --move /run/l1repo "$repo" ;;
  *) mount -t tmpfs tmpfs /tmp ;;
esac
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 l1out /l1out
modules=$(arg modules)
kver=$(uname -r)
mkdir -p "/lib/modules/$kver"
mount --bind "$modules" "/lib/modules/$kver"
hostname l1
ip link set lo up
finish() { echo "$1" > /l1out/rc; sync; echo "l1: job exited $1"; poweroff -f; }
# npt=1 vgif=0: nested paging on, and no virtual GIF (QEMU 7.2's emulation of it loses
# interrupts in L2).
modprobe kvm_amd npt=1 vgif=0 || { echo "l1: cannot load kvm_amd"; finish 90; }
for m in tun bridge veth br_netfilter; do modprobe "$m" || echo "l1: modprobe $m failed"; done
[ -c /dev/kvm ] || { echo "l1: no /dev/kvm after loading kvm_amd"; finish 91; }
echo "l1: kernel $kver, $(nproc) cpu(s), svm flags $(grep -cw svm /proc/cpuinfo), /dev/kvm ready"
cd "$(arg cwd)" || finish 92
# A heartbeat for l1.sh: an L1 wedged so hard that its kernel prints nothing (both vCPUs
# lost in the emulated SVM) stops writing it.
(while :; do date +%s > /l1out/heartbeat; sleep 10; done) &
bash /l1out/job.sh </dev/null > /l1out/job.log 2>&1 &
pid=$!
wait "$pid"
finish $?
