"""perfq's exceptions: one class per public error code (SPEC §3-§6).

Every error the library raises is a ``perfq.Error`` with ``.code`` (the SPEC
code, e.g. ``"QUEUE_FULL"``), ``.status_code`` (the HTTP status the code
answers with over HTTP, for parity with the HTTP API and perfqctl) and
``.retry_after_ms`` (set for RATE_LIMIT_EXCEEDED, else None). Messages never
contain payloads, tokens or idempotency keys.
"""

__all__ = [
    "Error",
    "InvalidRequestError",
    "InvalidModeError",
    "InvalidPriorityError",
    "QueueFullError",
    "RateLimitExceededError",
    "NotFoundError",
    "UnauthorizedError",
    "ForbiddenError",
    "InvalidStatusError",
    "WorkerUnavailableError",
    "ProcessingTimeoutError",
    "ProcessorError",
    "WorkerDiedError",
    "QueueTimeoutError",
    "CancelledError",
    "AgentUnavailableError",
    "SegmentInvalidError",
    "ConflictError",
    "InternalError",
    "ClosedError",
    "PermanentError",
]


class Error(Exception):
    """Base of every perfq error."""

    code = "INTERNAL"
    status_code = 500

    def __init__(self, message="", *, code=None, status_code=None, retry_after_ms=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.retry_after_ms = retry_after_ms

    def __str__(self):
        return f"{self.code}: {self.message}"


def _make(name, code, status):
    return type(name, (Error,), {"code": code, "status_code": status, "__module__": "perfq"})


InvalidRequestError = _make("InvalidRequestError", "INVALID_REQUEST", 400)
InvalidModeError = _make("InvalidModeError", "INVALID_MODE", 400)
InvalidPriorityError = _make("InvalidPriorityError", "INVALID_PRIORITY", 400)
QueueFullError = _make("QueueFullError", "QUEUE_FULL", 503)
RateLimitExceededError = _make("RateLimitExceededError", "RATE_LIMIT_EXCEEDED", 429)
NotFoundError = _make("NotFoundError", "NOT_FOUND", 404)
UnauthorizedError = _make("UnauthorizedError", "UNAUTHORIZED", 401)
ForbiddenError = _make("ForbiddenError", "FORBIDDEN", 403)
InvalidStatusError = _make("InvalidStatusError", "INVALID_STATUS", 400)
WorkerUnavailableError = _make("WorkerUnavailableError", "WORKER_UNAVAILABLE", 503)
ProcessingTimeoutError = _make("ProcessingTimeoutError", "PROCESSING_TIMEOUT", 500)
ProcessorError = _make("ProcessorError", "PROCESSOR_ERROR", 500)
WorkerDiedError = _make("WorkerDiedError", "WORKER_DIED", 500)
QueueTimeoutError = _make("QueueTimeoutError", "QUEUE_TIMEOUT", 500)
CancelledError = _make("CancelledError", "CANCELLED", 500)
AgentUnavailableError = _make("AgentUnavailableError", "AGENT_UNAVAILABLE", 503)
SegmentInvalidError = _make("SegmentInvalidError", "SEGMENT_INVALID", 500)
ConflictError = _make("ConflictError", "CONFLICT", 409)
InternalError = _make("InternalError", "INTERNAL", 500)


class ClosedError(Error):
    """The Queue was closed: raised by every call after close(), and by the
    result()/result_async() waits that close() ended. Its code "CLOSED" is the
    binding's own, not a SPEC code (no HTTP status: status_code is None)."""

    code = "CLOSED"
    status_code = None


ClosedError.__module__ = "perfq"
Error.__module__ = "perfq"

_BY_CODE = {
    cls.code: cls
    for cls in (
        InvalidRequestError, InvalidModeError, InvalidPriorityError, QueueFullError,
        RateLimitExceededError, NotFoundError, UnauthorizedError, ForbiddenError,
        InvalidStatusError, WorkerUnavailableError, ProcessingTimeoutError, ProcessorError,
        WorkerDiedError, QueueTimeoutError, CancelledError, AgentUnavailableError,
        SegmentInvalidError, ConflictError, InternalError, ClosedError,
    )
}


def error_class(code):
    """The exception class for a SPEC code (Error for an unknown one)."""
    return _BY_CODE.get(code, Error)


def _from_native(code, status_code, message, retry_after_ms):
    # Called by the native module's exception translator.
    cls = _BY_CODE.get(code, Error)
    return cls(
        message,
        code=code,
        status_code=status_code or None,
        retry_after_ms=retry_after_ms if code == "RATE_LIMIT_EXCEEDED" else None,
    )


class PermanentError(Exception):
    """Raise it from a processor to fail the request for good: no retry, it
    goes straight to the dead-letter queue. Its message (str(e)) becomes the
    attempt's error text."""

    __module__ = "perfq"
