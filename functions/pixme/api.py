"""Request bodies of the HTTPS API, validated into typed values.

Every rejection names the field and, where the set is closed, the allowed
values, so a mobile developer can fix the call from the error alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from pixme.config import Settings
from pixme.errors import InvalidRequest
from pixme.styles import get_style

# `\Z`, not `$`: `$` also matches before a final newline, so "u1\n" would pass.
ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
# Firestore reserves document ids of this form (and refuses ".", ".." and "/",
# which ID already excludes).
RESERVED_ID = re.compile(r"__.*__")
# Control characters (tab, newline and carriage return are text) and lone
# surrogates: the first have no business in a prompt or a caption drawn on an
# image, the second cannot be encoded as UTF-8 and would fail deep in a client.
FORBIDDEN_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
IMAGE_SIZES = ("1K", "2K")
MAX_CAPTION = 40
MAX_REFERENCES = 2
MAX_CONTEXT = 2000
MAX_PACK = 6  # styles one `generate` may ask for at once
MAX_PAGE = 100  # turns one `GET sessions/{id}` page holds
DEFAULT_PAGE = 50
# What the app may declare for an upload; ingest judges the bytes anyway.
UPLOAD_CONTENT_TYPES = ("image/jpeg", "image/png", "image/webp", "image/heic", "image/heif")


def valid_id(value: object, field: str) -> str:
    """`value` if it is an id we issue or accept (upload, session, turn), else 400
    `invalid_field` naming `field`. The one check for ids from a path or a body:
    an id ends up in a Firestore document id and a Cloud Storage object name."""
    if not isinstance(value, str) or not ID.match(value) or RESERVED_ID.fullmatch(value):
        raise InvalidRequest(
            "invalid_field",
            f"{field} must be 1-64 letters, digits, '-' or '_' (not starting and ending with '__').",
            field=field,
        )
    return value


def _str(body: dict[str, Any], name: str, required: bool = False, limit: int = 64) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidRequest("invalid_field", f"{name} must be a string.", field=name)
    if value is not None and FORBIDDEN_CHARS.search(value):
        raise InvalidRequest("invalid_field", f"{name} must not contain control characters.", field=name)
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
    return None if value is None else valid_id(value, name)


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
    return tuple(dict.fromkeys(valid_id(item, "references") for item in raw))


def _styles(body: dict[str, Any]) -> tuple[str, ...]:
    """A style pack: 1-MAX_PACK distinct catalog ids, instead of `style`."""
    raw = body.get("styles")
    if body.get("style") is not None:
        raise InvalidRequest("invalid_field", "Send either style or styles, not both.", field="styles")
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_PACK:
        raise InvalidRequest(
            "invalid_field", f"styles must be a list of 1 to {MAX_PACK} style ids.", field="styles"
        )
    ids: list[str] = []
    for item in raw:
        value = _str({"styles": item}, "styles", required=True)
        assert value is not None
        get_style(value)  # raises with the allowed ids
        ids.append(value)
    return tuple(dict.fromkeys(ids))


@dataclass(frozen=True)
class GenerateRequest:
    upload_id: str
    style: str
    model: str
    model_alias: str | None = None
    prompt: str | None = None
    context: str | None = None
    caption: str | None = None
    aspect_ratio: str | None = None
    image_size: str | None = None
    references: tuple[str, ...] = ()
    # A style pack (`styles`): one session per style; `style` is then the first.
    styles: tuple[str, ...] = ()

    def one(self, style: str) -> GenerateRequest:
        """The single-style request for one style of a pack."""
        return replace(self, style=style, styles=())

    @classmethod
    def parse(cls, body: dict[str, Any], settings: Settings) -> GenerateRequest:
        styles = _styles(body) if body.get("styles") is not None else ()
        style = styles[0] if styles else _str(body, "style", required=True)
        assert style is not None
        get_style(style)  # raises with the allowed ids
        upload_id = _id(body, "upload_id")
        assert upload_id is not None
        alias = _str(body, "model")
        return cls(
            upload_id=upload_id,
            style=style,
            model=resolve_model(settings, alias),
            model_alias=alias,
            prompt=_str(body, "prompt", limit=settings.max_text_chars),
            context=_str(body, "context", limit=MAX_CONTEXT),
            caption=_str(body, "caption", limit=MAX_CAPTION),
            aspect_ratio=_choice(body, "aspect_ratio", ASPECT_RATIOS),
            image_size=_choice(body, "image_size", IMAGE_SIZES),
            references=_references(body),
            styles=styles,
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
class PageRequest:
    """`GET sessions/{id}?limit=&page_token=&order=`: one page of turns."""

    limit: int = DEFAULT_PAGE
    page_token: str | None = None
    newest_first: bool = False

    @classmethod
    def parse(cls, args: Any) -> PageRequest:
        raw_limit = args.get("limit")
        limit = DEFAULT_PAGE
        if raw_limit is not None:
            if not str(raw_limit).isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
                raise InvalidRequest(
                    "invalid_field", f"limit must be a number from 1 to {MAX_PAGE}.", field="limit"
                )
            limit = int(raw_limit)
        token = args.get("page_token")
        order = args.get("order") or "oldest"
        if order not in ("oldest", "newest"):
            raise InvalidRequest(
                "invalid_field", "order must be one of the allowed values.", field="order",
                allowed=["oldest", "newest"],
            )  # fmt: skip
        return cls(limit, valid_id(token, "page_token") if token else None, order == "newest")


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
