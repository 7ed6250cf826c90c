"""Run the offline renderer: `python -m local.renderer --host 127.0.0.1 --port 8089`."""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv: list[str] | None = None) -> None:
    from .server import FAULTS, serve

    ap = argparse.ArgumentParser(
        prog="python -m local.renderer",
        description="Offline, Gemini-compatible avatar renderer (generateContent over HTTP).",
    )
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=8089, help="port to bind; 0 picks a free one (default 8089)")
    ap.add_argument("--fault", choices=FAULTS, help="inject this fault into every request")
    ap.add_argument(
        "--timeout-seconds",
        type=float,
        default=30.0,
        help="how long the 'timeout' fault stalls before answering (default 30)",
    )
    ap.add_argument("--quiet", action="store_true", help="no per-request log lines")
    ap.add_argument(
        "--storage-url",
        help="Cloud Storage JSON API host (fake-gcs) where gs:// file parts are read, as Vertex AI does",
    )
    args = ap.parse_args(argv)
    serve(
        args.host,
        args.port,
        fault=args.fault,
        timeout_s=args.timeout_seconds,
        quiet=args.quiet,
        storage_url=args.storage_url,
    )
    # Tearing down the mediapipe graphs at interpreter exit takes seconds and
    # does nothing useful for a server that is stopping: leave at once.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
