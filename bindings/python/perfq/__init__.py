"""perfq: a lock-free shared-memory request queue (Python binding).

    import perfq
    with perfq.Queue("orders", user_id="alice") as q:
        sub = q.submit("chat.message", {"text": "hi"})
        out = q.result(sub.request_id, timeout=5)

See bindings/python/README.md for the whole API and its decisions.
"""

import asyncio
import atexit
import inspect
import json
import logging
import os as _os
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

if _os.environ.get("PERFQ_PYTHON_NATIVE"):
    # A build tree's module (CTest sets it, so an unstaged tree tests its own).
    import importlib.util as _util
    import sys as _sys

    _spec = _util.spec_from_file_location(__name__ + "._perfq",
                                          _os.environ["PERFQ_PYTHON_NATIVE"])
    _perfq = _util.module_from_spec(_spec)
    _sys.modules[_spec.name] = _perfq
    _spec.loader.exec_module(_perfq)
else:
    from . import _perfq
from ._errors import *  # noqa: F401,F403 (the exception classes are perfq's API)
from ._errors import ClosedError, Error, InvalidModeError, InvalidPriorityError
from ._errors import InvalidRequestError, PermanentError, _from_native, error_class

__all__ = [
    "Queue",
    "Submitted",
    "Outcome",
    "RequestStatus",
    "Context",
    "BatchItem",
    "EVENT_NAMES",
    "error_class",
] + list(_errors.__all__)  # noqa: F405

_log = logging.getLogger("perfq")

# SPEC §5 event names; on() also takes "events.missed" and "*" (every event).
EVENT_NAMES = (
    "request.submitted",
    "request.assigned",
    "request.processing",
    "request.completed",
    "request.failed",
    "request.timeout",
    "request.cancelled",
    "request.retrying",
    "request.dead_lettered",
    "queue.full",
    "queue.empty",
)
_LISTENABLE = frozenset(EVENT_NAMES) | {"events.missed", "*"}

# How often the event thread polls the event ring while listeners exist.
EVENT_POLL_INTERVAL_S = 0.02


@dataclass(frozen=True)
class Submitted:
    """What submit() answers: the HTTP submit response's fields, snake_case.
    ``status`` is "unknown" for a duplicate whose original the status table no
    longer holds; ``band`` is an extra (the band the request was queued in)."""

    request_id: str
    status: str
    mode: str
    type: str
    priority: int
    created_at: str
    queue_position: int
    duplicate: bool
    band: str


@dataclass(frozen=True)
class Outcome:
    """What became of a request (result()/result_async()), for every final
    status. ``result``: the processor's reply when completed (parsed JSON when
    it is JSON, else bytes; None when empty). ``error``: the SPEC code when not
    completed (PROCESSOR_ERROR, CANCELLED, PROCESSING_TIMEOUT, QUEUE_TIMEOUT,
    WORKER_DIED ...), else None. ``message``: the last attempt's error text
    when not completed, else None."""

    request_id: str
    status: str
    result: Any
    error: Optional[str]
    message: Optional[str]
    attempts: int
    wait_time_ms: float
    processing_time_ms: float

    @property
    def ok(self):
        return self.status == "completed"


@dataclass(frozen=True)
class RequestStatus:
    """status(): the HTTP status record's fields, snake_case. ``finished_at``
    and ``error`` are None while they do not apply."""

    request_id: str
    status: str
    mode: str
    type: str
    priority: int
    band: str
    user_id: str
    attempts: int
    created_at: str
    finished_at: Optional[str]
    error: Optional[str]


@dataclass(frozen=True)
class Context:
    """What a processor learns about the attempt besides the payload
    (``metadata`` parsed from JSON, None when absent)."""

    request_id: str
    type: str
    user_id: str
    mode: str
    priority: int
    attempt: int
    metadata: Optional[dict]
    payload_bytes: int  # the payload's size as sent, before decoding


class BatchItem(NamedTuple):
    """One request of a batch: ``payload, ctx = item`` works too."""

    payload: Any
    ctx: Context


# ----------------------------------------------------------------- encoding


def _encode_payload(payload):
    if payload is None:
        return b""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload)
    if isinstance(payload, (dict, list)):
        try:
            return json.dumps(payload, separators=(",", ":")).encode()
        except (TypeError, ValueError) as e:
            raise InvalidRequestError(
                f"payload could not be encoded as JSON ({e.__class__.__name__})") from None
    raise InvalidRequestError(
        f"payload must be a dict, a list, bytes or None, not {payload.__class__.__name__}")


def _encode_metadata(metadata):
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise InvalidRequestError("metadata must be a dict")
    try:
        return json.dumps(metadata, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise InvalidRequestError(
            f"metadata could not be encoded as JSON ({e.__class__.__name__})") from None


def _decode(data):
    """Bytes from the segment: None when empty, parsed JSON when it is JSON,
    else the bytes themselves (a C/C++ producer may send any bytes)."""
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:  # includes UnicodeDecodeError and JSONDecodeError
        return data


def _encode_result(result):
    if result is None:
        return b""
    if isinstance(result, (bytes, bytearray, memoryview)):
        return bytes(result)
    return json.dumps(result, separators=(",", ":")).encode()


def _error_text(e):
    # The exception's own text only: payloads appear only if the processor
    # put them in its message.
    text = str(e)
    return f"{e.__class__.__name__}: {text}" if text else e.__class__.__name__


async def _settle_async(aw):
    # What an async processor's coroutine ends with, as the adapter answers.
    try:
        return (0, _encode_result(await aw))
    except PermanentError as e:
        return (2, str(e) or "PermanentError")
    except Exception as e:  # noqa: BLE001 - it fails the attempt
        return (1, _error_text(e))


def _request_row(type, payload, mode, priority, idempotency_key, metadata):
    # One request checked and encoded as the native submit takes it.
    if not isinstance(type, str):
        raise InvalidRequestError("type must be a str")
    if not isinstance(mode, str):
        raise InvalidModeError("mode must be fifo, priority or batch")
    if (not isinstance(priority, int) or isinstance(priority, bool)
            or not 1 <= priority <= 20):
        raise InvalidPriorityError("priority must be an integer from 1 to 20")
    if idempotency_key is not None and not isinstance(idempotency_key, str):
        raise InvalidRequestError("idempotency_key must be a str")
    return (type, _encode_payload(payload), mode, priority, idempotency_key,
            _encode_metadata(metadata))


def _request_id(request_id):
    if isinstance(request_id, (Submitted, Outcome, RequestStatus)):
        return request_id.request_id
    if isinstance(request_id, int) and not isinstance(request_id, bool):
        if not 0 <= request_id < 1 << 64:
            raise InvalidRequestError("a request id is a 64-bit unsigned integer")
        return f"{request_id:016x}"
    if isinstance(request_id, str):
        return request_id
    raise InvalidRequestError("a request id is 16 hexadecimal digits")


def _outcome(t):
    rid, status, body, error, attempts, wait_ms, proc_ms = t
    result = message = None
    if status == "completed":
        result = _decode(body)
    elif body:
        message = body.decode("utf-8", errors="replace")
    return Outcome(rid, status, result, error, message, attempts, wait_ms, proc_ms)


def _context(c):
    rid, type_, user, mode, priority, attempt, metadata, size = c
    meta = None
    if metadata:
        try:
            meta = json.loads(metadata)
        except ValueError:
            meta = None
    return Context(rid, type_, user, mode, priority, attempt, meta, size)


_EVENT_FIELDS = ("id", "event", "at", "request_id", "type", "user_id", "status", "priority",
                 "mode", "attempt", "error")


def _event(t):
    ev = dict(zip(_EVENT_FIELDS, t))
    if ev.get("error", 0) is None:
        del ev["error"]  # as the agent's event JSON: only when there is one
    return ev


# ------------------------------------------------------------------- Queue

_open_queues = weakref.WeakSet()


@atexit.register
def _close_all():
    for q in list(_open_queues):
        try:
            q.close()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass


class Queue:
    """A connection to one queue (its shared-memory segment).

    ``user_id`` is who submits (and whose requests status()/cancel() may see);
    ``admin=True`` sees and cancels every user's requests. A worker-only
    Queue needs no user_id. ``max_uncollected``: settled outcomes nobody
    collected that are kept (the oldest go first). Raises AgentUnavailableError when no agent ever
    created the queue's segment. Thread-safe. Close it (or use ``with``):
    close() ends every wait with ClosedError, stops run_worker and the
    event thread, joins the threads it started and leaves the queue; any
    call afterwards raises ClosedError, except close() and off(), which do
    nothing.
    """

    def __init__(self, queue, user_id=None, admin=False, *, max_uncollected=65536):
        if not isinstance(queue, str):
            raise InvalidRequestError("queue must be a str")
        if user_id is not None and not isinstance(user_id, str):
            raise InvalidRequestError("user_id must be a str")
        self._name = queue
        self._seg = _perfq.attach(queue)
        if not isinstance(max_uncollected, int) or max_uncollected < 1:
            raise InvalidRequestError("max_uncollected must be a positive int")
        self._core = _perfq.QueueCore(self._seg, user_id, bool(admin), max_uncollected)
        self.user_id = user_id
        self.admin = bool(admin)
        self._lock = threading.Lock()
        self._closed = False
        self._closing = threading.Event()
        self._worker = None
        self._listeners = {}
        self._event_thread = None
        self._event_stop = None
        _open_queues.add(self)

    @property
    def name(self):
        return self._name

    @property
    def closed(self):
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self._closed else "open"
        return f"<perfq.Queue {self._name!r} user_id={self.user_id!r} {state}>"

    def _check_open(self):
        if self._closed:
            raise ClosedError("this perfq.Queue is closed")

    # ------------------------------------------------------------ producer

    def submit(self, type, payload=None, *, mode="fifo", priority=5, idempotency_key=None,
               metadata=None, wait=True, forget=False):
        """Submits a request (SPEC §5). ``payload``: a dict or list (sent as
        JSON), bytes (as they are) or None (empty). When the queue is full it
        waits up to rope_drop_timeout_ms for room (without the GIL), then
        raises QueueFullError; ``wait=False`` never waits. ``forget=True``:
        nobody will ask for the outcome (fire and forget; see forget()).
        Returns Submitted."""
        row = _request_row(type, payload, mode, priority, idempotency_key, metadata)
        s = Submitted(*self._core.submit(*row, bool(wait)))
        if forget and not s.duplicate:
            self._core.forget(s.request_id)
        return s

    def submit_many(self, requests, *, wait=True, forget=False):
        """Submits many requests in one call (one ring claim per band, one
        wake-up of the agent). ``requests``: dicts with submit's arguments
        (``type``, ``payload``, ``mode``, ``priority``, ``idempotency_key``,
        ``metadata``). Returns one entry per request, in order: a Submitted,
        or the Error that request alone met (a refused request fails no
        other; nothing is raised for them). When the queue is full, what did
        not fit waits for room (at most rope_drop_timeout_ms for the whole
        call, without the GIL); ``wait=False`` never waits.
        ``forget=True``: nobody will ask for the outcomes."""
        self._check_open()
        rows = []
        answers = [None] * len(requests)
        at = []
        for i, r in enumerate(requests):
            try:
                if not isinstance(r, dict):
                    raise InvalidRequestError("a request is a dict of submit's arguments")
                rows.append(_request_row(
                    r.get("type"), r.get("payload"), r.get("mode", "fifo"), r.get("priority", 5),
                    r.get("idempotency_key"), r.get("metadata")))
                at.append(i)
            except Error as e:
                answers[i] = e
        for i, a in zip(at, self._core.submit_many(rows, bool(wait))):
            if a[0]:
                s = Submitted(*a[1])
                if forget and not s.duplicate:
                    self._core.forget(s.request_id)
                answers[i] = s
            else:
                answers[i] = _from_native(*a[1:])
        return answers

    def result(self, request_id, timeout=None):
        """Waits for the outcome of a request this Queue submitted and
        returns it (an Outcome, for every final status; a failed request is
        not an exception). Releases the GIL while it waits; Ctrl-C works.
        Raises TimeoutError (the builtin) when ``timeout`` seconds pass,
        NotFoundError for a request not submitted here or whose outcome was
        already collected, ClosedError when close() ends the wait."""
        rid = _request_id(request_id)
        t = self._core.result(rid, -1.0 if timeout is None else max(0.0, float(timeout)))
        if t is None:
            raise TimeoutError(f"no outcome for request {rid} within {timeout} s")
        return _outcome(t)

    async def result_async(self, request_id, timeout=None):
        """result() for asyncio: never blocks the event loop. The Queue's
        completion thread resolves the awaiting future through
        loop.call_soon_threadsafe when the outcome arrives."""
        rid = _request_id(request_id)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def resolve():
            if fut.done():
                return
            try:
                fut.set_result(self.result(rid, timeout=0))
            except Exception as e:  # noqa: BLE001 - handed to the awaiting task
                fut.set_exception(e)

        def on_settled():  # the completion thread (or close()), with the GIL
            try:
                loop.call_soon_threadsafe(resolve)
            except RuntimeError:
                pass  # the loop is closed: nobody awaits any more

        if self._core.watch(rid, on_settled):
            resolve()
        try:
            if timeout is None:
                return await fut
            try:
                return await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(f"no outcome for request {rid} within {timeout} s") from None
        finally:
            # Timed out or cancelled: withdraw the callback (it holds this
            # Queue and the loop) rather than keep it until the request
            # settles. A no-op once it was called.
            self._core.unwatch(rid, on_settled)

    def forget(self, request_id):
        """Drops a request's outcome without waiting for it (fire and forget);
        returns whether this Queue was keeping it. Outcomes are otherwise kept
        until result() collects them, the Queue closes, or max_uncollected
        newer settled outcomes push them out. ClosedError after close()."""
        return self._core.forget(_request_id(request_id))

    def status(self, request_id):
        """The request's status record (RequestStatus). NotFoundError for an
        unknown request or another user's (unless admin)."""
        return RequestStatus(*self._core.status(_request_id(request_id)))

    def cancel(self, request_id):
        """Cancels a pending request. InvalidStatusError once it was
        dispatched or finished; NotFoundError for an unknown request or
        another user's (unless admin)."""
        self._core.cancel(_request_id(request_id))

    # -------------------------------------------------------------- worker

    def _worker_core(self):
        with self._lock:
            self._check_open()
            if self._worker is None:
                self._worker = _perfq.WorkerCore(self._seg)
            return self._worker

    def register_processor(self, type, fn):
        """Serves ``type`` with ``fn(payload, ctx)`` in run_worker. ``payload``
        is the decoded JSON (bytes when it is not JSON, None when empty);
        ``ctx`` a Context. Return a JSON-able value or bytes (the result).
        Raising an Exception fails the attempt (retried up to
        max_retry_attempts); raising PermanentError sends the request to the
        DLQ at once. The attempt's error text is "ExceptionClass: message"."""
        if not isinstance(type, str):
            raise InvalidRequestError("type must be a str")

        def adapter(payload, ctx):
            try:
                r = fn(_decode(payload), _context(ctx))
                if inspect.isawaitable(r):
                    return _settle_async(r)  # awaited with the rest of the batch
                return (0, _encode_result(r))
            except PermanentError as e:
                return (2, str(e) or "PermanentError")
            except Exception as e:  # noqa: BLE001 - it fails the attempt
                return (1, _error_text(e))

        self._worker_core().register_processor(type, adapter)

    def register_batch_processor(self, type, fn):
        """Serves ``type`` with ``fn(items) -> results``: ``items`` is a list of
        BatchItem(payload, ctx); the list returned holds one result per item,
        in order. An Exception instance in it fails that item (a
        PermanentError instance sends it to the DLQ); raising fails them all."""
        if not isinstance(type, str):
            raise InvalidRequestError("type must be a str")

        def one(r):
            if isinstance(r, PermanentError):
                return (2, str(r) or "PermanentError")
            if isinstance(r, BaseException):
                return (1, _error_text(r))
            try:
                return (0, _encode_result(r))
            except Exception as e:  # noqa: BLE001
                return (1, _error_text(e))

        def answers(results, n):
            out = [one(r) for r in list(results)[:n]]
            out += [(1, "the batch processor gave no result for this item")] * (n - len(out))
            return out

        async def settle(aw, n):
            try:
                return answers(await aw, n)
            except PermanentError as e:
                return [(2, str(e) or "PermanentError")] * n
            except Exception as e:  # noqa: BLE001
                return [(1, _error_text(e))] * n

        def adapter(items):
            batch = [BatchItem(_decode(p), _context(c)) for p, c in items]
            try:
                results = fn(batch)
                if inspect.isawaitable(results):
                    return settle(results, len(batch))
                return answers(results, len(batch))
            except PermanentError as e:
                return [(2, str(e) or "PermanentError")] * len(batch)
            except Exception as e:  # noqa: BLE001
                return [(1, _error_text(e))] * len(batch)

        self._worker_core().register_batch_processor(type, adapter)

    def run_worker(self, stop=None):
        """Runs the worker loop on the calling thread, with the GIL released
        except while processors run: it takes what is dispatched in batches
        (up to 16) and takes the GIL once per batch. Processors may be
        ``async def``: the coroutines of a batch are awaited together, on an
        event loop of this run_worker's own (so they run concurrently, up to
        the batch; they must not need another loop's objects). Returns when ``stop`` (a
        threading.Event) is set or close() is called (also from a processor
        or a signal handler on this thread: run_worker then leaves the queue
        and returns normally); a signal handler's
        exception (KeyboardInterrupt) propagates. Stop and signals are checked
        every ~100 ms. Works from a background thread too (signals are then
        the main thread's business)."""
        loops = []  # the event loop of this run's async processors, made on first need

        def gather(awaitables):
            if not loops:
                loops.append(asyncio.new_event_loop())

            async def all_of():
                return await asyncio.gather(*awaitables)
            return loops[0].run_until_complete(all_of())
        try:
            self._worker_core().run(stop, gather)
        finally:
            for loop in loops:
                loop.close()

    # -------------------------------------------------------------- events

    def on(self, event, callback):
        """Calls ``callback(event_dict)`` for each event named ``event`` (a
        SPEC §5 name, "events.missed", or "*" for all), from a background
        thread that polls the event ring every EVENT_POLL_INTERVAL_S while any
        listener exists. Events that happened before on() are not delivered."""
        if event not in _LISTENABLE:
            raise InvalidRequestError("unknown event name")
        with self._lock:
            self._check_open()
            self._listeners.setdefault(event, []).append(callback)
            if self._event_thread is None:
                reader = _perfq.EventsCore(self._seg)  # follows from now on
                self._event_stop = threading.Event()
                self._event_thread = threading.Thread(
                    target=self._event_loop, args=(reader, self._event_stop),
                    name=f"perfq-events-{self._name}", daemon=True)
                self._event_thread.start()
        return callback

    def off(self, event, callback=None):
        """Removes a listener (all of ``event``'s when callback is None); the
        event thread stops with the last one. After close() there is no
        listener left, and off() does nothing (it does not raise: it is
        cleanup, like close())."""
        thread = None
        with self._lock:
            cbs = self._listeners.get(event, [])
            if callback is None:
                cbs.clear()
            elif callback in cbs:
                cbs.remove(callback)
            if not cbs:
                self._listeners.pop(event, None)
            if not self._listeners and self._event_thread is not None:
                thread, self._event_thread = self._event_thread, None
                self._event_stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _event_loop(self, reader, stop):
        while True:
            missed, events = reader.poll(1024)
            if missed:
                self._dispatch({"event": "events.missed", "missed": missed})
            for t in events:
                self._dispatch(_event(t))
            if stop.wait(EVENT_POLL_INTERVAL_S):
                return

    def _dispatch(self, ev):
        with self._lock:
            cbs = list(self._listeners.get(ev["event"], ())) + list(self._listeners.get("*", ()))
        for cb in cbs:
            try:
                cb(ev)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the others
                _log.exception("perfq: an event listener raised")

    def events(self, timeout=None):
        """An iterator over events from this call on (dicts, as on() delivers
        them), polling every EVENT_POLL_INTERVAL_S; it ends after ``timeout``
        seconds (None: at close())."""
        self._check_open()
        reader = _perfq.EventsCore(self._seg)  # follows from now, not from the first next()
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._iterate_events(reader, deadline)

    def _iterate_events(self, reader, deadline):
        while not self._closed:
            missed, events = reader.poll(1024)
            if missed:
                yield {"event": "events.missed", "missed": missed}
            for t in events:
                yield _event(t)
            if deadline is not None and time.monotonic() >= deadline:
                return
            self._closing.wait(EVENT_POLL_INTERVAL_S)

    # --------------------------------------------------------------- close

    def close(self):
        """Idempotent. Ends result() waits (ClosedError), resolves pending
        result_async() awaits with ClosedError, stops run_worker and the event
        thread, joins every thread this Queue started and leaves the queue.
        Requests already submitted stay queued (the agent serves them).

        The producer side closes first, so a processor waiting in this
        Queue's result() or submit() ends (ClosedError) and run_worker can
        return. Called on the thread running run_worker (from a processor,
        or a signal handler), it asks run_worker to stop and returns;
        run_worker leaves the queue as a worker before it returns."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._closing.set()
            thread, self._event_thread = self._event_thread, None
            if self._event_stop is not None:
                self._event_stop.set()
            self._listeners.clear()
            worker = self._worker
        try:
            if thread is not None and thread is not threading.current_thread():
                thread.join()
        finally:
            try:
                self._core.close()
            finally:
                try:
                    if worker is not None:
                        worker.close()
                finally:
                    _open_queues.discard(self)
