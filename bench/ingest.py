"""Ingest's image pipeline against naive Pillow and libvips, side by side.

Task for every method: from the uploaded bytes to an upright, metadata-free
JPEG (q88) that fits in PIXME_MAX_SIDE (1536). Inputs are generated
(photo-like: smooth shapes plus grain, EXIF orientation 6 and GPS tags) and
kept in out/bench/ingest/:

    12 MP JPEG (4032x3024), 48 MP JPEG (8000x6000), 12 MP PNG, 12 MP HEIC

Methods:
    ours          pixme.images.normalize: header gate, DCT shrink-on-load
                  (draft), bicubic, sRGB, orientation last
    ours+face     the same plus what ingest adds: face detection (and a crop,
                  when there is a face)
    naive         exif_transpose, then thumbnail(LANCZOS), as in most tutorials
    naive-bicubic the same with Pillow's default filter, the one ours uses
    pyvips        thumbnail_buffer (shrink-on-load, autorotate), one thread

Each (method, input) runs in a fresh process: after a warm-up on a tiny file
of the same format (so loading libraries is not counted), the process resets
its peak RSS (/proc/self/clear_refs), runs once, and reports VmHWM - VmRSS as
the peak memory the call added (C allocations included, input bytes
excluded); then it times REPEAT more runs and reports the median.

    .venv/bin/python bench/ingest.py            # the table
    .venv/bin/python bench/ingest.py --quick    # fewer repeats
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "functions")]
OUT = ROOT / "out" / "bench" / "ingest"
SIDE = 1536
QUALITY = 88
INPUTS = {
    "12 MP JPEG": ("photo-12mp.jpg", (4032, 3024), "JPEG"),
    "48 MP JPEG": ("photo-48mp.jpg", (8000, 6000), "JPEG"),
    "12 MP PNG": ("photo-12mp.png", (4032, 3024), "PNG"),
    "12 MP HEIC": ("photo-12mp.heic", (4032, 3024), "HEIF"),
}
METHODS = ("ours", "ours+face", "naive", "naive-bicubic", "pyvips")


# --- inputs ---------------------------------------------------------------------------


def _photo(size: tuple[int, int]) -> object:
    from PIL import Image, ImageChops, ImageFilter

    w, h = size
    # Smooth colour fields (upscaled noise), soft shapes, and fine grain: it
    # compresses like a photo, unlike flat colour or pure noise.
    fields = [
        Image.effect_noise((w // 24, h // 24), 70).resize(size, Image.Resampling.BICUBIC) for _ in range(3)
    ]
    base = Image.merge("RGB", fields)
    shapes = Image.effect_noise((w // 6, h // 6), 90).convert("RGB").resize(size, Image.Resampling.NEAREST)
    base = Image.blend(base, shapes.filter(ImageFilter.GaussianBlur(3)), 0.25)
    grain = Image.effect_noise(size, 5).convert("RGB")
    return ImageChops.add(base, grain, scale=1.0, offset=-10)


def _exif() -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "PhoneMaker"
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)}
    return exif.tobytes()


def make_inputs() -> dict[str, Path]:
    from PIL import Image

    OUT.mkdir(parents=True, exist_ok=True)
    paths = {}
    for label, (name, size, fmt) in INPUTS.items():
        path = OUT / name
        if not path.exists():
            print(f"generating {label} ...", file=sys.stderr, flush=True)
            img: Image.Image = _photo(size)  # type: ignore[assignment]
            kwargs: dict[str, object] = {"exif": _exif()}
            if fmt == "JPEG":
                kwargs["quality"] = 90
            if fmt == "HEIF":
                from pillow_heif import register_heif_opener

                register_heif_opener()
                kwargs["quality"] = 80
            tmp = path.with_suffix(".tmp")
            img.save(tmp, fmt, **kwargs)
            tmp.replace(path)
        paths[label] = path
    return paths


# --- methods (run inside the measuring process) ------------------------------------------


def _method(name: str) -> Callable[[bytes], bytes]:
    if name in ("ours", "ours+face"):
        from pixme import faces, images

        def ours(data: bytes) -> bytes:
            return images.normalize(data, 1 << 30, 100_000_000, SIDE).data

        def ours_face(data: bytes) -> bytes:
            img = images.decode(data, 1 << 30, 100_000_000, SIDE)
            found = faces.detect(img)
            out = images.encode(img)
            if found:
                out += images.encode(faces.crop(img, found[0]), 90)
            return out

        return ours if name == "ours" else ours_face
    if name.startswith("naive"):
        from PIL import Image, ImageOps

        resample = Image.Resampling.LANCZOS if name == "naive" else Image.Resampling.BICUBIC

        def naive(data: bytes) -> bytes:
            img = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
            img.thumbnail((SIDE, SIDE), resample)
            out = io.BytesIO()
            img.convert("RGB").save(out, "JPEG", quality=QUALITY)
            return out.getvalue()

        return naive
    if name == "pyvips":
        os.environ["VIPS_CONCURRENCY"] = "1"
        import pyvips

        pyvips.cache_set_max(0)  # no help from cached operations between runs

        def vips(data: bytes) -> bytes:
            img = pyvips.Image.thumbnail_buffer(data, SIDE, height=SIDE, size="down")
            out: bytes = img.jpegsave_buffer(Q=QUALITY, keep="none")
            return out

        return vips
    raise ValueError(name)


def _status() -> dict[str, int]:
    text = Path("/proc/self/status").read_text()
    return {k: int(re.search(rf"{k}:\s+(\d+)", text).group(1)) for k in ("VmRSS", "VmHWM")}  # type: ignore[union-attr]


def measure(method: str, path: Path, repeat: int) -> dict[str, object]:
    from PIL import Image

    register = path.suffix == ".heic"
    if register:
        from pillow_heif import register_heif_opener

        register_heif_opener()
    fn = _method(method)
    fmt = {".jpg": "JPEG", ".png": "PNG", ".heic": "HEIF"}[path.suffix]
    tiny = io.BytesIO()
    Image.new("RGB", (320, 240), (90, 120, 150)).save(tiny, fmt, exif=_exif())
    try:
        fn(tiny.getvalue())  # load the libraries and code paths once
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:80]}
    data = path.read_bytes()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = _status()["VmRSS"]
    out = fn(data)
    added_mb = (_status()["VmHWM"] - before) / 1024
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(data)
        times.append((time.perf_counter() - t0) * 1000)
    size = Image.open(io.BytesIO(out[:])).size
    return {"ms": statistics.median(times), "added_mb": added_mb, "size": list(size), "bytes": len(data)}


# --- the table ------------------------------------------------------------------------------


def run(method: str, path: Path, repeat: int) -> dict[str, object]:
    cmd = [sys.executable, __file__, "--measure", method, str(path), "--repeat", str(repeat)]
    env = dict(os.environ, OMP_NUM_THREADS="1", VIPS_CONCURRENCY="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False, timeout=600)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:80]}
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--measure", nargs=2, metavar=("METHOD", "FILE"), help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="3 timed runs instead of 5")
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure[0], Path(args.measure[1]), args.repeat)))
        return 0

    repeat = 3 if args.quick else args.repeat
    inputs = make_inputs()
    results: dict[tuple[str, str], dict[str, object]] = {}
    for label, path in inputs.items():
        for method in METHODS:
            results[(label, method)] = run(method, path, repeat if "48" not in label else max(3, repeat - 2))

    def cell(label: str, method: str) -> str:
        r = results[(label, method)]
        if "error" in r:
            return "n/a"
        return f"{r['ms']:.0f} ms, +{r['added_mb']:.0f} MB"

    def ms(label: str, method: str) -> float | None:
        r = results[(label, method)]
        return None if "error" in r else float(r["ms"])  # type: ignore[arg-type]

    labels = list(inputs)
    sizes = " / ".join(f"{label} {inputs[label].stat().st_size / 1e6:.1f} MB" for label in labels)
    print(f"inputs: {sizes}; output fits {SIDE} px, JPEG q{QUALITY}; median of {repeat} runs\n")
    print("| method | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    for method in METHODS:
        print(f"| {method} | " + " | ".join(cell(label, method) for label in labels) + " |")
    print(
        "| **naive / ours** (speed-up) | "
        + " | ".join(_ratio(ms(lb, "naive"), ms(lb, "ours")) for lb in labels)
        + " |"
    )
    print(
        "| naive-bicubic / ours | "
        + " | ".join(_ratio(ms(lb, "naive-bicubic"), ms(lb, "ours")) for lb in labels)
        + " |"
    )
    print(
        "| **ours / pyvips** | "
        + " | ".join(_ratio(ms(lb, "ours"), ms(lb, "pyvips")) for lb in labels)
        + " |"
    )
    errors = {k: v["error"] for k, v in results.items() if "error" in v}
    for (label, method), error in errors.items():
        why = " (libvips in pyvips-binary has no HEVC decoder)" if "HEIC" in label else ""
        print(f"\n{method} on {label}: {error}{why}")

    print("\ntargets:")
    checks = [
        (
            "naive / ours on 12 MP JPEG >= 2.5",
            _q(ms("12 MP JPEG", "naive"), ms("12 MP JPEG", "ours")),
            2.5,
            True,
        ),
        (
            "naive / ours on 48 MP JPEG >= 3",
            _q(ms("48 MP JPEG", "naive"), ms("48 MP JPEG", "ours")),
            3.0,
            True,
        ),
        (
            "ours / pyvips on 12 MP JPEG <= 1.3",
            _q(ms("12 MP JPEG", "ours"), ms("12 MP JPEG", "pyvips")),
            1.3,
            False,
        ),
        (
            "ours / pyvips on 48 MP JPEG <= 1.3",
            _q(ms("48 MP JPEG", "ours"), ms("48 MP JPEG", "pyvips")),
            1.3,
            False,
        ),
        ("peak added memory on 48 MP JPEG <= 60 MB", _mb(results[("48 MP JPEG", "ours")]), 60.0, False),
    ]
    for text, value, bound, at_least in checks:
        met = value is not None and (value >= bound if at_least else value <= bound)
        shown = "n/a" if value is None else f"{value:.2f}"
        print(f"  {'met   ' if met else 'MISSED'} {text}: {shown}")
    return 0


def _q(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _ratio(a: float | None, b: float | None) -> str:
    q = _q(a, b)
    return "n/a" if q is None else f"x{q:.2f}"


def _mb(r: dict[str, object]) -> float | None:
    return None if "error" in r else float(r["added_mb"])  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
