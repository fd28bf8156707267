#!/usr/bin/env bash
# The seed README's HTTP requests, exactly as it writes them, sent with curl
# to a real perfq-agent (with a worker for chat.message), plus the answers a
# client of the seed's API relies on: codes, bodies, auth, the DLQ review.
#   tests/e2e/seed_readme.sh BIN_DIR
# Every wait is on an event with a bound: a log line, a ready line, or an
# answer that changes (re-asked without sleeping, up to a deadline).
set -euo pipefail
bin=$(cd "${1:?usage: seed_readme.sh BIN_DIR}" && pwd)

queue="e2e-$$"
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

fail() {
  echo "seed_readme: FAIL: $*" >&2
  exit 1
}
# expect WHAT ACTUAL WANTED
expect() {
  [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
  echo "ok  $1"
}

user_token=$("$bin/perfqctl" token create --tokens "$dir/tokens" --user alice --role user)
admin_token=$("$bin/perfqctl" token create --tokens "$dir/tokens" --user ops --role admin)

mkfifo "$dir/agent.log"
"$bin/perfq-agent" --queue "$queue" --data-dir "$dir/data" --tokens "$dir/tokens" \
  --http 127.0.0.1:0 --max-retry-attempts 1 2> "$dir/agent.log" &
agent_pid=$!
exec 3< "$dir/agent.log"
base=
while read -r -t 20 -u 3 line; do
  case "$line" in
    *"http on "*) base="http://${line##*http on }"; break ;;
  esac
done
[ -n "$base" ] || fail "the agent did not report its HTTP address"
cat <&3 > /dev/null &

mkfifo "$dir/worker.out"
"$bin/perfq-example-worker" --queue "$queue" --fail chat.broken chat.message > "$dir/worker.out" &
worker_pid=$!
exec 4< "$dir/worker.out"
read -r -t 20 -u 4 ready || true
expect "worker registered" "$ready" "ready"

# curl: status code on the last line, body before it.
call() {
  curl -sS -w '\n%{http_code}' "$@"
}
body() { sed '$d' <<< "$1"; }
code() { tail -n1 <<< "$1"; }

# --- Submitting Queue Requests (the README's example, byte for byte)
submit_body='{
  "type": "chat.message",
  "mode": "priority",
  "priority": 10,
  "payload": {
    "conversationId": "123",
    "message": "Hello!"
  },
  "idempotencyKey": "unique-key-123"
}'
r=$(call -X POST "$base/performance-queue/submit" -H "Authorization: Bearer $user_token" \
  -H 'Content-Type: application/json' --data-binary "$submit_body")
expect "POST submit status" "$(code "$r")" 201
b=$(body "$r")
id=$(jq -r .requestId <<< "$b")
expect "submit type" "$(jq -r .type <<< "$b")" chat.message
expect "submit mode" "$(jq -r .mode <<< "$b")" priority
expect "submit priority" "$(jq -r .priority <<< "$b")" 10
expect "submit createdAt is ISO 8601" "$(jq -r '.createdAt | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T")' <<< "$b")" true
expect "submit queuePosition is a number" "$(jq -r '.queuePosition | type' <<< "$b")" number

# The same idempotency key again: the original request, not a new one.
r=$(call -X POST "$base/performance-queue/submit" -H "Authorization: Bearer $user_token" \
  -H 'Content-Type: application/json' --data-binary "$submit_body")
expect "duplicate submit status" "$(code "$r")" 201
expect "duplicate submit id" "$(jq -r .requestId <<< "$(body "$r")")" "$id"
expect "duplicate flag" "$(jq -r .duplicate <<< "$(body "$r")")" true

# --- Checking Request Status: until the worker has completed it.
deadline=$((SECONDS + 20))
status=
while [ $SECONDS -lt $deadline ]; do
  r=$(call "$base/performance-queue/status/$id" -H "Authorization: Bearer $user_token")
  [ "$(code "$r")" = 200 ] || fail "GET status: $(code "$r") $(body "$r")"
  status=$(jq -r .status <<< "$(body "$r")")
  [ "$status" = completed ] && break
done
expect "GET status/:requestId" "$status" completed
r=$(call "$base/performance-queue/status/$id")
expect "status without a token" "$(code "$r")" 401
r=$(call "$base/performance-queue/status/$id" -H "Authorization: Bearer not-a-token")
expect "status with an unknown token" "$(code "$r")" 401

# --- A request the worker rejects: it lands in the DLQ.
r=$(call -X POST "$base/performance-queue/submit" -H "Authorization: Bearer $user_token" \
  -H 'Content-Type: application/json' --data-binary '{"type":"chat.broken","payload":{"n":1}}')
expect "POST submit (to be rejected)" "$(code "$r")" 201

# --- Admin Endpoints
r=$(call "$base/performance-queue/health" -H "Authorization: Bearer $admin_token")
expect "GET health" "$(code "$r")" 200
expect "health status field" "$(jq -r '.status | test("^(healthy|degraded|unhealthy)$")' <<< "$(body "$r")")" true
expect "health activeWorkers" "$(jq -r .activeWorkers <<< "$(body "$r")")" 1
r=$(call "$base/performance-queue/health" -H "Authorization: Bearer $user_token")
expect "GET health with a user token" "$(code "$r")" 403

deadline=$((SECONDS + 20))
dlq_id=
while [ $SECONDS -lt $deadline ]; do
  r=$(call "$base/performance-queue/dlq?limit=50" -H "Authorization: Bearer $admin_token")
  [ "$(code "$r")" = 200 ] || fail "GET dlq: $(code "$r") $(body "$r")"
  dlq_id=$(jq -r '.entries[0].dlqId // empty' <<< "$(body "$r")")
  [ -n "$dlq_id" ] && break
done
[ -n "$dlq_id" ] || fail "the rejected request never reached the DLQ"
expect "GET dlq?limit=50 entry type" "$(jq -r '.entries[0].type' <<< "$(body "$r")")" chat.broken

r=$(call "$base/performance-queue/metrics?period=60" -H "Authorization: Bearer $admin_token")
expect "GET metrics?period=60" "$(code "$r")" 200
m=$(body "$r")
expect "metrics period" "$(jq -r .period <<< "$m")" "60 minutes"
expect "metrics totalSubmitted" "$(jq -r .totalSubmitted <<< "$m")" 2
expect "metrics totalCompleted" "$(jq -r .totalCompleted <<< "$m")" 1
expect "metrics totalFailed" "$(jq -r .totalFailed <<< "$m")" 1
expect "metrics by type" "$(jq -r '.byType["chat.message"].totalCompleted' <<< "$m")" 1
r=$(call "$base/performance-queue/metrics?period=0" -H "Authorization: Bearer $admin_token")
expect "GET metrics?period=0" "$(code "$r")" 400

r=$(call -X POST "$base/performance-queue/dlq/$dlq_id/review" -H "Authorization: Bearer $admin_token" \
  -H 'Content-Type: application/json' --data-binary '{
  "resolution": "Fixed and reprocessed manually"
}')
expect "POST dlq/:dlqId/review" "$(code "$r")" 204
r=$(call -X POST "$base/performance-queue/dlq/$dlq_id/review" -H "Authorization: Bearer $admin_token" \
  -H 'Content-Type: application/json' --data-binary '{"resolution": "again"}')
expect "review twice" "$(code "$r")" 409
r=$(call "$base/performance-queue/dlq/$dlq_id" -H "Authorization: Bearer $admin_token")
expect "reviewed resolution" "$(jq -r .resolution <<< "$(body "$r")")" "Fixed and reprocessed manually"

# --- Prometheus and the probes
r=$(call "$base/metrics" -H "Authorization: Bearer $admin_token")
expect "GET /metrics" "$(code "$r")" 200
if command -v promtool > /dev/null; then
  body "$r" | promtool check metrics || fail "promtool rejected /metrics"
  echo "ok  promtool check metrics"
fi
expect "GET /livez" "$(code "$(call "$base/livez")")" 200
expect "GET /readyz" "$(code "$(call "$base/readyz")")" 200

# Nothing secret in the audit log.
for secret in "$user_token" "$admin_token" unique-key-123 Hello; do
  if grep -q -- "$secret" "$dir/data/audit.log"; then fail "audit.log holds a secret or payload"; fi
done
echo "ok  audit.log holds no token, key or payload"
echo "seed_readme: all requests answered as the seed's clients expect"
