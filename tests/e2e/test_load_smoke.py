"""`make load`, short: two users for a few seconds (and on until the crash and
both store outages are over) in a subprocess, as `python -m local.load` runs;
the audit passes and the figures are sane. Then a run with a planted orphan
object: the audit must catch it and fail."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from local.stack import MODEL_BACKEND_VARS

ROOT = Path(__file__).resolve().parents[2]


def load(*args: str) -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if k not in MODEL_BACKEND_VARS}
    return subprocess.run(
        [sys.executable, "-m", "local.load", "--users", "2", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip


def test_a_short_load_run_passes_its_audit_with_sane_figures() -> None:
    run = load("--seconds", "10", "--think", "0.2")
    lines = run.stdout.strip().splitlines()
    assert run.returncode == 0 and lines[-1] == "audit: pass", run.stdout + run.stderr[-2000:]
    head = re.match(r"load: 2 users, (\d+) s, (\d+) cycles, (\d+) requests, ([\d.]+) req/s", lines[0])
    assert head, lines[0]
    seconds, cycles, requests_, rate = int(head[1]), int(head[2]), int(head[3]), float(head[4])
    assert cycles >= 2 and requests_ >= 10 * cycles and 0 < rate < 1000
    assert abs(rate - requests_ / max(seconds, 1)) < rate  # the rate is the count over the time
    rows = {m[1].strip(): [int(x) for x in m.groups()[1:]] for m in (
        re.match(r"(.{22}) +(\d+) +(\d+) +(\d+) +(\d+)$", line) for line in lines) if m}  # fmt: skip
    for endpoint in (
        "POST uploads",
        "POST generate",
        "POST edit",
        "GET account/export",
        "DELETE uploads/{id}",
    ):
        assert endpoint in rows, rows
    for n, p50, p95, p99 in rows.values():
        assert n >= 1 and 0 <= p50 <= p95 <= p99 < 60_000
    assert sum(r[0] for r in rows.values()) == requests_
    assert re.search(r"overhead beyond the model call .*: p50 \d+ ms", run.stdout)
    ops = re.search(r"storage operations per request: ([\d.]+) \((\d+) by", run.stdout)
    assert ops and 0.5 < float(ops[1]) < 20, run.stdout  # every cycle writes and deletes objects
    firestore = r"Firestore operations per request: ([\d.]+) \(\d+ RPCs by the functions: (.+)\)"
    rpcs = re.search(firestore, run.stdout)
    assert rpcs and 1 < float(rpcs[1]) < 50 and "Commit" in rpcs[2], run.stdout  # counted at the gate
    # The crash and both store outages happened under load, and the audit still passed.
    assert "killed mid-request" in run.stdout
    assert re.search(r"firestore stopped and restarted \(down [\d.]+ s\)", run.stdout), run.stdout
    assert re.search(r"storage stopped and restarted \(down [\d.]+ s\)", run.stdout), run.stdout
    assert re.search(r"budget: \d+ units spent of \d+; \d+ images", run.stdout), run.stdout


def test_the_audit_catches_a_planted_orphan_object() -> None:
    run = load("--seconds", "2", "--no-outages", "--plant-orphan")  # the audit only: no faults needed
    last = run.stdout.strip().splitlines()[-1]
    assert run.returncode == 1, run.stdout
    assert last.startswith("audit: FAIL") and "orphans 1: " in last and "planted/orphan.png" in last, last
