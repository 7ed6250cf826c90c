"""Requests of the HTTPS API: pydantic models, validated from the wire into typed values.

The same declarations validate what the app sends and describe it in the
OpenAPI document (`pixme.openapi`). Every rejection is a 400 with one of the
API's codes (`missing_field`, `invalid_field`, `field_too_long`,
`unknown_style`), names the field and, where the set is closed, lists the
allowed values, so a mobile developer can fix the call from the error alone.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from pixme.config import Settings
from pixme.errors import InvalidRequest
from pixme.styles import STYLES, get_style

# `\Z`, not `$`: in Python `$` also matches before a final newline, so "u1\n"
# would pass (pydantic's own patterns run on Rust's regex, where `$` is the end).
ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
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
DEFAULT_TEXT_CHARS = 500  # PIXME_MAX_TEXT_CHARS's default, for the spec
# What the app may declare for an upload; ingest judges the bytes anyway.
UPLOAD_CONTENT_TYPES = ("image/jpeg", "image/png", "image/webp", "image/heic", "image/heif")
_ID_RULE = "must be 1-64 letters, digits, '-' or '_' (not starting and ending with '__')."


def valid_id(value: object, field: str) -> str:
    """`value` if it is an id we issue or accept (upload, session, turn), else 400
    `invalid_field` naming `field`. The one check for ids from a path or a body:
    an id ends up in a Firestore document id and a Cloud Storage object name."""
    if not isinstance(value, str) or not ID.match(value) or RESERVED_ID.fullmatch(value):
        raise InvalidRequest("invalid_field", f"{field} {_ID_RULE}", field=field)
    return value


# -- field types ---------------------------------------------------------------------


def _text(value: Any) -> Any:
    """A string field as the API reads it: no control characters, surrounding
    space dropped, blank = absent."""
    if not isinstance(value, str):
        return value  # None stays absent; other types fail the str check
    if FORBIDDEN_CHARS.search(value):
        raise PydanticCustomError("invalid_field", "must not contain control characters.")
    return value.strip() or None


def _required_text(value: Any) -> Any:
    value = _text(value)
    if value is None:
        raise PydanticCustomError("missing_field", "is required.")
    return value


def _id_value(value: Any) -> Any:
    # A body id is a string field first: one over 64 characters is too long
    # before it is malformed.
    value = _text(value)
    if isinstance(value, str) and len(value) > 64:
        raise PydanticCustomError("string_too_long", "too long", {"max_length": 64})
    if isinstance(value, str) and (not ID.match(value) or RESERVED_ID.fullmatch(value)):
        raise PydanticCustomError("invalid_field", _ID_RULE)
    return value


def _listed_id(value: Any) -> Any:
    """An id inside a list (`references`): exactly an id, nothing trimmed."""
    if isinstance(value, str) and (not ID.match(value) or RESERVED_ID.fullmatch(value)):
        raise PydanticCustomError("invalid_field", _ID_RULE)
    return value


def _required_id(value: Any) -> Any:
    return _id_value(_required_text(value))


def _lower(value: Any) -> Any:
    value = _required_text(value)
    return value.lower() if isinstance(value, str) else value


# What the document says of text (validation is the functions' above): no
# control characters, and a required one holds more than spaces.
_TEXT_CHAR = r"[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\ud800-\udfff]"
_SOLID_CHAR = r"[^\s\u0000-\u001f\u007f-\u009f\ud800-\udfff]"
_TEXT = Field(json_schema_extra={"pattern": f"^{_TEXT_CHAR}*$"})
_SOLID_TEXT = f"^{_TEXT_CHAR}*{_SOLID_CHAR}{_TEXT_CHAR}*$"
_REQUIRED_TEXT = Field(json_schema_extra={"minLength": 1, "pattern": _SOLID_TEXT})
_IdString = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Text = Annotated[str | None, BeforeValidator(_text), _TEXT]
# Optional text with a bound: on the string, not on the null a client may send for "none".
Name = Annotated[Annotated[str, StringConstraints(max_length=64)] | None, BeforeValidator(_text), _TEXT]
Context = Annotated[
    Annotated[str, StringConstraints(max_length=MAX_CONTEXT)] | None, BeforeValidator(_text), _TEXT
]
Caption = Annotated[
    Annotated[str, StringConstraints(max_length=MAX_CAPTION)] | None, BeforeValidator(_text), _TEXT
]


RequiredText = Annotated[str, BeforeValidator(_required_text), _REQUIRED_TEXT]
Id = Annotated[_IdString | None, BeforeValidator(_id_value)]
RequiredId = Annotated[_IdString, BeforeValidator(_required_id)]
ListedId = Annotated[_IdString, BeforeValidator(_listed_id)]
# The catalog's ids, for the document (a client sees the closed set).
StyleId = Annotated[
    str,
    BeforeValidator(_required_text),
    StringConstraints(max_length=64),
    Field(json_schema_extra={"enum": [style.id for style in STYLES]}),
]
# What a list field must be, in the words of its 400.
_LIST_RULES = {
    "references": f"must be a list of at most {MAX_REFERENCES} session ids.",
    "styles": f"must be a list of 1 to {MAX_PACK} style ids.",
}


class _Request(BaseModel):
    # Unknown fields are ignored (an older server keeps working with a newer
    # app); types are strict: 5 is not the id "5", "true" is not a boolean.
    model_config = ConfigDict(frozen=True, extra="ignore", strict=True, populate_by_name=True)

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> Self:
        """Validate a request body (or query) into the model; any problem is one 400."""
        return cls._validated(body, None)

    @classmethod
    def _validated(cls, body: Mapping[str, Any], limits: dict[str, Any] | None) -> Self:
        try:
            return cls.model_validate(dict(body), context=limits)
        except ValidationError as err:
            raise _first_problem(cls, err) from None


def _first_problem(model: type[BaseModel], err: ValidationError) -> InvalidRequest:
    """The first of pydantic's errors as the API's error: its code, the field
    (by its wire name) and, for a closed set, the allowed values."""
    first = err.errors(include_url=False)[0]
    loc = [str(part) for part in first.get("loc", ()) if not isinstance(part, int)]
    field = loc[0] if loc else "body"
    kind, ctx = first["type"], first.get("ctx") or {}
    if field in _LIST_RULES and len(first.get("loc", ())) == 1:
        # The list itself (not one of its items) is wrong: its type or its length.
        return InvalidRequest("invalid_field", f"{field} {_LIST_RULES[field]}", field=field)
    if kind in ("missing", "missing_field"):
        return InvalidRequest("missing_field", f"{field} is required.", field=field)
    if kind == "string_too_long" or (kind == "too_long" and isinstance(first.get("input"), str)):
        limit = ctx.get("max_length")
        return InvalidRequest("field_too_long", f"{field} must be at most {limit} characters.", field=field)
    if kind == "literal_error":
        allowed = list(_allowed(model, field))
        return InvalidRequest(
            "invalid_field", f"{field} must be one of the allowed values.", field=field, allowed=allowed
        )
    if kind == "invalid_field":
        return InvalidRequest("invalid_field", f"{field} {first['msg']}", field=field)
    if kind == "string_pattern_mismatch":
        return InvalidRequest("invalid_field", f"{field} {_ID_RULE}", field=field)
    if kind in ("string_type", "list_type", "int_type", "tuple_type"):
        expected = {"string_type": "a string", "int_type": "an integer"}.get(kind, "a list")
        return InvalidRequest("invalid_field", f"{field} must be {expected}.", field=field)
    return InvalidRequest("invalid_field", f"{field}: {first['msg']}.", field=field)


def _allowed(model: type[BaseModel], wire_name: str) -> tuple[str, ...]:
    for name, info in model.model_fields.items():
        if wire_name in (name, info.alias):
            return tuple(str(v) for v in _literal_values(info.annotation))
    return ()


def _literal_values(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) is Literal:
        return list(typing.get_args(annotation))
    values: list[Any] = []
    for arg in typing.get_args(annotation):
        values.extend(_literal_values(arg))
    return values


def _limit(info: ValidationInfo, name: str, default: Any) -> Any:
    """A deployment limit given to `parse` (the defaults when validating without one)."""
    return (info.context or {}).get(name, default)


# -- the requests --------------------------------------------------------------------


def _within_text_limit(value: str | None, info: ValidationInfo) -> str | None:
    """`prompt` and `instruction` are capped by PIXME_MAX_TEXT_CHARS."""
    limit = _limit(info, "max_text_chars", DEFAULT_TEXT_CHARS)
    if value is not None and len(value) > limit:
        raise PydanticCustomError("string_too_long", "too long", {"max_length": limit})
    return value


def _style_or_styles_schema(schema: dict[str, Any]) -> None:
    # `style` is required unless `styles` is sent, and not both.
    schema["required"] = [name for name in schema.get("required", []) if name != "style"]
    schema["oneOf"] = [
        {"required": ["style"], "not": {"required": ["styles"]}},
        {"required": ["styles"], "not": {"required": ["style"]}},
    ]


class GenerateRequest(_Request):
    """`POST generate`: a styled avatar of a ready upload, or a style pack."""

    model_config = ConfigDict(json_schema_extra=_style_or_styles_schema)

    # Before `style`, so a malformed pack is reported as such rather than as a missing style.
    styles: Annotated[
        tuple[StyleId, ...],
        Field(
            min_length=1,
            max_length=MAX_PACK,
            description=f"a style pack: 1-{MAX_PACK} distinct style ids, a session each (instead of `style`)",
        ),
    ] = ()
    style: Annotated[
        StyleId,
        Field(description="a style id from `GET sessions/styles`; with `styles`, the pack's first"),
    ]
    upload_id: Annotated[RequiredId, Field(description="the ready upload to draw (`POST uploads`)")]
    model_alias: Annotated[
        Name,
        Field(
            alias="model",
            description="a model alias from `GET sessions/models`; default: the deployment's default model",
        ),
    ] = None
    prompt: Annotated[
        Text,
        Field(
            description="extra wishes for the picture, at most PIXME_MAX_TEXT_CHARS characters",
            json_schema_extra={"maxLength": DEFAULT_TEXT_CHARS},
        ),
    ] = None
    context: Annotated[Context, Field(description="what the picture is for: background for the model")] = None
    caption: Annotated[Caption, Field(description="a short text drawn on the picture")] = None
    aspect_ratio: Annotated[
        Literal[ASPECT_RATIOS] | None,  # type: ignore[valid-type]
        BeforeValidator(_text),
        Field(description="the picture's shape; default square"),
    ] = None
    image_size: Annotated[
        Literal[IMAGE_SIZES] | None,  # type: ignore[valid-type]
        BeforeValidator(_text),
        Field(description="the picture's resolution class"),
    ] = None
    references: Annotated[
        tuple[ListedId, ...],
        Field(
            max_length=MAX_REFERENCES,
            description="up to two earlier sessions of the caller whose current avatar guides the likeness",
        ),
    ] = ()

    @model_validator(mode="before")
    @classmethod
    def _style_or_styles(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name in ("styles", "references"):  # JSON arrays, read as tuples
            if isinstance(data.get(name), list):
                data[name] = tuple(data[name])
        styles = data.get("styles")
        if styles is not None:
            if data.get("style") is not None:
                raise InvalidRequest(
                    "invalid_field", "Send either style or styles, not both.", field="styles"
                )
            if isinstance(styles, tuple) and styles:
                data["style"] = styles[0]  # validated with the pack
        return data

    @field_validator("styles")
    @classmethod
    def _known_styles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for style in value:
            get_style(style)  # raises unknown_style with the allowed ids
        return tuple(dict.fromkeys(value))

    @field_validator("style")
    @classmethod
    def _known_style(cls, value: str) -> str:
        get_style(value)
        return value

    @field_validator("references")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(value))

    @field_validator("prompt")
    @classmethod
    def _prompt_fits(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _within_text_limit(value, info)

    @field_validator("model_alias")
    @classmethod
    def _allowed_model(cls, value: str | None, info: ValidationInfo) -> str | None:
        models = _limit(info, "models", None)
        if value is not None and models is not None and value not in models:
            raise InvalidRequest(
                "invalid_field", "model must be one of the allowed values.", field="model", allowed=models
            )
        return value

    @classmethod
    def parse(cls, body: Mapping[str, Any], settings: Settings | None = None) -> Self:  # type: ignore[override]
        """The body validated against the deployment's text cap and model aliases."""
        if settings is None:
            return cls._validated(body, None)
        return cls._validated(
            body, {"max_text_chars": settings.max_text_chars, "models": sorted(settings.models)}
        )

    def one(self, style: str) -> GenerateRequest:
        """The single-style request for one style of a pack."""
        return self.model_copy(update={"style": style, "styles": ()})


class EditRequest(_Request):
    """`POST edit`: one more turn of a session, by instruction."""

    session_id: Annotated[RequiredId, Field(description="the session to edit")]
    instruction: Annotated[
        RequiredText,
        Field(
            description="what to change, in words, at most PIXME_MAX_TEXT_CHARS characters",
            json_schema_extra={"maxLength": DEFAULT_TEXT_CHARS},
        ),
    ]
    from_turn: Annotated[Id, Field(description="edit this turn instead of the head (undo, branch)")] = None
    if_head: Annotated[
        Id, Field(description="refuse with 409 `stale_head` unless this turn is still the head")
    ] = None

    @field_validator("instruction")
    @classmethod
    def _fits(cls, value: str, info: ValidationInfo) -> str:
        return _within_text_limit(value, info) or value

    @classmethod
    def parse(cls, body: Mapping[str, Any], settings: Settings | None = None) -> Self:  # type: ignore[override]
        """The body validated against the deployment's text cap."""
        limits = None if settings is None else {"max_text_chars": settings.max_text_chars}
        return cls._validated(body, limits)


def _page_limit(value: Any) -> Any:
    if isinstance(value, str):
        if not value.isdigit() or len(value) > 4:
            raise PydanticCustomError("invalid_field", f"must be a number from 1 to {MAX_PAGE}.")
        return int(value)
    return value


class PageRequest(_Request):
    """`GET sessions/{id}?limit=&page_token=&order=`: one page of turns."""

    limit: Annotated[
        int,
        Field(ge=1, le=MAX_PAGE, description=f"turns per page, 1-{MAX_PAGE}"),
        # After the bounds: pydantic writes bounds declared after a before-validator
        # into the JSON Schema as "ge"/"le" instead of minimum/maximum.
        BeforeValidator(_page_limit),
    ] = DEFAULT_PAGE
    page_token: Annotated[Id, Field(description="the `next_page_token` of the previous page")] = None
    order: Annotated[
        Literal["oldest", "newest"],
        BeforeValidator(lambda v: _text(v) or "oldest"),
        Field(description="oldest first (the default) or newest first"),
    ] = "oldest"

    @property
    def newest_first(self) -> bool:
        return self.order == "newest"


class UploadRequest(_Request):
    """`POST uploads`: a ticket for one signed upload."""

    content_type: Annotated[
        Literal[UPLOAD_CONTENT_TYPES],  # type: ignore[valid-type]
        BeforeValidator(_lower),
        Field(description="the photo's type; the PUT must send the same Content-Type"),
    ]
