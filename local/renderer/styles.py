"""The twelve catalog looks, done with classic non-photorealistic filters.

Nothing here is a learned model: each look is a recipe of smoothing, palette
reduction, ink lines, screens and masks, steered by the face mesh and the
person mask. Every style function takes a `Ctx` and returns a `Rendered`.
The `summary` sentences say plainly what was done, so that the reply text
never promises more than the pixels show.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from . import faces as F
from . import imaging as im

# lift_face's strongest gamma: a dark-skinned face is lifted no further.
FACE_MAX_GAMMA = 0.6


@dataclass
class Ctx:
    img: np.ndarray  # face-centred crop at output size, RGB uint8
    lms: np.ndarray | None  # (478, 2) landmarks in img, or None
    mask: np.ndarray  # person mask float32
    box: tuple[float, float, float, float]
    rng: np.random.Generator

    @property
    def h(self) -> int:
        return int(self.img.shape[0])

    @property
    def w(self) -> int:
        return int(self.img.shape[1])

    @property
    def s(self) -> float:
        """Scale factor relative to a 1024 px render."""
        return min(self.w, self.h) / 1024.0

    def face_mask(self, grow: float = 1.0, sigma: float = 2.0) -> np.ndarray:
        if self.lms is None:
            x, y, w, h = self.box
            m = np.zeros((self.h, self.w), np.float32)
            cv2.ellipse(
                m,
                (int(x + w / 2), int(y + h / 2)),
                (int(w * 0.5 * grow), int(h * 0.62 * grow)),
                0,
                0,
                360,
                1.0,
                -1,
            )
            return im.feather(m, sigma)
        pts = self.lms[list(F.FACE_OVAL)]
        c = pts.mean(0)
        return im.poly_mask(self.h, self.w, c + (pts - c) * grow, sigma)

    def chin_y(self) -> float:
        if self.lms is not None:
            return float(self.lms[F.CHIN, 1])
        _, y, _, h = self.box
        return y + h * 1.05

    def face_center(self) -> tuple[float, float]:
        if self.lms is not None:
            c = self.lms[list(F.FACE_OVAL)].mean(0)
            return float(c[0]), float(c[1])
        x, y, w, h = self.box
        return x + w / 2, y + h / 2

    def face_size(self) -> float:
        if self.lms is not None:
            pts = self.lms[list(F.FACE_OVAL)]
            return float(max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1])))
        return float(max(self.box[2], self.box[3]))


@dataclass
class Rendered:
    image: np.ndarray
    faces: list[np.ndarray] = field(default_factory=list)
    mask: np.ndarray | None = None
    frame: int = 0  # width of a drawn panel border that edits must keep


def _same_geometry(ctx: Ctx, image: np.ndarray) -> Rendered:
    return Rendered(image, [ctx.lms] if ctx.lms is not None else [], ctx.mask)


def _silhouette(mask: np.ndarray, width: float) -> np.ndarray:
    """A soft line along the person's outline."""
    k = max(3, int(width) | 1)
    binary = (mask > 0.5).astype(np.uint8)
    edge = cv2.morphologyEx(binary, cv2.MORPH_GRADIENT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    return im.feather(edge.astype(np.float32), 0.8)


def _eye_regions(ctx: Ctx) -> list[tuple[np.ndarray, np.ndarray]]:
    """(eye contour points, iris points) for each eye."""
    if ctx.lms is None:
        return []
    return [
        (ctx.lms[list(F.EYE_A)], ctx.lms[list(F.IRIS_A)]),
        (ctx.lms[list(F.EYE_B)], ctx.lms[list(F.IRIS_B)]),
    ]


def iris_mask(h: int, w: int, eye: np.ndarray, iris: np.ndarray) -> np.ndarray:
    """Iris disc clipped by the eyelids."""
    centre = iris[0]
    radius = float(np.linalg.norm(iris[1:] - centre, axis=1).mean())
    disc = np.zeros((h, w), np.float32)
    cv2.circle(
        disc,
        (int(np.rint(centre[0] * 4)), int(np.rint(centre[1] * 4))),
        int(np.rint(radius * 4)),
        1.0,
        -1,
        cv2.LINE_AA,
        shift=2,
    )
    lids = im.poly_mask(h, w, eye)
    return im.feather(disc * lids, 0.7)


def lift_face(ctx: Ctx, img: np.ndarray, target: float) -> np.ndarray:
    """`img` with a gamma that brings a dim face's median grey up to `target`.

    Levels stretched over the whole picture leave a face lit darker than its
    surroundings (an official portrait against a bright window) dim and flat,
    and flat palettes then turn it to mud. A face already that light is left
    alone; the gamma is capped so a dark-skinned face is not bleached.
    """
    face = ctx.face_mask() > 0.5
    if not face.any():
        return img
    med = float(np.median(im.gray(img)[face])) / 255.0
    if med >= target or med <= 0.02:
        return img
    g = max(FACE_MAX_GAMMA, float(np.log(target) / np.log(med)))
    return im.gamma(img, g)


# ==========================================================================
# comics


COMIC_SCHEMES = (
    ("#ffd23f", "#e63946"),  # yellow field, red dots
    ("#8ecae6", "#1d6fb8"),  # sky field, blue dots
    ("#ffb4a2", "#d62828"),  # salmon field, crimson dots
)


# A dim face is lifted to this median grey before the flat palette (measured:
# the 2013 portrait's face sits at 0.47 after levels; lifted to 0.5 its edit
# chain stays at 0.66 or less from the photograph, 0.71 before; lifted to
# 0.58 it went back to 0.71).
COMICS_FACE_LIGHT = 0.5


def comics(ctx: Ctx) -> Rendered:
    s = ctx.s
    base = lift_face(ctx, im.normalize_levels(ctx.img), COMICS_FACE_LIGHT)
    sm = im.smooth(base, passes=3, factor=0.25, d=7, sc=28, ss=5)
    sm = im.saturate(sm, 1.45, 1.05)
    pal = im.kmeans_palette(sm, 12, ctx.rng)
    flat, _ = im.quantize(sm, pal)
    flat = cv2.medianBlur(flat, 5)
    ink = im.ink_lines(im.gray(im.smooth(base, passes=1, factor=0.5)), 1.6 * s, threshold=0.01, width=0.025)
    ink = np.maximum(ink, _silhouette(ctx.mask, 7 * s))
    field_hex, dot_hex = COMIC_SCHEMES[int(ctx.rng.integers(len(COMIC_SCHEMES)))]
    cx, cy = ctx.face_center()
    r = im.radial(ctx.h, ctx.w, cx / ctx.w, cy / ctx.h)
    dots = im.halftone(ctx.h, ctx.w, 18 * s, 0.08 + 0.55 * np.clip(r * 1.3, 0, 1))
    bg = im.mix(np.full_like(flat, im.hex_rgb(field_hex)), im.hex_rgb(dot_hex), dots)
    m = im.feather(ctx.mask, 1.0)
    out = im.mix(bg, flat, m)
    # shading dots in the darker tones of the person
    lum = cv2.GaussianBlur(im.gray(flat).astype(np.float32) / 255, (0, 0), 2)
    shade = im.halftone(ctx.h, ctx.w, 9 * s, np.clip((0.45 - lum) * 1.2, 0, 0.5), angle=15) * m
    out = im.mix(out, (25, 20, 40), shade * 0.55)
    out = im.mix(out, (12, 10, 18), ink)
    out = _panel_border(out, s)
    r = _same_geometry(ctx, out)
    r.frame = sum(_border_width(s))
    return r


def _border_width(s: float, white: bool = True) -> tuple[int, int]:
    return max(4, int(14 * s)), (max(2, int(8 * s)) if white else 0)


def _panel_border(
    img: np.ndarray, s: float, color: tuple[int, int, int] = (10, 10, 10), white: bool = True
) -> np.ndarray:
    out = img.copy()
    t, g = _border_width(s, white)
    h, w = out.shape[:2]
    if g:
        out[: g + t] = 255
        out[-(g + t) :] = 255
        out[:, : g + t] = 255
        out[:, -(g + t) :] = 255
    cv2.rectangle(out, (g, g), (w - 1 - g, h - 1 - g), color, t)
    return out


# ==========================================================================
# manga


# A face at least this light (median grey of the photograph's skin) is drawn
# on blank paper, as manga draws fair skin; darker skin gets a screentone.
MANGA_PAPER_SKIN = 0.75
# A face lit dimmer than this (a dark photograph, not dark skin) is lifted first.
MANGA_FACE_LIGHT = 0.55


def manga(ctx: Ctx) -> Rendered:
    s = ctx.s
    base = im.normalize_levels(ctx.img)
    sm = im.smooth(base, passes=2, factor=0.5, d=7, sc=25, ss=5)
    g = cv2.GaussianBlur(im.gray(sm).astype(np.float32) / 255.0, (0, 0), 1.2 * s)
    face = ctx.face_mask()
    ref = float(np.median(g[face > 0.5])) if (face > 0.5).any() else float(np.median(g))
    ref = max(ref, 0.25)
    light = g > ref * 0.8
    dark = g < ref * 0.45
    mid = ~light & ~dark
    # The skin keeps its own tone: its lit parts get a screentone as dense as
    # the face is dark in the photograph (levels unstretched), so a darker
    # face is not drawn as blank paper. Shadows stay denser than the skin.
    raw = im.gray(lift_face(ctx, ctx.img, MANGA_FACE_LIGHT)).astype(np.float32) / 255.0
    skin = float(np.median(raw[face > 0.5])) if (face > 0.5).any() else float(np.median(raw))
    base = float(np.clip(MANGA_PAPER_SKIN - skin, 0.0, 0.4))
    # highlights well above the skin (white hair, a shirt) stay paper
    highlight = g > min(0.97, ref * 1.3)
    density = np.where(light, base, np.where(mid, max(0.28, base + 0.22), max(0.62, base + 0.42)))
    density = np.where(highlight, 0.0, density)
    # Inside the face the screen follows the photograph's own grey in a few
    # steps (as layered screentones do), so the features keep their shading.
    raw_s = cv2.GaussianBlur(raw, (0, 0), 2.0 * s)
    steps = np.round(np.clip(MANGA_PAPER_SKIN + 0.12 - raw_s, 0.0, 0.8) / 0.16) * 0.16
    inner = ctx.face_mask(0.95, 4 * s)
    density = density * (1 - inner) + steps * inner
    # a finer screen on the face: coarse dots there read as texture, not tone
    screen = im.halftone(ctx.h, ctx.w, 7 * s, density.astype(np.float32))
    fine = im.halftone(ctx.h, ctx.w, max(3.0, 4 * s), density.astype(np.float32))  # 2 px dots alias
    screen = screen * (1 - inner) + fine * inner
    paper = np.ones_like(g)
    val = np.where(density > 0.01, 1.0 - screen, 1.0)  # a zero-density screen still dots its centres
    val = np.where(g < ref * 0.25, 0.04, val)
    m = ctx.mask
    val = paper + (val - paper) * m
    ink = im.ink_lines(im.gray(sm), 1.4 * s, threshold=0.008, width=0.02)
    ink = np.maximum(ink, _silhouette(m, 5 * s))
    val = val * (1 - ink * 0.95)
    # a few speed lines radiating from the face, outside the person only
    cx, cy = ctx.face_center()
    yy, xx = np.mgrid[0 : ctx.h, 0 : ctx.w].astype(np.float32)
    ang = np.arctan2(yy - cy, xx - cx)
    rr = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / (0.75 * max(ctx.w, ctx.h))
    rays = (np.sin(ang * 90 + np.sin(ang * 7) * 2) > 0.93).astype(np.float32)
    rays *= np.clip((rr - 0.55) * 3, 0, 1) * (1 - m)
    val = val * (1 - 0.6 * rays)
    out = cv2.cvtColor(im.u8(val), cv2.COLOR_GRAY2RGB)
    out = im.mix(out, (250, 248, 242), (val > 0.97).astype(np.float32) * 0.6)  # paper tint
    out = _panel_border(out, s, white=False)
    r = _same_geometry(ctx, out)
    r.frame = sum(_border_width(s, False))
    return r


# ==========================================================================
# zombie


def zombie(ctx: Ctx) -> Rendered:
    s = ctx.s
    img = ctx.img
    h, w = ctx.h, ctx.w
    g = im.gray(img).astype(np.float32) / 255.0
    f = im.f32(img)
    desat = f * 0.18 + g[..., None] * 0.82
    # sickly grey-green skin, a little darker and flatter than life
    dead = (desat**1.15) * np.array([0.80, 0.90, 0.74], np.float32) + np.array([0.0, 0.015, 0.0], np.float32)
    m = ctx.mask[..., None]
    face = ctx.face_mask(1.02, 3 * s)[..., None]
    # mottled, uneven decay on the skin
    blot = im.value_noise(h, w, ctx.rng, int(40 * s))
    dead = dead * (1 - face * 0.25 * (blot[..., None] ** 2))
    # gloomy background: darker, colder, foggy
    bg = desat * np.array([0.5, 0.58, 0.58], np.float32) * 0.75 + 0.04
    out = bg * (1 - m) + dead * m
    # sunken eye sockets and pale, milky eyes
    for eye, iris in _eye_regions(ctx):
        c = eye.mean(0)
        sock = im.poly_mask(h, w, c + (eye - c) * np.array([1.7, 2.6], np.float32), sigma=9 * s)
        out = out * (1 - sock[..., None] * np.array([0.6, 0.66, 0.55], np.float32))
        ir = iris_mask(h, w, eye, iris)[..., None]
        pale = np.array([0.84, 0.86, 0.8], np.float32) * (0.75 + 0.25 * g[..., None])
        out = out * (1 - ir * 0.85) + pale * ir * 0.85
    if ctx.lms is not None:
        lips = im.poly_mask(h, w, ctx.lms[list(F.LIPS_OUTER)], sigma=2 * s)[..., None]
        out = out * (1 - lips * 0.4) + out * np.array([0.5, 0.42, 0.5], np.float32) * lips * 0.4
    out = np.clip((out - 0.5) * 1.3 + 0.46, 0, 1)
    out = out + im.grain(h, w, ctx.rng, 0.7)[..., None] * 0.045
    res = im.u8(out)
    res = im.vignette(res, 0.85, 0.35, (6, 10, 8))
    return _same_geometry(ctx, res)


# ==========================================================================
# pop art


POP_SCHEMES = (
    # background, shadow, mid, light
    ("#ff4f9a", "#1b1464", "#ff8c1a", "#ffe94d"),
    ("#22c3e6", "#3a0ca3", "#f72585", "#fff3b0"),
    ("#ffd60a", "#9d0208", "#2ec4b6", "#ffffff"),
    ("#7bd321", "#240046", "#ff5400", "#ffc2e2"),
)


def pop_art(ctx: Ctx) -> Rendered:
    s = ctx.s
    hw, hh = ctx.w // 2, ctx.h // 2
    small = im.resize(im.normalize_levels(ctx.img), hw, hh, cv2.INTER_AREA)
    msk = im.resize(ctx.mask, hw, hh, cv2.INTER_AREA)
    sm = im.smooth(small, passes=2, factor=0.5, d=7, sc=30, ss=5)
    g = cv2.GaussianBlur(im.gray(sm).astype(np.float32) / 255.0, (0, 0), 1.5 * s)
    inside = g[msk > 0.5] if (msk > 0.5).sum() > 100 else g.ravel()
    t1, t2 = np.percentile(inside, (30, 66))
    level = (g > t1).astype(np.uint8) + (g > t2).astype(np.uint8)
    ink = im.ink_lines(im.gray(sm), 1.2 * s, threshold=0.014, width=0.03)
    m = im.feather(msk, 0.8)
    out = np.zeros((hh * 2, hw * 2, 3), np.uint8)
    start = int(ctx.rng.integers(len(POP_SCHEMES)))
    for i in range(4):
        bg, sh, md, li = (np.array(im.hex_rgb(c), np.uint8) for c in POP_SCHEMES[(start + i) % 4])
        cols = np.stack([sh, md, li])
        panel = cols[level]
        panel = im.mix(panel, sh, ink * 0.9)
        panel = im.mix(np.broadcast_to(bg, panel.shape).copy(), panel, m)
        y, x = divmod(i, 2)
        out[y * hh : (y + 1) * hh, x * hw : (x + 1) * hw] = panel
    out = im.resize(out, ctx.w, ctx.h, cv2.INTER_NEAREST)
    faces = []
    if ctx.lms is not None:
        for i in range(4):
            y, x = divmod(i, 2)
            faces.append(ctx.lms * 0.5 + np.array([x * hw, y * hh], np.float32))
    big = np.zeros((ctx.h, ctx.w), np.float32)
    for i in range(4):
        y, x = divmod(i, 2)
        big[y * hh : (y + 1) * hh, x * hw : (x + 1) * hw] = msk
    return Rendered(out, faces, big)


# ==========================================================================
# pixel art


def _feature_cells(ctx: Ctx, gw: int, gh: int) -> np.ndarray:
    """Grid cells covering the eyes, brows and mouth, which keep every pixel."""
    keep = np.zeros((gh, gw), bool)
    if ctx.lms is None:
        return keep
    sx, sy = gw / ctx.w, gh / ctx.h
    for idx in (F.EYE_A, F.EYE_B, F.BROW_A, F.BROW_B, F.LIPS_OUTER):
        pts = ctx.lms[list(idx)] * np.array([sx, sy], np.float32)
        x0, y0 = np.floor(pts.min(0)).astype(int)
        x1, y1 = np.ceil(pts.max(0)).astype(int)
        keep[max(0, y0) : y1 + 1, max(0, x0) : x1 + 1] = True
    return keep


def _despeckle(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Give a lone pixel (unlike all four neighbours) its neighbours' colour."""
    p = np.pad(labels, 1, mode="edge")
    up, down, left, right = p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]
    lone = (labels != up) & (labels != down) & (labels != left) & (labels != right) & ~keep
    # the most common of the four neighbours (ties: the one above)
    stack = np.stack([up, down, left, right])
    votes = (stack[:, None] == stack[None, :]).sum(0)
    pick = np.take_along_axis(stack, votes.argmax(0)[None], 0)[0]
    return np.where(lone, pick, labels)


def pixel_art(ctx: Ctx) -> Rendered:
    grid = 64
    if ctx.w >= ctx.h:
        gh, gw = grid, max(1, round(grid * ctx.w / ctx.h))
    else:
        gw, gh = grid, max(1, round(grid * ctx.h / ctx.w))
    base = im.saturate(im.smooth(ctx.img, passes=2, factor=0.5, d=9, sc=40, ss=7), 1.2)
    # eyes, brows and mouth sharpened before the grid averages them away
    blur = cv2.GaussianBlur(base, (0, 0), 6 * ctx.s)
    sharp = cv2.addWeighted(base, 2.8, blur, -1.8, 0)
    base = im.mix(base, sharp, ctx.face_mask(0.95, 6 * ctx.s))
    small = cv2.resize(base, (gw, gh), interpolation=cv2.INTER_AREA)
    msk = cv2.resize(ctx.mask, (gw, gh), interpolation=cv2.INTER_AREA) > 0.5
    # 16 colours picked from the image, each snapped to a 9-bit colour space
    # (8 levels per channel, as on 16-bit-era consoles)
    # the face's cells count eight times: its shades, not the clothes', get
    # most of the palette, so the features stay readable (with the sharpening
    # above, measured with pixme.likeness on 12 renders of the three faces:
    # same-person distance 0.62 on average and 0.78 at most before, 0.53 and
    # 0.60 after)
    face = cv2.resize(ctx.face_mask(), (gw, gh), interpolation=cv2.INTER_AREA) > 0.5
    pix = np.concatenate([small.reshape(-1, 3), np.repeat(small[face], 7, axis=0)])
    centres = im.kmeans_palette(pix[:, None, :], 16, ctx.rng, sample=len(pix))
    _, labels = im.quantize(small, centres)
    levels = np.round(np.clip(centres, 0, 255) / (255 / 7)) * (255 / 7)
    palette = np.round(levels).astype(np.uint8)
    labels = _despeckle(labels, _feature_cells(ctx, gw, gh))
    sprite = palette[labels]
    # plain two-band backdrop and a dark outline around the character
    sky = np.array((73, 182, 255), np.uint8)
    ground = np.array((36, 73, 146), np.uint8)
    backdrop = np.empty_like(sprite)
    backdrop[:] = sky
    backdrop[int(gh * 0.78) :] = ground
    sprite = np.where(msk[..., None], sprite, backdrop)
    edge = msk & ~cv2.erode(msk.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    sprite[edge] = (24, 20, 36)
    out = cv2.resize(sprite, (ctx.w, ctx.h), interpolation=cv2.INTER_NEAREST)
    return _same_geometry(ctx, out)


# ==========================================================================
# 3D animated (soft shading)


def _bulge(img: np.ndarray, centres: list[tuple[float, float, float]], amount: float) -> np.ndarray:
    """Magnify gently around each (x, y, radius): used for slightly larger eyes."""
    h, w = img.shape[:2]
    out = img.copy()
    for cx, cy, r in centres:
        x0, x1 = max(0, int(cx - r) - 1), min(w, int(cx + r) + 2)
        y0, y1 = max(0, int(cy - r) - 1), min(h, int(cy + r) + 2)
        if x1 <= x0 or y1 <= y0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dx, dy = xx - cx, yy - cy
        d = np.sqrt(dx * dx + dy * dy) / r
        k = np.where(d < 1, 1 - amount * (1 - d * d) ** 2, 1.0).astype(np.float32)
        mx = cx + dx * k
        my = cy + dy * k
        out[y0:y1, x0:x1] = cv2.remap(out, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return out


def animated_3d(ctx: Ctx) -> Rendered:
    s = ctx.s
    h, w = ctx.h, ctx.w
    img = im.normalize_levels(ctx.img)
    if ctx.lms is not None:
        cs = []
        for eye, _ in _eye_regions(ctx):
            c = eye.mean(0)
            r = float(np.ptp(eye[:, 0])) * 1.1
            cs.append((float(c[0]), float(c[1]), r))
        img = _bulge(img, cs, 0.16)
    # heavy edge-preserving smoothing at half size: plasticine-smooth forms
    small = im.scaled(img, 0.5)
    for _ in range(3):
        small = cv2.bilateralFilter(small, 9, 22, 9)
    small = cv2.edgePreservingFilter(small, flags=cv2.RECURS_FILTER, sigma_s=20, sigma_r=0.22)
    sm = im.resize(small, w, h, cv2.INTER_CUBIC)
    # keep the eyes and mouth crisper than the skin
    if ctx.lms is not None:
        feat = np.zeros((h, w), np.float32)
        for idx in (F.EYE_A, F.EYE_B, F.LIPS_OUTER):
            pts = ctx.lms[list(idx)]
            c = pts.mean(0)
            feat = np.maximum(feat, im.poly_mask(h, w, c + (pts - c) * 1.35))
        feat = im.feather(feat, 3 * s)
        sm = im.mix(sm, cv2.bilateralFilter(img, 5, 25, 5), feat * 0.7)
    f = im.f32(sm)
    # rounded shading: push broad light/dark forms, flatten fine detail
    lum = f @ np.array([0.299, 0.587, 0.114], np.float32)
    broad = cv2.GaussianBlur(im.scaled(lum, 0.25), (0, 0), 5 * s)
    broad = im.resize(broad, w, h)
    f = f * (1 + 0.35 * (broad - float(broad.mean())))[..., None]
    # warm key light from the upper left, cooler fill from the right
    yy, xx = _grid(h, w)
    key = np.clip(1.0 - ((xx / w) * 0.6 + (yy / h) * 0.4), 0, 1)[..., None]
    warm = np.array([1.12, 1.02, 0.86], np.float32)
    cool = np.array([0.92, 0.95, 1.05], np.float32)
    f = f * (cool + (warm - cool) * key)
    # soft sheen on the face, a thin warm rim on the person
    face = ctx.face_mask(1.0, 12 * s)
    sheen = np.clip((broad - 0.55) * 1.6, 0, 1) * face
    f = f + sheen[..., None] * 0.1
    m = ctx.mask
    rim = np.clip(m - cv2.GaussianBlur(m, (0, 0), 5 * s), 0, 1) * 1.2
    f = f + rim[..., None] * np.array([0.22, 0.13, 0.04], np.float32)
    out = im.saturate(im.u8(f), 1.25)
    # shallow depth of field: background much softer and warmer
    bg = im.masked_blur(out, 1 - m, 14 * s)
    bg = im.mix(bg, (255, 214, 170), 0.18)
    out = im.mix(bg, out, im.feather(m, 1.5))
    out = im.vignette(out, 0.25, 0.65, (60, 30, 10))
    return _same_geometry(ctx, out)


# ==========================================================================
# cel shading


def cel_shaded(ctx: Ctx) -> Rendered:
    s = ctx.s
    base = im.normalize_levels(ctx.img)
    sm = im.smooth(base, passes=3, factor=0.5, d=9, sc=35, ss=7)
    sm = im.saturate(sm, 1.3, 1.04)
    pal = im.kmeans_palette(sm, 9, ctx.rng)
    flat, _ = im.quantize(sm, pal)
    flat = cv2.medianBlur(flat, 7)
    # hard shadow bands from the broad luminance, tinted cool like anime shading
    lum = im.gray(im.scaled(sm, 0.25)).astype(np.float32) / 255.0
    lum = im.resize(cv2.GaussianBlur(lum, (0, 0), 2.0 * s), ctx.w, ctx.h, cv2.INTER_CUBIC)
    m = ctx.mask
    inside = lum[m > 0.5] if (m > 0.5).sum() > 100 else lum.ravel()
    t1, t2 = np.percentile(inside, (25, 62))
    f = im.f32(flat)
    shadow = (lum < t1)[..., None]
    light = (lum > t2)[..., None]
    f = np.where(shadow, f * np.array([0.72, 0.70, 0.86], np.float32), f)
    f = np.where(light, f * 1.06 + 0.03, f)
    out = im.u8(f)
    ink = im.ink_lines(im.gray(sm), 1.2 * s, threshold=0.012, width=0.02)
    ink = np.maximum(ink, _silhouette(m, 4 * s))
    # clean sky backdrop with a soft gradient
    yy = np.linspace(0, 1, ctx.h, dtype=np.float32)[:, None, None]
    top = np.array(im.hex_rgb("7ec8f2"), np.float32)
    bottom = np.array(im.hex_rgb("e8f6ff"), np.float32)
    sky = np.broadcast_to(top + (bottom - top) * yy, (ctx.h, ctx.w, 3)).astype(np.uint8)
    out = im.mix(sky, out, im.feather(m, 0.8))
    out = im.mix(out, (35, 28, 48), ink)
    return _same_geometry(ctx, out)


# ==========================================================================
# watercolour


def watercolor(ctx: Ctx) -> Rendered:
    s = ctx.s
    h, w = ctx.h, ctx.w
    base = im.normalize_levels(ctx.img)
    small = im.scaled(base, 0.25)
    small = cv2.bilateralFilter(small, 7, 40, 5)
    small = cv2.pyrMeanShiftFiltering(small, 6, 22)
    # bleeding edges: upsample through a noise displacement
    wash = im.resize(small, w, h, cv2.INTER_CUBIC)
    dx = (im.value_noise(h, w, ctx.rng, int(48 * s)) - 0.5) * 14 * s
    dy = (im.value_noise(h, w, ctx.rng, int(48 * s)) - 0.5) * 14 * s
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    wash = cv2.remap(wash, xx + dx, yy + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    wash = im.saturate(wash, 1.4)
    f = im.f32(wash)
    f = 1 - (1 - f) * 0.9  # translucent pigment: a little lighter overall
    # pigment pooling at the edges of each wash
    lum = cv2.cvtColor(wash, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    edge = np.abs(cv2.Laplacian(cv2.GaussianBlur(lum, (0, 0), 1.5 * s), cv2.CV_32F, ksize=3))
    edge = np.clip(edge * 10, 0, 1)
    f = f * (1 - 0.3 * edge[..., None])
    # granulation
    gran = im.grain(h, w, ctx.rng, 1.2 * s)
    f = f * (1 - 0.035 * gran[..., None])
    # wash fades into the paper around the person, with a ragged edge
    m = ctx.mask
    rag = im.value_noise(h, w, ctx.rng, int(30 * s))
    keep = np.clip((cv2.GaussianBlur(m, (0, 0), 14 * s) * 1.4 + (rag - 0.5) * 0.6 - 0.35) * 3, 0, 1)
    keep = np.maximum(keep, 0.12)
    paper = _paper(h, w, ctx.rng, s)
    out = paper * (1 - keep[..., None] * (1 - f))
    # light pencil underdrawing
    lines = im.ink_lines(im.gray(im.smooth(base, 1, 0.5)), 1.3 * s, threshold=0.01, width=0.03)
    out = out * (1 - 0.35 * lines[..., None] * np.clip(keep, 0.3, 1)[..., None])
    return _same_geometry(ctx, im.u8(out))


def _paper(h: int, w: int, rng: np.random.Generator, s: float) -> np.ndarray:
    fibre = im.grain(h, w, rng, 0.8 * s) * 0.5 + im.grain(h, w, rng, 3 * s) * 0.5
    tone = np.array([0.985, 0.97, 0.935], np.float32)
    return tone * (1 + 0.018 * fibre[..., None])


# ==========================================================================
# pencil sketch


def sketch(ctx: Ctx) -> Rendered:
    s = ctx.s
    h, w = ctx.h, ctx.w
    base = im.normalize_levels(ctx.img)
    g = im.gray(cv2.GaussianBlur(base, (0, 0), 0.8 * s)).astype(np.float32)
    inv_blur = cv2.GaussianBlur(255 - g, (0, 0), 10 * s)
    dodge = np.clip(g * 255.0 / np.maximum(255 - inv_blur, 1), 0, 255) / 255.0
    dodge = dodge**2.2  # deeper graphite
    tone = cv2.GaussianBlur(g / 255.0, (0, 0), 4 * s)
    dark = np.clip(0.75 - tone, 0, 1)
    hatch1 = im.line_screen(h, w, 7 * s, dark * 0.7, 50)
    hatch2 = im.line_screen(h, w, 7 * s, np.clip(dark - 0.25, 0, 1) * 0.9, -40)
    wobble = im.value_noise(h, w, ctx.rng, int(24 * s)) * 0.5 + 0.5
    hatch = np.clip(hatch1 + hatch2, 0, 1) * wobble
    val = dodge * (1 - 0.45 * hatch)
    m = ctx.mask
    keep = np.clip(cv2.GaussianBlur(m, (0, 0), 18 * s) * 1.3, 0, 1)
    keep = 0.2 + 0.8 * keep
    val = 1 - (1 - val) * keep
    paper = _paper(h, w, ctx.rng, s)
    graphite = np.array([0.16, 0.16, 0.19], np.float32)
    out = paper * val[..., None] + graphite * (1 - val[..., None]) * 0.25
    return _same_geometry(ctx, im.u8(out))


# ==========================================================================
# cyberpunk


def _night_city(h: int, w: int, rng: np.random.Generator, s: float) -> np.ndarray:
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    top = np.array([0.02, 0.01, 0.08], np.float32)
    bottom = np.array([0.16, 0.03, 0.22], np.float32)
    sky = np.broadcast_to(top + (bottom - top) * yy, (h, w, 3)).copy()
    city = np.zeros((h, w, 3), np.uint8)
    neon = [(255, 40, 200), (0, 235, 255), (255, 200, 40), (140, 80, 255)]
    x = -int(20 * s)
    while x < w:
        bw = int(rng.integers(60, 170) * s)
        top_y = int(h * rng.uniform(0.08, 0.55))
        shade = int(rng.integers(14, 34))
        cv2.rectangle(city, (x, top_y), (x + bw, h), (shade, shade // 2, shade + 14), -1)
        step = max(6, int(16 * s))
        for wy in range(top_y + step, h, step):
            for wx in range(x + step // 2, x + bw - step // 2, step):
                if rng.random() < 0.33:
                    c = neon[int(rng.integers(len(neon)))] if rng.random() < 0.3 else (255, 210, 140)
                    cv2.rectangle(city, (wx, wy), (wx + max(2, step // 3), wy + max(2, step // 3)), c, -1)
        if rng.random() < 0.55:
            c = neon[int(rng.integers(len(neon)))]
            sy = top_y + int(rng.integers(10, 80) * s)
            cv2.rectangle(
                city, (x + int(8 * s), sy), (x + bw - int(8 * s), sy + int(26 * s)), c, max(2, int(4 * s))
            )
        x += bw + int(rng.integers(4, 20) * s)
    city_f = im.f32(cv2.GaussianBlur(city, (0, 0), 3.5 * s))
    glow = im.f32(cv2.GaussianBlur(city, (0, 0), 18 * s))
    has = (city.max(-1) > 0).astype(np.float32)
    has = cv2.GaussianBlur(has, (0, 0), 3.5 * s)[..., None]
    out = sky * (1 - has) + city_f + glow * 0.8
    return np.clip(out, 0, 1)


def cyberpunk(ctx: Ctx) -> Rendered:
    s = ctx.s
    h, w = ctx.h, ctx.w
    base = im.contrast(im.normalize_levels(ctx.img), 1.15)
    f = im.f32(base)
    lum = f @ np.array([0.299, 0.587, 0.114], np.float32)
    shadows = np.array([0.05, 0.18, 0.32], np.float32)
    highs = np.array([1.0, 0.55, 0.85], np.float32)
    tone = shadows + (highs - shadows) * lum[..., None]
    f = f * 0.5 + tone * 0.5
    f = f * 0.9
    m = ctx.mask
    mf = im.feather(m, 1.0)[..., None]
    bg = _night_city(h, w, ctx.rng, s)
    out = bg * (1 - mf) + f * mf
    # magenta and cyan rim light from left and right
    cx, _ = ctx.face_center()
    inner = np.clip(m - cv2.GaussianBlur(m, (0, 0), 12 * s), 0, 1) * 2.5
    outer = np.clip(cv2.GaussianBlur(m, (0, 0), 22 * s) - m, 0, 1) * 1.6
    xx = np.arange(w, dtype=np.float32)[None, :]
    left = np.clip(0.5 - (xx - cx) / (0.5 * w), 0, 1)
    right = 1 - left
    magenta = np.array([1.0, 0.15, 0.75], np.float32)
    cyan = np.array([0.0, 0.9, 1.0], np.float32)
    light = (inner + outer)[..., None] * (left[..., None] * magenta + right[..., None] * cyan)
    out = out + light * 0.75
    out = np.clip((out - 0.5) * 1.12 + 0.5, 0, 1)
    res = im.u8(out)
    # slight chromatic fringing and scanlines
    shift = max(1, int(2 * s))
    res[..., 0] = np.roll(res[..., 0], shift, axis=1)
    res[..., 2] = np.roll(res[..., 2], -shift, axis=1)
    period = max(3, int(4 * s))
    rows = np.arange(h) % period == 0
    res[rows] = (res[rows].astype(np.uint16) * 80 // 100).astype(np.uint8)
    res = im.vignette(res, 0.5, 0.5, (5, 0, 15))
    return _same_geometry(ctx, res)


# ==========================================================================
# oil painting


def _flow(gray_f: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors along the edges (structure tensor), for stroke directions."""
    gx = cv2.Sobel(gray_f, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray_f, cv2.CV_32F, 0, 1, ksize=3)
    jxx = cv2.GaussianBlur(gx * gx, (0, 0), sigma)
    jyy = cv2.GaussianBlur(gy * gy, (0, 0), sigma)
    jxy = cv2.GaussianBlur(gx * gy, (0, 0), sigma)
    theta = 0.5 * np.arctan2(2 * jxy, jxx - jyy)  # gradient direction
    return -np.sin(theta).astype(np.float32), np.cos(theta).astype(np.float32)


def _smear(img: np.ndarray, tx: np.ndarray, ty: np.ndarray, length: float, steps: int) -> np.ndarray:
    """Line integral convolution: average along the flow, like a brush drag."""
    yy, xx = _grid(img.shape[0], img.shape[1])
    acc = img.astype(np.float32)
    total = 1.0
    for i in range(1, steps + 1):
        d = length * i / steps
        wgt = 1.0 - 0.5 * i / steps
        dx, dy = d * tx, d * ty
        for mx, my in ((xx + dx, yy + dy), (xx - dx, yy - dy)):
            acc += wgt * cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT).astype(
                np.float32
            )
            total += wgt
    return acc / total


@functools.lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


def _canvas(h: int, w: int, s: float) -> np.ndarray:
    """Woven canvas texture, built from a small repeated tile."""
    p = max(3, int(np.rint(4 * s)))
    t = np.arange(2 * p, dtype=np.float32)
    warp = 0.5 + 0.5 * np.cos(t / p * np.pi * 2)
    tile = np.outer(warp, warp)
    return np.tile(tile, (h // len(t) + 1, w // len(t) + 1))[:h, :w]


def oil_painting(ctx: Ctx) -> Rendered:
    s = ctx.s
    h, w = ctx.h, ctx.w
    base = im.normalize_levels(ctx.img)
    small = im.scaled(base, 0.5)
    small = cv2.bilateralFilter(small, 7, 30, 5)
    small = cv2.bilateralFilter(small, 7, 30, 5)
    sh, sw = small.shape[:2]
    msmall = im.resize(ctx.mask, sw, sh)
    # dark painterly background behind the sitter, painted before the strokes
    mottle = im.value_noise(sh, sw, ctx.rng, int(60 * s))[..., None]
    umber = np.array([52, 34, 21], np.float32) * (0.55 + 0.8 * mottle)
    mf = im.feather(msmall, 1.5 * s)[..., None]
    small = np.clip(small * mf + (small * 0.2 + umber * 0.8) * (1 - mf), 0, 255).astype(np.uint8)
    gsmall = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    tx, ty = _flow(gsmall, 4.0 * s)
    # dabs of paint: a reduced palette, then dragged along the flow
    pal = im.kmeans_palette(small, 20, ctx.rng)
    dabs, _ = im.quantize(small, pal)
    dabs = cv2.medianBlur(dabs, 3)
    long_ = _smear(dabs, tx, ty, 9 * s, 4)
    short = _smear(small, tx, ty, 3 * s, 2)
    face = im.resize(ctx.face_mask(0.92, 10 * s), sw, sh)
    paint = long_ * (1 - 0.7 * face[..., None]) + short * (0.7 * face[..., None])
    # bristle streaks along the strokes, softer on the face
    noise = im.grain(sh, sw, ctx.rng, 0.5)
    streak = _smear(noise, tx, ty, 6 * s, 4)
    streak /= max(float(streak.std()), 1e-6)
    streak *= 1 - 0.55 * face
    relief = cv2.Sobel(streak, cv2.CV_32F, 1, 0, ksize=3) + cv2.Sobel(streak, cv2.CV_32F, 0, 1, ksize=3)
    depth = 0.45 + 0.55 * msmall
    paint = paint * (1 + 0.05 * streak[..., None] * depth[..., None]) - 3.5 * (relief * depth)[..., None]
    f = im.resize(np.clip(paint, 0, 255).astype(np.uint8), w, h, cv2.INTER_CUBIC)
    f = im.f32(f)
    # warm varnish
    f = f * np.array([1.05, 0.97, 0.8], np.float32) + np.array([0.02, 0.01, -0.01], np.float32)
    f = np.clip((f - 0.5) * 1.1 + 0.5, 0, 1)
    f = f * (1 - 0.05 * _canvas(h, w, s)[..., None])
    out = im.vignette(im.u8(f), 0.65, 0.45, (20, 12, 6))
    return _same_geometry(ctx, out)


# ==========================================================================
# knight


def _tapestry(h: int, w: int, s: float) -> np.ndarray:
    field_c = np.array([0.36, 0.05, 0.09], np.float32)
    gold = np.array([0.78, 0.6, 0.2], np.float32)
    yy, xx = _grid(h, w)
    cell = 110 * s
    u = (xx + yy) / cell
    v = (xx - yy) / cell
    du = np.abs(u - np.round(u))
    dv = np.abs(v - np.round(v))
    lattice = np.clip((0.05 - np.minimum(du, dv)) * cell / 2, 0, 1)
    # small motif in the centre of every diamond
    cu = np.abs(u - np.floor(u) - 0.5)
    cv_ = np.abs(v - np.floor(v) - 0.5)
    motif = np.clip((0.13 - (cu + cv_)) * cell / 2, 0, 1)
    cross = np.clip((0.035 - np.minimum(cu, cv_)) * cell / 2, 0, 1) * (cu + cv_ < 0.26)
    pattern = np.maximum(lattice, np.maximum(motif, cross * 0.8))
    out = field_c + (gold - field_c) * pattern[..., None]
    return np.clip(out, 0, 1)


_STEEL_RAMP = np.array(
    [
        [0.07, 0.08, 0.10],
        [0.26, 0.28, 0.32],
        [0.52, 0.55, 0.60],
        [0.78, 0.80, 0.84],
        [0.98, 0.98, 1.00],
    ],
    np.float32,
)


def _ramp(v: np.ndarray, ramp: np.ndarray) -> np.ndarray:
    x = np.clip(v, 0, 1) * (len(ramp) - 1)
    i = np.minimum(x.astype(np.int32), len(ramp) - 2)
    t = (x - i)[..., None]
    return ramp[i] * (1 - t) + ramp[i + 1] * t


def _armour(ctx: Ctx, h: int, w: int, k: float) -> tuple[np.ndarray, np.ndarray]:
    """Steel plate, pauldrons and a cloak edge at scale k; returns (rgb, alpha)."""
    s = ctx.s * k
    cx, _ = ctx.face_center()
    cx *= k
    fs = ctx.face_size() * k
    chin = ctx.chin_y() * k
    m = im.resize(ctx.mask, w, h)
    face = im.resize(ctx.face_mask(1.05, 4 * ctx.s), w, h)
    yy, xx = _grid(h, w)
    below = np.clip((yy - (chin + 0.02 * fs)) / (0.1 * fs), 0, 1)
    body = im.feather(m * below * (1 - face), 1.5 * s)
    # the clothing's own folds, as a faint dent pattern in the metal
    lum = cv2.cvtColor(im.resize(ctx.img, w, h, cv2.INTER_AREA), cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    detail = lum - cv2.GaussianBlur(lum, (0, 0), 10 * s)
    bx = (xx - cx) / (1.2 * fs)
    v = 0.42 + 0.3 * np.cos(np.clip(bx, -1.5, 1.5) * 2.2) + 0.8 * detail
    v += 0.45 * np.exp(-(((bx + 0.32) / 0.09) ** 2))  # torch-side highlight
    v += 0.2 * np.exp(-(((bx - 0.45) / 0.05) ** 2))
    plate_h = 0.34 * fs
    py = (yy - chin - 0.12 * fs + 0.2 * fs * bx * bx) / plate_h
    frac = py - np.floor(py)
    on = (py > 0).astype(np.float32)
    v -= 0.45 * np.clip(1 - frac / 0.06, 0, 1) * on  # shadow under each plate edge
    v += 0.3 * np.clip(1 - np.abs(frac - 0.1) / 0.05, 0, 1) * on  # lit rolled edge
    v -= 0.15 * frac * on  # each plate darkens towards its lower lap
    steel = _ramp(v, _STEEL_RAMP)
    # rivets along the plate seams
    riv = np.zeros((h, w), np.float32)
    r = max(2, int(5 * s))
    for n in range(1, 6):
        for side in (-1, 1):
            rx = cx + side * 0.6 * fs
            rbx = (rx - cx) / (1.2 * fs)
            ry = chin + 0.12 * fs - 0.2 * fs * rbx * rbx + (n + 0.3) * plate_h
            if 0 <= ry < h and 0 <= rx < w:
                cv2.circle(riv, (int(rx), int(ry)), r, 1.0, -1, cv2.LINE_AA)
    steel = steel * (1 - 0.5 * riv[..., None]) + 0.45 * riv[..., None]
    # a red cloak falling behind the shoulders
    side = np.clip((np.abs(xx - cx) - 1.15 * fs) / (0.1 * fs), 0, 1)
    folds = 0.5 + 0.5 * np.sin(xx / (16 * s) + 0.8 * np.sin(yy / (70 * s)))
    cloak = np.array([0.5, 0.06, 0.08], np.float32) * (0.45 + 0.55 * folds[..., None])
    steel = steel * (1 - side[..., None]) + cloak * side[..., None]
    return steel, body


def knight(ctx: Ctx) -> Rendered:
    s = ctx.s
    h, w = ctx.h, ctx.w
    base = im.normalize_levels(ctx.img)
    f = im.f32(im.smooth(base, passes=2, factor=0.5, d=7, sc=25, ss=6))
    hw, hh = w // 2, h // 2
    steel, body = _armour(ctx, hh, hw, 0.5)
    tap = _tapestry(hh, hw, s * 0.5)
    steel = im.resize(steel, w, h, cv2.INTER_CUBIC)
    body = im.resize(body, w, h)[..., None]
    tap = im.resize(tap, w, h, cv2.INTER_CUBIC)
    out = f * (1 - body) + steel * body
    mf = im.feather(ctx.mask, 1.0)[..., None]
    out = tap * (1 - mf) + out * mf
    # warm torchlight from the left; steel keeps most of its grey
    yy, xx = _grid(h, w)
    torch = np.clip(1.15 - xx / w * 0.7 - yy / h * 0.2, 0.4, 1.2)[..., None]
    warm = np.array([1.14, 0.96, 0.72], np.float32)
    tint = warm * (1 - 0.6 * body) + 0.6 * body
    out = out * torch * tint
    out = im.vignette(im.u8(np.clip(out, 0, 1)), 0.7, 0.45, (12, 6, 2))
    return _same_geometry(ctx, out)


# ==========================================================================
# registry and matching


@dataclass(frozen=True)
class StyleDef:
    id: str
    render: Callable[[Ctx], Rendered]
    summary: str
    keywords: tuple[tuple[str, int], ...]


STYLE_DEFS: dict[str, StyleDef] = {
    d.id: d
    for d in (
        StyleDef(
            "comics",
            comics,
            "a comic-book panel: bold ink outlines, a flat 12-colour palette and a halftone-dot background",
            (("comic book", 5), ("comic", 3), ("halftone", 3), ("ink outlines", 1), ("hero panel", 2)),
        ),
        StyleDef(
            "manga",
            manga,
            "a black-and-white manga look: ink lines, dot screentone in three grey levels and a white "
            "paper background",
            (("manga", 5), ("screentone", 4)),
        ),
        StyleDef(
            "zombie",
            zombie,
            "a zombie makeover: grey-green desaturated skin, darkened eye sockets, pale irises, film "
            "grain and a dark vignette",
            (("zombie", 5), ("undead", 4), ("horror", 2), ("sunken eye", 2)),
        ),
        StyleDef(
            "pop_art",
            pop_art,
            "a pop-art silkscreen: four posterised panels in bold contrasting colour schemes",
            (("pop art", 5), ("silkscreen", 4), ("2x2", 2), ("posteri", 1)),
        ),
        StyleDef(
            "pixel_art",
            pixel_art,
            "retro pixel art: a 64-pixel grid, 16 colours from a 9-bit console colour space, a dark "
            "sprite outline and crisp square pixels",
            (("pixel art", 5), ("pixel grid", 3), ("8-bit", 3), ("retro console", 2), ("pixel", 2)),
        ),
        StyleDef(
            "animated_3d",
            animated_3d,
            "a soft 3D-like shading look: heavy smoothing, warm key light, slightly enlarged eyes and "
            "a soft background (a filter, not a 3D model)",
            (
                ("3d animated", 5),
                ("animated film", 4),
                ("3d", 2),
                ("studio lighting", 1),
                ("rounded shading", 2),
            ),
        ),
        StyleDef(
            "cel_shaded",
            cel_shaded,
            "cel shading: flat colours, hard-edged shadow bands, crisp dark outlines and a clean sky "
            "backdrop",
            (("anime", 4), ("cel-shad", 2), ("shadow bands", 4), ("cel shading", 1)),
        ),
        StyleDef(
            "watercolor",
            watercolor,
            "a watercolour look: soft translucent washes with bleeding edges, paper texture and a "
            "light pencil underdrawing",
            (("watercolour", 5), ("watercolor", 5), ("washes", 2), ("bleeding edges", 2)),
        ),
        StyleDef(
            "sketch",
            sketch,
            "a graphite pencil sketch on white paper with contour lines and soft hatching",
            (("pencil sketch", 5), ("graphite", 4), ("hatching", 2), ("sketch", 3)),
        ),
        StyleDef(
            "cyberpunk",
            cyberpunk,
            "a cyberpunk neon look: a drawn night-city backdrop, magenta and cyan rim light, high "
            "contrast and scanlines",
            (("cyberpunk", 5), ("neon", 3), ("night city", 2), ("scanline", 1)),
        ),
        StyleDef(
            "oil_painting",
            oil_painting,
            "an oil-painting look: broad paint strokes with relief, warm varnish tones and a dark "
            "painterly background",
            (("oil painting", 5), ("oil", 2), ("brush strokes", 2), ("varnish", 2)),
        ),
        StyleDef(
            "knight",
            knight,
            "a medieval-knight costume treatment: the clothing below the face redrawn as steel-grey "
            "plate with a red cloak edge, a tapestry-pattern backdrop and warm torchlight",
            (("knight", 5), ("medieval", 3), ("armour", 3), ("armor", 3), ("tapestry", 2)),
        ),
    )
}

DEFAULT_STYLE = "comics"


def match_style(text: str) -> str | None:
    """The catalog style whose distinctive words best match `text`, or None."""
    low = text.lower()
    best, best_score, best_pos = None, 0, len(low) + 1
    for sid, d in STYLE_DEFS.items():
        score, pos = 0, len(low) + 1
        for word, weight in d.keywords:
            found = [mm.start() for mm in re.finditer(re.escape(word), low)]
            if found:
                score += weight
                pos = min(pos, found[0])
        if score > best_score or (score == best_score and score and pos < best_pos):
            best, best_score, best_pos = sid, score, pos
    return best
