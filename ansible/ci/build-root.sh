#!/usr/bin/env bash
# Builds (once) the cached Debian 12 root that CI provisions with ansible/playbook.yml.
#
# Usage: ansible/ci/build-root.sh [CACHE_DIR]   (default /var/cache/pitbox-ci)
# Prints the path of the ready root. The root is keyed by a hash of base-packages.txt
# and this script, so a changed package list builds a new one; a ready root is reused
# as is (tests copy it per run and never write into it). Needs root, debootstrap and
# network access to deb.debian.org.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${1:-/var/cache/pitbox-ci}"
mirror="${PITBOX_CI_MIRROR:-http://deb.debian.org/debian}"
key="$(cat "$here/base-packages.txt" "$here/build-root.sh" | sha256sum | cut -c1-12)"
root="$cache/roots/bookworm-$key"
if [ -f "$root/.pitbox-ci-ready" ]; then
  echo "$root"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "build-root.sh: needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "build-root.sh: apt-get install debootstrap" >&2; exit 1; }
mkdir -p "$cache/roots"
# One builder at a time; a second waits and then finds the root ready.
exec 9>"$cache/roots/.lock"
flock 9
if [ -f "$root/.pitbox-ci-ready" ]; then
  echo "$root"
  exit 0
fi
tmp="$cache/roots/.build-$key-$$"
rm -rf "$tmp"
packages="$(grep -v '^\s*#' "$here/base-packages.txt" | grep -v '^\s*$' | tr '\n' ' ')"
# debootstrap's own --include trips over large dependency trees (chromium); apt does not.
debootstrap --variant=minbase bookworm "$tmp" "$mirror" >&2
cat >"$tmp/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://security.debian.org/debian-security bookworm-security main
SOURCES
# No service starts while building (it would run on the host's network).
printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
chmod 0755 "$tmp/usr/sbin/policy-rc.d"
# A container without boot or network isolation: /proc and /dev for the maintainer
# scripts, the host's network for apt.
in_root() {
  systemd-nspawn --quiet --register=no --keep-unit --resolv-conf=copy-host --timezone=off \
    -D "$tmp" --setenv=DEBIAN_FRONTEND=noninteractive "$@"
}
in_root apt-get update -qq >&2
# shellcheck disable=SC2086
in_root apt-get install -y -qq --no-install-recommends $packages >&2
# Package lists kept (python3-apt resolves names from them), archives not.
in_root apt-get clean
rm -f "$tmp/usr/sbin/policy-rc.d"
# Raspberry Pi OS Lite look-alike: hostname, the first user with passwordless sudo
# (Raspberry Pi Imager creates it), ssh on, a machine id made at first boot.
echo pitbox >"$tmp/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tpitbox\n' >"$tmp/etc/hosts"
in_root useradd -m -s /bin/bash -G sudo pi
echo 'pi ALL=(ALL) NOPASSWD: ALL' >"$tmp/etc/sudoers.d/010_pi-nopasswd"
chmod 0440 "$tmp/etc/sudoers.d/010_pi-nopasswd"
in_root systemctl enable ssh >&2
# The container has no getty to serve and no console login.
in_root systemctl mask getty@tty1.service serial-getty@console.service console-getty.service >&2 || true
: >"$tmp/etc/machine-id"
rm -f "$tmp/var/lib/dbus/machine-id"
touch "$tmp/.pitbox-ci-ready"
mv "$tmp" "$root"
echo "$root"
