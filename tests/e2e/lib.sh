# Helpers the e2e scripts share; source it after setting e2e_name.
# Every wait here is on an event with a bound: a line read with a timeout,
# or a check re-run without sleeping up to a deadline.

# e2e_cleanup: for `trap e2e_cleanup EXIT` in a script with one agent
# ($agent_pid, empty once it was stopped), its $queue and temp $dir.
e2e_cleanup() {
  [ -n "${agent_pid:-}" ] && kill -KILL "$agent_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  "$bin/perfqctl" --queue "$queue" destroy 2>/dev/null || true
  rm -rf "$dir"
}

fail() {
  echo "$e2e_name: FAIL: $*" >&2
  exit 1
}
ok() { echo "ok  $1"; }

# await_line FD PATTERN: reads FD (20 s at most per line) up to a line that
# contains PATTERN, and prints that line; returns 1 at EOF or timeout.
await_line() {
  local line
  while read -r -t 20 -u "$1" line; do
    case "$line" in *"$2"*) echo "$line"; return 0 ;; esac
  done
  return 1
}

# until_ok SECONDS CMD...: re-runs CMD until it succeeds, up to a deadline.
until_ok() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
  done
}

# spawn_worker FIFO FD CMD...: runs a worker CMD in the background with its
# stdout on a new FIFO read through descriptor FD, and returns once it has
# printed "ready" (perfq-example-worker does once its types are registered).
spawn_worker() {
  local fifo=$1 fd=$2
  shift 2
  mkfifo "$fifo"
  "$@" > "$fifo" &
  eval "exec $fd< \"\$fifo\""
  local line=
  read -r -t 20 -u "$fd" line || true
  [ "$line" = ready ] || fail "worker $* did not register: '$line'"
}
