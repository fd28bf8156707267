#!/usr/bin/env bash
# The Kubernetes example (deploy/kubernetes/chat-with-perfq.yaml) laid out
# on this machine as its pod would be, and the demo load run through it:
#   - the pod's /dev/shm: a tmpfs of the emptyDir's sizeLimit, shared by
#     every container (a mount namespace of the test's own);
#   - the pod's network: a network namespace with its own loopback, so the
#     probe listener takes the manifest's port;
#   - each container in a PID namespace of its own, under the manifest's
#     uid, gid and fsGroup: the agent with the manifest's PERFQ_*
#     environment, the chat server's processes (perfq-bench demo: producers
#     and a worker) as its user with the fsGroup as a supplementary group;
#   - the kubelet's probes: /livez and /readyz on the probe port, /metrics;
#   - the preStop hook, run as the manifest gives it: the agent drains and
#     exits with nothing left.
# Two settings differ: the data dir (a scratch directory instead of the
# volume), and the per-user rate limit, off, since the demo's producers are
# one user each and the manifest keeps the seed's 60 a minute.
#   tests/e2e/pod_layout.sh BIN_DIR
# Needs root (mount, network and PID namespaces); exits 77 without it.
set -euo pipefail
bin=$(cd "${1:?usage: pod_layout.sh BIN_DIR}" && pwd)
e2e_name=pod_layout
source "$(dirname "$0")/lib.sh"
manifest=$(cd "$(dirname "$0")/../../deploy/kubernetes" && pwd)/chat-with-perfq.yaml

if [ "$(id -u)" != 0 ] || ! unshare --mount --net --pid --fork true 2>/dev/null; then
  echo "pod_layout: skipped: needs root and unshare --mount --net --pid"
  exit 77
fi
if [ ! -x "$bin/perfq-bench" ]; then  # the sanitizer trees build no benchmarks
  echo "pod_layout: skipped: no perfq-bench in $bin (the demo load)"
  exit 77
fi

# What the manifest says, as shell assignments.
eval "$(python3 - "$manifest" <<'PY'
import shlex, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
pod = next(d for d in docs if d.get("kind") in ("StatefulSet", "Deployment"))["spec"]["template"]["spec"]
agent = next(c for c in pod["containers"] if c["name"] == "perfq-agent")
chat = next(c for c in pod["containers"] if c["name"] != "perfq-agent")
shm = next(v for v in pod["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory")
units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
size = shm["emptyDir"]["sizeLimit"]
size_bytes = int(size[:-2]) * units[size[-2:]] if size[-2:] in units else int(size)
port = next(p["containerPort"] for p in agent["ports"] if p["name"] == "perfq-probe")
env = " ".join(shlex.quote(f"{e['name']}={e['value']}") for e in agent["env"])
out = {
  "shm_bytes": size_bytes,
  "probe_port": port,
  "agent_uid": agent["securityContext"]["runAsUser"],
  "agent_gid": agent["securityContext"]["runAsGroup"],
  "chat_uid": chat["securityContext"]["runAsUser"],
  "chat_gid": chat["securityContext"]["runAsGroup"],
  "fs_group": pod["securityContext"]["fsGroup"],
  "pre_stop": " ".join(shlex.quote(w) for w in agent["lifecycle"]["preStop"]["exec"]["command"]),
  "queue": next(e["value"] for e in agent["env"] if e["name"] == "PERFQ_QUEUE"),
}
for k, v in out.items():
  print(f"{k}={shlex.quote(str(v))}")
print(f"agent_env=({env})")
PY
)"

if [ "${POD_LAYOUT_INSIDE:-}" != 1 ]; then
  # Again, inside the pod's namespaces: /dev/shm of the sizeLimit, a
  # loopback of its own.
  exec unshare --mount --net env POD_LAYOUT_INSIDE=1 bash -c \
    'mount -t tmpfs -o "size=$2,mode=1777" tmpfs /dev/shm && ip link set lo up &&
     exec bash "$0" "$1"' "$0" "$bin" "$shm_bytes"
fi

dir=$(mktemp -d)
chmod 755 "$dir"
mkdir "$dir/data"
chown "$agent_uid:$fs_group" "$dir/data"
agent_pid=
cleanup() {
  # The agent is the first process of its PID namespace, unshare's child:
  # killing it ends the namespace.
  if [ -n "$agent_pid" ]; then
    pkill -KILL -P "$agent_pid" 2>/dev/null || true
    kill -KILL "$agent_pid" 2>/dev/null || true
  fi
  pkill -KILL -f "^$bin/perfq-bench demo --queue $queue" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
# container UID GID GROUPS CMD...: CMD as a container of the pod would run it.
# It replaces the (sub)shell that runs it, so $! of `container ... &` is
# unshare, whose child is CMD (the first process of the namespace).
container() {
  local uid=$1 gid=$2 groups=$3
  shift 3
  exec unshare --pid --fork --mount-proc \
    setpriv --reuid "$uid" --regid "$gid" --groups "$groups" --inh-caps=-all "$@"
}
# (perfqctl and perfq-agent on its PATH, as in the image)
as_agent() { container "$agent_uid" "$agent_gid" "$fs_group" env PATH="$bin:$PATH" "${agent_env[@]}" "$@"; }
probe() { curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$probe_port$1"; }

# --- the agent's container, as the manifest configures it
mkfifo "$dir/agent.log"
as_agent PERFQ_DATA_DIR="$dir/data" PERFQ_MAX_REQUESTS_PER_USER_PER_MINUTE=0 "$bin/perfq-agent" \
  2> "$dir/agent.log" &
agent_pid=$!
exec 3< "$dir/agent.log"
line=$(await_line 3 '"event":"agent.start"') || fail "the agent did not start in the pod's layout"
segment_bytes=$(jq -r .segmentBytes <<< "$line")
cat <&3 > "$dir/agent.rest" &
[ "$segment_bytes" -le "$shm_bytes" ] || fail "segment $segment_bytes > sizeLimit $shm_bytes"
until_ok 20 test "$(probe /readyz)" = 200 || fail "/readyz never answered 200"
[ "$(probe /livez)" = 200 ] || fail "/livez is not 200"
ok "the agent runs in the pod's /dev/shm ($segment_bytes of $shm_bytes bytes), probes 200"

# --- the chat server's container: the demo load, as its user
out=$(container "$chat_uid" "$chat_gid" "$fs_group" \
  "$bin/perfq-bench" demo --queue "$queue" --seconds 2 --producers 2 2>&1) ||
  fail "the demo load failed in the pod's layout: $out"
echo "$out" | grep -E "requests in|by status" || true
grep -q "requests in" <<< "$out" || fail "the demo printed no figures: $out"
completed=$(curl -sS "http://127.0.0.1:$probe_port/metrics" |
  awk '/^perfq_requests_completed_total/ { n += $2 } END { print n + 0 }')
[ "$completed" -gt 0 ] || fail "/metrics shows no completed request"
ok "the demo load ran through it from another PID namespace and uid ($completed completed)"

# --- the preStop hook, as the manifest gives it, in the agent's container
rc=0
drained=$(eval "as_agent $pre_stop" 2>&1) || rc=$?
[ "$rc" = 0 ] || fail "preStop ($pre_stop) exited $rc: $drained"
grep -q "nothing left" <<< "$drained" || fail "preStop: $drained"
wait "$agent_pid" || fail "the agent exited $? after the drain"
agent_pid=
ok "the preStop drain ends the agent with nothing left"
