"""The small interfaces the services depend on; adapters implement them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pixme.conversation import Session, Turn, Upload
from pixme.identity import Caller
from pixme.prompts import Message


class BlobStore(Protocol):
    def read(self, bucket: str, path: str, generation: str | None = None) -> bytes:
        """The object's bytes (that generation's, if given); NotFound if it is gone."""

    def write(self, bucket: str, path: str, data: bytes, content_type: str) -> None: ...

    def delete(self, bucket: str, path: str, generation: str | None = None) -> None:
        """Delete (only that generation, if given); a missing object is not an error."""

    def delete_prefix(self, bucket: str, prefix: str) -> int: ...

    def signed_url(
        self,
        bucket: str,
        path: str,
        ttl_s: int,
        method: str = "GET",
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """A V4 signed URL for one object and method; `content_type` and
        `headers` are bound into the signature, so the client must send them."""


class UploadStore(Protocol):
    def register(self, upload: Upload, admit: Callable[[UploadUsage], None]) -> None:
        """Create the pending document, atomically with the owner's usage:
        `admit` sees the owner's usage as of this transaction and raises to
        refuse; no interleaving of concurrent calls lets more through."""

    def take_over(self, current: Upload, upload: Upload) -> bool:
        """Replace `current` by `upload` unless the document changed since."""

    def finish(self, upload: Upload) -> bool:
        """Write `upload` if its claim still holds the document."""

    def save(self, upload: Upload) -> None: ...

    def get(self, owner: str, upload_id: str) -> Upload | None: ...

    def expired(self, now: datetime, limit: int) -> list[Upload]: ...

    def list_for(self, owner: str, limit: int) -> list[Upload]:
        """The owner's uploads, newest first, at most `limit`."""

    def delete(self, upload: Upload) -> None: ...


@dataclass(frozen=True)
class UploadUsage:
    """One user's uploads as the limits see them."""

    day: str  # the UTC day the count is for
    started_today: int
    unfinished: tuple[Upload, ...]  # pending or processing, not expired


class SessionStore(Protocol):
    def create(self, session: Session, first: Turn) -> None: ...

    def get(self, session_id: str) -> Session | None: ...

    def list_for(self, owner: str, limit: int) -> list[Session]: ...

    def made_from(self, owner: str, upload_id: str) -> list[Session]: ...

    def turns(self, session_id: str) -> list[Turn]:
        """Every turn (export, tests): reads grow with the session; edits never call it."""

    def turn(self, session_id: str, turn_id: str) -> Turn | None:
        """One turn, by id: one document read."""

    def page(
        self, session_id: str, limit: int, after: str | None = None, newest_first: bool = False
    ) -> list[Turn]:
        """Up to `limit` turns in creation order (or newest first), starting after
        the turn `after`; InvalidRequest if `after` names no turn of the session."""

    def append(self, session_id: str, turn: Turn, now: datetime, expected_head: str | None = None) -> Session:
        """Add `turn` and make it the head, atomically; returns the updated session.

        With `expected_head`, raise Conflict if the head moved meanwhile. A
        constant number of document reads and writes, whatever the session's
        length; concurrent appends all land (no turn lost or duplicated).
        """

    def expired(self, now: datetime, limit: int) -> list[Session]: ...

    def delete(self, session_id: str) -> None: ...


class IdempotencyStore(Protocol):
    def begin(
        self,
        owner: str,
        key: str,
        fingerprint: str,
        now: datetime,
        expires_at: datetime,
        stale_before: datetime | None = None,
    ) -> dict[str, Any] | None:
        """Reserve `key` for this request, atomically.

        None means the caller goes ahead; a dict is the stored result of the
        first request with this key. Raises Conflict when that request is still
        running or had a different body. An expired key is a new key, and a
        reservation still running but started before `stale_before` (its
        process died) is taken over; of concurrent callers exactly one goes ahead.
        """

    def finish(self, owner: str, key: str, result: dict[str, Any]) -> None: ...

    def abandon(self, owner: str, key: str) -> None:
        """Release a reservation whose request failed, so a retry can run."""

    def purge(self, now: datetime, limit: int) -> int: ...

    def forget(self, owner: str, limit: int) -> int:
        """Delete up to `limit` of the owner's keys; returns how many."""


@dataclass(frozen=True)
class RenderOptions:
    aspect_ratio: str | None = None
    image_size: str | None = None


@dataclass(frozen=True)
class ModelReply:
    text: str
    image: bytes
    mime_type: str
    thought_signature: bytes | None
    model_version: str
    usage: dict[str, int] = field(default_factory=dict)
    # The model id that answered: one of an alias's fallbacks (`a|b`) when the
    # first is retired; empty from models that do not say.
    model_id: str = ""


class ImageModel(Protocol):
    # Whether user images may be sent as gs:// references (Vertex AI reads
    # the assets bucket itself) rather than inline bytes.
    by_reference: bool

    def generate(self, model_id: str, messages: Sequence[Message], options: RenderOptions) -> ModelReply: ...


class TokenVerifier(Protocol):
    def verify(self, token: str) -> Caller:
        """Return who is calling, or raise Unauthenticated."""


class Clock(Protocol):
    def now(self) -> datetime: ...


@dataclass(frozen=True)
class ChargeRequest:
    """Charge `cost` units of `kind` to `owner` and to the day's budget."""

    owner: str
    kind: str  # "generations" | "edits"
    cost: int
    limit: int
    max_in_flight: int
    budget: int
    day: str  # UTC day
    now: datetime
    request_id: str
    stale_before: datetime  # in-flight entries older than this are dead
    reset_s: int


@dataclass(frozen=True)
class Charge:
    """A charge made: what `settle` needs to end it."""

    owner: str
    kind: str
    cost: int
    day: str
    request_id: str
    shard: str  # which budget counter took the units
    limit: int
    used: int  # the owner's units of `kind` today, this charge included
    reset_s: int


class UsageStore(Protocol):
    def charge(self, request: ChargeRequest) -> Charge:
        """Atomically: refuse if the owner has too many calls in flight
        (RateLimited too_many_in_flight), is over quota (RateLimited
        quota_exceeded) or the budget is spent (Unavailable budget_exhausted);
        else count the units and the call in flight."""

    def settle(self, charge: Charge, refund: bool) -> None:
        """The call ended: free its in-flight slot; give its units back if `refund`."""

    def used(self, owner: str, kind: str, day: str) -> int: ...

    def budget_override(self) -> int | None:
        """The run-time budget (config/budget), if the operator set one."""

    def purge(self, now: datetime, limit: int) -> int:
        """Delete counters that no longer matter; returns how many."""
