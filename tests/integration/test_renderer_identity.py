"""The offline renderer against the likeness measure (pixme.likeness).

The renderer runs as its own process (.venv-renderer) and is driven through
our Gemini adapter with the prompts the functions send; the avatars it
answers are measured against the face crop they were made from, as a guard
in the functions would measure them. Faces: the public-domain portraits.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from google import genai
from google.genai import types
from PIL import Image

from local.stack import Stack
from pixme import faces, images, likeness
from pixme.adapters.gemini import GeminiModel
from pixme.ports import ModelReply, RenderOptions
from pixme.prompts import ImageRef, edit_messages, generation_messages
from pixme.styles import get_style

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "out" / "stack" / "test-renderer-identity"
MODEL = "gemini-3.1-flash-image"


def _crop(path: Path) -> bytes:
    """The face crop the ingest function stores and sends to the model."""
    img = images.decode(path.read_bytes(), 20_000_000, 50_000_000, 4096)
    found = faces.detect(img)
    assert found, path
    return images.encode(faces.crop(img, found[0]))


OBAMA = _crop(ROOT / "tests" / "fixtures" / "portrait-obama-2012.jpg")
ASTRONAUT = _crop(ROOT / "assets" / "selfie-astronaut.png")


@pytest.fixture(scope="module")
def model() -> Iterator[GeminiModel]:
    with Stack(components=["renderer"], log_dir=LOGS, quiet=True) as stack:
        client = genai.Client(
            api_key="offline",
            http_options=types.HttpOptions(base_url=str(stack.renderer_url), timeout=120_000),
        )
        yield GeminiModel(120, 300, client=client)


def _generate(model: GeminiModel, style: str, selfie: bytes, fault: str = "") -> ModelReply:
    model_id = f"{MODEL}@{fault}" if fault else MODEL
    return model.generate(model_id, generation_messages(get_style(style), ImageRef(selfie, "image/jpeg")),
                          RenderOptions())  # fmt: skip


@pytest.mark.parametrize("style", ["comics", "animated_3d"])
def test_the_identity_drift_fault_is_caught_and_the_normal_answer_passes(
    model: GeminiModel, style: str
) -> None:
    normal = _generate(model, style, OBAMA)
    drifted = _generate(model, style, OBAMA, "identity_drift")
    kept = likeness.measure(OBAMA, normal.image)
    lost = likeness.measure(OBAMA, drifted.image)
    assert kept.same_person(style) is True, kept
    assert lost.same_person(style) is False, lost
    assert lost.distance is not None and lost.distance > likeness.PHOTO_THRESHOLD
    # Only the face changed: the rest of the picture is the same render.
    a = np.asarray(Image.open(io.BytesIO(normal.image)).convert("RGB")).astype(int)
    b = np.asarray(Image.open(io.BytesIO(drifted.image)).convert("RGB")).astype(int)
    changed = np.abs(a - b).max(axis=2) > 8
    assert 0.02 < changed.mean() < 0.25
    ys, _ = np.nonzero(changed)
    assert ys.min() > 0.05 * a.shape[0] and ys.max() < 0.8 * a.shape[0]


def test_a_drifted_answer_can_be_edited_like_any_other(model: GeminiModel) -> None:
    style = get_style("comics")
    selfie = ImageRef(OBAMA, "image/jpeg")
    drifted = _generate(model, "comics", OBAMA, "identity_drift")
    current = ImageRef(drifted.image, drifted.mime_type, drifted.thought_signature)
    edited = model.generate(MODEL, edit_messages(style, selfie, current, [], "add glasses"), RenderOptions())
    assert edited.image != drifted.image
    assert likeness.measure(OBAMA, edited.image).same_person("comics") is False


def test_manga_screentone_follows_the_skin_tone(model: GeminiModel) -> None:
    """A darker face is drawn with denser screentone, not as blank paper:
    the avatar's skin lightness stays near the photograph's (it used to be
    23-54 L* lighter), and the darker face stays the darker one."""
    tones = {}
    for name, crop in (("astronaut", ASTRONAUT), ("obama", OBAMA)):
        got = likeness.measure(crop, _generate(model, "manga", crop).image)
        assert got.lightness_shift is not None and got.tone_avatar is not None
        assert abs(got.lightness_shift) < 20, (name, got)
        tones[name] = got.tone_avatar.L
    assert tones["obama"] < tones["astronaut"] - 5
