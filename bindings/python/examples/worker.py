#!/usr/bin/env python3
"""An example worker: serves the types named on its command line until
SIGTERM or SIGINT, then closes cleanly. Each reply is
{"processed": true, "type": T, "bytes": N} (never the payload itself);
types given with --fail fail for good (PermanentError: straight to the DLQ).

    python3 worker.py --queue Q [--fail TYPE]... TYPE...

It prints "ready" once every type is registered, so scripts can wait for
that line instead of for time (as perfq-example-worker does).
"""
import argparse
import signal
import sys
import threading

import perfq


def echo(payload, ctx):
    return {"processed": True, "type": ctx.type, "bytes": ctx.payload_bytes}


def reject(payload, ctx):
    raise perfq.PermanentError("rejected by example")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queue", required=True)
    ap.add_argument("--fail", action="append", default=[], metavar="TYPE")
    ap.add_argument("types", nargs="*")
    args = ap.parse_args()
    if not args.types and not args.fail:
        ap.error("name at least one type")

    stop = threading.Event()
    # The handlers only set the event; run_worker notices it within ~100 ms.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        q = perfq.Queue(args.queue)
    except perfq.Error as e:
        print(f"worker: {e}", file=sys.stderr)
        return 1
    with q:
        for t in args.types:
            q.register_processor(t, echo)
        for t in args.fail:
            q.register_processor(t, reject)
        print("ready", flush=True)
        q.run_worker(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
