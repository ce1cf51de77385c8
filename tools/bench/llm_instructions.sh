#!/usr/bin/env bash
# User-space instructions per LLM call, counted by callgrind: the same
# call as llm.sh (POST /v1/chat/completions to the mock, auth, limits,
# token reservation, credit hold, settlement, charge, ledger entry), one
# connection, N calls after 300 uncounted ones. Unlike wall-clock figures
# on a shared machine, the count repeats to within a fraction of a percent,
# so it can tell two builds apart by 1%. It does not see the kernel (about
# 40% of a call's CPU on loopback) nor cache misses.
#
# CONNS=32 runs the calls over 32 connections, as the throughput load
# does (the writer thread then commits, and batches are larger; the count
# moves by about 1% between runs). With it, or with THREADS=1, the count
# is also given per thread: under load the I/O thread's share is the one
# that limits the rate.
#
#   tools/bench/llm_instructions.sh [BINARY] [N]    # default: build/app/tollgate, 2000
#   CONNS=32 tools/bench/llm_instructions.sh build/app/tollgate 3000
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-build/app/tollgate}
N=${2:-2000}
source tools/bench/lib.sh
command -v valgrind >/dev/null || { echo "valgrind missing: scripts/setup.sh" >&2; exit 1; }
start_mock
printf '[server]\nlisten = "127.0.0.1:%s"\n%s\n[storage]\ndata_dir = "%s"\n[log]\nlevel = "warn"\n' \
  "$PORT" "$(llm_config)" "$work/data" > "$work/cg.toml"
out="$work/callgrind.out"
CONNS=${CONNS:-1}
per_thread=""
if [ "$CONNS" != 1 ] || [ "${THREADS:-0}" = 1 ]; then per_thread="--separate-threads=yes"; fi
# The gateway sets glibc's malloc cache tunable and runs itself again when
# the environment does not (app/main.cpp); under valgrind that second run
# would escape the count. Set here, as the gateway would set it, so every
# build is counted with it (an older build that does not set it itself too).
export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.malloc.tcache_count=64}
valgrind --tool=callgrind $per_thread --instr-atstart=no --callgrind-out-file="$out" \
  "$BIN" --config "$work/cg.toml" > "$work/tg.out" 2> "$work/tg.err" &
TG_PID=$!
for _ in $(seq 1 300); do curl -fs "http://127.0.0.1:$PORT/ping" >/dev/null 2>&1 && break; sleep 0.2; done
export TG_BENCH_KEY
TG_BENCH_KEY=$(grep -o 'gw_live_[A-Za-z0-9]*' "$work/tg.err" | head -1)
# calls N: N calls, one after the other (wrk stops sending after N, but
# runs on until its -d; it is stopped once the N-th answer is in).
calls() {
  rm -f "$work/done"
  TG_BENCH_N=$1 TG_BENCH_DONE="$work/done" wrk -t1 -c"$CONNS" -d300s -s tools/bench/count.lua \
    "http://127.0.0.1:$PORT/v1/chat/completions" > "$work/wrk.out" 2>&1 &
  local wrk_pid=$!
  while [ ! -e "$work/done" ] && kill -0 "$wrk_pid" 2>/dev/null; do sleep 0.2; done
  kill "$wrk_pid" 2>/dev/null || true
  wait "$wrk_pid" 2>/dev/null || true
  [ -e "$work/done" ] || { echo "wrk ended before $1 calls:" >&2; cat "$work/wrk.out" >&2; exit 1; }
  ! grep -q '^status' "$work/wrk.out" || { echo "calls failed:" >&2; cat "$work/wrk.out" >&2; exit 1; }
}
calls 300
callgrind_control -i on "$TG_PID" > /dev/null 2>&1
calls "$N"
callgrind_control -i off "$TG_PID" > /dev/null 2>&1
stop_tollgate
# total FILE...: the instructions the files counted.
total() {
  for f in "$@"; do callgrind_annotate "$f" 2>/dev/null; done |
    awk '/PROGRAM TOTALS/ {gsub(",", "", $1); t += $1} END {printf "%d", t}'
}
if [ -z "$per_thread" ]; then
  echo "$BIN: $(( $(total "$out") / N )) instructions per call ($N calls, $CONNS connection(s))"
  exit 0
fi
echo "$BIN: $(( $(total "$out"-* ) / N )) instructions per call ($N calls, $CONNS connection(s)), of which:"
for f in "$out"-*; do
  t=$(total "$f")
  [ "$t" -gt $((N * 1000)) ] || continue  # threads that did not work per call
  name="thread ${f##*-}"
  grep -q 'writer_loop' "$f" && name="writer thread"
  grep -q 'io_lane::state::on_io' "$f" && name="I/O thread"
  echo "  $name: $((t / N)) per call"
done
