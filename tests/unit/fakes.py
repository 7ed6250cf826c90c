"""In-memory fakes of our own ports, for testing the pure core and services."""

from __future__ import annotations

import copy
import io
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from PIL import Image
from pydantic import BaseModel

from pixme.config import Settings
from pixme.conversation import PENDING, UNFINISHED, Session, Turn, Upload
from pixme.errors import Conflict, InvalidRequest, NotFound, PixmeError, Unavailable
from pixme.ports import Charge, ChargeRequest, ModelReply, RenderOptions, UploadUsage
from pixme.prompts import Message
from pixme.spending import over_quota, too_many_in_flight
from pixme.web import present


def settings(**overrides: object) -> Settings:
    base: dict[str, object] = {
        "project": "demo-test",
        "uploads_bucket": "up",
        "assets_bucket": "assets",
        "models": {"flash": "gemini-3.1-flash-image", "pro": "gemini-3-pro-image"},
    }
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


class FakeClock:
    def __init__(self, now: datetime | None = None) -> None:
        self.current = now or datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, **kwargs: float) -> None:
        self.current += timedelta(**kwargs)


class FakeBlobs:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.signed: list[tuple[str, str, str, str | None, dict[str, str]]] = []

    def read(self, bucket: str, path: str, generation: str | None = None) -> bytes:
        try:
            return self.objects[(bucket, path)][0]
        except KeyError:
            raise NotFound("object_not_found", path) from None  # as GcsBlobStore.read

    def write(self, bucket: str, path: str, data: bytes, content_type: str) -> None:
        self.objects[(bucket, path)] = (data, content_type)

    def delete(self, bucket: str, path: str, generation: str | None = None) -> None:
        self.objects.pop((bucket, path), None)

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        keys = [k for k in self.objects if k[0] == bucket and k[1].startswith(prefix)]
        for key in keys:
            del self.objects[key]
        return len(keys)

    def signed_url(
        self,
        bucket: str,
        path: str,
        ttl_s: int,
        method: str = "GET",
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        self.signed.append((method, bucket, path, content_type, dict(headers or {})))
        return f"https://signed.example/{bucket}/{path}?ttl={ttl_s}&method={method}"


def presented(body: BaseModel, blobs: FakeBlobs, s: Settings | None = None) -> dict[str, Any]:
    """A service's answer as the edge presents it (`web.present`), its images
    signed by `blobs` as the edge signs them (assets bucket, url_ttl_s)."""
    s = s or settings()
    return present(body, lambda path: blobs.signed_url(s.assets_bucket, path, s.url_ttl_s))


class FakeUploads:
    def __init__(self) -> None:
        self.docs: dict[str, Upload] = {}

    def register(self, upload: Upload, admit: Callable[[UploadUsage], None]) -> None:
        now = upload.created_at
        day = now.date().isoformat()
        mine = [u for u in self.docs.values() if u.owner == upload.owner]
        started = sum(1 for u in mine if u.created_at.date().isoformat() == day)
        unfinished = tuple(u for u in mine if u.status in UNFINISHED and (u.status != PENDING or u.live(now)))
        admit(UploadUsage(day, started, unfinished))
        self.docs[upload.key] = copy.deepcopy(upload)

    def save(self, upload: Upload) -> None:
        self.docs[upload.key] = copy.deepcopy(upload)

    def take_over(self, current: Upload, upload: Upload) -> bool:
        doc = self.docs.get(upload.key)
        if doc is None or (doc.generation, doc.status, doc.claim_id) != (
            current.generation,
            current.status,
            current.claim_id,
        ):
            return False
        self.docs[upload.key] = copy.deepcopy(upload)
        return True

    def finish(self, upload: Upload) -> bool:
        doc = self.docs.get(upload.key)
        if doc is None or (doc.claim_id, doc.generation) != (upload.claim_id, upload.generation):
            return False
        self.docs[upload.key] = copy.deepcopy(upload)
        return True

    def get(self, owner: str, upload_id: str) -> Upload | None:
        doc = self.docs.get(f"{owner}:{upload_id}")
        return copy.deepcopy(doc) if doc else None

    def expired(self, now: datetime, limit: int) -> list[Upload]:
        return [copy.deepcopy(u) for u in self.docs.values() if u.expires_at <= now][:limit]

    def list_for(self, owner: str, limit: int) -> list[Upload]:
        mine = [copy.deepcopy(u) for u in self.docs.values() if u.owner == owner]
        return sorted(mine, key=lambda u: u.created_at, reverse=True)[:limit]

    def delete(self, upload: Upload) -> None:
        self.docs.pop(upload.key, None)


class FakeSessions:
    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}
        self.turn_docs: dict[str, dict[str, Turn]] = {}

    def create(self, session: Session, first: Turn) -> None:
        self.sessions[session.session_id] = copy.deepcopy(session)
        self.turn_docs[session.session_id] = {first.turn_id: first}

    def get(self, session_id: str) -> Session | None:
        s = self.sessions.get(session_id)
        return copy.deepcopy(s) if s else None

    def made_from(self, owner: str, upload_id: str) -> list[Session]:
        return [
            copy.deepcopy(s) for s in self.sessions.values() if (s.owner, s.upload_id) == (owner, upload_id)
        ]

    def list_for(self, owner: str, limit: int) -> list[Session]:
        mine = [s for s in self.sessions.values() if s.owner == owner]
        return sorted(mine, key=lambda s: s.updated_at, reverse=True)[:limit]

    def turns(self, session_id: str) -> list[Turn]:
        return list(self.turn_docs.get(session_id, {}).values())

    def turn(self, session_id: str, turn_id: str) -> Turn | None:
        return self.turn_docs.get(session_id, {}).get(turn_id)

    def page(
        self, session_id: str, limit: int, after: str | None = None, newest_first: bool = False
    ) -> list[Turn]:
        docs = self.turn_docs.get(session_id, {})
        ordered = sorted(docs.values(), key=lambda t: (t.created_at, t.turn_id), reverse=newest_first)
        if after is not None:
            if after not in docs:
                raise InvalidRequest("invalid_field", "page_token names no page.", field="page_token")
            ordered = ordered[[t.turn_id for t in ordered].index(after) + 1 :]
        return ordered[:limit]

    def append(self, session_id: str, turn: Turn, now: datetime, expected_head: str | None = None) -> Session:
        if session_id not in self.sessions:
            raise NotFound("session_not_found", "gone")
        session = self.sessions[session_id]
        if expected_head is not None and session.head_turn != expected_head:
            raise Conflict("stale_head", "moved on")
        if turn.turn_id in self.turn_docs[session_id]:
            raise Conflict("turn_exists", "already recorded")
        self.turn_docs[session_id][turn.turn_id] = turn
        session.head_turn = turn.turn_id
        session.turn_count += 1
        session.updated_at = now
        return copy.deepcopy(session)

    def expired(self, now: datetime, limit: int) -> list[Session]:
        return [copy.deepcopy(s) for s in self.sessions.values() if s.expires_at <= now][:limit]

    def delete(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)
        self.turn_docs.pop(session_id, None)


class FakeIdempotency:
    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], dict[str, Any]] = {}

    def begin(
        self,
        owner: str,
        key: str,
        fingerprint: str,
        now: datetime,
        expires_at: datetime,
        stale_before: datetime | None = None,
    ) -> dict[str, Any] | None:
        found = self.entries.get((owner, key))
        fresh = {"fingerprint": fingerprint, "result": None, "expires_at": expires_at, "started_at": now}
        if found is None or found["expires_at"] <= now:
            self.entries[(owner, key)] = fresh
            return None
        if found["fingerprint"] != fingerprint:
            raise Conflict("idempotency_key_reused", "different request")
        if found["result"] is None:
            if stale_before is not None and found["started_at"] < stale_before:
                self.entries[(owner, key)] = fresh  # a dead request's key is taken over
                return None
            raise Conflict("request_in_progress", "running")
        return dict(found["result"])

    def finish(self, owner: str, key: str, result: dict[str, Any]) -> None:
        self.entries[(owner, key)]["result"] = copy.deepcopy(result)

    def abandon(self, owner: str, key: str) -> None:
        self.entries.pop((owner, key), None)

    def forget(self, owner: str, limit: int) -> int:
        gone = [k for k in self.entries if k[0] == owner][:limit]
        for k in gone:
            del self.entries[k]
        return len(gone)

    def purge(self, now: datetime, limit: int) -> int:
        gone = [k for k, v in self.entries.items() if v["expires_at"] <= now][:limit]
        for k in gone:
            del self.entries[k]
        return len(gone)


def png(color: tuple[int, int, int] = (200, 100, 50), size: tuple[int, int] = (256, 256)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


class FakeModel:
    """Answers every call with a small image, or raises what the test queued."""

    def __init__(self, by_reference: bool = False) -> None:
        self.by_reference = by_reference
        self.calls: list[tuple[str, list[Message]]] = []
        self.options: list[RenderOptions] = []  # what each call asked for, beside `calls`
        self.failures: list[PixmeError] = []
        # Failures for calls whose texts contain a word (a style pack's styles run in parallel).
        self.fail_when: dict[str, PixmeError] = {}
        self._lock = threading.Lock()

    def generate(self, model_id: str, messages: Sequence[Message], options: RenderOptions) -> ModelReply:
        with self._lock:
            self.calls.append((model_id, list(messages)))
            self.options.append(options)
            n = len(self.calls)
            failure = self.failures.pop(0) if self.failures else None
        text = " ".join(t for m in messages for t in m.texts)
        for word, err in self.fail_when.items():
            if word in text:
                raise err
        if failure is not None:
            raise failure
        return ModelReply(
            text=f"image {n}",
            image=png((n * 20 % 256, 80, 160)),
            mime_type="image/png",
            thought_signature=f"sig-{n}".encode(),
            model_version=f"{model_id}-v1",
            usage={"prompt_tokens": 10, "output_tokens": 1120},
        )


class FakeUsage:
    """UsageStore in memory: the same rules as the Firestore one, without shards."""

    def __init__(self) -> None:
        self.used_units: dict[tuple[str, str, str], int] = {}
        self.in_flight: dict[str, dict[str, datetime]] = {}
        self.spent: dict[str, int] = {}
        self.override: int | None = None
        self.settled: list[tuple[str, bool]] = []
        self.peak_in_flight = 0
        self._lock = threading.RLock()

    def charge(self, request: ChargeRequest) -> Charge:
        with self._lock:
            charge = self._charge(request)
            self.peak_in_flight = max(self.peak_in_flight, len(self.in_flight.get(request.owner, {})))
            return charge

    def _charge(self, request: ChargeRequest) -> Charge:
        live = {k: v for k, v in self.in_flight.get(request.owner, {}).items() if v > request.stale_before}
        if len(live) >= request.max_in_flight:
            raise too_many_in_flight(request.max_in_flight)
        key = (request.owner, request.kind, request.day)
        used = self.used_units.get(key, 0)
        if used + request.cost > request.limit:
            raise over_quota(request.kind, request.limit, used, request.reset_s)
        if self.spent.get(request.day, 0) + request.cost > request.budget:
            raise Unavailable("budget_exhausted", "spent")
        self.used_units[key] = used + request.cost
        self.spent[request.day] = self.spent.get(request.day, 0) + request.cost
        live[request.request_id] = request.now
        self.in_flight[request.owner] = live
        return Charge(
            request.owner, request.kind, request.cost, request.day, request.request_id, request.day,
            request.limit, used + request.cost, request.reset_s,
        )  # fmt: skip

    def settle(self, charge: Charge, refund: bool) -> None:
        with self._lock:
            self._settle(charge, refund)

    def _settle(self, charge: Charge, refund: bool) -> None:
        self.settled.append((charge.request_id, refund))
        self.in_flight.get(charge.owner, {}).pop(charge.request_id, None)
        if refund:
            self.used_units[(charge.owner, charge.kind, charge.day)] -= charge.cost
            self.spent[charge.day] -= charge.cost

    def used(self, owner: str, kind: str, day: str) -> int:
        return self.used_units.get((owner, kind, day), 0)

    def budget_override(self) -> int | None:
        return self.override

    def purge(self, now: datetime, limit: int) -> int:
        return 0  # in memory, counters are keyed by day and never looked up for another
