"""The Gemini adapter, through the real google-genai SDK, against the offline
renderer speaking Gemini's wire protocol, with its fault injection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from local.stack import Stack
from pixme.adapters.gemini import GeminiModel
from pixme.errors import ModelRefused, PixmeError, RateLimited, Unavailable, UpstreamMisconfigured
from pixme.ports import RenderOptions
from pixme.prompts import ImageRef, edit_messages, generation_messages
from pixme.styles import get_style

ROOT = Path(__file__).resolve().parents[2]
SELFIE = ImageRef((ROOT / "assets" / "selfie-astronaut.png").read_bytes(), "image/png")
MODEL = "gemini-3.1-flash-image"


@pytest.fixture(scope="module")
def renderer() -> Iterator[Stack]:
    with Stack(components=["renderer"], log_dir=ROOT / "out" / "stack" / "test-gemini", quiet=True) as s:
        yield s


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def model(renderer: Stack, timeout_s: int = 30, deadline_s: int = 90) -> tuple[GeminiModel, Sleeps]:
    from google import genai
    from google.genai import types

    client = genai.Client(
        api_key="offline",
        http_options=types.HttpOptions(base_url=renderer.renderer_url, timeout=timeout_s * 1000),
    )
    sleeps = Sleeps()
    return GeminiModel(timeout_s, deadline_s, client=client, sleep=sleeps), sleeps


def generate(m: GeminiModel, model_id: str = MODEL):  # type: ignore[no-untyped-def]
    return m.generate(model_id, generation_messages(get_style("comics"), SELFIE), RenderOptions())


def test_generation_and_an_edit_round_trip_with_the_signature(renderer: Stack) -> None:
    m, _ = model(renderer)
    first = generate(m)
    assert first.image.startswith(b"\x89PNG") and first.thought_signature
    assert first.text and first.model_version
    assert first.usage["prompt_tokens"] > 1000 and first.usage["output_tokens"] > 0
    current = ImageRef(first.image, first.mime_type, first.thought_signature)
    second = m.generate(
        MODEL, edit_messages(get_style("comics"), SELFIE, current, [], "add glasses"), RenderOptions()
    )
    assert second.image != first.image and second.thought_signature


def test_a_replayed_image_with_a_forged_signature_is_refused(renderer: Stack) -> None:
    m, _ = model(renderer)
    first = generate(m)
    forged = ImageRef(first.image, first.mime_type, b"not-the-signature")
    with pytest.raises(UpstreamMisconfigured) as caught:
        m.generate(
            MODEL, edit_messages(get_style("comics"), SELFIE, forged, [], "add glasses"), RenderOptions()
        )
    assert caught.value.code == "model_rejected_history"


@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        ("blocked", ModelRefused, "prompt_blocked"),
        ("image_safety", ModelRefused, "image_safety"),
        ("no_image", ModelRefused, "no_image"),
        ("text_only", ModelRefused, "text_only"),
        ("no_signature", UpstreamMisconfigured, "missing_thought_signature"),
        ("400", UpstreamMisconfigured, "model_invalid_argument"),
        ("403", UpstreamMisconfigured, "model_access_denied"),
        ("region", UpstreamMisconfigured, "model_unavailable_here"),
    ],
)
def test_each_refusal_maps_to_its_own_code(
    renderer: Stack, fault: str, error: type[PixmeError], code: str
) -> None:
    m, sleeps = model(renderer)
    with pytest.raises(error) as caught:
        generate(m, f"{MODEL}@{fault}")
    assert caught.value.code == code
    assert sleeps == []  # permanent outcomes are never retried


def test_text_only_replies_carry_the_models_words(renderer: Stack) -> None:
    m, _ = model(renderer)
    with pytest.raises(ModelRefused) as caught:
        generate(m, f"{MODEL}@text_only")
    assert caught.value.message and caught.value.details["model_text"] == caught.value.message


def test_a_retired_model_says_so(renderer: Stack) -> None:
    m, _ = model(renderer)
    with pytest.raises(UpstreamMisconfigured) as caught:
        generate(m, "gemini-2.0-flash-exp")
    assert caught.value.code == "model_not_found" and "gemini-2.0-flash-exp" in caught.value.message
    assert caught.value.status == 502


def test_rate_limits_are_retried_honouring_retry_after_then_surface_as_429(renderer: Stack) -> None:
    m, sleeps = model(renderer)
    with pytest.raises(RateLimited) as caught:
        generate(m, f"{MODEL}@429")
    assert sleeps == [1.0, 1.0, 1.0]  # the server's Retry-After, three retries
    assert caught.value.status == 429 and caught.value.retry_after_s >= 1


def test_overload_is_retried_with_backoff_then_surfaces_as_503(renderer: Stack) -> None:
    m, sleeps = model(renderer)
    with pytest.raises(Unavailable) as caught:
        generate(m, f"{MODEL}@503")
    assert len(sleeps) == 3 and all(0 <= s <= 8 for s in sleeps)
    assert caught.value.code == "model_unavailable"


def test_a_server_error_is_retried_then_surfaces_as_503(renderer: Stack) -> None:
    m, sleeps = model(renderer)
    with pytest.raises(Unavailable) as caught:
        generate(m, f"{MODEL}@500")
    assert len(sleeps) == 3 and caught.value.status == 503


def test_retries_stop_at_the_total_deadline(renderer: Stack) -> None:
    m, sleeps = model(renderer, timeout_s=30, deadline_s=30)
    with pytest.raises(Unavailable):
        generate(m, f"{MODEL}@503")
    assert sleeps == []  # another attempt could not finish before the deadline


def test_a_slow_model_times_out_below_the_function_timeout(renderer: Stack) -> None:
    m, sleeps = model(renderer, timeout_s=2, deadline_s=10)
    with pytest.raises(Unavailable) as caught:
        generate(m, f"{MODEL}@timeout")
    assert caught.value.code == "model_timeout" and sleeps == []
