"""Sessions and turns, and the policy for what history the model sees.

A session is a tree of turns: every turn names its parent, so undo and
branching are just edits from an earlier turn. The model never sees the
tree, only the lineage of the turn being edited, condensed to text. Each
turn carries that condensed memory (`Memory`), so an edit reads the session
and the one turn it starts from, whatever the session's length.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(ID_ALPHABET) for _ in range(16))


def keyed_id(prefix: str, owner: str, key: str, *parts: str) -> str:
    """The id a request with an Idempotency-Key gives what it creates: the same
    for every attempt, so a retry finds what a dead attempt already stored
    instead of storing it twice. Unguessable without the caller's key."""
    digest = hashlib.sha256("\n".join((prefix, owner, key, *parts)).encode()).digest()
    return prefix + "".join(ID_ALPHABET[b % len(ID_ALPHABET)] for b in digest[:16])


# An upload's life: the app asks for an upload URL ("pending"), PUTs the photo,
# the trigger claims it ("processing") and ends it "ready" or "rejected".
PENDING, PROCESSING, READY, REJECTED = "pending", "processing", "ready", "rejected"
UNFINISHED = (PENDING, PROCESSING)


@dataclass
class Upload:
    owner: str
    upload_id: str
    status: str  # PENDING | PROCESSING | READY | REJECTED
    source_bucket: str
    source_path: str
    generation: str  # "" until an object is written
    created_at: datetime
    expires_at: datetime
    # The type the app declared (bound into its signed URL); ingest trusts
    # the bytes, not this.
    content_type: str | None = None
    # While pending: when the signed upload URL stops working.
    url_expires_at: datetime | None = None
    image_path: str | None = None
    width: int | None = None
    height: int | None = None
    reason: str | None = None
    message: str | None = None
    timings_ms: dict[str, int] = field(default_factory=dict)
    # The square crop around the face that the model gets, and the face's box
    # ({"x", "y", "w", "h", "score"}) in the normalized image's pixels. None
    # when the deployment lets photos without a face through.
    face_path: str | None = None
    face_box: dict[str, int] | None = None
    # A rejected original copied to the assets bucket (quarantine policy).
    quarantine_path: str | None = None
    # Whether the original is still in the uploads bucket once finished
    # (only when a rejected original is kept by policy).
    original_kept: bool = False
    # Which delivery of the storage event owns this document while it is
    # "processing", and since when: only that delivery may finish it.
    claim_id: str | None = None
    claimed_at: datetime | None = None

    @property
    def key(self) -> str:
        return upload_key(self.owner, self.upload_id)

    def live(self, now: datetime) -> bool:
        # Firestore TTL deletes late: expiry is checked on read.
        return now < self.expires_at

    def objects(self, assets_bucket: str) -> list[tuple[str, str]]:
        """Every (bucket, path) this document accounts for."""
        owned: list[tuple[str, str]] = []
        if self.status in UNFINISHED or self.original_kept:
            owned.append((self.source_bucket, self.source_path))
        owned += [(assets_bucket, p) for p in (self.image_path, self.face_path, self.quarantine_path) if p]
        return owned

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "upload_id": self.upload_id,
            "status": self.status,
            "content_type": self.content_type,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
        }
        if self.status == PENDING and self.url_expires_at is not None:
            out["upload_url_expires_at"] = self.url_expires_at.isoformat()
        if self.status == READY:
            out.update(
                width=self.width, height=self.height, face_box=self.face_box, timings_ms=self.timings_ms
            )
        if self.status == REJECTED:
            out.update(reason=self.reason, message=self.message)
        return out


def upload_key(owner: str, upload_id: str) -> str:
    return f"{owner}:{upload_id}"


MEMORY_LIMIT = 12  # edit instructions a turn's memory keeps verbatim


@dataclass(frozen=True)
class Memory:
    """The edits that led to a turn's image, condensed: the most recent
    `MEMORY_LIMIT` verbatim (oldest first) and a count of the older ones.

    Only edit instructions are here: what defines the avatar (style, prompt,
    context, caption, format) lives on the session and is pinned in every edit.
    """

    edits: tuple[str, ...] = ()
    dropped: int = 0

    def then(self, instruction: str, limit: int = MEMORY_LIMIT) -> Memory:
        """This memory with one more edit, still bounded."""
        edits = (*self.edits, instruction.strip())
        overflow = max(0, len(edits) - limit)
        return Memory(edits[overflow:], self.dropped + overflow)

    @classmethod
    def of(cls, instructions: list[str], limit: int = MEMORY_LIMIT) -> Memory:
        memory = cls()
        for instruction in instructions:
            memory = memory.then(instruction, limit)
        return memory


@dataclass
class Turn:
    turn_id: str
    parent: str | None
    instruction: str | None  # None for the generated first turn
    text: str
    image_path: str
    mime_type: str
    thought_signature: bytes | None
    model: str
    model_version: str
    usage: dict[str, int]
    ms: int
    created_at: datetime
    # The edits that led to this image (this turn's own included). None for a
    # turn stored before turns carried it: its lineage is walked once instead.
    memory: Memory | None = None


@dataclass
class Session:
    session_id: str
    owner: str
    style: str
    model: str
    upload_id: str
    selfie_path: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    head_turn: str
    turn_count: int
    caption: str | None = None
    # What one image of this session counts against quotas and the budget.
    cost: int = 1
    # What the user asked for at generation; every edit keeps it.
    prompt: str | None = None
    context: str | None = None
    aspect_ratio: str | None = None
    image_size: str | None = None
    # The earlier sessions whose avatars guide the likeness, and those avatars'
    # paths as they were at generation (an edit skips one deleted since).
    references: tuple[str, ...] = ()
    reference_paths: tuple[str, ...] = ()

    def expired(self, now: datetime) -> bool:
        # Firestore TTL deletes late: expiry is checked on read, TTL is a safety net.
        return now >= self.expires_at


def expiry(now: datetime, retention_days: int) -> datetime:
    return now + timedelta(days=retention_days)


def lineage(turns: dict[str, Turn], turn_id: str) -> list[Turn]:
    """The path from the first turn to `turn_id`, oldest first."""
    path: list[Turn] = []
    seen: set[str] = set()
    current: str | None = turn_id
    while current is not None:
        if current in seen:  # a corrupt cycle must not hang a request
            break
        seen.add(current)
        turn = turns.get(current)
        if turn is None:
            break
        path.append(turn)
        current = turn.parent
    path.reverse()
    return path


def earlier_instructions(path: list[Turn]) -> list[str]:
    """The edit instructions of a lineage; the first turn's prompt is not an edit."""
    return [t.instruction for t in path if t.instruction and t.parent is not None]


def session_expiry(now: datetime, retention_days: int, upload_expires_at: datetime) -> datetime:
    """A session lives no longer than the upload whose face crop it edits:
    cleanup deletes both together, and an edit never finds its selfie gone."""
    return min(expiry(now, retention_days), upload_expires_at)
