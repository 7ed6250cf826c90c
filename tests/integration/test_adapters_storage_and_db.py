"""The Cloud Storage and Firestore adapters against fake-gcs-server and the Firestore emulator."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import requests

from local.stack import Stack
from pixme.adapters.firestore import FirestoreSessions, FirestoreUploads
from pixme.adapters.gcs import GcsBlobStore
from pixme.config import Settings
from pixme.conversation import Session, Turn, Upload, new_id
from pixme.errors import RateLimited
from pixme.limits import admit_upload


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


def upload(owner: str, status: str = "pending", expires_in: timedelta = timedelta(days=1)) -> Upload:
    upload_id = new_id("u_")
    return Upload(
        owner, upload_id, status, "up", f"uploads/{owner}/{upload_id}", "", now(), now() + expires_in
    )


def test_concurrent_registrations_never_admit_more_than_the_limit(settings: Settings, db) -> None:  # type: ignore[no-untyped-def]
    uploads = FirestoreUploads(db)
    owner = f"user.{uuid.uuid4().hex[:8]}@example.com:1"  # Firebase allows such uids
    limited = settings.replace(daily_uploads=20, max_pending_uploads=3)
    outcomes: list[str] = []

    def register() -> None:
        try:
            uploads.register(upload(owner), admit_upload(limited, now()))
            outcomes.append("admitted")
        except RateLimited as err:
            outcomes.append(err.code)

    with ThreadPoolExecutor(10) as pool:
        for future in [pool.submit(register) for _ in range(10)]:
            future.result()
    assert outcomes.count("admitted") == 3, outcomes
    assert outcomes.count("too_many_pending_uploads") == 7
    # An upload that ends frees its place; the daily count keeps counting.
    pending = [u for u in db.collection("uploads").where("owner", "==", owner).stream()]
    assert len(pending) == 3
    first = uploads.get(owner, pending[0].to_dict()["upload_id"])
    assert first is not None
    assert uploads.take_over(first, replace(first, status="ready", generation="1"))
    uploads.register(upload(owner), admit_upload(limited, now()))
    with pytest.raises(RateLimited):
        uploads.register(upload(owner), admit_upload(limited, now()))
    daily = limited.replace(daily_uploads=4, max_pending_uploads=10)
    with pytest.raises(RateLimited) as caught:
        uploads.register(upload(owner), admit_upload(daily, now()))
    assert caught.value.code == "upload_quota_exceeded"


def test_an_upload_round_trips_every_field(db) -> None:  # type: ignore[no-untyped-def]
    uploads = FirestoreUploads(db)
    owner = uuid.uuid4().hex
    pending = replace(upload(owner), content_type="image/heic", url_expires_at=now())
    uploads.register(pending, lambda usage: None)
    assert uploads.get(owner, pending.upload_id) == pending
    done = replace(
        pending, status="rejected", generation="7", reason="polyglot", message="m", timings_ms={"read": 1},
        quarantine_path="quarantine/x", original_kept=True, claim_id="c", claimed_at=now(),
    )  # fmt: skip
    uploads.save(done)
    assert uploads.get(owner, pending.upload_id) == done


def test_expired_uploads_are_found_and_deleted(db) -> None:  # type: ignore[no-untyped-def]
    uploads = FirestoreUploads(db)
    old, fresh = upload(uuid.uuid4().hex, expires_in=timedelta(seconds=-5)), upload(uuid.uuid4().hex)
    for u in (old, fresh):
        uploads.register(u, lambda usage: None)
    expired = {u.upload_id for u in uploads.expired(now(), 500)}
    assert old.upload_id in expired and fresh.upload_id not in expired
    uploads.delete(old)
    assert uploads.get(old.owner, old.upload_id) is None


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
    assert {s.session_id for s in sessions.made_from(owner, "u1")} == {a.session_id, b.session_id}
    assert sessions.made_from(owner, "u2") == [] and sessions.made_from("someone-else", "u1") == []


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


def test_ten_concurrent_edits_on_one_head_finish_within_three_times_one(db) -> None:  # type: ignore[no-untyped-def]
    """An edit here is its model call (a 0.3 s stand-in) then the append: with
    optimistic appends (no locks, jittered retries) racing edits barely wait."""
    import time

    from pixme.conversation import Memory

    sessions = FirestoreSessions(db)
    session, first = make_session(uuid.uuid4().hex)
    sessions.create(session, first)

    def edit(instruction: str) -> Turn:
        time.sleep(0.3)
        turn = replace(next_turn(first, instruction), memory=Memory((instruction,)))
        sessions.append(session.session_id, turn, now())
        return turn

    started = time.perf_counter()
    edit("alone")
    one = time.perf_counter() - started
    started = time.perf_counter()
    with ThreadPoolExecutor(10) as pool:
        made = list(pool.map(edit, [f"edit {i}" for i in range(10)]))
    ten = time.perf_counter() - started
    assert ten <= 3 * one, (ten, one)
    stored = sessions.get(session.session_id)
    assert stored is not None and stored.turn_count == 12 and stored.head_turn in {t.turn_id for t in made}
    turns = sessions.turns(session.session_id)
    assert len(turns) == 12 and len({t.turn_id for t in turns}) == 12
    again = sessions.turn(session.session_id, made[0].turn_id)
    assert again is not None and again.memory == Memory(("edit 0",))
    with pytest.raises(Exception) as caught:  # a retried append that had landed
        sessions.append(session.session_id, made[0], now())
    assert getattr(caught.value, "code", None) == "turn_exists"


def test_a_session_round_trips_its_options_and_pages_its_turns(db) -> None:  # type: ignore[no-untyped-def]
    from pixme.errors import InvalidRequest

    sessions = FirestoreSessions(db)
    session, first = make_session(uuid.uuid4().hex)
    session = replace(
        session, prompt="add a hat", context="sailing", aspect_ratio="16:9", image_size="2K",
        references=("s_a",), reference_paths=("avatars/x/s_a/t_1.png",), caption="ANA",
    )  # fmt: skip
    sessions.create(session, first)
    assert sessions.get(session.session_id) == session
    assert sessions.turn(session.session_id, first.turn_id) == first
    assert sessions.turn(session.session_id, "t_missing") is None
    ids = [first.turn_id]
    parent = first
    for i in range(4):
        parent = replace(next_turn(parent, f"e{i}"), created_at=now() + timedelta(seconds=i + 1))
        sessions.append(session.session_id, parent, now())
        ids.append(parent.turn_id)
    page1 = sessions.page(session.session_id, 2)
    page2 = sessions.page(session.session_id, 2, after=page1[-1].turn_id)
    page3 = sessions.page(session.session_id, 2, after=page2[-1].turn_id)
    assert [t.turn_id for t in page1 + page2 + page3] == ids
    newest = sessions.page(session.session_id, 3, newest_first=True)
    assert [t.turn_id for t in newest] == ids[::-1][:3]
    with pytest.raises(InvalidRequest):
        sessions.page(session.session_id, 2, after="t_missing")


def test_concurrent_begins_on_an_expired_key_let_exactly_one_through(db) -> None:  # type: ignore[no-untyped-def]
    from pixme.adapters.firestore import FirestoreIdempotency
    from pixme.errors import Conflict

    store = FirestoreIdempotency(db)
    owner, key, t = uuid.uuid4().hex, "key-expired1", now()
    assert store.begin(owner, key, "fp", t - timedelta(days=2), t - timedelta(days=1)) is None
    outcomes: list[str] = []

    def begin() -> None:
        try:
            stored = store.begin(owner, key, "fp", t, t + timedelta(hours=24))
            outcomes.append("ahead" if stored is None else "replay")
        except Conflict as err:
            outcomes.append(err.code)

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(begin) for _ in range(4)]:
            future.result()
    assert sorted(outcomes) == ["ahead"] + ["request_in_progress"] * 3, outcomes


def test_a_running_key_older_than_the_timeout_is_taken_over_once(db) -> None:  # type: ignore[no-untyped-def]
    from pixme.adapters.firestore import FirestoreIdempotency
    from pixme.errors import Conflict

    store = FirestoreIdempotency(db)
    owner, key, t = uuid.uuid4().hex, "key-running1", now()
    later = t + timedelta(hours=24)
    assert store.begin(owner, key, "fp", t, later) is None  # its process then dies
    with pytest.raises(Conflict) as caught:
        store.begin(owner, key, "fp", t + timedelta(minutes=5), later, t - timedelta(minutes=5))
    assert caught.value.code == "request_in_progress"  # not stale yet
    retry_at = t + timedelta(minutes=11)
    outcomes: list[str] = []

    def retry() -> None:
        try:
            store.begin(owner, key, "fp", retry_at, later, retry_at - timedelta(minutes=10))
            outcomes.append("ahead")
        except Conflict as err:
            outcomes.append(err.code)

    with ThreadPoolExecutor(3) as pool:
        for future in [pool.submit(retry) for _ in range(3)]:
            future.result()
    assert sorted(outcomes) == ["ahead", "request_in_progress", "request_in_progress"], outcomes
    with pytest.raises(Conflict) as caught:
        store.begin(owner, key, "other", retry_at, later, retry_at)
    assert caught.value.code == "idempotency_key_reused"
    store.finish(owner, key, {"session_id": "s_1"})
    assert store.begin(owner, key, "fp", retry_at, later, retry_at) == {"session_id": "s_1"}
