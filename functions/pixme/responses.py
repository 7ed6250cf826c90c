"""What the HTTPS API answers: one pydantic model per response body.

Services return these models; the edge presents them (`web.present`: image
links signed, then `model_dump(mode="json")`), so a field a service adds or
drops without a declaration here fails loudly in the tests instead of
reaching apps; the same models describe the answers in the OpenAPI document
(`pixme.openapi`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    SerializationInfo,
    WithJsonSchema,
)


class Answer(BaseModel):
    # Undeclared fields are refused: the document and the code must not drift.
    model_config = ConfigDict(extra="forbid", frozen=True)


Timestamp = Annotated[str, Field(description="RFC 3339 UTC time", json_schema_extra={"format": "date-time"})]
_SIGNED_URL = "a V4 signed URL, valid for `image_url_expires_in_s`"
Url = Annotated[str, Field(description=_SIGNED_URL, json_schema_extra={"format": "uri"})]

# Serialization context keys of an Image (see `web.present`).
COLLECT = "collect"  # a set: each image's path is added to it
SIGNED = "signed"  # a path -> signed URL map: each image is written as its URL


@dataclass(frozen=True)
class Stored:
    """An object in the assets bucket. Services name it; only the edge turns it
    into a signed URL, so no service signs and no stored record holds a URL."""

    path: str


def _stored(value: Any) -> Stored:
    # A plain string is a path: how a record dumped without signing reads back.
    if isinstance(value, Stored):
        return value
    if isinstance(value, str):
        return Stored(value)
    raise ValueError("an image is a Stored object or its path")


def _shown(value: Stored, info: SerializationInfo) -> str:
    """The image's signed URL when the edge presents the model; its path in a
    dump without context (a stored record)."""
    context = info.context or {}
    if (found := context.get(COLLECT)) is not None:
        found.add(value.path)
    signed: dict[str, str] | None = context.get(SIGNED)
    return signed[value.path] if signed is not None else value.path


# An image of the assets bucket, shown to the app as a signed URL: the
# document says string/uri, as it always has.
Image = Annotated[
    Stored,
    PlainValidator(_stored),
    PlainSerializer(_shown, return_type=str),
    WithJsonSchema({"type": "string", "format": "uri", "description": _SIGNED_URL}),
]


# -- errors --------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    code: str = Field(description="stable error code (README, 'Error codes'); the app switches on it")
    message: str = Field(description="for people; may be shown in the app")
    field: str | None = Field(default=None, description="the request field at fault (400s)")
    allowed: list[str] | None = Field(default=None, description="the allowed values, for a closed set")


class ErrorBody(Answer):
    error: ErrorDetail


# -- uploads -------------------------------------------------------------------------


class UploadTicket(Answer):
    upload_id: str
    status: Literal["pending"]
    upload_url: Url
    method: Literal["PUT"]
    headers: dict[str, str] = Field(
        description="send exactly these headers with the PUT, and no Authorization"
    )
    expires_at: Timestamp = Field(description="when upload_url stops working")
    max_bytes: int


class FaceBox(Answer):
    x: int
    y: int
    w: int
    h: int
    score: int = Field(description="the detector's confidence, 0-100")


class UploadStatus(Answer):
    upload_id: str
    status: Literal["pending", "processing", "ready", "rejected"]
    content_type: str
    created_at: Timestamp
    expires_at: Timestamp
    upload_url_expires_at: Timestamp | None = None
    width: int | None = None
    height: int | None = None
    face_box: FaceBox | None = None
    timings_ms: dict[str, int] | None = None
    reason: str | None = Field(default=None, description="why it was rejected (an ingest code)")
    message: str | None = None


class UploadDeleted(Answer):
    upload_id: str
    deleted: Literal[True]
    sessions_deleted: int
    images_deleted: int


# -- avatars -------------------------------------------------------------------------


class Identity(Answer):
    """How like the selfie the avatar's face is (PIXME_IDENTITY_CHECK)."""

    distance: float | None = Field(
        description="dlib face-descriptor distance to the selfie; null: no face found"
    )
    threshold: float | None = Field(
        description="the style's calibrated threshold; null: not measurable in it"
    )
    same_person: bool | None = Field(
        description="distance within threshold; null where the measure cannot tell"
    )
    tone_shift: float | None = Field(description="CIE76 ΔE between the two faces' skin tones")
    retried: bool = Field(description="the guard asked the model once more, with a stronger instruction")
    flagged: bool = Field(description="the guard's retry still looked like another person")


class AvatarTurn(Answer):
    """One image made by generate or edit."""

    session_id: str
    turn_id: str
    parent_turn_id: str | None
    style: str
    text: str | None = Field(description="what the model said with its image")
    image_url: Image
    image_url_expires_in_s: int
    turn_count: int
    model: str = Field(description="the model id that answered")
    model_version: str | None
    usage: dict[str, int] | None = Field(description="the model's token counts")
    ms: int = Field(description="the model call's duration")
    replayed: bool | None = Field(
        default=None, description="true when an Idempotency-Key replayed an earlier answer"
    )
    identity: Identity | None = Field(default=None, description="with PIXME_IDENTITY_CHECK report or guard")


class PackFailure(Answer):
    style: str
    error: ErrorDetail


class StylePack(Answer):
    """A style pack's answer: one result per style, each an avatar or an error."""

    results: list[AvatarTurn | PackFailure]
    succeeded: int
    failed: int
    replayed: bool | None = None


# -- sessions ------------------------------------------------------------------------


class SessionSummary(Answer):
    session_id: str
    style: str
    model: str
    upload_id: str
    head_turn_id: str
    turn_count: int
    caption: str | None
    prompt: str | None
    aspect_ratio: str | None
    image_size: str | None
    created_at: Timestamp
    updated_at: Timestamp
    expires_at: Timestamp


class TurnSummary(Answer):
    turn_id: str
    parent_turn_id: str | None
    instruction: str | None
    text: str | None
    image_url: Image
    model_version: str | None
    ms: int
    created_at: Timestamp


class SessionPage(SessionSummary):
    turns: list[TurnSummary]
    next_page_token: str | None = Field(description="pass as page_token for the next page; null on the last")


class SessionList(Answer):
    sessions: list[SessionSummary]


class SessionDeleted(Answer):
    session_id: str
    deleted: Literal[True]
    images_deleted: int


class StyleInfo(Answer):
    id: str
    name: str
    description: str
    preview_hint: str
    fidelity: str = Field(description="how closely the style keeps the face: high, medium or low")


class StyleCatalog(Answer):
    version: int | str
    styles: list[StyleInfo]


class ModelChoice(Answer):
    alias: str
    cost: int = Field(description="cost units one image counts against quotas")
    allowed: bool = Field(description="whether this caller may pick it")
    default: bool


class ModelList(Answer):
    models: list[ModelChoice]


# -- account -------------------------------------------------------------------------


class Quota(Answer):
    limit: int
    used: int
    remaining: int


class UploadLimits(Answer):
    daily_limit: int
    max_pending: int


class Usage(Answer):
    uid: str
    tier: Literal["anonymous", "signed_in"]
    day: str
    reset_in_s: int
    generations: Quota
    edits: Quota
    uploads: UploadLimits
    max_in_flight: int
    models: list[ModelChoice]


class ExportedUpload(UploadStatus):
    image_url: Image | None
    face_url: Image | None


class ExportedTurn(Answer):
    turn_id: str
    parent_turn_id: str | None
    instruction: str | None
    text: str | None
    model_version: str | None
    created_at: Timestamp
    image_url: Image | None


class ExportedSession(Answer):
    session_id: str
    style: str
    model: str
    upload_id: str
    caption: str | None
    created_at: Timestamp
    expires_at: Timestamp
    turns: list[ExportedTurn]


class Export(Answer):
    uid: str
    exported_at: Timestamp
    urls_expire_in_s: int
    uploads: list[ExportedUpload]
    sessions: list[ExportedSession]
    usage: Usage


class Removed(Answer):
    uploads: int
    sessions: int
    images: int
    idempotency_keys: int
    objects: int


class AccountDeleted(Answer):
    uid: str
    deleted: Removed
    complete: bool = Field(description="false: more is left; call again (the deletion resumes)")


class CleanupReport(Answer):
    sessions_deleted: int
    images_deleted: int
    uploads_deleted: int
    idempotency_keys_deleted: int
    usage_records_deleted: int


def avatar_answer(body: dict[str, Any]) -> AvatarTurn | StylePack:
    """generate's answer: one avatar, or a style pack's results."""
    return StylePack.model_validate(body) if "results" in body else AvatarTurn.model_validate(body)
