#!/usr/bin/env bash
# The first command of the README: install what is missing, build, and start
# the gateway on conf/tollgate.toml (RocksDB under ./data). Extra arguments go
# to tollgate, e.g. scripts/start.sh --listen 127.0.0.1:9000
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
exec build/app/tollgate --config conf/tollgate.toml "$@"
