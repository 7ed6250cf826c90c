"""The Gemini adapter, through the real google-genai SDK, against the offline
renderer speaking Gemini's wire protocol, with its fault injection.

The client is built the way the functions build it (from Settings), in Vertex
AI mode (what production uses) and in Developer API mode.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.stack import Stack
from pixme.adapters.gemini import GeminiModel, client_for, to_contents
from pixme.config import Settings
from pixme.errors import (
    ConfigError,
    ModelRefused,
    PixmeError,
    RateLimited,
    Unavailable,
    UpstreamMisconfigured,
)
from pixme.ports import RenderOptions
from pixme.prompts import ImageRef, edit_messages, generation_messages
from pixme.styles import get_style

ROOT = Path(__file__).resolve().parents[2]
SELFIE = ImageRef((ROOT / "assets" / "selfie-astronaut.png").read_bytes(), "image/png")
MODEL = "gemini-nano-banana-2.1"
RETIRED = "gemini-2.0-flash-exp"  # the renderer answers 404 NOT_FOUND for it
# Nothing listens on the discard port: a client that took its base URL (or its
# project and location) from the environment instead of Settings fails.
NOWHERE = "http://127.0.0.1:9"


@pytest.fixture(scope="module")
def renderer() -> Iterator[Stack]:
    with Stack(components=["renderer"], log_dir=ROOT / "out" / "stack" / "test-gemini", quiet=True) as s:
        yield s


@pytest.fixture(autouse=True)
def misleading_sdk_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's own variables point elsewhere: only Settings may count."""
    for name, value in {
        "GOOGLE_GEMINI_BASE_URL": NOWHERE,
        "GOOGLE_VERTEX_BASE_URL": NOWHERE,
        "GOOGLE_CLOUD_PROJECT": "env-project",
        "GOOGLE_CLOUD_LOCATION": "env-location",
        "GOOGLE_GENAI_USE_VERTEXAI": "maybe",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def settings(renderer: Stack, mode: str) -> Settings:
    url = str(renderer.renderer_url)
    base = Settings(project="p", uploads_bucket="u", assets_bucket="a")
    if mode == "vertex":
        return base.replace(vertexai=True, vertex_base_url=url)
    return base.replace(api_key="offline", gemini_base_url=url)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def model(
    renderer: Stack, timeout_s: int = 30, deadline_s: int = 90, mode: str = "vertex"
) -> tuple[GeminiModel, Sleeps]:
    sleeps = Sleeps()
    return GeminiModel(timeout_s, deadline_s, sleep=sleeps, settings=settings(renderer, mode)), sleeps


def generate(m: GeminiModel, model_id: str = MODEL):  # type: ignore[no-untyped-def]
    return m.generate(model_id, generation_messages(get_style("comics"), SELFIE), RenderOptions())


@pytest.mark.parametrize("mode", ["vertex", "developer"])
def test_generation_and_an_edit_round_trip_with_the_signature(renderer: Stack, mode: str) -> None:
    m, _ = model(renderer, mode=mode)
    first = generate(m)
    assert first.model_id == MODEL
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
        ("malformed_response", ModelRefused, "no_image"),
        ("continuation", ModelRefused, "no_image"),
        ("model_armor", ModelRefused, "image_safety"),
        ("escalation", ModelRefused, "image_safety"),
        ("pup_limited", UpstreamMisconfigured, "model_account_limited"),
        ("missing_signature", UpstreamMisconfigured, "model_rejected_history"),
        ("blocked_image_safety", ModelRefused, "prompt_blocked"),
        ("blocked_model_armor", ModelRefused, "prompt_blocked"),
        ("blocked_jailbreak", ModelRefused, "prompt_blocked"),
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


# --- the client, built from Settings --------------------------------------------


@pytest.mark.parametrize("mode", ["vertex", "developer"])
def test_the_base_url_comes_from_settings_in_both_modes(renderer: Stack, mode: str) -> None:
    # The environment names a dead server and another project: an answer
    # proves the SDK used what Settings said (never Google's endpoint with a
    # fake key, never the "API gateway" bare URL).
    m, _ = model(renderer, mode=mode)
    reply = generate(m)
    assert reply.image and reply.thought_signature
    client = m.client._api_client
    assert client.vertexai is (mode == "vertex")
    assert client._http_options.base_url.rstrip("/") == renderer.renderer_url
    if mode == "vertex":
        assert (client.project, client.location) == ("p", "global")


@pytest.mark.parametrize(
    ("changes", "names"),
    [
        ({"vertexai": False, "api_key": ""}, "GEMINI_API_KEY or GOOGLE_API_KEY"),
        ({"vertexai": True, "project": ""}, "GOOGLE_CLOUD_PROJECT"),
    ],
)
def test_a_misconfigured_backend_names_what_to_set(changes: dict[str, object], names: str) -> None:
    base = Settings(project="p", uploads_bucket="u", assets_bucket="a")
    with pytest.raises(ConfigError, match=names):
        client_for(base.replace(**changes), 30)


@pytest.mark.parametrize("mode", ["vertex", "developer"])
def test_a_retired_model_falls_back_to_the_next_with_a_warning(
    renderer: Stack, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    m, sleeps = model(renderer, mode=mode)
    with caplog.at_level(logging.WARNING, logger="pixme.adapters.gemini"):
        reply = generate(m, f"{RETIRED}|{MODEL}")
    assert reply.model_id == MODEL and reply.image
    assert any(RETIRED in r.getMessage() for r in caplog.records)
    assert sleeps == []


def test_when_every_fallback_is_retired_the_last_is_named(renderer: Stack) -> None:
    m, _ = model(renderer)
    with pytest.raises(UpstreamMisconfigured) as caught:
        generate(m, f"{RETIRED}|gemini-2.5-flash-image-preview")
    assert caught.value.code == "model_not_found" and "gemini-2.5-flash-image-preview" in caught.value.message


def test_only_not_found_falls_back(renderer: Stack) -> None:
    m, _ = model(renderer)
    with pytest.raises(UpstreamMisconfigured) as caught:
        generate(m, f"{MODEL}@400|{MODEL}")
    assert caught.value.code == "model_invalid_argument"


@pytest.mark.parametrize("mode", ["vertex", "developer"])
def test_a_jpeg_answer_is_kept_byte_for_byte(renderer: Stack, mode: str) -> None:
    from google.genai import types

    m, _ = model(renderer, mode=mode)
    messages = generation_messages(get_style("comics"), SELFIE)
    reply = m.generate(f"{MODEL}@jpeg", messages, RenderOptions())
    assert reply.mime_type == "image/jpeg" and reply.image.startswith(b"\xff\xd8\xff")
    # The renderer is deterministic: the same request again, read raw.
    raw = m.client.models.generate_content(
        model=f"{MODEL}@jpeg",
        contents=to_contents(messages),
        config=types.GenerateContentConfig(response_modalities=["TEXT", "IMAGE"]),
    )
    parts = raw.candidates[0].content.parts
    assert reply.image == next(p.inline_data.data for p in parts if p.inline_data)
    # And the JPEG, with its signature, is a valid base for the next edit.
    current = ImageRef(reply.image, reply.mime_type, reply.thought_signature)
    edited = m.generate(
        MODEL, edit_messages(get_style("comics"), SELFIE, current, [], "add glasses"), RenderOptions()
    )
    assert edited.image and edited.thought_signature
