"""Structured logs: one JSON object per line, linked to the request's trace."""

from __future__ import annotations

import json
import logging

from pixme import logs


def test_trace_ids_come_from_either_header() -> None:
    assert logs.trace_from_headers({"X-Cloud-Trace-Context": "abc123/456;o=1"}) == "abc123"
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert logs.trace_from_headers({"traceparent": traceparent}) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert logs.trace_from_headers({}) is None


def test_json_lines_carry_severity_and_the_trace() -> None:
    formatter = logs.JsonFormatter("demo-p")
    record = logging.LogRecord("pixme", logging.WARNING, __file__, 1, "model busy %s", ("x",), None)
    token = logs.trace_var.set("abc123")
    try:
        entry = json.loads(formatter.format(record))
    finally:
        logs.trace_var.reset(token)
    assert entry["severity"] == "WARNING" and entry["message"] == "model busy x"
    assert entry["logging.googleapis.com/trace"] == "projects/demo-p/traces/abc123"
    assert "logging.googleapis.com/trace" not in json.loads(formatter.format(record))


def test_extra_fields_become_json_fields_for_metrics() -> None:
    logger = logging.getLogger("pixme.test")
    record = logger.makeRecord(
        "pixme.test", logging.ERROR, __file__, 1, "budget exhausted", (), None,
        extra={"event": "budget_exhausted", "daily_budget": 0},
    )  # fmt: skip
    entry = json.loads(logs.JsonFormatter("demo-p").format(record))
    assert entry["event"] == "budget_exhausted" and entry["daily_budget"] == 0
    assert entry["severity"] == "ERROR" and "args" not in entry and "msg" not in entry
