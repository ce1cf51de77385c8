#!/usr/bin/env bash
# Two tollgate builds side by side on the LLM route at 32 connections (or
# CONNS), the same load as llm.sh: req/s, p50, and tollgate's CPU per call
# (user + system time of the whole process over the run, /proc/PID/stat). Rounds run
# in ABBA order so that drift on a shared machine favours neither build;
# each run starts its build on a fresh store and warms up for a second.
#
#   tools/bench/llm_ab.sh OLD_BINARY NEW_BINARY [ROUNDS]   # 4 rounds x 4 s
#   DURATION=12s tools/bench/llm_ab.sh ...                  # longer runs
#   CONNS=1 tools/bench/llm_ab.sh ...                       # latency
set -euo pipefail
cd "$(dirname "$0")/../.."
SCRIPT=tools/bench/llm.lua
DURATION=${DURATION:-4s}
CONNS=${CONNS:-32}
BIN=${1:-build/app/tollgate}  # what lib.sh checks first
source tools/bench/lib.sh
two_builds 4 "$@"
start_mock
config=$(llm_config)

hz=$(getconf CLK_TCK)
url="http://127.0.0.1:$PORT/v1/chat/completions"
runs=0

# one LABEL BINARY: one measured run of that build.
one() {
  local label=$1 before after line calls rps p50
  runs=$((runs + 1))
  BIN=$2 start_tollgate "ab$runs" "$config"
  export TG_BENCH_KEY=$TG_KEY
  wrk -t1 -c"$CONNS" -d1s -s "$SCRIPT" "$url" > /dev/null
  before=$(awk '{print $14 + $15}' "/proc/$TG_PID/stat")
  line=$(wrk -t1 -c"$CONNS" -d"$DURATION" -s "$SCRIPT" "$url" | grep '^RESULT')
  after=$(awk '{print $14 + $15}' "/proc/$TG_PID/stat")
  stop_tollgate
  calls=$(echo "$line" | sed 's/.*requests=\([0-9]*\).*/\1/')
  rps=$(echo "$line" | sed 's/.*rps=\([0-9]*\).*/\1/')
  p50=$(echo "$line" | sed 's/.*p50_us=\([0-9]*\).*/\1/')
  echo "$label rps=$rps p50_us=$p50 cpu_us_per_call=$(( (after - before) * 1000000 / hz / calls ))"
  echo "$label $rps $p50" >> "$results"
}

for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then
    one A "$A"; one B "$B"
  else
    one B "$B"; one A "$A"
  fi
done
echo "medians at $CONNS connections: A $(awk '$1=="A"{print $2}' "$results" | median) req/s, p50 $(awk '$1=="A"{print $3}' "$results" | median) us; B $(awk '$1=="B"{print $2}' "$results" | median) req/s, p50 $(awk '$1=="B"{print $3}' "$results" | median) us"
