#!/usr/bin/env bash
# Installs the Debian packages puzzle builds and tests with. Idempotent: does
# nothing when everything is already there. Run as root (or with sudo).
set -euo pipefail
PKGS=(build-essential cmake pkg-config clang libclang-rt-dev libomp-dev
      libdnnl-dev libopenblas-dev libcjson-dev libpcre2-dev libsqlite3-dev sqlite3 libssl-dev
      libglpk-dev libmicrohttpd-dev gnuplot-nox curl jq libopenmpi-dev openmpi-bin unzip python3 python3-pip python3-venv ca-certificates)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all ${#PKGS[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "install_deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
