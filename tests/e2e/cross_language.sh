#!/usr/bin/env bash
# Every binding's producer against every binding's worker, in separate
# processes, through one real agent: each binding's example worker serves
# its own type (x.c, x.cpp, x.node, x.python; f.<lang> fails for good), and
# each binding's "await" example submits to every type and prints the
# outcome, which must be the worker's reply (or a dead letter for f.*).
#   tests/e2e/cross_language.sh BIN_DIR
# Waits are on events with bounds: the agent's first log line, each
# worker's "ready" line, each example's exit.
set -euo pipefail
bin=$(cd "${1:?usage: cross_language.sh BIN_DIR}" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)

queue="xlang-$$"
dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  "$bin/perfqctl" --queue "$queue" destroy 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
fail() {
  echo "cross_language: FAIL: $*" >&2
  exit 1
}

mkfifo "$dir/agent.log"
"$bin/perfq-agent" --queue "$queue" --data-dir "$dir/data" --http off \
  --max-retry-attempts 1 2> "$dir/agent.log" &
pids+=($!)
exec 3< "$dir/agent.log"
read -r -t 20 -u 3 line || fail "the agent did not start"
cat <&3 > /dev/null &

pairs=0
# start_worker LANG COMMAND...: runs it, waits for its "ready" line.
start_worker() {
  local lang=$1
  shift
  mkfifo "$dir/$lang.out"
  "$@" > "$dir/$lang.out" &
  pids+=($!)
  local fd
  exec {fd}< "$dir/$lang.out"
  local ready=
  read -r -t 30 -u "$fd" ready || true
  [ "$ready" = ready ] || fail "the $lang worker did not start (got '$ready')"
  cat <&"$fd" > /dev/null &
  echo "ok  $lang worker ready"
}

start_worker c "$bin/perfq-c-worker" --queue "$queue" --fail f.c x.c
start_worker cpp "$bin/perfq-example-worker" --queue "$queue" --fail f.cpp x.cpp
start_worker node node "$root/bindings/node/examples/worker.js" --queue "$queue" --fail f.node x.node
start_worker python env PYTHONPATH="$root/bindings/python" python3 \
  "$root/bindings/python/examples/worker.py" --queue "$queue" --fail f.python x.python

# await_with LANG TYPE: the outcome JSON line of LANG's await example.
await_with() {
  case "$1" in
    c) "$bin/perfq-c-await" --queue "$queue" --type "$2" --user "u-$1" --payload '{"n":7}' ;;
    node) node "$root/bindings/node/examples/await.js" --queue "$queue" --type "$2" --user "u-$1" ;;
    python) PYTHONPATH="$root/bindings/python" python3 "$root/bindings/python/examples/await_result.py" \
      --queue "$queue" --type "$2" --user "u-$1" --payload '{"n":7}' ;;
  esac
}

for producer in c node python; do
  for worker in c cpp node python; do
    # An example's exit status may say "not completed": the JSON line tells.
    out=$(await_with "$producer" "x.$worker") || true
    status=$(jq -r .status <<< "$out" 2>/dev/null) || fail "$producer -> $worker: no outcome line"
    processed=$(jq -r .result.processed <<< "$out")
    [ "$status" = completed ] && [ "$processed" = true ] ||
      fail "$producer -> $worker: $out"
    echo "ok  $producer producer -> $worker worker: completed"
    out=$(await_with "$producer" "f.$worker") || true
    status=$(jq -r .status <<< "$out" 2>/dev/null) || fail "$producer -> $worker: no outcome line"
    error=$(jq -r .error <<< "$out")
    [ "$status" = failed ] && [ "$error" = PROCESSOR_ERROR ] ||
      fail "$producer -> $worker (failing): $out"
    echo "ok  $producer producer -> $worker worker: failed, dead-lettered"
    pairs=$((pairs + 1))
  done
done
# The C producer example (the Node.js and Python ones run in their suites):
# it prints one id per request, and each one completes.
ids=$("$bin/perfq-c-producer" --queue "$queue" --type x.python --user u-c --count 3)
[ "$(wc -l <<< "$ids")" = 3 ] || fail "the C producer printed '$ids'"
for id in $ids; do
  for ((i = 0; i < 1000; i++)); do
    st=$("$bin/perfqctl" --queue "$queue" --json status "$id" --user u-c | jq -r .status)
    [ "$st" = completed ] && break
  done
  [ "$st" = completed ] || fail "C producer's request $id: $st"
done
echo "ok  c producer example: 3 requests completed by the python worker"

# Every failed request is in the DLQ, once.
letters=$("$bin/perfqctl" --queue "$queue" --json dlq list --limit 100 | jq '.entries | length')
[ "$letters" = "$pairs" ] || fail "$letters dead letters for $pairs failed requests"
echo "ok  $letters dead letters, one per failed request"
