#!/usr/bin/env bash
# Installs what VMKeep needs on a fresh Debian machine: the Debian packages for the test peers and demo
# (only those missing) and the npm dependencies (when package-lock.json changed since the last install).
# Usage: scripts/install-deps.sh [test|appliance|bench]
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-test}

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have redis-server || need+=(redis-server)
have go || need+=(golang-go)
[ -d /usr/share/gocode/src/github.com/vmware/govmomi/simulator ] || need+=(golang-github-vmware-govmomi-dev)
have mke2fs || need+=(e2fsprogs)
if [ "$mode" = test ]; then
  { have mariadbd || have mysqld; } || need+=(mariadb-server)
  have qemu-img || need+=(qemu-utils)
  have vmdkinfo || need+=(libvmdk-utils)
  have nbdinfo || need+=(libnbd-bin)
  have nbdkit || need+=(nbdkit)
  have qemu-system-x86_64 || need+=(qemu-system-x86)
  have mkfs.fat || need+=(dosfstools)
  have mcopy || need+=(mtools)
  have sgdisk || need+=(gdisk)
  have fls || need+=(sleuthkit)
  have mkfs.exfat || need+=(exfatprogs)
  have mkfs.xfs || need+=(xfsprogs)
  have mkntfs || need+=(ntfs-3g)
fi
# bench/nbd.sh only (its other tools come with the test packages): fio with its nbd engine.
if [ "$mode" = bench ]; then
  have fio || need+=(fio)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian starts packaged servers on install where it can; our tests and the appliance start their own.
  for svc in redis-server mariadb; do $SUDO service "$svc" stop >/dev/null 2>&1 || true; done
fi

stamp=node_modules/.vmkeep-lock-hash
hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$hash" ]; then
  echo "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$hash" > "$stamp"
fi
