#!/usr/bin/env bash
# GET /ping under wrk: tollgate with each request bridge, and nginx
# answering a fixed body as the reference line. Medians as a Markdown table,
# and each server's peak RSS.
#
#   tools/bench/ping.sh            # 3 runs x 5 s per row
#   RUNS=5 DURATION=10s tools/bench/ping.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
SCRIPT=tools/bench/ping.lua
source tools/bench/lib.sh

rss=()
for bridge in responder actor; do
  start_tollgate "$bridge" "bridge = \"$bridge\""
  measure "tollgate-$bridge" /ping
  rss+=("tollgate-$bridge: $(peak_rss_mib "$TG_PID") MiB")
  stop_tollgate
done

if command -v nginx >/dev/null; then
  nginx_port=$((PORT + 1))
  sed "s/18090/$nginx_port/" tools/bench/nginx-static.conf > "$work/nginx.conf"
  nginx -p "$work" -c "$work/nginx.conf" > "$work/nginx.log" 2>&1 &
  nginx_pid=$!
  EXTRA_PIDS+=("$nginx_pid")
  wait_port "$nginx_port"
  PORT=$nginx_port measure nginx-static /ping
  # The master forks the worker; report the worker's peak RSS.
  worker=$(pgrep -P "$nginx_pid" | head -1)
  rss+=("nginx-static: $(peak_rss_mib "${worker:-$nginx_pid}") MiB")
  kill -TERM "$nginx_pid"
  wait "$nginx_pid" 2>/dev/null || true
fi

table tollgate-responder tollgate-actor nginx-static
echo
printf 'peak RSS: %s\n' "${rss[@]}"
