#!/usr/bin/env bash
# Builds a minimal container rootfs from Debian's busybox-static:
#   scripts/busybox-rootfs.sh DIR
# /bin/busybox with its applets, /etc/passwd and /etc/group (root and user 1000), /tmp.
set -euo pipefail
dir=${1:?usage: busybox-rootfs.sh DIR}
bb=/bin/busybox
if ! file -L "$bb" 2>/dev/null | grep -q "statically linked"; then
  echo "busybox-rootfs.sh: $bb is not the static busybox (apt-get install busybox-static)" >&2
  exit 1
fi
rm -rf "$dir.tmp"
mkdir -p "$dir.tmp"/{bin,etc,tmp,proc,sys,dev,root,home/user}
cp "$bb" "$dir.tmp/bin/busybox"
for applet in $("$bb" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$dir.tmp/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n' > "$dir.tmp/etc/passwd"
printf 'root:x:0:\nuser:x:1000:\n' > "$dir.tmp/etc/group"
chmod 1777 "$dir.tmp/tmp"
chown 1000:1000 "$dir.tmp/home/user"
rm -rf "$dir" && mv "$dir.tmp" "$dir"
echo "$dir"
