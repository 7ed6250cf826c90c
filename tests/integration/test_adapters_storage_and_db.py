"""The Cloud Storage and Firestore adapters against fake-gcs-server and the Firestore emulator."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests

from local.stack import Stack
from pixme.adapters.firestore import FirestoreSessions, FirestoreUploads
from pixme.adapters.gcs import GcsBlobStore
from pixme.config import Settings
from pixme.conversation import Session, Turn, Upload


@pytest.fixture
def db(emulators: Stack):  # type: ignore[no-untyped-def]
    from google.cloud import firestore

    return firestore.Client(project=emulators.project)


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def test_blobs_round_trip_and_signed_urls_serve_the_bytes(settings: Settings) -> None:
    blobs = GcsBlobStore(settings)
    path = f"it/{uuid.uuid4().hex}.png"
    blobs.write(settings.assets_bucket, path, b"\x89PNG fake", "image/png")
    assert blobs.read(settings.assets_bucket, path) == b"\x89PNG fake"
    url = blobs.signed_url(settings.assets_bucket, path, 600)
    assert "X-Goog-Signature=" in url and "X-Goog-Expires=600" in url
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200 and resp.content == b"\x89PNG fake"


def test_delete_is_idempotent_and_prefix_delete_counts(settings: Settings) -> None:
    blobs = GcsBlobStore(settings)
    prefix = f"it/{uuid.uuid4().hex}/"
    for i in range(3):
        blobs.write(settings.assets_bucket, f"{prefix}{i}.png", b"x", "image/png")
    blobs.write(settings.assets_bucket, f"{prefix[:-1]}-other.png", b"x", "image/png")
    assert blobs.delete_prefix(settings.assets_bucket, prefix) == 3
    assert blobs.delete_prefix(settings.assets_bucket, prefix) == 0
    blobs.delete(settings.assets_bucket, f"{prefix}0.png")  # already gone: fine
    assert blobs.read(settings.assets_bucket, f"{prefix[:-1]}-other.png") == b"x"


def upload(owner: str, status: str = "processing", expires_in: timedelta = timedelta(days=1)) -> Upload:
    return Upload(owner, "u1", status, "up", f"uploads/{owner}/u1.png", "7", now(), now() + expires_in)


def test_upload_claim_is_first_writer_wins(db) -> None:  # type: ignore[no-untyped-def]
    uploads = FirestoreUploads(db)
    owner = uuid.uuid4().hex
    results: list[Upload | None] = []
    threads = [
        threading.Thread(target=lambda: results.append(uploads.claim(upload(owner)))) for _ in range(5)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results.count(None) == 1  # exactly one delivery owns the work
    assert all(r is None or r.generation == "7" for r in results)
    done = upload(owner, "ready")
    done.image_path, done.width, done.height, done.timings_ms = "selfies/x.jpg", 10, 20, {"read": 1}
    uploads.save(done)
    got = uploads.get(owner, "u1")
    assert got is not None and got.status == "ready" and got.timings_ms == {"read": 1}
    assert got.created_at == done.created_at


def test_expired_uploads_are_found_and_deleted(db) -> None:  # type: ignore[no-untyped-def]
    uploads = FirestoreUploads(db)
    old, fresh = uuid.uuid4().hex, uuid.uuid4().hex
    uploads.claim(upload(old, expires_in=timedelta(seconds=-5)))
    uploads.claim(upload(fresh))
    expired = {u.owner for u in uploads.expired(now(), 500)}
    assert old in expired and fresh not in expired
    uploads.delete(upload(old))
    assert uploads.get(old, "u1") is None


def make_session(owner: str, expires_in: timedelta = timedelta(days=1)) -> tuple[Session, Turn]:
    sid, tid = f"s_{uuid.uuid4().hex[:12]}", f"t_{uuid.uuid4().hex[:12]}"
    t = now()
    session = Session(sid, owner, "comics", "m", "u1", "selfies/x.jpg", t, t, t + expires_in, tid, 1)
    turn = Turn(
        tid,
        None,
        None,
        "hello",
        f"avatars/{owner}/{sid}/{tid}.png",
        "image/png",
        b"\x00sig\xff",
        "m",
        "m-v1",
        {"prompt_tokens": 3},
        12,
        t,
    )
    return session, turn


def next_turn(parent: Turn, instruction: str) -> Turn:
    tid = f"t_{uuid.uuid4().hex[:12]}"
    return Turn(
        tid,
        parent.turn_id,
        instruction,
        "ok",
        parent.image_path.replace(parent.turn_id, tid),
        "image/png",
        b"sig2",
        "m",
        "m-v1",
        {},
        5,
        now(),
    )


def test_sessions_store_turns_with_signatures_and_list_newest_first(db) -> None:  # type: ignore[no-untyped-def]
    sessions = FirestoreSessions(db)
    owner = uuid.uuid4().hex
    a, first = make_session(owner)
    sessions.create(a, first)
    b, b_first = make_session(owner)
    sessions.create(b, b_first)
    second = next_turn(first, "add glasses")
    updated = sessions.append(a.session_id, second, now() + timedelta(seconds=5))
    assert updated.head_turn == second.turn_id and updated.turn_count == 2
    turns = {t.turn_id: t for t in sessions.turns(a.session_id)}
    assert turns[first.turn_id].thought_signature == b"\x00sig\xff"
    assert turns[second.turn_id].parent == first.turn_id
    assert [s.session_id for s in sessions.list_for(owner, 10)] == [a.session_id, b.session_id]
    assert sessions.list_for("someone-else", 10) == []


def test_concurrent_appends_lose_no_turn(db) -> None:  # type: ignore[no-untyped-def]
    sessions = FirestoreSessions(db)
    session, first = make_session(uuid.uuid4().hex)
    sessions.create(session, first)
    turns = [next_turn(first, f"edit {i}") for i in range(6)]
    errors: list[Exception] = []

    def append(turn: Turn) -> None:
        try:
            sessions.append(session.session_id, turn, now())
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(t,)) for t in turns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    stored = sessions.get(session.session_id)
    assert stored is not None and stored.turn_count == 7
    assert len(sessions.turns(session.session_id)) == 7
    assert stored.head_turn in {t.turn_id for t in turns}


def test_expired_sessions_are_deleted_with_their_turns(db) -> None:  # type: ignore[no-untyped-def]
    sessions = FirestoreSessions(db)
    old, old_first = make_session(uuid.uuid4().hex, expires_in=timedelta(seconds=-1))
    sessions.create(old, old_first)
    live, live_first = make_session(uuid.uuid4().hex)
    sessions.create(live, live_first)
    expired = {s.session_id for s in sessions.expired(now(), 500)}
    assert old.session_id in expired and live.session_id not in expired
    sessions.delete(old.session_id)
    assert sessions.get(old.session_id) is None and sessions.turns(old.session_id) == []
    assert sessions.get(live.session_id) is not None


def test_append_with_a_stale_expected_head_is_refused(db) -> None:  # type: ignore[no-untyped-def]
    from pixme.errors import Conflict

    sessions = FirestoreSessions(db)
    session, first = make_session(uuid.uuid4().hex)
    sessions.create(session, first)
    second = next_turn(first, "add glasses")
    sessions.append(session.session_id, second, now(), expected_head=first.turn_id)
    with pytest.raises(Conflict) as caught:
        sessions.append(session.session_id, next_turn(first, "warmer"), now(), expected_head=first.turn_id)
    assert caught.value.code == "stale_head"
    assert len(sessions.turns(session.session_id)) == 2


def test_idempotency_keys_reserve_replay_release_and_expire(db) -> None:  # type: ignore[no-untyped-def]
    from pixme.adapters.firestore import FirestoreIdempotency
    from pixme.errors import Conflict

    store = FirestoreIdempotency(db)
    owner, key, t = uuid.uuid4().hex, "key-12345678", now()
    later = t + timedelta(hours=24)
    assert store.begin(owner, key, "fp1", t, later) is None
    with pytest.raises(Conflict) as caught:
        store.begin(owner, key, "fp1", t, later)
    assert caught.value.code == "request_in_progress"
    store.finish(owner, key, {"session_id": "s_1", "usage": {"prompt_tokens": 3}})
    assert store.begin(owner, key, "fp1", t, later) == {"session_id": "s_1", "usage": {"prompt_tokens": 3}}
    with pytest.raises(Conflict):
        store.begin(owner, key, "fp2", t, later)
    assert store.begin("another-owner", key, "fp2", t, later) is None  # keys are per caller
    store.abandon("another-owner", key)
    assert store.begin("another-owner", key, "fp3", t, later) is None
    assert store.purge(later + timedelta(seconds=1), 500) >= 2
    assert store.begin(owner, key, "fp2", t, later) is None  # purged: a new key
