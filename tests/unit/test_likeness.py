"""pixme.likeness on the public-domain faces and on renders of them.

The drawings in tests/fixtures are our offline renderer's output on those
faces (see tests/fixtures/README.md), so "A's avatar against B's photo" is a
swapped face, and "A's avatar against A's photo" the same person.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from pixme import likeness

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
ASTRONAUT = (ROOT / "assets" / "selfie-astronaut.png").read_bytes()
OBAMA = (FIXTURES / "portrait-obama-2012.jpg").read_bytes()
BIDEN = (FIXTURES / "portrait-biden-2013.jpg").read_bytes()


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_the_same_photo_mirrored_and_small_is_the_same_person() -> None:
    img = Image.open(io.BytesIO(OBAMA)).convert("RGB")
    variant = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((455, 568))
    got = likeness.measure(OBAMA, _png(variant))
    assert got.detected and got.distance is not None
    assert got.distance < likeness.PHOTO_THRESHOLD / 2


@pytest.mark.parametrize(("a", "b"), [(ASTRONAUT, OBAMA), (OBAMA, BIDEN), (BIDEN, ASTRONAUT)])
def test_different_people_are_apart(a: bytes, b: bytes) -> None:
    got = likeness.measure(a, b)
    assert got.distance is not None and got.distance > likeness.PHOTO_THRESHOLD


@pytest.mark.parametrize(
    ("drawing", "style", "own", "other"),
    [
        ("drawing-comics-astronaut.jpg", "comics", ASTRONAUT, OBAMA),
        ("drawing-cel-obama.jpg", "cel_shaded", OBAMA, BIDEN),
        ("drawing-sketch-obama.jpg", "sketch", OBAMA, ASTRONAUT),
    ],
)
def test_an_avatar_passes_its_own_face_and_fails_a_swapped_one(
    drawing: str, style: str, own: bytes, other: bytes
) -> None:
    avatar = (FIXTURES / drawing).read_bytes()
    assert likeness.THRESHOLDS.get(style) is not None, f"{style} is calibrated"
    same = likeness.measure(own, avatar)
    swapped = likeness.measure(other, avatar)
    assert same.same_person(style) is True, same
    assert swapped.same_person(style) is False, swapped
    assert swapped.distance is not None and same.distance is not None
    assert swapped.distance > same.distance + 0.15


def test_no_face_is_said_not_guessed() -> None:
    got = likeness.measure(ASTRONAUT, (FIXTURES / "noface-coffee.png").read_bytes())
    assert not got.detected and got.distance is None
    assert got.tone_source is not None and got.tone_avatar is None
    assert got.same_person("comics") is None


def test_an_uncalibrated_style_decides_nothing() -> None:
    got = likeness.measure(OBAMA, OBAMA)
    assert got.distance == 0.0
    assert got.same_person("no-such-style") is None


def test_lab_of_known_colours() -> None:
    import numpy as np

    lab = likeness._srgb_to_lab(np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    assert np.allclose(lab[0], (100, 0, 0), atol=0.05)
    assert np.allclose(lab[1], (53.24, 80.09, 67.20), atol=0.05)
    assert np.allclose(lab[2], (0, 0, 0), atol=0.05)


def test_skin_tone_follows_the_face() -> None:
    """A darker and a greyscale copy of the same photo: the distance stays
    small, the lightness drops, the greyscale copy loses its chroma."""
    img = Image.open(io.BytesIO(OBAMA)).convert("RGB")
    darker = img.point(lambda v: int(v * 0.6))
    grey = img.convert("L").convert("RGB")
    base = likeness.describe(OBAMA)
    dark = likeness.compare(base, likeness.describe(_png(darker)))
    mono = likeness.compare(base, likeness.describe(_png(grey)))
    assert base is not None and dark.tone_avatar is not None and mono.tone_avatar is not None
    assert dark.lightness_shift is not None and dark.lightness_shift < -10
    assert dark.tone_avatar.ita < base.tone.ita - 10
    assert abs(mono.tone_avatar.a) < 1 and abs(mono.tone_avatar.b) < 1
    assert base.tone.b > 10  # skin in colour has a yellow-red b*


def test_available_here() -> None:
    assert likeness.available()


def test_importing_the_module_loads_no_model() -> None:
    code = "import sys, pixme.likeness; print('dlib' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
