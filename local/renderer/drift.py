"""The `identity_drift` fault: an answer whose face is another person's.

A real image model sometimes keeps the style and loses the likeness. To test
a likeness guard end to end, this fault swaps the inner face (eyes, brows,
nose, mouth, cheeks) of the finished avatar for a donor's, aligned on the
landmarks and matched to the avatar's colours there, so the picture stays an
avatar in its style with another person in it.

Donors: face crops of the three public-domain portraits (donors/, rights in
local/renderer/README.md). Of those, the one whose aligned face looks least
like the avatar's (grey-level correlation inside the face) is used, so the
person's own portrait is never swapped in for them.

Re-proportioning the face instead (stretching it 1.3-1.6 times wide) was
tried first and rejected: dlib's descriptor moved only to 0.5-0.7, about
where a style alone puts it, or the face stopped being found at all.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np

from . import faces as F
from . import imaging as im

DONORS = Path(__file__).parent / "donors"
# Landmarks that pin the donor's face onto the avatar's: eye corners, nose
# tip and base, mouth corners, chin and forehead.
ANCHORS = (33, 133, 362, 263, 1, 2, 61, 291, 152, 10)
# The swapped region: the face oval shrunk about the face's centre (the
# avatar's outline, hair and ears stay), feathered by this share of its size.
INNER = 0.86
FEATHER = 0.05


@functools.cache
def _donors(analyzer: F.FaceAnalyzer) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    found = []
    for path in sorted(DONORS.glob("*.jpg")):
        rgb = im.decode_image(path.read_bytes())
        lms = analyzer.landmarks(rgb)
        if lms is not None:
            found.append((rgb, lms))
    return tuple(found)


def drift(analyzer: F.FaceAnalyzer, img: np.ndarray, faces: list[np.ndarray]) -> np.ndarray:
    """`img` with every face (478-point landmarks) swapped for a donor's."""
    out = img
    for lms in faces:
        out = _swap(analyzer, out, lms)
    return out


def _swap(analyzer: F.FaceAnalyzer, img: np.ndarray, lms: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    oval = lms[list(F.FACE_OVAL)]
    centre = oval.mean(0)
    size = float(max(np.ptp(oval[:, 0]), np.ptp(oval[:, 1])))
    mask = im.poly_mask(h, w, centre + (oval - centre) * INNER, sigma=FEATHER * size)
    inside = mask > 0.5
    if inside.sum() < 64:
        return img
    best: tuple[float, np.ndarray] | None = None
    for rgb, donor in _donors(analyzer):
        m, _ = cv2.estimateAffinePartial2D(donor[list(ANCHORS)], lms[list(ANCHORS)])
        if m is None:
            continue
        warped = cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        likeness = float(np.corrcoef(im.gray(warped)[inside], im.gray(img)[inside])[0, 1])
        if best is None or likeness < best[0]:
            best = (likeness, warped)
    if best is None:
        return img
    return im.mix(img, _match_colours(best[1], img, inside), mask)


def _match_colours(donor: np.ndarray, target: np.ndarray, where: np.ndarray) -> np.ndarray:
    """The donor with the target's mean and spread per L*a*b* channel inside
    `where`: a swapped face in the avatar's palette, not a pasted photograph."""
    d = cv2.cvtColor(donor, cv2.COLOR_RGB2LAB).astype(np.float32)
    t = cv2.cvtColor(target, cv2.COLOR_RGB2LAB).astype(np.float32)
    for c in range(3):
        dm, ds = d[..., c][where].mean(), d[..., c][where].std() + 1e-3
        tm, ts = t[..., c][where].mean(), t[..., c][where].std()
        d[..., c] = (d[..., c] - dm) * (ts / ds) + tm
    return cv2.cvtColor(np.clip(d, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
