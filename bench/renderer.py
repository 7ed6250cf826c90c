"""Time the offline renderer: every catalog style at 1024 px, in-process.

Run from the repo root with the renderer's own virtualenv:

    .venv-renderer/bin/python bench/renderer.py [--repeat 3] [--size 1024] [--strict]

Each row is one complete avatar as the server makes it (decode, face search,
framing with mesh and person mask, the style, PNG encoding), the median of
`--repeat` runs, split into analysis / style / encode. The target is 0.7 s per
1024 px avatar on a 2-core machine. `--strict` exits 1 if a style misses it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TARGET_MS = 700.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--image", default=str(ROOT / "assets" / "selfie-astronaut.png"))
    ap.add_argument("--strict", action="store_true", help="exit 1 when a style misses the target")
    args = ap.parse_args()

    import numpy as np

    from local.renderer import imaging as im
    from local.renderer.edits import Edit, apply
    from local.renderer.faces import FaceAnalyzer, Geometry
    from local.renderer.styles import STYLE_DEFS, Ctx

    t0 = time.perf_counter()
    analyzer = FaceAnalyzer()
    print(f"models loaded in {(time.perf_counter() - t0) * 1000:.0f} ms; cpus={os.cpu_count()}")
    data = Path(args.image).read_bytes()
    size = args.size

    rows: list[tuple[str, float, float, float, float]] = []
    for sid, sdef in STYLE_DEFS.items():
        analysis, style, encode, total = [], [], [], []
        for _ in range(args.repeat):
            a = time.perf_counter()
            rgb = im.decode_image(data)
            found = analyzer.find_face(rgb)
            if found is None:
                print("no face in the benchmark image", file=sys.stderr)
                return 2
            framing = analyzer.frame(found[0], found[1], size, size)
            b = time.perf_counter()
            ctx = Ctx(framing.image, framing.landmarks, framing.mask, framing.box, np.random.default_rng(7))
            out = sdef.render(ctx)
            c = time.perf_counter()
            im.encode_png(out.image, {"style": sid})
            d = time.perf_counter()
            analysis.append(b - a)
            style.append(c - b)
            encode.append(d - c)
            total.append(d - a)
        an, st, en, to = (statistics.median(x) * 1000 for x in (analysis, style, encode, total))
        rows.append((sid, an, st, en, to))

    # one edit of each kind on a rendered image, for reference
    found = analyzer.find_face(im.decode_image(data))
    assert found is not None
    framing = analyzer.frame(found[0], found[1], size, size)
    base = STYLE_DEFS["comics"].render(
        Ctx(framing.image, framing.landmarks, framing.mask, framing.box, np.random.default_rng(7))
    )
    geo = Geometry(base.faces, base.mask)
    edit_rows = []
    for edit in (
        Edit("glasses"),
        Edit("eye_color", ("blue", (35, 90, 210))),
        Edit("blur_bg"),
        Edit("bg_color", ("blue", (35, 90, 210))),
        Edit("grayscale"),
        Edit("warmer"),
        Edit("text", "Ana"),
    ):
        ts = []
        for _ in range(args.repeat):
            a = time.perf_counter()
            apply(base.image, geo, [edit], [], base.frame)
            ts.append(time.perf_counter() - a)
        edit_rows.append((edit.kind, statistics.median(ts) * 1000))

    print(
        f"\noffline renderer, {size}x{size}, median of {args.repeat} (target {TARGET_MS:.0f} ms per avatar)\n"
    )
    print(f"{'style':<14}{'analysis':>10}{'style':>9}{'png':>7}{'total':>9}  vs target")
    print("-" * 60)
    misses = 0
    for sid, an, st, en, to in rows:
        ok = to <= TARGET_MS
        misses += not ok
        print(f"{sid:<14}{an:>8.0f}ms{st:>7.0f}ms{en:>5.0f}ms{to:>7.0f}ms  {'ok' if ok else 'OVER'}")
    print("-" * 60)
    print(
        f"{'worst':<14}{'':>26}{max(r[4] for r in rows):>7.0f}ms  {misses} style(s) over {TARGET_MS:.0f} ms"
    )
    print(f"\n{'edit (alone)':<14}{'time':>9}")
    for kind, ms in edit_rows:
        print(f"{kind:<14}{ms:>7.0f}ms")
    return 1 if (args.strict and misses) else 0


if __name__ == "__main__":
    sys.exit(main())
