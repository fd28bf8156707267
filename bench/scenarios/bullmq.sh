#!/usr/bin/env bash
# perfq beside BullMQ: the same Node producer and worker scenarios against a
# private redis-server + BullMQ and a perfq agent, rounds interleaved, with
# the C++ and Python clients of the same run beside them (bench/bullmq/).
# A benchmark, not a test: CI does not run it.
#   bench/scenarios/bullmq.sh [--rounds R] [--count N] [--rt-count N] [--window W]
#                             [--concurrency 1,8,32] [--pace-rate R] [--pace-count N]
#
# This script only makes sure the driver has what it needs, then hands over
# to it (bench/bullmq/driver.js, which starts, measures and cleans up):
# - the release build (cmake --preset release && cmake --build build);
# - redis-server from Debian: installed with apt-get when run as root (where
#   systemd runs, Debian's package also starts its own service on port 6379,
#   which this bench never uses), otherwise the command to run is printed;
# - bullmq from npm, into bench/bullmq/node_modules, from its lockfile.
set -euo pipefail
cd "$(dirname "$0")/../.."

for f in build/bin/perfq-agent build/bin/perfqctl build/bin/perfq-client-bench \
         build/bin/perfq-example-worker bindings/node/build/Release/perfq.node; do
  if [ ! -e "$f" ]; then
    echo "bullmq bench: $f is missing; build first: cmake --preset release && cmake --build build" >&2
    exit 1
  fi
done
if ! compgen -G 'bindings/python/perfq/_perfq*.so' > /dev/null; then
  echo "bullmq bench: the Python module is not staged; build first (cmake --build build)" >&2
  exit 1
fi

if ! command -v redis-server > /dev/null; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get > /dev/null; then
    echo "bullmq bench: installing redis-server (Debian package)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server > /dev/null
  else
    echo "bullmq bench: redis-server is missing; install it: sudo apt-get install redis-server" >&2
    exit 1
  fi
fi

bull=bench/bullmq
if [ ! -d "$bull/node_modules" ] || [ "$bull/package-lock.json" -nt "$bull/node_modules" ]; then
  echo "bullmq bench: npm ci in $bull" >&2
  (cd "$bull" && npm ci --no-audit --no-fund --loglevel=error)
  touch "$bull/node_modules"
fi

exec node "$bull/driver.js" "$@"
