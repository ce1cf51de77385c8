#!/usr/bin/env bash
# The throughput target as it is defined: tollgate's req/s on the LLM route
# as a share of nginx proxy_pass's, at 32 connections, against the same
# mock. Each round measures nginx and then both builds (their order
# alternates), 4 s each (DURATION), so that the share compares runs that
# saw the same state of a shared, noisy machine. Each build starts on a
# fresh store per run.
#
#   tools/bench/llm_share.sh OLD_BINARY NEW_BINARY [ROUNDS]    # 6 rounds
set -euo pipefail
cd "$(dirname "$0")/../.."
SCRIPT=tools/bench/llm.lua
DURATION=${DURATION:-4s}
BIN=${1:-build/app/tollgate}  # what lib.sh checks first
source tools/bench/lib.sh
two_builds 6 "$@"
start_mock
nginx_port=$((PORT + 1))
sed "s/18090/$nginx_port/; s/18190/$mock_port/" tools/bench/nginx-proxy.conf > "$work/nginx.conf"
nginx -p "$work" -c "$work/nginx.conf" > "$work/nginx.log" 2>&1 &
EXTRA_PIDS+=("$!")
wait_port "$nginx_port"
config=$(llm_config)

# rps URL: req/s at 32 connections after a 1 s warm-up.
rps() {
  wrk -t1 -c32 -d1s -s "$SCRIPT" "$1" > /dev/null
  wrk -t1 -c32 -d"$DURATION" -s "$SCRIPT" "$1" | grep '^RESULT' | sed 's/.*rps=\([0-9]*\).*/\1/'
}
# build BINARY NAME: one run of that build on a fresh store.
build() {
  BIN=$1 start_tollgate "$2" "$config"
  export TG_BENCH_KEY=$TG_KEY
  local r
  r=$(rps "http://127.0.0.1:$PORT/v1/chat/completions")
  stop_tollgate
  echo "$r"
}
for r in $(seq 1 "$ROUNDS"); do
  n=$(rps "http://127.0.0.1:$nginx_port/v1/chat/completions")
  if [ $((r % 2)) = 1 ]; then
    a=$(build "$A" "a$r"); b=$(build "$B" "b$r")
  else
    b=$(build "$B" "b$r"); a=$(build "$A" "a$r")
  fi
  sa=$(awk -v x="$a" -v n="$n" 'BEGIN {printf "%.1f", 100 * x / n}')
  sb=$(awk -v x="$b" -v n="$n" 'BEGIN {printf "%.1f", 100 * x / n}')
  echo "round $r: nginx $n req/s; A $a ($sa%); B $b ($sb%)"
  echo "$sa $sb" >> "$results"
done
echo "median share of nginx's req/s: A $(awk '{print $1}' "$results" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')%, B $(awk '{print $2}' "$results" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')%"
