#!/usr/bin/env bash
# Installs whatever rivulet's build, tests and demo need from Debian packages.
# It checks first: a machine that already has everything installs nothing.
#   scripts/deps.sh            build + test dependencies
#   scripts/deps.sh --build    only what the build needs
set -euo pipefail

build_pkgs=(build-essential cmake pkg-config libuv1-dev libcurl4-openssl-dev libssl-dev libcmocka-dev)
test_pkgs=(clang libclang-rt-14-dev llvm python3-libtorrent mktorrent transmission-cli transmission-daemon aria2 opentracker strace)

pkgs=("${build_pkgs[@]}")
if [ "${1:-}" != "--build" ]; then
    pkgs+=("${test_pkgs[@]}")
fi

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "deps: installing ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
