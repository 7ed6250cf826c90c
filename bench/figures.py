"""`make figures`: the README's performance and reliability figures, measured.

Runs the benchmarks behind each target (bench/ingest.py, renderer.py,
turns.py, store_ops.py, coldstart.py) and `make load` (local/load.py, its
defaults: LOAD_USERS users for LOAD_SECONDS), RUNS times each (default 3),
one after another so they never share the machine with each other, and
prints each figure's median beside its target, the runs it came from, and
the machine they ran on. Nothing is compared with a figure from another day:
every ratio is one a benchmark measured side by side in its own run.

    .venv/bin/python bench/figures.py [--runs 3] [--only load,ingest]

The last line is JSON: {figure: {"median": m, "runs": [...], "target": t, "met": bool|null}}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / ".venv" / "bin" / "python"
RENDERER = ROOT / ".venv-renderer" / "bin" / "python"

Figures = dict[str, float]


@dataclass(frozen=True)
class Target:
    """A bound a figure must meet: `op` is ">=", "<=" or "=" (within 0.005)."""

    op: str
    bound: float

    def met(self, value: float) -> bool:
        if self.op == ">=":
            return value >= self.bound
        if self.op == "<=":
            return value <= self.bound
        return abs(value - self.bound) < 0.005

    def __str__(self) -> str:
        return f"{'≥' if self.op == '>=' else '≤' if self.op == '<=' else '='} {self.bound:g}"


def _last_json(out: str) -> dict[str, object]:
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            parsed: dict[str, object] = json.loads(line)
            return parsed
    raise ValueError("no JSON line in the output")


def ingest(out: str) -> Figures:
    # "  met    naive / ours on 12 MP JPEG >= 2.5: 2.83" — the bench names its targets.
    found = {}
    for m in re.finditer(r"^\s+(?:met|MISSED)\s+(.+?) (?:>=|<=) [\d.]+(?: MB)?: ([\d.]+)$", out, re.M):
        unit = " (MB)" if "memory" in m[1] else ""
        found[f"ingest: {m[1]}{unit}"] = float(m[2])
    # How fast this machine is: a plain Pillow decode-and-resize, a workload
    # nothing of ours is in (260 ms on the machine of the README's Ingest table).
    naive = re.search(r"^\| naive \| (\d+) ms", out, re.M)
    if naive:
        found["machine: naive Pillow resize of a 12 MP JPEG (ms)"] = float(naive[1])
    return found


def renderer(out: str) -> Figures:
    worst = re.search(r"^worst\s+(\d+)ms", out, re.M)
    return {"renderer: slowest style, one 1024 px avatar (ms)": float(worst[1])} if worst else {}


def turns(out: str) -> Figures:
    data = _last_json(out)
    ours, vertex = data["ours"], data["vertex_bytes"]
    assert isinstance(ours, dict) and isinstance(vertex, float | int)
    return {
        "model request bytes, turn 20 / turn 2": float(ours["bytes"]),
        "model input tokens, turn 20 / turn 2": float(ours["tokens"]),
        "model request bytes on Vertex AI, turn 20 / turn 2": float(vertex),
    }


def store_ops(out: str) -> Figures:
    row = re.search(r"^\s*2 \|\s*(\d+) \|\s*(\d+) \|\s*(\d+) \|\s*(\d+)$", out, re.M)
    ratios = _last_json(out)["100/2"]
    assert row and isinstance(ratios, dict)
    return {
        "per edit: Firestore reads": float(row[1]),
        "per edit: Firestore writes": float(row[2]),
        "per edit: storage operations": float(row[3]),
        "per edit: model request KB": float(row[4]) / 1024,
        "edit 100 / edit 2: Firestore reads": float(ratios["firestore reads"]),
        "edit 100 / edit 2: Firestore writes": float(ratios["firestore writes"]),
        "edit 100 / edit 2: storage operations": float(ratios["storage ops"]),
    }


def coldstart(out: str) -> Figures:
    points = _last_json(out)["entry_points"]
    assert isinstance(points, dict)
    lazy = [n for n in points if n not in ("generate", "edit")]

    def slowest(names: list[str]) -> float:
        return max(float(points[n]["total_ms"]) for n in names)

    return {
        "cold start: first request of generate/edit (ms)": slowest(["generate", "edit"]),
        "cold start: slowest first request of the others (ms)": slowest(lazy),
        "cold start: functions without a model call that load google.genai": float(
            sum("google.genai" in points[n]["loaded"] for n in lazy)
        ),
    }


def load(out: str) -> Figures:
    head = re.search(r"^load: \d+ users, \d+ s, \d+ cycles, (\d+) requests, ([\d.]+) req/s", out, re.M)
    rows = {
        m[1].strip(): (float(m[2]), float(m[3]))
        for m in re.finditer(r"^(.{22}) +\d+ +(\d+) +(\d+) +\d+$", out, re.M)
    }
    overhead = re.search(r"overhead beyond the model call .*: p50 (\d+) ms, p95 (\d+) ms", out)
    firestore = re.search(r"Firestore operations per request: ([\d.]+)", out)
    storage = re.search(r"storage operations per request: ([\d.]+)", out)
    faults = re.search(r"^faults injected: (.*)$", out, re.M)
    assert head and overhead and firestore and storage and faults, out[-2000:]
    figures = {
        "load: requests per second": float(head[2]),
        "load: POST generate p50 (ms)": rows["POST generate"][0],
        "load: POST generate p95 (ms)": rows["POST generate"][1],
        "load: POST edit p50 (ms)": rows["POST edit"][0],
        "load: POST edit p95 (ms)": rows["POST edit"][1],
        "load: reads (GET sessions/{id}) p95 (ms)": rows["GET sessions/{id}"][1],
        "load: overhead beyond the model call, p50 (ms)": float(overhead[1]),
        "load: overhead beyond the model call, p95 (ms)": float(overhead[2]),
        "load: Firestore operations per request": float(firestore[1]),
        "load: storage operations per request": float(storage[1]),
        "load: kinds of fault injected": float(sum("met a" not in f for f in faults[1].split(", "))),
        "load: audit passed": 1.0 if out.rstrip().endswith("audit: pass") else 0.0,
    }
    return figures


@dataclass(frozen=True)
class Bench:
    name: str
    argv: list[str]
    parse: Callable[[str], Figures]
    timeout_s: float = 1200


BENCHES = (
    Bench("ingest", [str(MAIN), "bench/ingest.py"], ingest),
    Bench("renderer", [str(RENDERER), "bench/renderer.py"], renderer),
    Bench("turns", [str(MAIN), "bench/turns.py"], turns),
    Bench("store_ops", [str(MAIN), "bench/store_ops.py"], store_ops),
    Bench("coldstart", [str(MAIN), "bench/coldstart.py"], coldstart),
    Bench("load", [str(MAIN), "-m", "local.load"], load),
)

# The targets the issues set (ingest names its own in its output).
TARGETS = {
    "ingest: naive / ours on 12 MP JPEG": Target(">=", 2.5),
    "ingest: naive / ours on 48 MP JPEG": Target(">=", 3.0),
    "ingest: ours / pyvips on 12 MP JPEG": Target("<=", 1.3),
    "ingest: ours / pyvips on 48 MP JPEG": Target("<=", 1.3),
    "ingest: peak added memory on 48 MP JPEG (MB)": Target("<=", 60.0),
    "renderer: slowest style, one 1024 px avatar (ms)": Target("<=", 700.0),
    "model request bytes, turn 20 / turn 2": Target("<=", 1.25),
    "model input tokens, turn 20 / turn 2": Target("<=", 1.25),
    "model request bytes on Vertex AI, turn 20 / turn 2": Target("<=", 1.25),
    "edit 100 / edit 2: Firestore reads": Target("=", 1.0),
    "edit 100 / edit 2: Firestore writes": Target("=", 1.0),
    "edit 100 / edit 2: storage operations": Target("=", 1.0),
    "cold start: functions without a model call that load google.genai": Target("=", 0.0),
    "load: kinds of fault injected": Target(">=", 10.0),
    "load: audit passed": Target("=", 1.0),
}


def shown(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def machine() -> str:
    cpu = "unknown CPU"
    info = Path("/proc/cpuinfo")
    if info.exists():
        names = re.findall(r"^model name\s*:\s*(.+)$", info.read_text(), re.M)
        cpu = names[0] if names else cpu
    mem = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kb = re.search(r"^MemTotal:\s+(\d+) kB", meminfo.read_text(), re.M)
        mem = f", {int(kb[1]) / 1024**2:.0f} GB RAM" if kb else ""
    return (
        f"{os.cpu_count()} cores ({cpu}){mem}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


OUT = ROOT / "out" / "figures"


def run_once(bench: Bench, n: int) -> str:
    """One run's output, also kept as out/figures/<bench>-<n>.txt (`--from` reads them back)."""
    proc = subprocess.run(
        bench.argv, cwd=ROOT, capture_output=True, text=True, timeout=bench.timeout_s, check=False
    )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{bench.name}-{n}.txt").write_text(proc.stdout)
    if proc.returncode != 0 and bench.name != "load":  # a failed audit is a figure; a crash is not
        raise RuntimeError(f"bench {bench.name} failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return proc.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--from", dest="saved", action="store_true", help=f"read the runs kept in {OUT}")
    args = parser.parse_args(argv)
    chosen = [b for b in BENCHES if not args.only or b.name in args.only.split(",")]
    print(f"machine: {machine()}; {time.strftime('%Y-%m-%d', time.gmtime())}", flush=True)
    runs: dict[str, list[float]] = {}
    for n in range(1, args.runs + 1):
        for bench in chosen:
            began = time.monotonic()
            out = (OUT / f"{bench.name}-{n}.txt").read_text() if args.saved else run_once(bench, n)
            print(f"run {n}/{args.runs}: {bench.name} ({time.monotonic() - began:.0f} s)", flush=True)
            try:
                figures = bench.parse(out)
            except Exception as err:  # one bench's output not as expected: say so, go on
                print(f"  could not read {bench.name} run {n}: {err!r}", flush=True)
                continue
            for name, value in figures.items():
                runs.setdefault(name, []).append(value)
    print(f"\n| figure | target | median of {args.runs} | runs | |")
    print("|---|---|---|---|---|")
    summary: dict[str, dict[str, object]] = {}
    for name, values in runs.items():
        median = statistics.median(values)
        target = TARGETS.get(name)
        met = None if target is None else target.met(median)
        each = ", ".join(shown(v) for v in values)
        missed = 0 if target is None else sum(not target.met(v) for v in values)
        below = f"met ({missed} run below)" if missed else "met"
        mark = "" if met is None else below if met else "MISSED"
        print(f"| {name} | {target or '—'} | {shown(median)} | {each} | {mark} |")
        shown_target = str(target) if target else None
        summary[name] = {"median": median, "runs": values, "target": shown_target, "met": met}
    print(json.dumps(summary))
    return 0 if all(s["met"] is not False for s in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
