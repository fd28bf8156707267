#!/usr/bin/env bash
# The agent's log, as an operator reads it (issue 15):
#   - --log-format json: one object a line, each with time, level, event and
#     message;
#   - the runtime events: a client joining, dying, leaving; a health change;
#     the stop, with what it left; settings a re-attach could not apply
#     (also in perfqctl health);
#   - never a payload or an idempotency key;
#   - --log-file, reopened at its path on SIGHUP (logrotate).
#   tests/e2e/logging.sh BIN_DIR
set -euo pipefail
bin=$(cd "${1:?usage: logging.sh BIN_DIR}" && pwd)
e2e_name=logging
source "$(dirname "$0")/lib.sh"

queue="logging-$$"
dir=$(mktemp -d)
agent_pid=
trap e2e_cleanup EXIT
secret_payload='{"card":"s3cr3t-payl0ad"}'
secret_key='k3y-0f-alice'
next_line() { await_line 3 "$1"; }
submit() {
  "$bin/perfqctl" --queue "$queue" submit --user alice --type "$1" --payload "$secret_payload" \
    --idempotency-key "$secret_key-$1" > /dev/null
}

# --- JSON lines on stderr (a copy kept in stderr.log)
mkfifo "$dir/agent.fifo"
"$bin/perfq-agent" --queue "$queue" --data-dir "$dir/data" --http off --log-format json \
  --health-degraded-dlq 0 --max-retry-attempts 1 \
  2> >(tee "$dir/stderr.log" > "$dir/agent.fifo") &
agent_pid=$!
exec 3< "$dir/agent.fifo"
next_line '"event":"journal.open"' > /dev/null || fail "no journal.open line"

spawn_worker "$dir/worker.fifo" 4 "$bin/perfq-example-worker" --queue "$queue" --fail poison echo
worker_pid=$!
next_line '"event":"client.join"' | grep -q '"roles":"worker"' || fail "no client.join for the worker"
ok "a worker joining is logged"

submit poison
line=$(next_line '"event":"health.change"') || fail "no health.change line"
jq -e '.status == "degraded" and .level == "warn" and (.reasons | length) > 0' <<< "$line" \
  > /dev/null || fail "health.change: $line"
ok "a health change is logged with its reasons"

kill -KILL "$worker_pid"
wait "$worker_pid" 2> /dev/null || true
next_line '"event":"client.gone"' > /dev/null || fail "no client.gone after the worker was killed"
ok "a client that died is logged"

submit echo  # pending: no worker serves it now
kill -TERM "$agent_pid"
line=$(next_line '"event":"agent.stop"') || fail "no agent.stop line"
jq -e '.left == 1 and .level == "warn"' <<< "$line" > /dev/null || fail "agent.stop: $line"
wait "$agent_pid" || fail "the agent exited $?"
agent_pid=
ok "the stop says what it left"

jq -e 'has("time") and has("level") and has("event") and has("message")' "$dir/stderr.log" \
  > /dev/null || fail "a line without time, level, event and message: $(cat "$dir/stderr.log")"
ok "every line is a JSON object with time, level, event and message"

# --- a re-attach with a setting the segment cannot take; text to a file
"$bin/perfq-agent" --queue "$queue" --data-dir "$dir/data" --http off \
  --slot-payload-bytes 256 --log-file "$dir/agent.log" 2> "$dir/agent.stderr" &
agent_pid=$!
until_ok 20 grep -q "DLQ journal" "$dir/agent.log" 2> /dev/null || fail "the agent did not log to its file"
grep -q "warn .*setting slot_payload_bytes = 256 is not applied" "$dir/agent.log" ||
  fail "the ignored setting is not in the log: $(cat "$dir/agent.log")"
"$bin/perfqctl" --queue "$queue" --json health > "$dir/health.json" || true
jq -e '.ignoredSettings[0].setting == "slot_payload_bytes" and .ignoredSettings[0].asked == "256"
       and .ignoredSettings[0].inEffect == "4096"' "$dir/health.json" > /dev/null ||
  fail "perfqctl health does not report the ignored setting: $(cat "$dir/health.json")"
"$bin/perfqctl" --queue "$queue" health > "$dir/health.txt" || true
grep -q "not applied  slot_payload_bytes = 256 (the segment keeps 4096): to apply, stop the agent" \
  "$dir/health.txt" || fail "perfqctl health's text lacks the ignored setting: $(cat "$dir/health.txt")"
ok "a setting a re-attach cannot apply is reported in the log and in health"

mv "$dir/agent.log" "$dir/agent.log.1"
kill -HUP "$agent_pid"
until_ok 20 grep -q "reload (SIGHUP)" "$dir/agent.log" 2> /dev/null ||
  fail "no new log file after SIGHUP"
ok "SIGHUP reopens the log file at its path"
kill -TERM "$agent_pid"
wait "$agent_pid" || fail "the agent exited $?"
agent_pid=
[ ! -s "$dir/agent.stderr" ] || fail "lines on stderr with --log-file: $(cat "$dir/agent.stderr")"

if grep -rq -e "s3cr3t-payl0ad" -e "$secret_key" "$dir"/*.log "$dir"/*.log.1; then
  fail "a payload or an idempotency key reached the log"
fi
ok "no payload or idempotency key in the log"
