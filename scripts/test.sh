#!/usr/bin/env bash
# The second command of the README (and what CI runs): install what is
# missing, build, and run the whole test suite under ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
cd build
ctest --output-on-failure -j 2 "$@"
