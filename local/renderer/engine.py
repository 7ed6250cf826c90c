"""From a parsed request to an answer: style selection, rendering and edits."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import edits as E
from . import imaging as im
from .drift import drift
from .faces import FaceAnalyzer, Geometry
from .styles import DEFAULT_STYLE, STYLE_DEFS, Ctx, match_style

_CAPTION_RE = re.compile(r'Write the text "(.+?)" on the image as a bold caption', re.S)
_EXTRA_RE = re.compile(r"\bAlso:\s*(.+?)(?=\s+Write the text \"|\s+Answer with one square image|$)", re.S)
_EDIT_RE = re.compile(r"Edit the last image:\s*(.+?)\.?\s+Keep the same person", re.S | re.I)
_ANSWER_RE = re.compile(r"\s*(Keep the same person.*|Answer with one square image.*)$", re.S | re.I)


@dataclass
class Outcome:
    text: str
    png: bytes | None = None


def seed_of(*parts: bytes | str) -> int:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else p.encode())
        h.update(b"\x00")
    return int.from_bytes(h.digest()[:8], "big")


def style_for(text: str) -> tuple[str, bool]:
    """Style id for a prompt, and whether it was recognised (else the default)."""
    head = re.split(r"About the person, for mood and props only:|\bAlso:", text, maxsplit=1)[0]
    sid = match_style(head) or match_style(text)
    return (sid, True) if sid else (DEFAULT_STYLE, False)


def edit_instruction(text: str) -> str:
    m = _EDIT_RE.search(text)
    if m:
        return m.group(1).strip()
    return _ANSWER_RE.sub("", text).strip()


def capability_reply() -> str:
    return "The offline renderer cannot do that edit. It can: " + "; ".join(E.CAPABILITIES) + "."


def _geometry_meta(
    style: str, geo: Geometry, captions: list[dict[str, str]], w: int, h: int, frame: int
) -> dict[str, Any]:
    return {
        "v": 1,
        "style": style,
        "frame": frame,
        "w": w,
        "h": h,
        "faces": [np.round(f, 1).tolist() for f in geo.faces],
        "mask": im.mask_to_b64(geo.mask) if geo.mask is not None else None,
        "captions": captions,
    }


def _geometry_from_meta(
    meta: dict[str, Any], w: int, h: int
) -> tuple[Geometry, list[dict[str, str]], str | None, int] | None:
    try:
        if meta.get("v") != 1 or meta.get("w") != w or meta.get("h") != h:
            return None
        faces = [np.array(f, np.float32).reshape(-1, 2) for f in meta.get("faces") or []]
        mask = im.mask_from_b64(meta["mask"], w, h) if meta.get("mask") else None
        caps = [{"text": str(c["text"]), "pos": str(c["pos"])} for c in meta.get("captions") or []]
        return Geometry(faces, mask), caps, meta.get("style"), int(meta.get("frame") or 0)
    except (KeyError, TypeError, ValueError):
        return None


def _sentence(parts: list[str]) -> str:
    if not parts:
        return ""
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


class Renderer:
    def __init__(self, analyzer: FaceAnalyzer | None = None) -> None:
        self.analyzer = analyzer or FaceAnalyzer()

    # ------------------------------------------------------------------
    def generate(
        self, text: str, image: bytes | None, out_w: int, out_h: int, size_note: str = ""
    ) -> Outcome:
        if image is None:
            return Outcome(
                "Please send a photo: the offline renderer needs a selfie with a clearly visible face "
                "to make an avatar."
            )
        style, recognised = style_for(text)
        rgb = im.decode_image(image)
        found = self.analyzer.find_face(rgb)
        if found is None:
            return Outcome(
                "No face was found in the photo, so no avatar was made. Please send a well-lit photo "
                "with one clearly visible face."
            )
        rgb, box = found
        framing = self.analyzer.frame(rgb, box, out_w, out_h)
        rng = np.random.default_rng(seed_of(image, style, text, f"{out_w}x{out_h}"))
        ctx = Ctx(framing.image, framing.landmarks, framing.mask, framing.box, rng)
        sdef = STYLE_DEFS[style]
        rendered = sdef.render(ctx)
        img = rendered.image
        geo = Geometry(rendered.faces, rendered.mask)
        captions: list[dict[str, str]] = []
        notes: list[str] = []
        extra = _EXTRA_RE.search(text)
        todo: list[E.Edit] = []
        if extra:
            parsed = E.parse(extra.group(1))
            todo = [e for e in parsed.edits if e.kind != "text"]
            if parsed.unsupported:
                notes.append(
                    "The offline renderer could not do: "
                    + "; ".join(f"'{u}'" for u in parsed.unsupported)
                    + "."
                )
        cap = _CAPTION_RE.search(text)
        if cap:
            todo.append(E.Edit("text", cap.group(1).strip()))
        done: list[str] = []
        if todo:
            img, done, failed = E.apply(img, geo, todo, captions, rendered.frame)
            if failed:
                notes.append("Not done: " + "; ".join(failed) + ".")
        lead = (
            ""
            if recognised
            else "No catalogue style was recognised in the prompt, so the default look was used: "
        )
        sentence = (
            f"{lead}Rendered offline as {sdef.summary}" if lead else f"Rendered offline as {sdef.summary}"
        )
        if done:
            sentence += "; also " + _sentence(done)
        reply = sentence + "." + size_note + (" " + " ".join(notes) if notes else "")
        png = im.encode_png(
            img, _geometry_meta(style, geo, captions, img.shape[1], img.shape[0], rendered.frame)
        )
        return Outcome(reply, png)

    # ------------------------------------------------------------------
    def drifted(self, outcome: Outcome) -> Outcome:
        """The same answer with another person's face (the `identity_drift`
        fault); the stored geometry still fits, so later edits work as usual."""
        assert outcome.png is not None
        img = im.decode_image(outcome.png, max_side=4096)
        meta = im.read_png_meta(outcome.png) or {}
        stored = _geometry_from_meta(meta, img.shape[1], img.shape[0])
        faces = stored[0].faces if stored else []
        if not faces:
            lms = self.analyzer.landmarks(img)
            faces = [lms] if lms is not None else []
        return Outcome(outcome.text, im.encode_png(drift(self.analyzer, img, faces), meta or None))

    # ------------------------------------------------------------------
    def edit(self, base: bytes, instruction_text: str, trusted: bool) -> Outcome:
        instruction = edit_instruction(instruction_text)
        parsed = E.parse(instruction)
        if not parsed.edits:
            return Outcome(capability_reply())
        img = im.decode_image(base, max_side=4096)
        h, w = img.shape[:2]
        stored = _geometry_from_meta(im.read_png_meta(base) or {}, w, h) if trusted else None
        if stored is not None:
            geo, captions, style, frame = stored
        else:
            # An image we cannot vouch for (or without stored geometry): analyse it.
            geo, captions, style, frame = Geometry([], None), [], None, 0
            lms = self.analyzer.landmarks(img)
            geo.faces = [lms] if lms is not None else []
        if geo.mask is None:
            geo.mask = self.analyzer.person_mask(img)
        img, done, failed = E.apply(img, geo, parsed.edits, captions, frame)
        if not done:
            return Outcome("Nothing could be applied: " + "; ".join(failed) + ". " + capability_reply())
        reply = "Edited offline: " + _sentence(done) + "."
        if failed:
            reply += " Not done: " + "; ".join(failed) + "."
        if parsed.unsupported:
            reply += (
                " The offline renderer cannot do: " + "; ".join(f"'{u}'" for u in parsed.unsupported) + "."
            )
        png = im.encode_png(img, _geometry_meta(style or "unknown", geo, captions, w, h, frame))
        return Outcome(reply, png)
