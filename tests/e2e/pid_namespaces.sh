#!/usr/bin/env bash
# The agent, workers, producers and perfqctl each in a PID namespace of its
# own, sharing /dev/shm, as containers of a pod or a compose project do:
# liveness holds across them (docs/PROTOCOL.md, "Liveness").
#   tests/e2e/pid_namespaces.sh BIN_DIR
# Needs root (unshare --pid); exits 77 (skipped) without it.
# Checks, each across namespaces: health sees the agent running and the
# worker; a producer's --wait gets its outcome; a worker killed holding an
# attempt is seen dead, its attempt fails as WORKER_DIED and is retried on
# another worker (attempts 2); a killed agent reads as down, and the agent
# that takes its place (in yet another namespace) finishes a request the
# first one had queued, for a producer that waited through both.
# Every wait is on an event with a bound: a line read with a timeout, a
# producer's --wait under `timeout`, or an answer re-asked without sleeping
# up to a deadline.
set -euo pipefail
bin=$(cd "${1:?usage: pid_namespaces.sh BIN_DIR}" && pwd)
e2e_name=pid_namespaces
source "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ] || ! unshare --pid --fork --mount-proc true 2>/dev/null; then
  echo "pid_namespaces: skipped: needs root and unshare --pid"
  exit 77
fi

# A command in a new PID namespace (with its own /proc), where it is pid 1.
# A namespace's first process ignores signals it has no handler for when
# they come from inside, so the test kills by host pid (cleanup, kill_ns).
ns() { unshare --pid --fork --mount-proc "$@"; }

queue="pidns-$$"
dir=$(mktemp -d)
# kill_ns PATTERN: SIGKILL to this queue's processes whose command line
# starts with PATTERN (the commands themselves, not their unshare).
kill_ns() { pkill -KILL -f "^$1.* --queue $queue( |\$)" || true; }
cleanup() {
  kill_ns "$bin/perfq"
  wait 2>/dev/null || true
  "$bin/perfqctl" --queue "$queue" destroy 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT


# start_agent LOG: an agent in a new namespace; returns once it has started.
start_agent() {
  mkfifo "$dir/$1"
  ns "$bin/perfq-agent" --queue "$queue" --data-dir "$dir/data" --http off \
    --liveness-interval-ms 20 --max-retry-attempts 3 --retry-backoff-ms 10 \
    2> "$dir/$1" &
  exec 3< "$dir/$1"
  await_line 3 "DLQ journal" > /dev/null || fail "the agent did not start"
  cat <&3 > /dev/null &
  exec 3<&-
}
# --- the agent, in its namespace
start_agent agent.log

health() { ns "$bin/perfqctl" --queue "$queue" --json health > "$dir/health.json" 2>&1; }
running() { health && grep -q '"state":"running"' "$dir/health.json"; }
until_ok 20 running || fail "health from another namespace: $(cat "$dir/health.json")"
ok "health from another namespace sees the agent running"

# --- a worker, in its namespace: one type served, one held until killed
spawn_worker "$dir/held.out" 4 ns "$bin/perfq-example-worker" --queue "$queue" --hang ns.hold ns.echo
one_worker() { health && grep -q '"activeWorkers":1' "$dir/health.json"; }
until_ok 20 one_worker || fail "the agent does not count the worker: $(cat "$dir/health.json")"
ok "the agent counts a worker of another namespace"

# --- a producer, in its namespace, waits for its outcome
out=$(timeout 30 unshare --pid --fork --mount-proc \
  "$bin/perfqctl" --queue "$queue" submit --user u1 --type ns.echo --payload '{"n":1}' --wait) ||
  fail "submit --wait from another namespace: $out"
grep -q "status completed  attempts 1" <<< "$out" || fail "outcome: $out"
ok "a producer of another namespace gets its outcome"

# --- crash: the worker is killed holding an attempt
timeout 60 unshare --pid --fork --mount-proc \
  "$bin/perfqctl" --queue "$queue" submit --user u2 --type ns.hold --payload '{}' --wait \
  > "$dir/held.wait" 2>&1 &
waiter=$!
read -r -t 20 -u 4 line || true
[ "$line" = holding ] || fail "the worker did not start the attempt: '$line'"
# The worker itself (pid 1 of its namespace), by its host pid.
pkill -KILL -f "^$bin/perfq-example-worker --queue $queue --hang" ||
  fail "cannot find the worker's process"
exec 4<&-
spawn_worker "$dir/next.out" 5 ns "$bin/perfq-example-worker" --queue "$queue" ns.hold
wait "$waiter" || fail "the held request's producer: $(cat "$dir/held.wait")"
grep -q "status completed  attempts 2" "$dir/held.wait" ||
  fail "the held request: $(cat "$dir/held.wait")"
ok "a worker of another namespace killed holding an attempt: retried, completed on attempt 2"

# --- the agent killed with a request queued (no worker serves its type)
timeout 60 unshare --pid --fork --mount-proc \
  "$bin/perfqctl" --queue "$queue" submit --user u3 --type ns.later --payload '{}' --wait \
  > "$dir/later.wait" 2>&1 &
later=$!
queued() { health && grep -q '"pendingCount":1' "$dir/health.json"; }
until_ok 20 queued || fail "the request did not queue: $(cat "$dir/health.json")"
kill_ns "$bin/perfq-agent"
down() {
  ns "$bin/perfqctl" --queue "$queue" --json health > "$dir/health.json" 2>&1 || true
  grep -q '"state":"down"' "$dir/health.json"
}
until_ok 20 down || fail "a killed agent does not read as down: $(cat "$dir/health.json")"
ok "a killed agent reads as down from another namespace"
start_agent agent2.log
spawn_worker "$dir/later.out" 6 ns "$bin/perfq-example-worker" --queue "$queue" ns.later
wait "$later" || fail "the queued request's producer: $(cat "$dir/later.wait")"
grep -q "status completed  attempts 1" "$dir/later.wait" ||
  fail "the queued request: $(cat "$dir/later.wait")"
ok "a new agent in another namespace finishes what the killed one had queued"
echo "pid_namespaces: all checks passed"
