#!/usr/bin/env bash
# fetch_deps.sh — downloads (does not install) the Debian packages puzzle
# builds against into tests/gpu/deps/, for carrying to a GPU machine that
# has CUDA but neither these packages nor a registry; tests/gpu/run.sh
# unpacks them into a private prefix there. Run on a machine of the same
# distribution family with apt. tests/gpu/deps/ is ignored by git.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p deps
cd deps
pkgs=(libdnnl-dev libdnnl2 libcjson-dev libcjson1 libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0
      libpcre2-posix3 libsqlite3-dev libsqlite3-0 libssl-dev libssl3 libglpk-dev libglpk40 libamd2
      libcolamd2 libsuitesparseconfig5 libltdl7 libgmp10 pkgconf pkgconf-bin libpkgconf3
      libmicrohttpd-dev libmicrohttpd12 libgnutls30 libnettle8 libhogweed6 libp11-kit0 libtasn1-6
      libidn2-0 libunistring2 libffi8)
apt-get download "${pkgs[@]}"
du -sh .
