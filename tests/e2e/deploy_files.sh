#!/usr/bin/env bash
# The files in deploy/ hold what they say:
#   - deploy/perfq.toml names every setting perfq-agent --help lists (set,
#     or commented out where the setting has no default), and an agent
#     started with it runs (every key it sets parses and is in range);
#   - deploy/perfq-agent@.service passes systemd-analyze verify (when this
#     machine has it).
#   tests/e2e/deploy_files.sh BIN_DIR
set -euo pipefail
bin=$(cd "${1:?usage: deploy_files.sh BIN_DIR}" && pwd)
e2e_name=deploy_files
source "$(dirname "$0")/lib.sh"
deploy=$(cd "$(dirname "$0")/../../deploy" && pwd)
dir=$(mktemp -d)
queue="deploy-$$"
agent_pid=
trap e2e_cleanup EXIT

# --- every setting in the sample config
missing=()
for flag in $("$bin/perfq-agent" --help | sed -n 's/^  --\([a-z0-9-]*\) .*(Env:PERFQ_.*/\1/p'); do
  [ "$flag" = config ] && continue  # the file itself
  key=${flag//-/_}
  grep -Eq "^(# )?$key = " "$deploy/perfq.toml" || missing+=("$key")
done
[ ${#missing[@]} = 0 ] || fail "deploy/perfq.toml lacks: ${missing[*]}"
ok "deploy/perfq.toml names every setting of perfq-agent --help"

# --- an agent runs on it (the queue, data dir and listener overridden)
mkfifo "$dir/agent.log"
"$bin/perfq-agent" --config "$deploy/perfq.toml" --queue "$queue" --data-dir "$dir/data" \
  --http off 2> "$dir/agent.log" &
agent_pid=$!
exec 3< "$dir/agent.log"
await_line 3 "DLQ journal" > /dev/null || fail "an agent on deploy/perfq.toml did not start"
kill -TERM "$agent_pid"
rc=0
wait "$agent_pid" || rc=$?
agent_pid=
[ "$rc" = 0 ] || fail "the agent on deploy/perfq.toml exited $rc"
ok "an agent runs on deploy/perfq.toml"

# --- the systemd unit, as an instance, pointing at this build's agent
if command -v systemd-analyze > /dev/null; then
  sed "s|/usr/bin/perfq-agent|$bin/perfq-agent|" "$deploy/perfq-agent@.service" \
    > "$dir/perfq-agent@chat.service"
  out=$(systemd-analyze verify "$dir/perfq-agent@chat.service" 2>&1) ||
    fail "systemd-analyze verify: $out"
  [ -z "$out" ] || fail "systemd-analyze verify: $out"
  ok "deploy/perfq-agent@.service passes systemd-analyze verify"
else
  echo "skip systemd-analyze is not installed"
fi
