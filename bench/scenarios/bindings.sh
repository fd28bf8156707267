#!/usr/bin/env bash
# Round trip and submit throughput from C++, Node.js and Python, in the same
# run against the same agent and C++ worker (perfq-example-worker), rounds
# interleaved so that the machine's noise falls on every binding alike.
# Prints each run's JSON line, then the medians and the ratios to C++.
#   bench/scenarios/bindings.sh [--count N] [--rounds R]     (after scripts/setup)
set -euo pipefail
cd "$(dirname "$0")/../.."
count=20000
rounds=3
while (($#)); do
  case "$1" in
    --count) count=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "usage: bench/scenarios/bindings.sh [--count N] [--rounds R]" >&2; exit 2 ;;
  esac
done
bin=build/bin
queue="bindbench-$$"
dir=$(mktemp -d)
agent_pid=
worker_pid=
cleanup() {
  for pid in $worker_pid $agent_pid; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  "$bin/perfqctl" --queue "$queue" destroy 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

mkfifo "$dir/agent.log" "$dir/worker.out"
"$bin/perfq-agent" --queue "$queue" --data-dir "$dir/data" --http off \
  --max-requests-per-user-per-minute 0 --max-concurrent-workers 64 2> "$dir/agent.log" &
agent_pid=$!
exec 3< "$dir/agent.log"
read -r -t 20 -u 3 line || { echo "bindings: the agent did not start" >&2; exit 1; }
echo "$line"
cat <&3 > /dev/null &
"$bin/perfq-example-worker" --queue "$queue" bench.echo > "$dir/worker.out" &
worker_pid=$!
exec 4< "$dir/worker.out"
read -r -t 20 -u 4 ready || true
[ "$ready" = ready ] || { echo "bindings: the worker did not start" >&2; exit 1; }

echo "== $rounds rounds of $count requests each: agent idle=park, one C++ worker, 64-byte payloads"
: > "$dir/results"
for ((r = 1; r <= rounds; r++)); do
  "$bin/perfq-client-bench" --queue "$queue" --count "$count" | tee -a "$dir/results"
  node bindings/node/bench/roundtrip.js --queue "$queue" --count "$count" | tee -a "$dir/results"
  PYTHONPATH=bindings/python python3 bindings/python/bench/roundtrip.py --queue "$queue" \
    --count "$count" | tee -a "$dir/results"
done

python3 - "$dir/results" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in runs:
    by.setdefault(r["binding"], []).append(r)
def med(b, k):
    return statistics.median(r[k] for r in by[b])
cpp_rt = med("cpp", "roundTripP50Us")
cpp_tp = med("cpp", "submitPerSec")
print("\n  binding   round trip p50   p90        p99        vs C++ p50   submits/s   vs C++")
for b in ("cpp", "node", "python"):
    if b not in by:
        continue
    print("  %-8s  %8.1f us      %7.1f us  %7.1f us  %6.2fx      %9.0f   %5.2fx" % (
        b, med(b, "roundTripP50Us"), med(b, "roundTripP90Us"), med(b, "roundTripP99Us"),
        med(b, "roundTripP50Us") / cpp_rt, med(b, "submitPerSec"), med(b, "submitPerSec") / cpp_tp))
node = med("node", "roundTripP50Us") / cpp_rt if "node" in by else float("nan")
print("\n  target: Node round trip p50 within 2x of C++: %.2fx %s" % (node, "met" if node <= 2 else "MISSED"))
PY
