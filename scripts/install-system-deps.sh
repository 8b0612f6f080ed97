#!/usr/bin/env bash
# Debian packages the tests talk to as real peers. Installs only what is missing.
set -euo pipefail
packages=(mbpoll mosquitto)  # mbpoll: tests/io; mosquitto: the local Azure IoT Hub stand-in (ems/hubsim, tests/cloud)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-deps: missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-system-deps: installed ${missing[*]}"
