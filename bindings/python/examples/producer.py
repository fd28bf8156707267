#!/usr/bin/env python3
"""An example producer: submits --count requests of --type and exits without
waiting for their outcomes. Prints one JSON line: {"submitted": N,
"requestIds": [...]}.

    python3 producer.py --queue Q --type T [--count N] [--user U]
                        [--mode M] [--priority P] [--payload JSON]
"""
import argparse
import json
import sys

import perfq


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queue", required=True)
    ap.add_argument("--type", required=True)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--user", default="example")
    ap.add_argument("--mode", default="fifo")
    ap.add_argument("--priority", type=int, default=5)
    ap.add_argument("--payload", default="{}", help="a JSON object")
    args = ap.parse_args()
    payload = json.loads(args.payload)
    ids = []
    try:
        with perfq.Queue(args.queue, user_id=args.user) as q:
            for _ in range(args.count):
                s = q.submit(args.type, payload, mode=args.mode, priority=args.priority)
                q.forget(s.request_id)  # fire and forget: keep no outcome
                ids.append(s.request_id)
    except perfq.Error as e:
        print(json.dumps({"submitted": len(ids), "requestIds": ids, "error": e.code}))
        print(f"producer: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"submitted": len(ids), "requestIds": ids}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
