#!/usr/bin/env bash
# The agent in a /dev/shm of 64 MiB (Docker's default): the default
# settings do not fit, and the agent says so (bytes needed, bytes free, the
# settings that size the segment) and exits 1, leaving no segment behind,
# never dying of SIGBUS; settings that fit serve requests.
#   tests/e2e/small_shm.sh BIN_DIR
# Needs root (a mount namespace with its own tmpfs); exits 77 without it.
set -euo pipefail
bin=$(cd "${1:?usage: small_shm.sh BIN_DIR}" && pwd)
e2e_name=small_shm
source "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ] || ! unshare --mount true 2>/dev/null; then
  echo "small_shm: skipped: needs root and unshare --mount"
  exit 77
fi
if [ "${SMALL_SHM_INSIDE:-}" != 1 ]; then
  # Again, inside a mount namespace whose /dev/shm is a 64 MiB tmpfs.
  exec unshare --mount env SMALL_SHM_INSIDE=1 bash -c \
    'mount -t tmpfs -o size=64m,mode=1777 tmpfs /dev/shm && exec bash "$0" "$1"' "$0" "$bin"
fi

queue="smallshm-$$"
dir=$(mktemp -d)
agent_pid=
cleanup() {
  pkill -TERM -f "^$bin/perfq-example-worker --queue $queue " || true
  for pid in $agent_pid; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$dir"
}
trap cleanup EXIT

# --- the defaults: about 300 MB, refused with the figures
rc=0
timeout 30 "$bin/perfq-agent" --queue "$queue" --data-dir "$dir/data" --http off \
  2> "$dir/refused.err" || rc=$?
[ "$rc" = 1 ] || fail "the agent exited $rc, want 1: $(cat "$dir/refused.err")"
for want in "needs " "bytes and /dev/shm has " " free" "slot_count 20000" "max_clients 64" \
  "metrics history (metrics_types" "docker --shm-size"; do
  grep -qF -- "$want" "$dir/refused.err" || fail "the error does not say '$want': $(cat "$dir/refused.err")"
done
[ -z "$(ls -A /dev/shm)" ] || fail "a refused segment was left behind: $(ls -A /dev/shm)"
ok "the default segment does not fit 64 MiB: exit 1, the figures named, nothing left"

# --- settings that fit serve requests
mkfifo "$dir/agent.log"
"$bin/perfq-agent" --queue "$queue" --data-dir "$dir/data" --http off \
  --max-queue-depth 1000 --slot-payload-bytes 1024 --metrics-types 2 2> "$dir/agent.log" &
agent_pid=$!
exec 3< "$dir/agent.log"
await_line 3 "DLQ journal" > /dev/null || fail "the agent with small settings did not start"
cat <&3 > /dev/null &
spawn_worker "$dir/worker.out" 4 "$bin/perfq-example-worker" --queue "$queue" small.echo
out=$(timeout 30 "$bin/perfqctl" --queue "$queue" submit --user u --type small.echo \
  --payload '{"n":1}' --wait) || fail "submit: $out"
grep -q "status completed" <<< "$out" || fail "outcome: $out"
ok "a segment sized to fit ($(stat -c %s "/dev/shm/perfq-$queue") bytes) serves requests"
