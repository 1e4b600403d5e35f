# Sourced by bench/instructions.sh and bench/profile.sh: a results folder of its own, the nginx
# upstream on port 18080 and the UDP daemon stand-in on port 12000, all stopped when the script
# exits. Usage: `. bench/lab.sh NAME [PREFIX...]`; PREFIX runs before each (e.g. `taskset -c 0`).
# Sets OUT (the folder), BIN (the per-pod release binary scripts/bench builds) and pids (what the
# exit trap stops; the caller adds its own).
BIN="$PWD/target/per-pod/release/xray-sidecar"
[ -x "$BIN" ] || { echo "$1: needs $BIN (scripts/bench builds it)" >&2; exit 1; }
OUT="$PWD/bench/results/$1-$(date +%Y%m%d-%H%M%S)"
shift
mkdir -p "$OUT/tmp-upstream"
sed -e "s#@@DIR@@#$OUT#g" -e "s#@@PORT@@#18080#" bench/nginx-upstream.conf > "$OUT/upstream.conf"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

"$@" nginx -p "$OUT" -c "$OUT/upstream.conf" >"$OUT/upstream.log" 2>&1 &
pids+=($!)
"$@" python3 bench/udp_sink.py --port 12000 --stats "$OUT/sink.json" >"$OUT/sink.log" 2>&1 &
pids+=($!)
