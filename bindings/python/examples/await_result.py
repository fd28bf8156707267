#!/usr/bin/env python3
"""Submits one request and prints its outcome as one JSON line:
{"requestId", "status", "result", "error", "attempts", "waitTimeMs",
"processingTimeMs"} (result: the processor's JSON reply, or null).
Exit status 0 when the request completed, 1 otherwise.

    python3 await_result.py --queue Q --type T [--user U] [--payload JSON]
                            [--mode M] [--priority P] [--timeout SECONDS]
"""
import argparse
import json
import sys

import perfq


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queue", required=True)
    ap.add_argument("--type", required=True)
    ap.add_argument("--user", default="example")
    ap.add_argument("--mode", default="fifo")
    ap.add_argument("--priority", type=int, default=5)
    ap.add_argument("--payload", default="{}", help="a JSON object")
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()
    try:
        with perfq.Queue(args.queue, user_id=args.user) as q:
            s = q.submit(args.type, json.loads(args.payload), mode=args.mode,
                         priority=args.priority)
            o = q.result(s.request_id, timeout=args.timeout)
    except (perfq.Error, TimeoutError) as e:
        code = getattr(e, "code", "TIMEOUT")
        print(json.dumps({"error": code, "message": str(e)}))
        return 1
    result = o.result
    if isinstance(result, bytes):
        result = result.decode("utf-8", errors="replace")
    print(json.dumps({
        "requestId": o.request_id,
        "status": o.status,
        "result": result,
        "error": o.error,
        "attempts": o.attempts,
        "waitTimeMs": o.wait_time_ms,
        "processingTimeMs": o.processing_time_ms,
    }))
    return 0 if o.ok else 1


if __name__ == "__main__":
    sys.exit(main())
