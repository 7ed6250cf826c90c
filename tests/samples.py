"""Sample pictures shared by the test layers: the bundled selfie, a no-face
photo, a composed group photo, and how to store a picture under an EXIF tag."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SELFIE_PATH = ROOT / "assets" / "selfie-astronaut.png"
CAT_PATH = ROOT / "assets" / "noface-cat.png"
COFFEE_PATH = ROOT / "tests" / "fixtures" / "noface-coffee.png"
SELFIE = SELFIE_PATH.read_bytes()
CAT = CAT_PATH.read_bytes()

# The transposition that undoes each EXIF orientation: storing a picture this
# way means a reader honouring the tag sees it upright.
INVERSE = {
    1: [],
    2: [Image.Transpose.FLIP_LEFT_RIGHT],
    3: [Image.Transpose.ROTATE_180],
    4: [Image.Transpose.FLIP_TOP_BOTTOM],
    5: [Image.Transpose.TRANSPOSE],
    6: [Image.Transpose.ROTATE_90],
    7: [Image.Transpose.TRANSVERSE],
    8: [Image.Transpose.ROTATE_270],
}


def stored_for(upright: Image.Image, orientation: int) -> Image.Image:
    for op in INVERSE[orientation]:
        upright = upright.transpose(op)
    return upright


def two_faces_image() -> Image.Image:
    """A group photo: the one public-domain selfie twice, side by side."""
    one = Image.open(io.BytesIO(SELFIE)).convert("RGB")
    both = Image.new("RGB", (one.width * 2, one.height))
    both.paste(one, (0, 0))
    both.paste(one, (one.width, 0))
    return both


def two_faces() -> bytes:
    out = io.BytesIO()
    two_faces_image().save(out, "JPEG", quality=90)
    return out.getvalue()
