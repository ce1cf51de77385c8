#!/usr/bin/env bash
# GET /ping under wrk: tollgate (both bridges) and nginx as the reference.
# Prints one line per run and the median of each configuration as a
# Markdown table. Loopback only; every run is bounded by DURATION.
#
#   tools/bench/ping.sh            # 3 runs x 5 s per configuration
#   RUNS=5 DURATION=10s tools/bench/ping.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-5s}
BIN=build/app/tollgate
PORT=18089
NGINX_PORT=18090
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

[ -x "$BIN" ] || { echo "build first: scripts/build.sh" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk missing: scripts/setup.sh" >&2; exit 1; }

wait_port() {
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$1/ping" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "nothing answers on port $1" >&2
  return 1
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2))}'; }

results="$work/results"
: > "$results"

measure() {  # name port pid
  local name=$1 port=$2 pid=$3
  for conns in 1 32; do
    # Warm-up, not recorded.
    wrk -t1 -c"$conns" -d1s "http://127.0.0.1:$port/ping" >/dev/null
    for run in $(seq 1 "$RUNS"); do
      line=$(wrk -t1 -c"$conns" -d"$DURATION" -s tools/bench/ping.lua "http://127.0.0.1:$port/ping" | grep '^RESULT')
      echo "$name c=$conns run=$run $line"
      echo "$name $conns $line" >> "$results"
    done
  done
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  echo "$name peak_rss_kb=$rss"
  echo "$name rss $rss" >> "$results"
}

start_tollgate() {  # bridge
  cat > "$work/bench.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
bridge = "$1"
[storage]
data_dir = "$work/data-$1"
[log]
level = "warn"
TOML
  "$BIN" --config "$work/bench.toml" > "$work/tollgate-$1.log" 2>&1 &
  pids+=($!)
  TG_PID=$!
  wait_port "$PORT"
}

stop_pid() { kill -TERM "$1"; wait "$1" 2>/dev/null || true; }

start_tollgate responder
measure tollgate-responder "$PORT" "$TG_PID"
stop_pid "$TG_PID"

start_tollgate actor
measure tollgate-actor "$PORT" "$TG_PID"
stop_pid "$TG_PID"

if command -v nginx >/dev/null; then
  sed "s/18090/$NGINX_PORT/" tools/bench/nginx-static.conf > "$work/nginx.conf"
  nginx -p "$work" -c "$work/nginx.conf" > "$work/nginx.log" 2>&1 &
  pids+=($!)
  NGINX_PID=$!
  wait_port "$NGINX_PORT"
  # The master forks the worker; report the worker's peak RSS.
  sleep 0.2
  worker=$(pgrep -P "$NGINX_PID" | head -1)
  measure nginx-static "$NGINX_PORT" "${worker:-$NGINX_PID}"
  stop_pid "$NGINX_PID"
fi

echo
echo "| server | conns | req/s (median) | p50 | p90 | p99 | peak RSS |"
echo "|---|---|---|---|---|---|---|"
for name in tollgate-responder tollgate-actor nginx-static; do
  grep -q "^$name " "$results" || continue
  rss=$(awk -v n="$name" '$1==n && $2=="rss" {print $3}' "$results")
  for conns in 1 32; do
    field() { awk -v n="$name" -v c="$conns" -v k="$1" '$1==n && $2==c { for (i=3;i<=NF;i++) { split($i,kv,"="); if (kv[1]==k) print kv[2] } }' "$results" | median; }
    printf "| %s | %s | %s | %s us | %s us | %s us | %s MiB |\n" "$name" "$conns" "$(field rps)" \
      "$(field p50_us)" "$(field p90_us)" "$(field p99_us)" "$(awk -v r="$rss" 'BEGIN {printf "%.1f", r/1024}')"
  done
done
