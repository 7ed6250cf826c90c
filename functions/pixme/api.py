"""Request bodies of the HTTPS API, validated into typed values.

Every rejection names the field and, where the set is closed, the allowed
values, so a mobile developer can fix the call from the error alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pixme.config import Settings
from pixme.errors import InvalidRequest
from pixme.styles import get_style

ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
IMAGE_SIZES = ("1K", "2K")
MAX_CAPTION = 40
MAX_REFERENCES = 2
MAX_CONTEXT = 2000
# What the app may declare for an upload; ingest judges the bytes anyway.
UPLOAD_CONTENT_TYPES = ("image/jpeg", "image/png", "image/webp", "image/heic", "image/heif")


def _str(body: dict[str, Any], name: str, required: bool = False, limit: int = 64) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidRequest("invalid_field", f"{name} must be a string.", field=name)
    value = (value or "").strip()
    if not value:
        if required:
            raise InvalidRequest("missing_field", f"{name} is required.", field=name)
        return None
    if len(value) > limit:
        raise InvalidRequest("field_too_long", f"{name} must be at most {limit} characters.", field=name)
    return value


def _id(body: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = _str(body, name, required)
    if value is not None and not ID.match(value):
        raise InvalidRequest("invalid_field", f"{name} must be 1-64 letters, digits, '-' or '_'.", field=name)
    return value


def _choice(body: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str | None:
    value = _str(body, name)
    if value is not None and value not in allowed:
        raise InvalidRequest(
            "invalid_field",
            f"{name} must be one of the allowed values.",
            field=name,
            allowed=list(allowed),
        )
    return value


def resolve_model(settings: Settings, alias: str | None) -> str:
    if alias is None:
        return settings.model
    if alias not in settings.models:
        raise InvalidRequest(
            "invalid_field",
            "model must be one of the allowed values.",
            field="model",
            allowed=sorted(settings.models),
        )
    return settings.models[alias]


def _references(body: dict[str, Any]) -> tuple[str, ...]:
    """Earlier sessions of the same user whose current avatar guides the likeness."""
    raw = body.get("references")
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_REFERENCES:
        raise InvalidRequest(
            "invalid_field",
            f"references must be a list of at most {MAX_REFERENCES} session ids.",
            field="references",
        )
    ids = []
    for item in raw:
        if not isinstance(item, str) or not ID.match(item):
            raise InvalidRequest("invalid_field", "references must contain session ids.", field="references")
        ids.append(item)
    return tuple(dict.fromkeys(ids))


@dataclass(frozen=True)
class GenerateRequest:
    upload_id: str
    style: str
    model: str
    prompt: str | None = None
    context: str | None = None
    caption: str | None = None
    aspect_ratio: str | None = None
    image_size: str | None = None
    references: tuple[str, ...] = ()

    @classmethod
    def parse(cls, body: dict[str, Any], settings: Settings) -> GenerateRequest:
        style = _str(body, "style", required=True)
        assert style is not None
        get_style(style)  # raises with the allowed ids
        upload_id = _id(body, "upload_id")
        assert upload_id is not None
        return cls(
            upload_id=upload_id,
            style=style,
            model=resolve_model(settings, _str(body, "model")),
            prompt=_str(body, "prompt", limit=settings.max_text_chars),
            context=_str(body, "context", limit=MAX_CONTEXT),
            caption=_str(body, "caption", limit=MAX_CAPTION),
            aspect_ratio=_choice(body, "aspect_ratio", ASPECT_RATIOS),
            image_size=_choice(body, "image_size", IMAGE_SIZES),
            references=_references(body),
        )


@dataclass(frozen=True)
class EditRequest:
    session_id: str
    instruction: str
    from_turn: str | None = None
    if_head: str | None = None

    @classmethod
    def parse(cls, body: dict[str, Any], settings: Settings) -> EditRequest:
        session_id = _id(body, "session_id")
        instruction = _str(body, "instruction", required=True, limit=settings.max_text_chars)
        assert session_id is not None and instruction is not None
        return cls(
            session_id,
            instruction,
            _id(body, "from_turn", required=False),
            _id(body, "if_head", required=False),
        )


@dataclass(frozen=True)
class UploadRequest:
    content_type: str

    @classmethod
    def parse(cls, body: dict[str, Any]) -> UploadRequest:
        raw = body.get("content_type")
        if isinstance(raw, str):
            body = {**body, "content_type": raw.strip().lower()}
        content_type = _str(body, "content_type", required=True)
        assert content_type is not None
        if content_type not in UPLOAD_CONTENT_TYPES:
            raise InvalidRequest(
                "invalid_field",
                "content_type must be one of the allowed values.",
                field="content_type",
                allowed=list(UPLOAD_CONTENT_TYPES),
            )
        return cls(content_type)
