#!/usr/bin/env bash
# The LLM route under load: POST /v1/chat/completions against the mock
# upstream, three ways, same machine, same load:
#   - mock-direct: wrk straight at the mock (the floor);
#   - nginx-proxy: nginx proxy_pass to the mock (the reference);
#   - tollgate:    auth, limits, token reservation, credit hold, provider
#                  actor, upstream call, settlement, charge, ledger entry.
# Then time to first byte of a streamed answer (curl, sequential), and
# tollgate's RSS idle and after the load.
#
#   tools/bench/llm.sh                 # 3 runs x 5 s per row
set -euo pipefail
cd "$(dirname "$0")/../.."
SCRIPT=tools/bench/llm.lua
source tools/bench/lib.sh
start_mock

PORT=$mock_port measure mock-direct /v1/chat/completions

nginx_port=$((PORT + 1))
sed "s/18090/$nginx_port/; s/18190/$mock_port/" tools/bench/nginx-proxy.conf > "$work/nginx.conf"
nginx -p "$work" -c "$work/nginx.conf" > "$work/nginx.log" 2>&1 &
nginx_pid=$!
EXTRA_PIDS+=("$nginx_pid")
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$nginx_port/ping" >/dev/null && break; sleep 0.1; done
PORT=$nginx_port measure nginx-proxy /v1/chat/completions

start_tollgate llm "$(llm_config)"
idle_rss=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$TG_PID/status")
export TG_BENCH_KEY=$TG_KEY
measure tollgate /v1/chat/completions
load_rss=$(peak_rss_mib "$TG_PID")

# Time to first byte of a stream, sequential, 300 each: direct, nginx, tollgate.
ttfb() {
  local url=$1 auth=$2
  for _ in $(seq 1 300); do
    curl -s -o /dev/null -w '%{time_starttransfer}\n' -H "Content-Type: application/json" \
      ${auth:+-H "Authorization: Bearer $auth"} \
      -d '{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}' "$url"
  done | awk '{print int($1*1e6)}' | sort -n | awk '{a[NR]=$1} END {printf "p50 %d us, p99 %d us\n", a[int(NR*0.5)], a[int(NR*0.99)]}'
}
echo
echo "time to first byte of a stream (curl, 300 sequential):"
echo "  mock-direct: $(ttfb "http://127.0.0.1:$mock_port/v1/chat/completions" "")"
echo "  nginx-proxy: $(ttfb "http://127.0.0.1:$nginx_port/v1/chat/completions" "")"
echo "  tollgate:    $(ttfb "http://127.0.0.1:$PORT/v1/chat/completions" "$TG_KEY")"
stop_tollgate
kill -TERM "$nginx_pid"; wait "$nginx_pid" 2>/dev/null || true

table mock-direct nginx-proxy tollgate
echo
echo "tollgate RSS: idle $idle_rss MiB, peak under load $load_rss MiB"
