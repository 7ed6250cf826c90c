"""One logger setup: JSON lines that Cloud Logging understands, or plain text locally.

The request's trace id travels in a context variable so every line of one
request links to the same trace in the console.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar

trace_var: ContextVar[str | None] = ContextVar("trace", default=None)
_configured = False


# The attributes every LogRecord has; anything else came with `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, project: str) -> None:
        super().__init__()
        self.project = project

    def format(self, record: logging.LogRecord) -> str:
        entry = {
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
                plain = isinstance(value, str | int | float | bool) or value is None
                entry[name] = value if plain else str(value)
        return json.dumps(entry)


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
