#!/usr/bin/env bash
# An authenticated route next to GET /ping on the same tollgate process:
# GET /user/balance with the admin key (key check in the key actor, then
# the accounts actor). Prints each run and a Markdown table of medians.
# Loopback only; every run is bounded by DURATION.
#
#   tools/bench/auth.sh             # 3 runs x 5 s per row
#   RUNS=5 DURATION=10s tools/bench/auth.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-5s}
BIN=build/app/tollgate
PORT=18089
work=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

[ -x "$BIN" ] || { echo "build first: scripts/build.sh" >&2; exit 1; }

"$BIN" --listen "127.0.0.1:$PORT" --data-dir "$work/data" --log-level warn \
  > "$work/out.log" 2> "$work/err.log" &
pid=$!
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$PORT/ping" >/dev/null 2>&1 && break
  sleep 0.1
done
# An empty store prints its generated admin key once, on stderr.
key=$(grep -o 'gw_live_[A-Za-z0-9]*' "$work/err.log" | head -1)
[ -n "$key" ] || { echo "no admin key printed" >&2; exit 1; }
curl -fs -H "Authorization: Bearer $key" "http://127.0.0.1:$PORT/user/balance" >/dev/null

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2))}'; }
results="$work/results"
: > "$results"

for route in /ping /user/balance; do
  for conns in 1 32; do
    wrk -t1 -c"$conns" -d1s -H "Authorization: Bearer $key" "http://127.0.0.1:$PORT$route" >/dev/null
    for run in $(seq 1 "$RUNS"); do
      line=$(wrk -t1 -c"$conns" -d"$DURATION" -s tools/bench/summary.lua \
        -H "Authorization: Bearer $key" "http://127.0.0.1:$PORT$route" | grep '^RESULT')
      echo "$route c=$conns run=$run $line"
      echo "$route $conns $line" >> "$results"
    done
  done
done
rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")

echo
echo "| route | conns | req/s (median) | p50 | p90 | p99 | errors |"
echo "|---|---|---|---|---|---|---|"
for route in /ping /user/balance; do
  for conns in 1 32; do
    field() { awk -v n="$route" -v c="$conns" -v k="$1" '$1==n && $2==c { for (i=3;i<=NF;i++) { split($i,kv,"="); if (kv[1]==k) print kv[2] } }' "$results" | median; }
    printf "| GET %s | %s | %s | %s us | %s us | %s us | %s |\n" "$route" "$conns" "$(field rps)" \
      "$(field p50_us)" "$(field p90_us)" "$(field p99_us)" "$(field errors)"
  done
done
echo
echo "peak RSS: $(awk -v r="$rss" 'BEGIN {printf "%.1f", r/1024}') MiB"
