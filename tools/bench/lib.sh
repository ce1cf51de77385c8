# Shared helpers for the wrk benchmarks; source it from a script in this
# folder. Loopback only; every run is bounded by DURATION.

RUNS=${RUNS:-3}
SCRIPT=${SCRIPT:-tools/bench/summary.lua}
DURATION=${DURATION:-5s}
BIN=${BIN:-build/app/tollgate}
PORT=${PORT:-18089}
work=$(mktemp -d)
results="$work/results"
: > "$results"
TG_PID=""
TG_KEY=""

EXTRA_PIDS=()
bench_cleanup() {
  [ -n "$TG_PID" ] && kill "$TG_PID" 2>/dev/null || true
  for p in "${EXTRA_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap bench_cleanup EXIT

[ -x "$BIN" ] || { echo "not an executable: $BIN (build first: scripts/build.sh)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk missing: scripts/setup.sh" >&2; exit 1; }

wait_port() {
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$1/ping" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "nothing answers on port $1" >&2
  return 1
}

# start_tollgate NAME TOML-BODY: starts tollgate on a fresh data dir with the
# given config (listen and data_dir are added) and sets TG_PID and TG_KEY
# (the admin key an empty store prints once on stderr).
start_tollgate() {
  local name=$1 body=$2
  printf '[server]\nlisten = "127.0.0.1:%s"\n%s\n[storage]\ndata_dir = "%s"\n[log]\nlevel = "warn"\n' \
    "$PORT" "$body" "$work/data-$name" > "$work/$name.toml"
  "$BIN" --config "$work/$name.toml" > "$work/$name.out" 2> "$work/$name.err" &
  TG_PID=$!
  wait_port "$PORT" || { cat "$work/$name.err" >&2; exit 1; }
  TG_KEY=$(grep -o 'gw_live_[A-Za-z0-9]*' "$work/$name.err" | head -1)
}

stop_tollgate() {
  kill -TERM "$TG_PID"
  wait "$TG_PID" 2>/dev/null || true
  TG_PID=""
}

# two_builds DEFAULT_ROUNDS "$@": for the scripts that compare two builds
# (OLD_BINARY NEW_BINARY [ROUNDS]): sets A, B and ROUNDS, or stops with the
# usage.
two_builds() {
  local rounds=$1
  shift
  [ $# -ge 2 ] || { echo "usage: $0 OLD_BINARY NEW_BINARY [ROUNDS]" >&2; exit 2; }
  for b in "$1" "$2"; do [ -x "$b" ] || { echo "not an executable: $b" >&2; exit 2; }; done
  A=$1
  B=$2
  ROUNDS=${3:-$rounds}
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2))}'; }

# measure LABEL PATH [extra wrk args...]: warm-up, then RUNS runs at 1 and 32
# connections, recorded under LABEL.
measure() {
  local label=$1 path=$2
  shift 2
  for conns in 1 32; do
    wrk -t1 -c"$conns" -d1s "$@" "http://127.0.0.1:$PORT$path" >/dev/null
    for run in $(seq 1 "$RUNS"); do
      line=$(wrk -t1 -c"$conns" -d"$DURATION" -s "$SCRIPT" "$@" \
        "http://127.0.0.1:$PORT$path" | grep '^RESULT')
      echo "$label c=$conns run=$run $line"
      echo "$label $conns $line" >> "$results"
    done
  done
}

# peak_rss_mib PID: the process's peak resident memory.
peak_rss_mib() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

# table LABEL...: the medians of each label as Markdown rows.
table() {
  echo
  echo "| what | conns | req/s (median) | p50 | p90 | p99 | errors |"
  echo "|---|---|---|---|---|---|---|"
  for label in "$@"; do
    for conns in 1 32; do
      field() { awk -v n="$label" -v c="$conns" -v k="$1" '$1==n && $2==c { for (i=3;i<=NF;i++) { split($i,kv,"="); if (kv[1]==k) print kv[2] } }' "$results" | median; }
      printf "| %s | %s | %s | %s us | %s us | %s us | %s |\n" "$label" "$conns" "$(field rps)" \
        "$(field p50_us)" "$(field p90_us)" "$(field p99_us)" "$(field errors)"
    done
  done
}

# start_mock: the mock upstream (MOCK) on PORT+100, as mock_port, stopped
# on exit; 8 chunks per streamed answer.
start_mock() {
  MOCK=${MOCK:-build/tools/mock_upstream}
  [ -x "$MOCK" ] || { echo "build first: scripts/build.sh" >&2; exit 1; }
  mock_port=$((PORT + 100))
  "$MOCK" --listen "127.0.0.1:$mock_port" --chunks 8 > "$work/mock.log" 2>&1 &
  EXTRA_PIDS+=("$!")
  wait_port "$mock_port"
}

# llm_config: tollgate's settings for the LLM benchmarks (after start_mock):
# limits and credits that admit every call, the mock as provider "mock"
# serving model m1.
llm_config() {
  echo "[limits]
per_minute = 1000000000
requests_per_day = 1000000000000
tokens_per_day = 1000000000000
tokens_per_month = 1000000000000
[limits.plans]
enterprise = 1000000000
[accounts]
initial_credits = 1000000000
[[providers]]
name = \"mock\"
base_url = \"http://127.0.0.1:$mock_port/v1\"
max_concurrency = 256
queue_size = 4096
[[providers.models]]
id = \"m1\"
prompt_price_per_mtok = 1
completion_price_per_mtok = 2"
}
