"""`make demo`: the main job, end to end, as the mobile app would do it.

Starts the local stack, uploads the bundled selfie through a signed upload
URL (as the app does in production), waits for the storage trigger to ingest
it, generates avatars in several styles (style packs: one `generate` call per
PACK styles), edits one of them over several rounds (with one undo/branch),
fetches every image through its signed URL, and writes the images, `report.json` and
a contact sheet under out/demo/. Exits non-zero if any step fails.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from local.app import AppClient, AppError
from local.stack import Stack

ROOT = Path(__file__).resolve().parent.parent
SELFIE = ROOT / "assets" / "selfie-astronaut.png"
# (instruction, edit from which turn: None = the head, or an index into the
# chain). The fourth edit goes back to turn 2 — an undo of the blue background —
# and the chain carries on from that branch.
EDITS: tuple[tuple[str, int | None], ...] = (
    ("add glasses", None),
    ("make the lighting warmer", None),
    ("make the background blue", None),
    ("make the eyes green", 2),
    ('add the name "Eileen"', None),
)
UID = "demo-user"
PACK = 6  # styles per `generate` call (the API's limit)


class DemoFailed(Exception):
    pass


def say(message: str) -> None:
    print(message, flush=True)


class Client(AppClient):
    """The app's calls; failures end the demo with what went wrong."""

    def __init__(self, stack: Stack, uid: str) -> None:
        super().__init__(stack.functions, stack.token(uid))

    def call(self, method: str, function: str, path: str = "/", body: Any = None) -> dict[str, Any]:
        try:
            return super().call(method, function, path, body)
        except AppError as err:
            raise DemoFailed(str(err)) from None

    def download(self, url: str, dest: Path) -> None:
        resp = self.http.get(url, timeout=30)
        if resp.status_code != 200:
            raise DemoFailed(f"image download failed: {resp.status_code}")
        dest.write_bytes(resp.content)


def run(stack: Stack, out: Path, styles: tuple[str, ...]) -> dict[str, Any]:
    client = Client(stack, UID)
    say(f"[demo] uploading {SELFIE.name} through a signed upload URL")
    started = time.monotonic()
    ticket = client.start_upload("image/png")
    upload_id = ticket["upload_id"]
    resp = client.put(ticket, SELFIE.read_bytes())
    if resp.status_code >= 300:
        raise DemoFailed(f"PUT to the signed URL failed: {resp.status_code} {resp.text[:200]}")
    try:
        upload = client.wait_upload(upload_id)
    except TimeoutError as err:
        raise DemoFailed(str(err)) from None
    if upload["status"] != "ready":
        raise DemoFailed(f"upload rejected: {upload.get('reason')}: {upload.get('message')}")
    say(f"[demo] ingested in {time.monotonic() - started:.1f} s: {upload['width']}x{upload['height']}")

    catalog = client.call("GET", "sessions", "/styles")
    known = {s["id"] for s in catalog["styles"]}
    unknown = [s for s in styles if s not in known]
    if unknown:
        raise DemoFailed(f"unknown styles {unknown}; the catalog has {sorted(known)}")

    report: dict[str, Any] = {"upload_id": upload_id, "catalog_version": catalog["version"], "sessions": []}
    done = 0
    for start in range(0, len(styles), PACK):
        pack = list(styles[start : start + PACK])
        began = time.monotonic()
        answer = client.call("POST", "generate", body={"upload_id": upload_id, "styles": pack})
        say(f"[demo] style pack of {len(pack)}: {time.monotonic() - began:.1f} s")
        for result in answer["results"]:
            style = result["style"]
            if "error" in result:
                raise DemoFailed(f"style {style}: {result['error']['code']}: {result['error']['message']}")
            turn = record(client, out, style, result, None)
            report["sessions"].append({"session_id": result["session_id"], "style": style, "turns": [turn]})
            done += 1
            say(f"[demo] {done}/{len(styles)} {style}: {turn['ms']} ms — {result['text']}")

    chain = report["sessions"][0]
    say(f"[demo] editing the {chain['style']} avatar in {len(EDITS)} rounds")
    for j, (instruction, from_index) in enumerate(EDITS, 1):
        body: dict[str, Any] = {"session_id": chain["session_id"], "instruction": instruction}
        if from_index is not None:
            body["from_turn"] = chain["turns"][from_index]["turn_id"]
        result = client.call("POST", "edit", body=body)
        turn = record(client, out, f"{chain['style']}-edit{j}", result, instruction)
        chain["turns"].append(turn)
        branch = f" (undo: from turn {from_index})" if from_index is not None else ""
        say(f"[demo] edit {j}/{len(EDITS)} {instruction!r}{branch}: {turn['ms']} ms — {result['text']}")

    listed = client.call("GET", "sessions", "/")
    ids = {s["session_id"] for s in listed["sessions"]}
    if not {s["session_id"] for s in report["sessions"]} <= ids:
        raise DemoFailed("sessions listing is missing a session the demo created")
    detail = client.call("GET", "sessions", f"/{chain['session_id']}")
    if len(detail["turns"]) != len(chain["turns"]):
        raise DemoFailed("session detail does not list every turn")
    return report


def record(
    client: Client, out: Path, stem: str, result: dict[str, Any], instruction: str | None
) -> dict[str, Any]:
    image = out / f"{stem}.png"
    client.download(result["image_url"], image)
    return {
        "turn_id": result["turn_id"],
        "parent_turn_id": result["parent_turn_id"],
        "instruction": instruction,
        "text": result["text"],
        "image": image.name,
        "ms": result["ms"],
        # PIXME_IDENTITY_CHECK=report: the likeness to the selfie and the skin-tone shift.
        "identity": result.get("identity"),
    }


def likeness_note(turn: dict[str, Any]) -> str:
    """ " · 0.47 ✓": the identity distance, and whether the style's threshold
    calls it the same person (? where the measure cannot tell)."""
    identity = turn.get("identity")
    if not identity or identity.get("distance") is None:
        return ""
    verdict = {True: "same person", False: "another person?", None: "not measurable here"}
    return f"\nlikeness {identity['distance']:.2f}: {verdict[identity.get('same_person')]}"


def contact_sheet(out: Path, report: dict[str, Any]) -> Path:
    """One PNG: the source, every style, and the edit chain."""
    tile, pad, label_h = 256, 12, 40
    rows: list[list[tuple[str, Image.Image]]] = [
        [("source selfie", Image.open(SELFIE))]
        + [
            (s["style"] + likeness_note(s["turns"][0]), Image.open(out / s["turns"][0]["image"]))
            for s in report["sessions"]
        ]
    ]
    chain = report["sessions"][0]
    by_id = {t["turn_id"]: i for i, t in enumerate(chain["turns"])}

    def caption(i: int, turn: dict[str, Any]) -> str:
        instruction = str(turn["instruction"] or "")
        if not instruction:
            return f"0: {chain['style']}"
        parent = by_id[turn["parent_turn_id"]]
        step = f"{i}: " if parent == i - 1 else f"{i} (from {parent}): "
        return step + instruction

    chain_tiles: list[tuple[str, Image.Image]] = [
        (caption(i, t) + likeness_note(t), Image.open(out / t["image"])) for i, t in enumerate(chain["turns"])
    ]
    rows.append(chain_tiles)
    columns = max(len(r) for r in rows)
    per_row = min(columns, 7)
    flat_rows: list[list[tuple[str, Image.Image]]] = []
    for row in rows:
        flat_rows += [row[i : i + per_row] for i in range(0, len(row), per_row)]
    width = pad + per_row * (tile + pad)
    height = pad + len(flat_rows) * (tile + label_h + pad)
    sheet = Image.new("RGB", (width, height), (245, 245, 242))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=14)
    for r, row in enumerate(flat_rows):
        for c, (label, img) in enumerate(row):
            x, y = pad + c * (tile + pad), pad + r * (tile + label_h + pad)
            thumb = img.convert("RGB")
            thumb.thumbnail((tile, tile))
            sheet.paste(thumb, (x + (tile - thumb.width) // 2, y + (tile - thumb.height) // 2))
            for line_no, line in enumerate(label.split("\n")[:2]):
                draw.text((x + 2, y + tile + 6 + 16 * line_no), line[:34], fill=(30, 30, 30), font=font)
    path = out / "contact-sheet.png"
    sheet.save(path)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "demo")
    parser.add_argument("--styles", default="all", help="comma-separated style ids, or 'all'")
    args = parser.parse_args()
    out: Path = args.out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    started = time.monotonic()
    try:
        # The report says how like the selfie each avatar is (README, "Likeness").
        with Stack(env_overrides={"PIXME_IDENTITY_CHECK": "report"}) as stack:
            styles = tuple(args.styles.split(","))
            if args.styles == "all":
                styles = tuple(
                    s["id"] for s in Client(stack, UID).call("GET", "sessions", "/styles")["styles"]
                )
            report = run(stack, out, styles)
    except DemoFailed as exc:
        say(f"[demo] FAILED: {exc}")
        return 1
    (out / "report.json").write_text(json.dumps(report, indent=2))
    sheet = contact_sheet(out, report)
    turns = sum(len(s["turns"]) for s in report["sessions"])
    say(
        f"[demo] done in {time.monotonic() - started:.1f} s: {len(report['sessions'])} styles, "
        f"{turns - len(report['sessions'])} edits, {turns} images"
    )
    say(f"[demo] report: {out / 'report.json'}\n[demo] contact sheet: {sheet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
