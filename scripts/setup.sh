#!/usr/bin/env bash
# Installs the Debian 12 packages tollgate needs to build, test and
# benchmark, skipping whatever is already installed. Safe to run repeatedly.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libcaf-dev libboost-dev libssl-dev libsimdjson-dev rapidjson-dev librocksdb-dev
  libtomlplusplus-dev libspdlog-dev libfmt-dev libcli11-dev catch2
  curl prometheus wrk nginx-light valgrind
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "setup: installing ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
# --no-install-recommends keeps the prometheus server's web assets and
# friends out; we only need promtool from it.
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
