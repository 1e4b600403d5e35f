#!/usr/bin/env bash
# Profiles xray-sidecar under closed-loop load with perf (software cpu-clock event: this machine has
# no hardware counters) and prints where its CPU goes. Run scripts/bench once first (it installs
# wrk and nginx and builds the per-pod release binary, target/per-pod). Usage: bench/profile.sh
# [extra proxy flags, e.g. --disable-tracing]. Writes bench/results/profile-<time>/ (perf.data,
# reports).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v perf >/dev/null || { echo "profile: needs perf (apt-get install linux-perf)" >&2; exit 1; }

. bench/lab.sh profile taskset -c 0
RUST_LOG=warn taskset -c 1 "$BIN" proxy --listen 127.0.0.1:18100 \
  --upstream http://127.0.0.1:18080 --service-name bench --daemon-address 127.0.0.1:12000 \
  --workers 1 --sampling-rules bench/sampling-all.json "$@" >"$OUT/proxy.log" 2>&1 &
SIDECAR=$!
pids+=($SIDECAR)
for _ in $(seq 50); do curl -sf -o /dev/null http://127.0.0.1:18100/ && break; sleep 0.1; done

taskset -c 0 wrk -t1 -c64 -d14s http://127.0.0.1:18100/ >"$OUT/wrk.txt" &
WRK=$!
sleep 3
perf record -q -e cpu-clock -F 2999 --call-graph dwarf,16384 -p "$SIDECAR" -o "$OUT/perf.data" -- sleep 8
wait "$WRK"
grep -E "Requests/sec" "$OUT/wrk.txt"

perf report -i "$OUT/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null \
  | grep -v '^#' | grep -v '^$' >"$OUT/self.txt" || true
perf report -i "$OUT/perf.data" --children --sort symbol --stdio -g none 2>/dev/null \
  | grep -v '^#' | grep -v '^$' >"$OUT/children.txt" || true
echo "== self time, top 25"
head -25 "$OUT/self.txt" | cut -c1-150
echo "== inclusive time of the sidecar's own parts"
grep -E "xray_sidecar::|__libc_sendto|__GI___writev|__libc_recv|epoll_wait|serialize" "$OUT/children.txt" \
  | grep -vE "^ +[0-9.]+% +[0-9.]+% +(poll|catch_unwind|call_once|do_call|with_mut|\{closure)" \
  | awk '{ printf "%8s %8s  ", $1, $2; $1=""; $2=""; $3=""; print substr($0, 1, 140) }' \
  | head -30 || true
echo "profile: $OUT"
