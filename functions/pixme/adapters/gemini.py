"""Image model adapter on google-genai.

The client is built from Settings, explicitly: Vertex AI (project, location,
ADC) or the Developer API (a key), either optionally at another base URL. The
SDK is never left to guess from the environment: with a custom base URL and
project/location only in the environment it switches to an "API gateway" mode
that posts to the bare URL. Every outcome becomes one of our typed errors.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx2 as httpx  # the HTTP client google-genai 3.x uses
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from pixme.config import Settings
from pixme.errors import (
    ConfigError,
    ModelRefused,
    PixmeError,
    RateLimited,
    Unavailable,
    UpstreamMisconfigured,
)
from pixme.ports import ModelReply, RenderOptions
from pixme.prompts import Message

log = logging.getLogger(__name__)

NO_IMAGE_FINISH = {
    "SAFETY": "image_safety",
    "PROHIBITED_CONTENT": "image_safety",
    "IMAGE_SAFETY": "image_safety",
    "IMAGE_PROHIBITED_CONTENT": "image_safety",
    "IMAGE_RECITATION": "image_recitation",
    "RECITATION": "image_recitation",
    "IMAGE_OTHER": "no_image",
    "NO_IMAGE": "no_image",
    "MAX_TOKENS": "no_image",
    "MALFORMED_FUNCTION_CALL": "no_image",
    # A garbled answer: another attempt may well succeed.
    "MALFORMED_RESPONSE": "no_image",
    # Unfinished; automatic continuation is off (each re-send is billed).
    "CONTINUATION": "no_image",
    # Policy refusals: Vertex Model Armor, an escalated safety review, a
    # prompt judged a jailbreak.
    "MODEL_ARMOR": "image_safety",
    "ESCALATION": "image_safety",
    "JAILBREAK": "prompt_blocked",
    "MISSING_THOUGHT_SIGNATURE": "model_rejected_history",
    # The project's model access is limited for policy violations: only the
    # operator can fix it.
    "PUP_LIMITED_DISABLED": "model_account_limited",
}
_OPERATOR_FINISH = {
    "model_rejected_history": "The model rejected the conversation history.",
    "model_account_limited": "The project's access to the image model is limited for policy violations.",
}
_REFUSAL_TEXT = {
    "prompt_blocked": "The request was blocked by the model's safety filters. Try another photo or wording.",
    "image_safety": "The model declined to produce this image for safety reasons. Try other wording.",
    "image_recitation": "The model declined because the result resembled existing content.",
    "no_image": "The model did not produce an image this time. Try again or rephrase.",
}
_RETRYABLE_STATUS = {429, 500, 502, 503, 504}


def to_contents(messages: Sequence[Message]) -> list[types.Content]:
    contents = []
    for m in messages:
        parts: list[types.Part] = [types.Part(text=t) for t in m.texts]
        for image in m.images:
            if image.uri and not image.data:
                # By reference (Vertex AI): the platform reads the object itself.
                part = types.Part(
                    file_data=types.FileData(file_uri=image.uri, mime_type=image.mime_type),
                    thought_signature=image.thought_signature,
                )
            else:
                part = types.Part(
                    inline_data=types.Blob(data=image.data, mime_type=image.mime_type),
                    thought_signature=image.thought_signature,
                )
            parts.append(part)
        contents.append(types.Content(role=m.role, parts=parts))
    return contents


def _name(value: object) -> str:
    """An SDK enum's wire name; the SDK hands over plain strings for values it does not know."""
    return str(getattr(value, "value", value or ""))


def parse_reply(response: types.GenerateContentResponse, model_id: str) -> ModelReply:
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason:
        raise ModelRefused(
            "prompt_blocked",
            _REFUSAL_TEXT["prompt_blocked"],
            block_reason=_name(feedback.block_reason),
        )
    if not response.candidates:
        raise ModelRefused("no_image", _REFUSAL_TEXT["no_image"])
    candidate = response.candidates[0]
    finish_name = _name(candidate.finish_reason)
    parts = candidate.content.parts if candidate.content and candidate.content.parts else []
    texts = [p.text for p in parts if p.text and not p.thought]
    # Pro models may send interim "thought" images first: the last final one counts.
    images = [p for p in parts if p.inline_data and p.inline_data.data and not p.thought]
    text = " ".join(t.strip() for t in texts).strip()
    if not images:
        code = NO_IMAGE_FINISH.get(finish_name)
        if code in _OPERATOR_FINISH:
            raise UpstreamMisconfigured(code, _OPERATOR_FINISH[code], finish_reason=finish_name)
        if code:
            raise ModelRefused(code, _REFUSAL_TEXT[code], finish_reason=finish_name, model_text=text or None)
        if text:
            # The model answered in words only, e.g. asking a question or declining.
            raise ModelRefused("text_only", text, model_text=text)
        raise ModelRefused("no_image", _REFUSAL_TEXT["no_image"], finish_reason=finish_name or None)
    image = images[-1]
    assert image.inline_data is not None and image.inline_data.data is not None
    if not image.thought_signature:
        # Without it the next edit would be refused; fail now, clearly.
        raise UpstreamMisconfigured(
            "missing_thought_signature", "The model's image came without a thought signature."
        )
    usage: dict[str, int] = {}
    if response.usage_metadata is not None:
        um = response.usage_metadata
        for key, value in (
            ("prompt_tokens", um.prompt_token_count),
            ("output_tokens", um.candidates_token_count),
            ("total_tokens", um.total_token_count),
        ):
            if value is not None:
                usage[key] = int(value)
    return ModelReply(
        text=text,
        image=image.inline_data.data,
        # The model's own bytes and type (Gemini 3 sends JPEG): never re-encoded,
        # which would strip provenance such as a C2PA manifest.
        mime_type=image.inline_data.mime_type or sniff_mime(image.inline_data.data),
        thought_signature=image.thought_signature,
        model_version=response.model_version or model_id,
        usage=usage,
    )


def sniff_mime(data: bytes) -> str:
    """The image type from its magic bytes, for a part that names none."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/png"


def _retry_after(exc: genai_errors.APIError) -> float | None:
    headers = getattr(exc.response, "headers", None)
    raw = headers.get("retry-after") if headers is not None else None
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def map_api_error(exc: genai_errors.APIError, model_id: str) -> PixmeError:
    code = exc.code
    message = exc.message or ""
    if code == 429:
        wait = _retry_after(exc)
        return RateLimited(
            "model_rate_limited",
            "The image model is busy; retry shortly.",
            retry_after_s=max(1, round(wait or 10)),
        )
    if code == 404:
        return UpstreamMisconfigured(
            "model_not_found",
            f"Model {model_id!r} is not available (retired or misspelled): "
            "the operator must update PIXME_MODEL / PIXME_MODELS.",
        )
    if code in (401, 403):
        return UpstreamMisconfigured(
            "model_access_denied", "The backend is not allowed to use the image model."
        )
    if code == 400 and "thought_signature" in message:
        return UpstreamMisconfigured("model_rejected_history", "The model rejected the conversation history.")
    if code == 400 and exc.status == "FAILED_PRECONDITION":
        return UpstreamMisconfigured(
            "model_unavailable_here", "The image model is not available in this region."
        )
    if code == 400:
        return UpstreamMisconfigured("model_invalid_argument", "The model rejected the request as invalid.")
    if code >= 500:
        return Unavailable("model_unavailable", "The image model is temporarily unavailable; retry shortly.")
    return UpstreamMisconfigured("model_error", f"The image model answered {code}.")


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _vertex_client(settings: Settings, http_options: types.HttpOptions) -> genai.Client:
    credentials = None
    if settings.vertex_base_url and _is_loopback(settings.vertex_base_url):
        # A local server wants a bearer token, not Google's: static credentials
        # (the SDK refreshes anonymous ones, and they refuse).
        from google.oauth2.credentials import Credentials

        credentials = Credentials(token="local")  # type: ignore[no-untyped-call]
    return genai.Client(
        vertexai=True,
        project=settings.project,
        location=settings.location,
        credentials=credentials,
        http_options=http_options,
    )


def client_for(settings: Settings, timeout_s: int) -> genai.Client:
    """The one google-genai client of this process, from Settings alone."""
    problem = settings.model_backend_problem()
    if problem:
        raise ConfigError(problem)
    base_url = settings.vertex_base_url if settings.vertexai else settings.gemini_base_url
    http_options = types.HttpOptions(timeout=timeout_s * 1000, base_url=base_url or None)
    if settings.vertexai:
        return _vertex_client(settings, http_options)
    return genai.Client(vertexai=False, api_key=settings.api_key, http_options=http_options)


def model_ids(model_id: str) -> list[str]:
    """An alias's model ids in order of preference: `new|older` lists fallbacks."""
    return [m.strip() for m in model_id.split("|") if m.strip()]


class GeminiModel:
    def __init__(
        self,
        timeout_s: int,
        deadline_s: int,
        client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        settings: Settings | None = None,
    ) -> None:
        # One long-lived client per process: throw-away clients can be
        # garbage-collected mid-call.
        if client is None:
            client = client_for(settings or Settings.from_env(), timeout_s)
        self.client = client
        # Vertex AI takes gs:// file parts (up to 30 MB per image, vs 7 MB
        # inline); the Developer API gets inline bytes.
        self.by_reference = bool(getattr(client, "vertexai", False))
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s
        self.sleep = sleep

    def generate(self, model_id: str, messages: Sequence[Message], options: RenderOptions) -> ModelReply:
        image_config = None
        if options.aspect_ratio or options.image_size:
            image_config = types.ImageConfig(aspect_ratio=options.aspect_ratio, image_size=options.image_size)
        config = types.GenerateContentConfig(
            response_modalities=["TEXT", "IMAGE"],
            image_config=image_config,
            # Silent re-sends are each billed and may outlast our deadline.
            automatic_continuation=False,
        )
        contents = to_contents(messages)
        started = time.monotonic()
        candidates = model_ids(model_id) or [model_id]
        for index, candidate in enumerate(candidates):
            try:
                reply = self._generate_one(candidate, contents, config, started)
            except UpstreamMisconfigured as exc:
                if exc.code != "model_not_found":
                    raise
                fallback = candidates[index + 1] if index + 1 < len(candidates) else None
                # Every time, fallback or not: the operator must update PIXME_MODELS (alert).
                log.error(
                    "model %s is not found (retired?); %s: update PIXME_MODELS",
                    candidate,
                    f"falling back to {fallback}" if fallback else "no fallback left",
                    extra={"event": "model_not_found", "model": candidate, "fallback": fallback},
                )
                if fallback is None:
                    raise
                continue
            return dataclasses.replace(reply, model_id=candidate)
        raise AssertionError("unreachable: the last candidate returns or raises")

    def _generate_one(
        self,
        model_id: str,
        contents: list[types.Content],
        config: types.GenerateContentConfig,
        started: float,
    ) -> ModelReply:
        """One model id, retried on transient failures within the shared deadline."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self.client.models.generate_content(
                    model=model_id, contents=contents, config=config
                )
                return parse_reply(response, model_id)
            except genai_errors.APIError as exc:
                error = map_api_error(exc, model_id)
                wait = _retry_after(exc) if exc.code in _RETRYABLE_STATUS else None
                retryable = exc.code in _RETRYABLE_STATUS
            except httpx.TimeoutException:
                error = Unavailable("model_timeout", "The image model took too long; retry shortly.")
                wait, retryable = None, False  # a timeout already used most of the budget
            except httpx.TransportError:
                error = Unavailable("model_unreachable", "The image model could not be reached.")
                wait, retryable = None, True
            if not retryable or attempt >= 4:
                raise error
            # Exponential backoff with full jitter, or the server's Retry-After.
            delay = wait if wait is not None else random.uniform(0, min(8.0, 0.5 * 2**attempt))
            elapsed = time.monotonic() - started
            if elapsed + delay + self.timeout_s > self.deadline_s:
                raise error
            log.warning("model call failed (%s), retry %d in %.1fs", error.code, attempt, delay)
            self.sleep(delay)
