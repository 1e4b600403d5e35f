#!/usr/bin/env bash
# Counts the sidecar's user-space instructions per request with callgrind: exact and independent of
# machine load, so it shows what a change to the proxy's own code saves where timings on a shared
# machine cannot (it does not see the kernel, nor how long an instruction takes). Runs the per-pod
# release binary in front of the nginx upstream, 100 % sampled (segments over UDP, then spans over
# OTLP to bench/otlp_sink.py), with the default rules (1 a second, then 5 %) and with tracing off,
# warms up with 2,000
# requests, then counts N (default 5,000) requests from `oha -c 8`. Run scripts/bench once first
# (it installs nginx, builds oha and that binary into target/per-pod). Usage: bench/instructions.sh [N]
# Writes bench/results/instructions-<time>/ (callgrind outputs, summary.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5000}
command -v valgrind >/dev/null || { echo "instructions: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
OHA="$(command -v oha || echo "$PWD/bench/.tools/bin/oha")"
[ -x "$OHA" ] || { echo "instructions: needs oha (scripts/bench builds it)" >&2; exit 1; }

. bench/lab.sh instructions
python3 bench/otlp_sink.py --port 12002 --stats "$OUT/otlp-sink.json" >"$OUT/otlp-sink.log" 2>&1 &
pids+=($!)

# Prints the instructions per request of one configuration (extra proxy flags in "$@").
count() {
  local name=$1
  shift
  RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.%p" "$BIN" proxy \
    --listen 127.0.0.1:18105 --upstream http://127.0.0.1:18080 --service-name bench \
    --daemon-address 127.0.0.1:12000 --workers 1 "$@" \
    >"$OUT/$name.log" 2>&1 &
  local proxy=$!
  for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:18105/ && break; sleep 0.2; done
  "$OHA" -n 2000 -c 8 --no-tui http://127.0.0.1:18105/ >/dev/null
  callgrind_control -z "$proxy" >/dev/null 2>&1
  "$OHA" -n "$N" -c 8 --no-tui http://127.0.0.1:18105/ >"$OUT/$name.oha.txt"
  callgrind_control -d "$proxy" >/dev/null 2>&1
  sleep 1
  kill "$proxy"
  wait "$proxy" 2>/dev/null || true
  # The dump taken on request holds what ran since the counters were zeroed.
  local dump
  dump=$(ls -t "$OUT/$name".*.1 | head -1)
  local total
  total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
  echo "$name $(( total / N ))"
}

ALL=(--sampling-rules bench/sampling-all.json)
{
  count traced "${ALL[@]}"
  count otlp "${ALL[@]}" --exporter otlp --otlp-endpoint http://127.0.0.1:12002/v1/traces
  count default-rules
  count tracing-off --disable-tracing
} | tee "$OUT/counts.txt"
awk -v n="$N" '
  { v[$1] = $2 }
  END {
    printf "user-space instructions per request (%d requests, callgrind):\n", n
    printf "  100 %% sampled  %d\n  same, OTLP     %d\n  default rules  %d\n  tracing off    %d\n  tracing costs  %d (UDP), %d (OTLP), %d (default rules, UDP)\n", v["traced"], v["otlp"], v["default-rules"], v["tracing-off"], v["traced"] - v["tracing-off"], v["otlp"] - v["tracing-off"], v["default-rules"] - v["tracing-off"]
  }' "$OUT/counts.txt" | tee "$OUT/summary.txt"
echo "instructions: $OUT"
