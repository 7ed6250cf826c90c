"""One logger setup: JSON lines that Cloud Logging understands, or plain text locally.

The request's trace id travels in a context variable so every line of one
request links to the same trace in the console; so do the ids a line is
about (the caller's uid hash, session, turn, upload, event id), which become
jsonPayload fields of every line logged while they are bound, not only words
in its message. Log-based metrics and alerts (infra/monitoring.tf) filter on
`event` and these fields; the vocabulary is in README.md, "Logs".
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

trace_var: ContextVar[str | None] = ContextVar("trace", default=None)
# The verified caller of the request being served (logged hashed).
uid_var: ContextVar[str | None] = ContextVar("uid", default=None)
# The ids the current request or event is about, added to each of its lines.
_fields: ContextVar[Mapping[str, object] | None] = ContextVar("log_fields", default=None)
_configured = False
# A jsonPayload with this @type is captured by Cloud Error Reporting even
# without a stack trace (the message is then the error's text).
REPORTED_ERROR_EVENT = "type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent"


def uid_hash(uid: str) -> str:
    """What logs say about a user: the first 16 hex digits of sha256(uid), never the uid."""
    return hashlib.sha256(uid.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def error_report(method: str, path: str, status: int, code: str | None = None) -> dict[str, Any]:
    """`extra=` fields that make a log line an Error Reporting event for one request:
    the @type, `context.httpRequest`, and `code` where known (`uid_hash` comes
    with every line of the request once the caller is known)."""
    extra: dict[str, Any] = {
        "@type": REPORTED_ERROR_EVENT,
        "context": {"httpRequest": {"method": method, "url": path, "responseStatusCode": status}},
    }
    if code is not None:
        extra["code"] = code
    return extra


def bind_uid(uid: str) -> None:
    """The user the current request or event is about: its hash goes on every
    later line of it. Outside a `scope` there is nothing to bind to."""
    if _fields.get() is not None:
        uid_var.set(uid)


def bind(**fields: object) -> None:
    """Add ids to every later line of the current request or event (None is
    left out); the `scope` undoes it when the request ends, and outside one
    there is nothing to bind to."""
    current = _fields.get()
    new = {k: v for k, v in fields.items() if v is not None}
    if current is not None and new:
        _fields.set({**current, **new})


@contextmanager
def scope(trace: str | None, **fields: object) -> Iterator[None]:
    """One request or event: its trace and ids, and no caller yet."""
    tokens = (trace_var.set(trace), uid_var.set(None), _fields.set({}))
    try:
        bind(**fields)
        yield
    finally:
        _fields.reset(tokens[2])
        uid_var.reset(tokens[1])
        trace_var.reset(tokens[0])


def event_trace(traceparent: object, event_id: str) -> str:
    """The trace of a CloudEvent delivery: the W3C traceparent extension when the
    sender set one, else one derived from the event id, so every line of every
    delivery of one event links together in the console."""
    if isinstance(traceparent, str):
        parts = traceparent.split("-")
        if len(parts) >= 2 and len(parts[1]) == 32:
            return parts[1]
    return hashlib.sha256(f"event:{event_id}".encode("utf-8", "surrogatepass")).hexdigest()[:32]


# The attributes every LogRecord has; anything else came with `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, project: str) -> None:
        super().__init__()
        self.project = project

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
        }
        trace = trace_var.get()
        if trace:
            entry["logging.googleapis.com/trace"] = f"projects/{self.project}/traces/{trace}"
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        uid = uid_var.get()
        if uid is not None:
            entry["uid_hash"] = uid_hash(uid)
        for name, value in (_fields.get() or {}).items():
            entry[name] = _plain(value)
        # Fields given with `extra=` (e.g. event="budget_exhausted") become
        # jsonPayload fields that log-based metrics and alerts can filter on.
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_") and name not in ("severity", "message"):
                entry[name] = _plain(value)
        return json.dumps(entry)


def _plain(value: object) -> object:
    """A JSON value: scalars as they are, dicts and lists of them kept as
    structure (e.g. an error report's `context`), anything else as its str."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


def setup(project: str, fmt: str) -> None:
    global _configured
    if _configured:
        return
    handler = logging.StreamHandler(sys.stdout)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(project))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    _configured = True


def trace_from_headers(headers: dict[str, str] | object) -> str | None:
    """The trace id from X-Cloud-Trace-Context or W3C traceparent."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    legacy = get("X-Cloud-Trace-Context")
    if legacy:
        return str(legacy).split("/", 1)[0] or None
    parent = get("traceparent")
    if parent:
        parts = str(parent).split("-")
        if len(parts) >= 2 and parts[1]:
            return parts[1]
    return None
