"""Natural-language edits the offline renderer can honestly perform.

`parse` splits an instruction into clauses and recognises, case-insensitively,
only what can be done with landmarks, a person mask and colour maths. Any
clause it does not understand is reported back, never silently dropped.
`apply` performs the recognised edits on an existing image, so that earlier
edits baked into that image stay.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from . import faces as F
from . import imaging as im
from .faces import Geometry
from .styles import iris_mask

CAPABILITIES = (
    "add glasses or sunglasses",
    "black and white",
    "warmer or cooler colours",
    "brighter or darker",
    "blur the background",
    "a plain background colour (e.g. 'make the background blue')",
    "eye colour (e.g. 'blue eyes')",
    "add a name or text (e.g. 'add the name Ana' or 'write \"Hello\"')",
)

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 40),
    "crimson": (170, 20, 50),
    "orange": (245, 130, 30),
    "yellow": (250, 215, 40),
    "gold": (212, 170, 50),
    "golden": (212, 170, 50),
    "green": (40, 160, 70),
    "lime": (140, 220, 50),
    "olive": (110, 120, 40),
    "teal": (0, 128, 128),
    "turquoise": (40, 200, 190),
    "cyan": (0, 200, 230),
    "blue": (35, 90, 210),
    "navy": (20, 30, 90),
    "purple": (120, 50, 170),
    "violet": (140, 80, 220),
    "lavender": (180, 160, 230),
    "pink": (245, 140, 180),
    "magenta": (220, 30, 160),
    "brown": (110, 70, 40),
    "hazel": (140, 110, 50),
    "amber": (220, 150, 40),
    "black": (15, 15, 18),
    "white": (248, 248, 245),
    "grey": (128, 128, 132),
    "gray": (128, 128, 132),
    "silver": (190, 192, 198),
    "beige": (225, 210, 180),
}
_COLOUR_RE = (
    r"(?:(light|pale|pastel|dark|deep|bright)[\s-]+)?(sky blue|"
    + "|".join(sorted(COLOURS, key=len, reverse=True))
    + r")\b"
)

_NUMBER_WORDS = {"one", "a", "an"}


@dataclass(frozen=True)
class Edit:
    kind: str
    arg: Any = None
    region: str = "all"

    def describe(self) -> str:
        k = self.kind
        if k == "glasses":
            return "drew glasses on the eye landmarks, following the head tilt"
        if k == "sunglasses":
            return "drew sunglasses on the eye landmarks, following the head tilt"
        if k == "grayscale":
            return "turned the image black and white"
        if k in ("warmer", "cooler", "brighter", "darker"):
            where = " in the background" if self.region == "background" else ""
            return (
                f"made the colours {k}{where}" if k in ("warmer", "cooler") else f"made the image {k}{where}"
            )
        if k == "blur_bg":
            return "blurred the background behind the person"
        if k == "bg_color":
            return f"replaced the background with plain {self.arg[0]}"
        if k == "eye_color":
            return f"recoloured the irises {self.arg[0]}"
        if k == "text":
            return f'wrote "{self.arg}" on the image'
        return k


@dataclass
class Parsed:
    edits: list[Edit]
    unsupported: list[str]


def _colour(match: re.Match[str]) -> tuple[str, tuple[int, int, int]]:
    mod, name = match.group(1), match.group(2)
    rgb = np.array((135, 200, 240) if name == "sky blue" else COLOURS[name], np.float32)
    if mod in ("light", "pale", "pastel"):
        rgb = rgb + (255 - rgb) * 0.5
    elif mod in ("dark", "deep"):
        rgb = rgb * 0.55
    elif mod == "bright":
        hsv = cv2.cvtColor(np.uint8(rgb)[None, None], cv2.COLOR_RGB2HSV)[0, 0].astype(np.float32)
        hsv[1] = min(255, hsv[1] * 1.2)
        hsv[2] = min(255, hsv[2] * 1.15)
        rgb = cv2.cvtColor(np.uint8(hsv)[None, None], cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
    label = f"{mod} {name}" if mod else name
    r, g, b = (int(v) for v in np.clip(rgb, 0, 255))
    return str(label), (r, g, b)


_QUOTE_RE = re.compile(r"[\"“”„«»]([^\"“”„«»]{1,60})[\"“”„«»]|'([^']{1,60})'(?!\w)")
_NAME_RE = re.compile(
    r"\b(?:name|called|caption|title|text|label|words?)\s+(?:of\s+|saying\s+|that\s+says\s+|reading\s+|is\s+)?"
    r"([^\s,.;:!?]+(?:\s+(?!and\b|on\b|at\b|in\b|to\b|with\b|please\b|below\b|under\b|above\b)[^\s,.;:!?]+){0,2})",
    re.IGNORECASE,
)
_TEXT_VERB = re.compile(r"\b(add|write|put|print|place|caption|label|sign|title|name|text|letter)", re.I)
_NEGATE = re.compile(r"\b(remove|without|take off|get rid|delete|no more|lose|drop)\b", re.I)


def parse(instruction: str) -> Parsed:
    """Recognise every edit in `instruction`; collect clauses that mean nothing to us."""
    text = instruction.strip()
    # Protect quoted strings from clause splitting.
    quoted: list[str] = []

    def _hold(m: re.Match[str]) -> str:
        quoted.append((m.group(1) or m.group(2)).strip())
        return f" QUOTED{len(quoted) - 1} "

    held = _QUOTE_RE.sub(_hold, text)
    held = re.sub(r"black[\s-]*(?:and|&|n)[\s-]*white|\bb\s*&\s*w\b", " blackwhite ", held, flags=re.I)
    clauses = [c.strip() for c in re.split(r"[,;.!]|\band\b|\bthen\b|\balso\b|\bplus\b|&", held, flags=re.I)]
    edits: list[Edit] = []
    unsupported: list[str] = []
    for raw in clauses:
        if not raw or raw.lower() in _NUMBER_WORDS:
            continue
        found = _parse_clause(raw, quoted)
        if found is None:
            original = re.sub(r"QUOTED(\d+)", lambda m: f'"{quoted[int(m.group(1))]}"', raw)
            if re.search(r"[a-z]{3,}", original, re.I) and not _filler(original):
                unsupported.append(original.strip())
            continue
        for e in found:
            if e not in edits:
                edits.append(e)
    return Parsed(edits, unsupported)


_FILLER = re.compile(
    r"^(please|pls|thanks|thank you|now|ok|okay|can you|could you|the|it|image|picture|photo|too|as well|"
    r"make|me|a bit|a little|slightly|more|some|very|really|\s)+$",
    re.I,
)


def _filler(s: str) -> bool:
    return bool(_FILLER.match(s.strip()))


def _parse_clause(raw: str, quoted: list[str]) -> list[Edit] | None:
    low = raw.lower()
    out: list[Edit] = []
    # text / names
    q = re.search(r"QUOTED(\d+)", raw)
    if q and (_TEXT_VERB.search(low) or low.strip().startswith("quoted")):
        out.append(Edit("text", quoted[int(q.group(1))]))
        low = low.replace(q.group(0).lower(), " ")
    elif re.search(r"\b(add|write|put|print|place|include)\b", low) and re.search(
        r"\b(name|caption|title|text|label|words?)\b", low
    ):
        m = _NAME_RE.search(raw)
        if m and m.group(1).lower() not in ("on", "the", "a", "at"):
            out.append(Edit("text", m.group(1)))
            return out
    # glasses
    g = re.search(r"\b(sun\s*glasses|shades|glasses|spectacles|specs|eyeglasses)\b", low)
    if g:
        if _NEGATE.search(low):
            return None
        out.append(
            Edit("sunglasses" if g.group(1).startswith("sun") or g.group(1) == "shades" else "glasses")
        )
        low = low.replace(g.group(0), " ")
    region = "all"
    if re.search(r"\b(background|backdrop|behind)\b", low):
        if re.search(r"\b(blur|blurry|blurred|bokeh|out of focus|defocus|soft)\b", low):
            out.append(Edit("blur_bg"))
            return out
        c = re.search(_COLOUR_RE, low)
        if c:
            label, rgb = _colour(c)
            out.append(Edit("bg_color", (label, rgb)))
            return out
        region = "background"
    elif re.search(r"\bbokeh\b", low):
        out.append(Edit("blur_bg"))
        return out
    if re.search(r"\b(eyes?|iris|irises|eye colou?r)\b", low):
        c = re.search(_COLOUR_RE, low)
        if c:
            label, rgb = _colour(c)
            out.append(Edit("eye_color", (label, rgb)))
            return out
        return out or None
    if re.search(
        r"blackwhite|gr[ae]y\s*scale|monochrome|\bb\s*&\s*w\b|\bb/w\b|desaturat|no colou?rs?\b", low
    ):
        out.append(Edit("grayscale"))
    if re.search(r"\b(warm|warmer|warmth|sunnier|golden tones?|warm up)\b", low):
        out.append(Edit("warmer", region=region))
    if re.search(r"\b(cool|cooler|colder|cold|icier|bluish tint)\b", low):
        out.append(Edit("cooler", region=region))
    if re.search(r"\b(bright|brighter|brighten|lighter|lighten|less dark)\b", low):
        out.append(Edit("brighter", region=region))
    if re.search(r"\b(dark|darker|darken|dimmer|moodier|less bright)\b", low):
        out.append(Edit("darker", region=region))
    return out or None


# ==========================================================================
# applying


_ORDER = (
    "blur_bg",
    "bg_color",
    "grayscale",
    "warmer",
    "cooler",
    "brighter",
    "darker",
    "eye_color",
    "glasses",
    "sunglasses",
    "text",
)


def needs_face(e: Edit) -> bool:
    return e.kind in ("glasses", "sunglasses", "eye_color")


def needs_mask(e: Edit) -> bool:
    return e.kind in ("blur_bg", "bg_color") or e.region == "background"


def apply(
    img: np.ndarray,
    geo: Geometry,
    edits: list[Edit],
    captions: list[dict[str, str]],
    frame: int = 0,
) -> tuple[np.ndarray, list[str], list[str]]:
    """Apply edits in a fixed, sensible order. Returns image, done, not done.

    `captions` (text and position of captions already drawn) is extended with
    new ones; earlier captions and the panel frame (`frame` pixels wide) are
    kept out of background edits.
    """
    done: list[str] = []
    failed: list[str] = []
    h, w = img.shape[:2]
    s = min(h, w) / 1024.0
    person = geo.mask
    if person is not None and (captions or frame):
        person = person.copy()
        for cap in captions:
            _, outline = im.caption_masks(w, h, cap["text"], cap["pos"])
            person = np.maximum(person, im.feather(outline, 1.0))
        if frame:
            person[:frame] = 1
            person[-frame:] = 1
            person[:, :frame] = 1
            person[:, -frame:] = 1
    for e in sorted(edits, key=lambda e: _ORDER.index(e.kind)):
        if needs_face(e) and not geo.faces:
            failed.append(f"{e.kind.replace('_', ' ')} (no face landmarks found in the image)")
            continue
        if needs_mask(e) and person is None:
            failed.append(f"{e.kind.replace('_', ' ')} (no person mask)")
            continue
        k = e.kind
        if k == "blur_bg":
            img = _blur_background(img, person, s)
        elif k == "bg_color":
            img = _background_colour(img, person, e.arg[1])
        elif k == "grayscale":
            img = im.gray3(img)
        elif k in ("warmer", "cooler", "brighter", "darker"):
            toned = _tone(img, k)
            img = toned if e.region == "all" else im.mix(toned, img, im.feather(person, 2))
        elif k == "eye_color":
            for lms in geo.faces:
                img = _eye_colour(img, lms, e.arg[1])
        elif k in ("glasses", "sunglasses"):
            for lms in geo.faces:
                img = draw_glasses(img, lms, dark=(k == "sunglasses"))
        elif k == "text":
            taken = {c["pos"] for c in captions}
            pos = "bottom" if "bottom" not in taken else "top"
            img = im.draw_caption(img, str(e.arg), pos)
            captions.append({"text": str(e.arg), "pos": pos})
        done.append(e.describe())
    return img, done, failed


def _tone(img: np.ndarray, kind: str) -> np.ndarray:
    f = im.f32(img)
    if kind == "warmer":
        f = f * np.array([1.08, 1.0, 0.84], np.float32) + np.array([0.02, 0.005, 0], np.float32)
    elif kind == "cooler":
        f = f * np.array([0.87, 0.98, 1.1], np.float32) + np.array([0, 0.005, 0.02], np.float32)
    elif kind == "brighter":
        f = np.clip(f, 0, 1) ** 0.72 * 1.04
    elif kind == "darker":
        f = np.clip(f, 0, 1) ** 1.4 * 0.88
    return im.u8(f)


def _blur_background(img: np.ndarray, person: np.ndarray, s: float) -> np.ndarray:
    # normalised blur: the person's colours do not bleed into the background
    blurred = im.masked_blur(img, np.clip(1 - person, 0, 1), 14 * s)
    return im.mix(blurred, img, im.feather(person, 1.5))


def _background_colour(img: np.ndarray, person: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    h, w = img.shape[:2]
    c = np.array(rgb, np.float32) / 255.0
    r = im.radial(h, w, 0.5, 0.4)
    shade = (1.08 - 0.3 * np.clip(r, 0, 1))[..., None]
    bg = im.u8(np.clip(c * shade, 0, 1))
    return im.mix(bg, img, im.feather(person, 1.2))


def _eye_colour(img: np.ndarray, lms: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    h, w = img.shape[:2]
    target = np.array(rgb, np.float32) / 255.0
    out = im.f32(img)
    lum = out @ np.array([0.299, 0.587, 0.114], np.float32)
    for eye_idx, iris_idx in ((F.EYE_A, F.IRIS_A), (F.EYE_B, F.IRIS_B)):
        eye = lms[list(eye_idx)]
        iris = lms[list(iris_idx)]
        m = iris_mask(h, w, eye, iris)
        if m.sum() < 2:
            continue
        c = iris[0]
        radius = float(np.linalg.norm(iris[1:] - c, axis=1).mean())
        pupil = np.zeros((h, w), np.float32)
        cv2.circle(
            pupil,
            (int(np.rint(c[0] * 4)), int(np.rint(c[1] * 4))),
            int(np.rint(radius * 0.38 * 4)),
            1.0,
            -1,
            cv2.LINE_AA,
            shift=2,
        )
        pupil = im.feather(pupil, 0.6)
        mean = float((lum * m).sum() / max(m.sum(), 1e-3))
        rel = np.clip(lum / max(mean, 0.05), 0.55, 1.6)
        col = np.clip(target * (0.35 + 0.75 * rel[..., None]), 0, 1)
        col = col * (1 - pupil[..., None]) + np.array([0.05, 0.05, 0.06], np.float32) * pupil[..., None]
        a = (m * 0.9)[..., None]
        out = out * (1 - a) + col * a
    return im.u8(out)


def draw_glasses(img: np.ndarray, lms: np.ndarray, dark: bool = False) -> np.ndarray:
    """Rounded-rectangle glasses placed and rotated from the eye landmarks."""
    h, w = img.shape[:2]
    ea = lms[list(F.EYE_A)].mean(0)
    eb = lms[list(F.EYE_B)].mean(0)
    axis = eb - ea
    d = float(np.linalg.norm(axis))
    if d < 4:
        return img
    ux = axis / d
    uy = np.array([-ux[1], ux[0]], np.float32)
    if uy[1] < 0:  # "down" in the face's frame points down the image
        uy = -uy
    rx, ry = 0.43 * d, 0.31 * d
    thick = max(2.0, 0.05 * d)
    t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    ct, st = np.cos(t), np.sin(t)
    ex = 4.0  # superellipse: rounded rectangle
    px = np.sign(ct) * np.abs(ct) ** (2 / ex) * rx
    py = np.sign(st) * np.abs(st) ** (2 / ex) * ry
    py = np.where(py > 0, py * 1.08, py)  # a touch deeper at the bottom
    lenses = []
    for centre in (ea, eb):
        c = centre + uy * 0.06 * d
        pts = c[None] + px[:, None] * ux[None] + py[:, None] * uy[None]
        lenses.append(pts.astype(np.float32))
    frame_col = (22, 22, 26)
    shift = 4
    k = 1 << shift
    overlay = img.copy()
    # lens tint
    tint = np.zeros((h, w), np.float32)
    for pts in lenses:
        tint = np.maximum(tint, im.poly_mask(h, w, pts))
    lens_rgb, lens_alpha = ((18, 20, 26), 0.82) if dark else ((200, 225, 245), 0.1)
    out = im.mix(img, lens_rgb, tint * lens_alpha)
    # reflection streak on each lens
    refl = np.zeros((h, w), np.float32)
    for centre in (ea, eb):
        c = centre + uy * 0.06 * d
        a = c - ux * 0.22 * d - uy * 0.12 * d
        b = c - ux * 0.05 * d - uy * 0.22 * d
        cv2.line(
            refl,
            tuple(int(v * k) for v in a),
            tuple(int(v * k) for v in b),
            1.0,
            max(1, int(0.05 * d)),
            cv2.LINE_AA,
            shift,
        )
    out = im.mix(out, (255, 255, 255), im.feather(refl, 0.8) * (0.45 if dark else 0.3) * tint)
    overlay = out.copy()
    for pts in lenses:
        cv2.polylines(
            overlay,
            [np.round(pts * k).astype(np.int32)],
            True,
            frame_col,
            int(np.rint(thick)),
            cv2.LINE_AA,
            shift,
        )
    # bridge: a shallow arc between the inner edges
    ia = ea + ux * rx * 0.98 + uy * 0.0
    ib = eb - ux * rx * 0.98
    mid = (ia + ib) / 2 - uy * 0.1 * d
    bridge = np.array(
        [ia * (1 - t_) ** 2 + 2 * mid * (1 - t_) * t_ + ib * t_**2 for t_ in np.linspace(0, 1, 12)]
    )
    cv2.polylines(
        overlay,
        [np.round(bridge * k).astype(np.int32)],
        False,
        frame_col,
        int(np.rint(thick)),
        cv2.LINE_AA,
        shift,
    )
    # temples towards the ears, only as far as the face edge
    for centre, temple, sign in ((ea, lms[F.TEMPLE_A], -1), (eb, lms[F.TEMPLE_B], 1)):
        start = centre + sign * ux * rx * 0.98 - uy * 0.12 * d
        end = np.array(temple, np.float32)
        if np.dot(end - start, sign * ux) > 0:
            cv2.line(
                overlay,
                tuple(int(v * k) for v in start),
                tuple(int(v * k) for v in end),
                frame_col,
                int(np.rint(thick * 0.9)),
                cv2.LINE_AA,
                shift,
            )
    return overlay
