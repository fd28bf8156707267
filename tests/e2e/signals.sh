#!/usr/bin/env bash
# What the agent does with each signal an operator (or systemd, or
# logrotate) sends: SIGHUP reloads the tokens file and reopens the audit
# log, SIGUSR1 and SIGUSR2 change nothing, SIGTERM stops it cleanly.
#   tests/e2e/signals.sh BIN_DIR
# Every wait is on an event with a bound: a log line read with a timeout.
set -euo pipefail
bin=$(cd "${1:?usage: signals.sh BIN_DIR}" && pwd)
e2e_name=signals
source "$(dirname "$0")/lib.sh"

queue="signals-$$"
dir=$(mktemp -d)
agent_pid=
trap e2e_cleanup EXIT
# next_line PATTERN: reads the agent's log up to a line containing PATTERN.
next_line() { await_line 3 "$1"; }
code() {
  curl -sS -o /dev/null -w '%{http_code}' "$base/performance-queue/health" \
    -H "Authorization: Bearer $1"
}

# start_agent LOG: an agent with tokens and HTTP, its log on descriptor 3;
# sets agent_pid and base once it listens.
start_agent() {
  mkfifo "$dir/$1"
  "$bin/perfq-agent" --queue "$queue" --data-dir "$dir/data" --tokens "$dir/tokens" \
    --http 127.0.0.1:0 2> "$dir/$1" &
  agent_pid=$!
  exec 3< "$dir/$1"
  local line
  line=$(next_line "http on ") || fail "the agent did not report its HTTP address"
  base="http://$(sed -E 's/.*http on ([^ ]+).*/\1/' <<< "$line")"
}

old_token=$("$bin/perfqctl" token create --tokens "$dir/tokens" --user ops --role admin 2>/dev/null)
start_agent agent.log
[ "$(code "$old_token")" = 200 ] || fail "the first token is refused"

# --- SIGHUP: a token added since start works, the audit log is reopened
new_token=$("$bin/perfqctl" token create --tokens "$dir/tokens" --user ops2 --role admin 2>/dev/null)
[ "$(code "$new_token")" = 401 ] || fail "a token added after start works before a reload"
mv "$dir/data/audit.log" "$dir/data/audit.log.1"
kill -HUP "$agent_pid"
line=$(next_line "reload (SIGHUP)") || fail "no reload line after SIGHUP"
grep -q "tokens 2 loaded" <<< "$line" || fail "reload line: $line"
kill -0 "$agent_pid" || fail "SIGHUP stopped the agent"
[ "$(code "$new_token")" = 200 ] || fail "the token added before SIGHUP is refused after it"
[ "$(code "$old_token")" = 200 ] || fail "the first token is refused after SIGHUP"
ok "SIGHUP reloads the tokens file"

# The lines after the reload go to a new audit.log at the path (which line
# is the first there depends on when the journal flushes). A refused token
# is audited: it makes a line.
[ "$(code "pq_not_a_token")" = 401 ] || fail "a bad token is not refused"
kill -TERM "$agent_pid"
next_line "stopped" > /dev/null || fail "no stopped line after SIGTERM"
wait "$agent_pid" || fail "SIGTERM: exit code $?"
agent_pid=
grep -q '"agent.start"' "$dir/data/audit.log.1" || fail "the old file lost its lines"
[ -f "$dir/data/audit.log" ] || fail "no new audit.log after SIGHUP"
grep -q '"agent.stop"' "$dir/data/audit.log" || fail "the new audit.log does not get the lines after it"
ok "SIGHUP reopens the audit log at its path (logrotate)"
ok "SIGTERM stops it with its stopped line and exit code 0"

# --- SIGUSR1 / SIGUSR2 change nothing
start_agent agent2.log
kill -USR1 "$agent_pid"
kill -USR2 "$agent_pid"
[ "$(code "$new_token")" = 200 ] || fail "the agent does not answer after SIGUSR1/SIGUSR2"
kill -TERM "$agent_pid"
next_line "stopped" > /dev/null || fail "no stopped line: SIGUSR1/SIGUSR2 ended the agent?"
rc=0
wait "$agent_pid" || rc=$?
agent_pid=
[ "$rc" = 0 ] || fail "the agent exited $rc after SIGUSR1, SIGUSR2 and SIGTERM"
ok "SIGUSR1 and SIGUSR2 leave it running"
