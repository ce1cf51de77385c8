#!/usr/bin/env bash
# An authenticated route next to GET /ping on the same tollgate process:
# GET /user/balance with the admin key (key check in the key actor, then
# the accounts actor). Limits are set high so that no request is refused.
#
#   tools/bench/auth.sh             # 3 runs x 5 s per row
#   RUNS=5 DURATION=10s tools/bench/auth.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/bench/lib.sh

start_tollgate auth '[limits]
per_minute = 1000000000
requests_per_day = 1000000000000
[limits.plans]
enterprise = 1000000000'
measure /ping /ping
measure /user/balance /user/balance -H "Authorization: Bearer $TG_KEY"
rss=$(awk '/VmHWM/ {print $2}' "/proc/$TG_PID/status")
stop_tollgate
table /ping /user/balance
echo
echo "peak RSS: $(awk -v r="$rss" 'BEGIN {printf "%.1f", r/1024}') MiB"
