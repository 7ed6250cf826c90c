"""One logger setup: JSON lines that Cloud Logging understands, or plain text locally.

The request's trace id travels in a context variable so every line of one
request links to the same trace in the console.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from contextvars import ContextVar
from typing import Any

trace_var: ContextVar[str | None] = ContextVar("trace", default=None)
# The verified caller of the request being served, for error reports (hashed).
uid_var: ContextVar[str | None] = ContextVar("uid", default=None)
_configured = False
# A jsonPayload with this @type is captured by Cloud Error Reporting even
# without a stack trace (the message is then the error's text).
REPORTED_ERROR_EVENT = "type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent"


def uid_hash(uid: str) -> str:
    """What logs say about a user: the first 16 hex digits of sha256(uid), never the uid."""
    return hashlib.sha256(uid.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def error_report(method: str, path: str, status: int, code: str | None = None) -> dict[str, Any]:
    """`extra=` fields that make a log line an Error Reporting event for one request:
    the @type, `context.httpRequest`, and `code` / `uid_hash` where known."""
    extra: dict[str, Any] = {
        "@type": REPORTED_ERROR_EVENT,
        "context": {"httpRequest": {"method": method, "url": path, "responseStatusCode": status}},
    }
    if code is not None:
        extra["code"] = code
    uid = uid_var.get()
    if uid is not None:
        extra["uid_hash"] = uid_hash(uid)
    return extra


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
        # Fields given with `extra=` (e.g. event="budget_exhausted") become
        # jsonPayload fields that log-based metrics and alerts can filter on.
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_") and name not in entry:
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
