#!/usr/bin/env python3
"""Round-trip and submit-throughput benchmark of the Python binding.

Runs against an already-running agent (rate limit off:
--max-requests-per-user-per-minute 0) and `perfq-example-worker --queue Q
bench.echo`. Measures
  1. round trip: submit, then await the result, one at a time, 64-byte
     payload: p50/p90/p99 in microseconds;
  2. submit throughput: --count submits, at most --window outstanding
     (results collected as the window fills and at the end), in submits/s.
Prints one JSON line:
  {"binding":"python","count":N,"roundTripP50Us":..,"roundTripP90Us":..,
   "roundTripP99Us":..,"submitPerSec":..}

    python3 roundtrip.py --queue Q [--count N] [--window W] [--round-trips R]
"""
import argparse
import collections
import json
import sys
import time

import perfq


def percentile(sorted_values, q):
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[k]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queue", required=True)
    ap.add_argument("--count", type=int, default=20000, help="submits in the throughput phase")
    ap.add_argument("--round-trips", type=int, default=5000)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--type", default="bench.echo")
    args = ap.parse_args()

    payload = b'{"pad":"' + b"x" * 54 + b'"}'  # 64 bytes
    assert len(payload) == 64
    with perfq.Queue(args.queue, user_id="bench") as q:
        # warm-up
        for _ in range(200):
            q.result(q.submit(args.type, payload), timeout=30)

        # 1. round trip, one at a time
        samples = []
        clock = time.perf_counter_ns
        for _ in range(args.round_trips):
            t0 = clock()
            s = q.submit(args.type, payload)
            o = q.result(s.request_id, timeout=30)
            samples.append((clock() - t0) / 1000.0)
            if o.status != "completed":
                print(f"roundtrip: request {o.request_id} ended {o.status}", file=sys.stderr)
                return 1
        samples.sort()

        # 2. submit throughput with a bounded window of outstanding requests
        outstanding = collections.deque()
        t0 = time.perf_counter()
        for _ in range(args.count):
            outstanding.append(q.submit(args.type, payload).request_id)
            if len(outstanding) >= args.window:
                q.result(outstanding.popleft(), timeout=30)
        while outstanding:
            q.result(outstanding.popleft(), timeout=30)
        elapsed = time.perf_counter() - t0

    print(json.dumps({
        "binding": "python",
        "count": args.count,
        "roundTripP50Us": round(percentile(samples, 0.50), 1),
        "roundTripP90Us": round(percentile(samples, 0.90), 1),
        "roundTripP99Us": round(percentile(samples, 0.99), 1),
        "submitPerSec": round(args.count / elapsed),
    }, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
