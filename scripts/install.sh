#!/usr/bin/env bash
# Sets up a fresh Debian 12 / Raspberry Pi OS machine for PitBox: system packages and a venv.
# Usage: scripts/install.sh [extras]   (default extras: appliance,driver,cloud,dev)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-appliance,driver,cloud,dev}"
apt_pkgs=(mosquitto mosquitto-clients supervisor chromium chromium-driver poppler-utils python3-venv python3-dev)
# Tests only: tests/system/test_provisioning.py runs ansible/ against a debootstrapped
# Debian 12 root booted with systemd-nspawn.
if [[ ",${extras}," == *",dev,"* ]]; then apt_pkgs+=(debootstrap systemd-container); fi
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The Debian services are not used: PitBox starts its own broker and supervisor under its config.
for svc in mosquitto supervisor; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    [ "$(id -u)" -eq 0 ] && systemctl disable --now "$svc" >/dev/null 2>&1 || true
  fi
done
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[${extras}]"
# Tests only: s3rver enforces presigned-link expiry, which moto does not (tests/cloud_sync/statboard/test_statboard.py).
if [[ ",${extras}," == *",dev,"* ]] && command -v npm >/dev/null 2>&1; then
  npm install --silent --no-audit --no-fund --prefix .venv/node s3rver@3.7.1
fi
echo "PitBox installed in $(pwd)/.venv (extras: ${extras})"
