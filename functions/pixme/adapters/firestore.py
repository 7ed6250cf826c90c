"""Firestore adapter: upload documents, sessions and their turns.

Layout: uploads/{owner}:{upload_id}, sessions/{session_id},
sessions/{session_id}/turns/{turn_id}. Images never go in; paths do.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from pixme.adapters import unavailable_on
from pixme.conversation import PENDING, UNFINISHED, Memory, Session, Turn, Upload, upload_key
from pixme.errors import Conflict, InvalidRequest, NotFound, Unavailable
from pixme.ports import Charge, ChargeRequest, UploadUsage
from pixme.spending import over_quota, too_many_in_flight

_OPTIMISTIC_ATTEMPTS = 40
# Usage and budget counters only matter for the current UTC day; kept a little
# longer so a day's figures can still be looked at, then purged (and TTL'd).
COUNTERS_KEPT = timedelta(days=2)
_BUDGET_SHARDS = 8
_TRANSIENT = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.ResourceExhausted,
    gexc.RetryError,
)


def _transient_as_unavailable() -> AbstractContextManager[None]:
    return unavailable_on(_TRANSIENT, "database_unavailable", "The database is unavailable.")


def _expired(col: firestore.CollectionReference, now: datetime, limit: int) -> list[Any]:
    """Documents of `col` whose expires_at has passed, at most `limit`."""
    query = col.where(filter=firestore.FieldFilter("expires_at", "<=", now)).limit(limit)
    with _transient_as_unavailable():
        return list(query.stream())


def _purge_expired(col: firestore.CollectionReference, now: datetime, limit: int) -> int:
    """Delete up to `limit` documents of `col` whose expires_at has passed."""
    snaps = _expired(col, now, limit)
    with _transient_as_unavailable():
        for snap in snaps:
            snap.reference.delete()
    return len(snaps)


Write = tuple[firestore.DocumentReference, Any, dict[str, Any]]  # (ref, snapshot read, new fields)


def _optimistic[T](
    db: firestore.Client,
    refs: Callable[[], list[firestore.DocumentReference]],
    decide: Callable[[list[Any]], tuple[list[Write], T]],
    message: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Read some documents, decide, and write back atomically only if none
    changed meanwhile (a batch with update-time preconditions; a create for a
    document that did not exist); on a lost race, read again and retry.

    Unlike a transaction this holds no locks: contending requests of one user
    never wait on each other's locks (the emulator resolves lock upgrades of
    two readers only by timing one out, after many seconds), they just retry.
    """
    for attempt in range(_OPTIMISTIC_ATTEMPTS):
        with _transient_as_unavailable():
            snaps = [ref.get() for ref in refs()]
            writes, result = decide(snaps)
            if not writes:
                return result
            batch = db.batch()
            for ref, snap, fields in writes:
                if snap is not None and snap.exists:
                    batch.update(ref, fields, option=db.write_option(last_update_time=snap.update_time))
                else:
                    batch.create(ref, fields)
            try:
                batch.commit()
                return result
            except (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.Aborted, gexc.NotFound):
                pass
        # Full jitter: racing requests spread out instead of retrying in lockstep.
        sleep(random.uniform(0.005, 0.02 * 2 ** min(attempt, 5)))
    raise Unavailable("database_contention", message)


def _upload_doc(u: Upload) -> dict[str, Any]:
    doc = {name: getattr(u, name) for name in _UPLOAD_FIELDS}
    doc.update(timings_ms=u.timings_ms, original_kept=u.original_kept)
    return doc


_UPLOAD_FIELDS = tuple(
    f.name for f in dataclasses.fields(Upload) if f.name not in ("timings_ms", "original_kept")
)


def _upload(d: dict[str, Any]) -> Upload:
    fields: dict[str, Any] = {k: d.get(k) for k in _UPLOAD_FIELDS}
    return Upload(
        **fields, timings_ms=dict(d.get("timings_ms") or {}), original_kept=bool(d.get("original_kept"))
    )


def _session_doc(s: Session) -> dict[str, Any]:
    return {
        "owner": s.owner,
        "style": s.style,
        "model": s.model,
        "upload_id": s.upload_id,
        "selfie_path": s.selfie_path,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "expires_at": s.expires_at,
        "head_turn": s.head_turn,
        "turn_count": s.turn_count,
        "caption": s.caption,
        "cost": s.cost,
        "prompt": s.prompt,
        "context": s.context,
        "aspect_ratio": s.aspect_ratio,
        "image_size": s.image_size,
        "references": list(s.references),
        "reference_paths": list(s.reference_paths),
    }


def _session(session_id: str, d: dict[str, Any]) -> Session:
    fields: dict[str, Any] = {k: d.get(k) for k in _SESSION_FIELDS}
    return Session(
        session_id=session_id,
        **fields,
        cost=int(d.get("cost") or 1),
        references=tuple(d.get("references") or ()),
        reference_paths=tuple(d.get("reference_paths") or ()),
    )


_SESSION_FIELDS = (
    "owner",
    "style",
    "model",
    "upload_id",
    "selfie_path",
    "created_at",
    "updated_at",
    "expires_at",
    "head_turn",
    "turn_count",
    "caption",
    "prompt",
    "context",
    "aspect_ratio",
    "image_size",
)


def _turn_doc(t: Turn, expires_at: datetime) -> dict[str, Any]:
    return {
        "parent": t.parent,
        "instruction": t.instruction,
        "text": t.text,
        "image_path": t.image_path,
        "mime_type": t.mime_type,
        "thought_signature": t.thought_signature,
        "model": t.model,
        "model_version": t.model_version,
        "usage": t.usage,
        "ms": t.ms,
        "created_at": t.created_at,
        # Copied from the session so a TTL policy on the turns group agrees.
        "expires_at": expires_at,
        # The lineage's condensed memory: an edit reads this turn, not its ancestors.
        **({} if t.memory is None else {"memory": list(t.memory.edits), "memory_dropped": t.memory.dropped}),
    }


def _turn(turn_id: str, d: dict[str, Any]) -> Turn:
    return Turn(
        turn_id=turn_id,
        parent=d.get("parent"),
        instruction=d.get("instruction"),
        text=d.get("text") or "",
        image_path=d["image_path"],
        mime_type=d.get("mime_type") or "image/png",
        thought_signature=d.get("thought_signature"),
        model=d.get("model") or "",
        model_version=d.get("model_version") or "",
        usage=dict(d.get("usage") or {}),
        ms=int(d.get("ms") or 0),
        created_at=d["created_at"],
        memory=(Memory(tuple(d["memory"]), int(d.get("memory_dropped") or 0)) if "memory" in d else None),
    )


def usage_key(owner: str) -> str:
    """A user's counters, under a hash of the uid: they outlive the account's
    deletion until they expire (so deleting cannot reset a day's quotas) and
    must then name nobody."""
    return "user:" + hashlib.sha256(owner.encode("utf-8", "surrogatepass")).hexdigest()


class FirestoreUploads:
    """UploadStore: one document per (owner, upload id).

    Ingest's deliveries coordinate through it: `claim` creates the document
    (first writer wins), `take_over` and `finish` replace it only if it still
    holds what the caller last saw, in a transaction.
    """

    def __init__(self, db: firestore.Client) -> None:
        self.db = db
        self.col = db.collection("uploads")

    def register(self, upload: Upload, admit: Callable[[UploadUsage], None]) -> None:
        """Create the pending document and count it in the owner's usage
        document, atomically. Every registration of one owner writes that
        document under a precondition, so concurrent ones serialize on it:
        `admit` always sees every upload admitted before.

        The usage document lists the owner's unfinished uploads; each is
        re-read here, so those that ended since drop out of the count.
        """
        usage_ref = self.db.collection("usage").document(usage_key(upload.owner))
        ref = self.col.document(upload.key)
        day = upload.created_at.date().isoformat()
        now = upload.created_at

        def decide(snaps: list[Any]) -> tuple[list[Write], None]:
            (snap,) = snaps
            usage = (snap.to_dict() or {}) if snap.exists else {}
            started = int(usage.get("uploads", 0)) if usage.get("uploads_day") == day else 0
            unfinished: list[Upload] = []
            for upload_id in sorted(usage.get("unfinished_uploads") or {}):
                other = self.col.document(upload_key(upload.owner, upload_id)).get()
                if other.exists:
                    found = _upload(other.to_dict() or {})
                    if found.status in UNFINISHED and (found.status != PENDING or found.live(now)):
                        unfinished.append(found)
            admit(UploadUsage(day, started, tuple(unfinished)))
            counts = {
                "uploads_day": day,
                "uploads": started + 1,
                "unfinished_uploads": {u.upload_id: True for u in [*unfinished, upload]},
                "expires_at": now + COUNTERS_KEPT,
            }
            # The usage document is the point of serialization: its precondition
            # makes a registration that raced another one start over.
            return [(usage_ref, snap, counts), (ref, None, _upload_doc(upload))], None

        _optimistic(self.db, lambda: [usage_ref], decide, "Too many uploads at once; retry.")

    def save(self, upload: Upload) -> None:
        with _transient_as_unavailable():
            self.col.document(upload.key).set(_upload_doc(upload))

    def take_over(self, current: Upload, upload: Upload) -> bool:
        """Replace `current` (a dead claim, or an older generation) by `upload`,
        unless another delivery changed the document since it was read."""

        def unchanged(d: dict[str, Any]) -> bool:
            return all(d.get(k) == getattr(current, k) for k in ("generation", "status", "claim_id"))

        return self._swap(upload, unchanged)

    def finish(self, upload: Upload) -> bool:
        """Write the outcome, if this delivery's claim still holds the document."""

        def still_mine(d: dict[str, Any]) -> bool:
            return d.get("claim_id") == upload.claim_id and d.get("generation") == upload.generation

        return self._swap(upload, still_mine)

    def _swap(self, upload: Upload, expected: Callable[[dict[str, Any]], bool]) -> bool:
        ref = self.col.document(upload.key)
        doc = _upload_doc(upload)

        @firestore.transactional
        def run(tx: firestore.Transaction) -> bool:
            snap = ref.get(transaction=tx)
            if not snap.exists or not expected(snap.to_dict() or {}):
                return False
            tx.set(ref, doc)
            return True

        with _transient_as_unavailable():
            try:
                swapped: bool = run(self.db.transaction())
                return swapped
            except (gexc.Aborted, ValueError) as exc:
                if isinstance(exc, ValueError) and "transaction" not in str(exc):
                    raise
                raise Unavailable("database_contention", "The upload is busy; retry.") from exc

    def get(self, owner: str, upload_id: str) -> Upload | None:
        with _transient_as_unavailable():
            snap = self.col.document(upload_key(owner, upload_id)).get()
        return _upload(snap.to_dict() or {}) if snap.exists else None

    def expired(self, now: datetime, limit: int) -> list[Upload]:
        return [_upload(s.to_dict() or {}) for s in _expired(self.col, now, limit)]

    def list_for(self, owner: str, limit: int) -> list[Upload]:
        query = self.col.where(filter=firestore.FieldFilter("owner", "==", owner)).limit(limit)
        with _transient_as_unavailable():
            found = [_upload(s.to_dict() or {}) for s in query.stream()]
        return sorted(found, key=lambda u: u.created_at, reverse=True)

    def delete(self, upload: Upload) -> None:
        with _transient_as_unavailable():
            self.col.document(upload.key).delete()


class FirestoreSessions:
    """SessionStore: a session document with a subcollection of turns.

    An edit costs the same whatever the session's length: `get` and `turn`
    read one document each, `append` reads the session and the new turn's
    (absent) document and writes both in one batch under an update-time
    precondition. No transaction: concurrent appends on one head hold no
    locks, the losers of a race read again after a jittered pause (`sleep`).
    """

    def __init__(self, db: firestore.Client, sleep: Callable[[float], None] = time.sleep) -> None:
        self.db = db
        self.col = db.collection("sessions")
        self.sleep = sleep

    def create(self, session: Session, first: Turn) -> None:
        batch = self.db.batch()
        ref = self.col.document(session.session_id)
        batch.create(ref, _session_doc(session))
        batch.create(ref.collection("turns").document(first.turn_id), _turn_doc(first, session.expires_at))
        with _transient_as_unavailable():
            batch.commit()

    def get(self, session_id: str) -> Session | None:
        with _transient_as_unavailable():
            snap = self.col.document(session_id).get()
        return _session(session_id, snap.to_dict() or {}) if snap.exists else None

    def made_from(self, owner: str, upload_id: str) -> list[Session]:
        query = self.col.where(filter=firestore.FieldFilter("owner", "==", owner)).where(
            filter=firestore.FieldFilter("upload_id", "==", upload_id)
        )
        with _transient_as_unavailable():
            return [_session(s.id, s.to_dict() or {}) for s in query.stream()]

    def list_for(self, owner: str, limit: int) -> list[Session]:
        query = (
            self.col.where(filter=firestore.FieldFilter("owner", "==", owner))
            .order_by("updated_at", direction=firestore.Query.DESCENDING)
            .limit(limit)
        )
        with _transient_as_unavailable():
            return [_session(s.id, s.to_dict() or {}) for s in query.stream()]

    def turns(self, session_id: str) -> list[Turn]:
        with _transient_as_unavailable():
            docs = self.col.document(session_id).collection("turns").stream()
            return [_turn(d.id, d.to_dict() or {}) for d in docs]

    def turn(self, session_id: str, turn_id: str) -> Turn | None:
        with _transient_as_unavailable():
            snap = self.col.document(session_id).collection("turns").document(turn_id).get()
        return _turn(turn_id, snap.to_dict() or {}) if snap.exists else None

    def page(
        self, session_id: str, limit: int, after: str | None = None, newest_first: bool = False
    ) -> list[Turn]:
        turns = self.col.document(session_id).collection("turns")
        direction = firestore.Query.DESCENDING if newest_first else firestore.Query.ASCENDING
        query = turns.order_by("created_at", direction=direction)
        with _transient_as_unavailable():
            if after is not None:
                cursor = turns.document(after).get()
                if not cursor.exists:
                    raise InvalidRequest("invalid_field", "page_token names no page.", field="page_token")
                # The cursor snapshot also orders ties (same created_at) by document id.
                query = query.start_after(cursor)
            return [_turn(d.id, d.to_dict() or {}) for d in query.limit(limit).stream()]

    def append(self, session_id: str, turn: Turn, now: datetime, expected_head: str | None = None) -> Session:
        ref = self.col.document(session_id)
        turn_ref = ref.collection("turns").document(turn.turn_id)

        def decide(snaps: list[Any]) -> tuple[list[Write], Session]:
            snap, turn_snap = snaps
            if turn_snap.exists:
                # A retry whose first commit landed after all.
                raise Conflict("turn_exists", "This turn was already recorded.")
            if not snap.exists:
                raise NotFound("session_not_found", "No session with this id.")
            session = _session(session_id, snap.to_dict() or {})
            if expected_head is not None and session.head_turn != expected_head:
                raise Conflict(
                    "stale_head",
                    "The session has moved on; reload it and retry.",
                    head_turn_id=session.head_turn,
                )
            session.head_turn = turn.turn_id
            session.turn_count += 1
            session.updated_at = now
            head = {"head_turn": turn.turn_id, "turn_count": session.turn_count, "updated_at": now}
            return [(ref, snap, head), (turn_ref, None, _turn_doc(turn, session.expires_at))], session

        return _optimistic(
            self.db, lambda: [ref, turn_ref], decide, "Too many concurrent edits; retry.", self.sleep
        )

    def expired(self, now: datetime, limit: int) -> list[Session]:
        return [_session(s.id, s.to_dict() or {}) for s in _expired(self.col, now, limit)]

    def delete(self, session_id: str) -> None:
        with _transient_as_unavailable():
            self.db.recursive_delete(self.col.document(session_id))


class FirestoreIdempotency:
    """IdempotencyStore: idempotency/{sha256(owner, key)}, expiring after a day
    (a TTL policy on expires_at; cleanup purges too).

    `begin` reads the key and writes it under an update-time precondition (a
    create when absent): of concurrent requests on a free, expired or dead key,
    exactly one commits and goes ahead; the others read again and find it running.
    """

    def __init__(self, db: firestore.Client, sleep: Callable[[float], None] = time.sleep) -> None:
        self.db = db
        self.col = db.collection("idempotency")
        self.sleep = sleep

    def _ref(self, owner: str, key: str) -> firestore.DocumentReference:
        return self.col.document(hashlib.sha256(f"{owner}\n{key}".encode()).hexdigest())

    def begin(
        self,
        owner: str,
        key: str,
        fingerprint: str,
        now: datetime,
        expires_at: datetime,
        stale_before: datetime | None = None,
    ) -> dict[str, Any] | None:
        ref = self._ref(owner, key)
        doc = {
            "owner": owner,
            "fingerprint": fingerprint,
            "state": "running",
            "created_at": now,
            "expires_at": expires_at,
            "result": None,
        }

        def decide(snaps: list[Any]) -> tuple[list[Write], dict[str, Any] | None]:
            (snap,) = snaps
            if not snap.exists:
                return [(ref, None, doc)], None
            found = snap.to_dict() or {}
            if found.get("expires_at") and found["expires_at"] <= now:
                return [(ref, snap, doc)], None  # an expired key is a new key
            if found.get("fingerprint") != fingerprint:
                raise Conflict(
                    "idempotency_key_reused", "This Idempotency-Key was used for a different request."
                )
            if found.get("state") == "done":
                return [], dict(found.get("result") or {})
            started = found.get("created_at")
            if stale_before is not None and started is not None and started < stale_before:
                return [(ref, snap, doc)], None  # its process died: take it over
            raise Conflict("request_in_progress", "A request with this Idempotency-Key is still running.")

        return _optimistic(self.db, lambda: [ref], decide, "Too many retries at once; retry.", self.sleep)

    def finish(self, owner: str, key: str, result: dict[str, Any]) -> None:
        with _transient_as_unavailable():
            self._ref(owner, key).update({"state": "done", "result": result})

    def abandon(self, owner: str, key: str) -> None:
        with _transient_as_unavailable():
            self._ref(owner, key).delete()

    def forget(self, owner: str, limit: int) -> int:
        query = self.col.where(filter=firestore.FieldFilter("owner", "==", owner)).limit(limit)
        with _transient_as_unavailable():
            snaps = list(query.stream())
            for snap in snaps:
                snap.reference.delete()
        return len(snaps)

    def purge(self, now: datetime, limit: int) -> int:
        return _purge_expired(self.col, now, limit)


class _CounterFull(Exception):
    """This budget counter has no room for the charge: try the next one."""


def budget_shards(budget: int) -> int:
    """How many counters share the day's budget. One document takes about one
    sustained write a second, so a large budget is split; a small one stays
    whole, so that an expensive image still fits one counter's share."""
    return max(1, min(_BUDGET_SHARDS, budget // 400))


def shard_cap(budget: int, shards: int, index: int) -> int:
    return budget // shards + (1 if index < budget % shards else 0)


class FirestoreUsage:
    """UsageStore: usage/user:{owner} (quotas and calls in flight, one document
    per user, next to the upload counts) and budget/{day}-{shard} (the day's
    spend, split across counters), both written in one atomic batch."""

    def __init__(self, db: firestore.Client) -> None:
        self.db = db
        self.users = db.collection("usage")
        self.budget = db.collection("budget")
        self.config = db.collection("config").document("budget")

    def charge(self, request: ChargeRequest) -> Charge:
        """Try the budget's counters one at a time, each together with the
        user's document: each counter holds its share of the budget, so the
        total is never overspent, and a charge touches two documents only."""
        shards = budget_shards(request.budget)
        first = int(request.request_id, 16) % shards
        for step in range(shards):
            try:
                return self._charge_on((first + step) % shards, shards, request)
            except _CounterFull:
                continue
        raise Unavailable("budget_exhausted", "The day's budget is spent.")

    def _charge_on(self, index: int, shards: int, request: ChargeRequest) -> Charge:
        user_ref = self.users.document(usage_key(request.owner))
        shard_ref = self.budget.document(f"{request.day}-{index}")

        def decide(snaps: list[Any]) -> tuple[list[Write], Charge]:
            user, shard = snaps
            usage = (user.to_dict() or {}) if user.exists else {}
            in_flight = {
                k: v for k, v in dict(usage.get("in_flight") or {}).items() if v > request.stale_before
            }
            if len(in_flight) >= request.max_in_flight:
                raise too_many_in_flight(request.max_in_flight)
            used = int(usage.get(request.kind, 0)) if usage.get(f"{request.kind}_day") == request.day else 0
            if used + request.cost > request.limit:
                raise over_quota(request.kind, request.limit, used, request.reset_s)
            spent = int((shard.to_dict() or {}).get("spent", 0)) if shard.exists else 0
            if spent + request.cost > shard_cap(request.budget, shards, index):
                raise _CounterFull()
            in_flight[request.request_id] = request.now
            expires_at = request.now + COUNTERS_KEPT
            update = {
                request.kind: used + request.cost,
                f"{request.kind}_day": request.day,
                "in_flight": in_flight,
                "expires_at": expires_at,
            }
            charge = Charge(
                owner=request.owner,
                kind=request.kind,
                cost=request.cost,
                day=request.day,
                request_id=request.request_id,
                shard=shard_ref.id,
                limit=request.limit,
                used=used + request.cost,
                reset_s=request.reset_s,
            )
            counter = {"day": request.day, "spent": spent + request.cost, "expires_at": expires_at}
            return [(user_ref, user, update), (shard_ref, shard, counter)], charge

        return _optimistic(self.db, lambda: [user_ref, shard_ref], decide, "Too busy; retry.")

    def settle(self, charge: Charge, refund: bool) -> None:
        user_ref = self.users.document(usage_key(charge.owner))
        shard_ref = self.budget.document(charge.shard)

        def decide(snaps: list[Any]) -> tuple[list[Write], None]:
            user, shard = snaps
            if not user.exists:
                return [], None
            usage = user.to_dict() or {}
            in_flight = dict(usage.get("in_flight") or {})
            in_flight.pop(charge.request_id, None)
            update: dict[str, Any] = {"in_flight": in_flight}
            writes: list[Write] = [(user_ref, user, update)]
            if refund and usage.get(f"{charge.kind}_day") == charge.day:
                update[charge.kind] = max(0, int(usage.get(charge.kind, 0)) - charge.cost)
                if shard.exists:
                    spent = int((shard.to_dict() or {}).get("spent", 0))
                    writes.append((shard_ref, shard, {"spent": max(0, spent - charge.cost)}))
            return writes, None

        _optimistic(self.db, lambda: [user_ref, shard_ref], decide, "Too busy; retry.")

    def used(self, owner: str, kind: str, day: str) -> int:
        with _transient_as_unavailable():
            snap = self.users.document(usage_key(owner)).get()
        usage = (snap.to_dict() or {}) if snap.exists else {}
        return int(usage.get(kind, 0)) if usage.get(f"{kind}_day") == day else 0

    def purge(self, now: datetime, limit: int) -> int:
        """Delete usage and budget counters not written for COUNTERS_KEPT."""
        return sum(_purge_expired(col, now, limit) for col in (self.users, self.budget))

    def budget_override(self) -> int | None:
        with _transient_as_unavailable():
            snap = self.config.get()
        value = (snap.to_dict() or {}).get("daily_budget") if snap.exists else None
        return int(value) if isinstance(value, int | float) and value >= 0 else None
