"""The account: quotas left, the export of everything stored, and the
deletion of all of it — against fakes of our ports."""

from __future__ import annotations

import pytest
from test_avatars import World

from fakes import settings
from pixme.errors import RateLimited
from pixme.identity import Caller
from pixme.layout import avatar_path, upload_object
from pixme.services.accounts import Accounts


def accounts(w: World) -> Accounts:
    return Accounts(w.s, w.blobs, w.uploads, w.sessions, w.idempotency, w.usage, w.spending, w.clock)


def busy_world() -> World:
    w = World(settings(no_face="allow", daily_generations=5))
    w.upload()
    sid = w.generate(key="key-00000001")["session_id"]
    w.edit(sid, "add glasses")
    w.upload(owner="bob")
    w.generate(owner="bob")
    return w


def test_usage_says_what_is_left_today() -> None:
    w = busy_world()
    usage = w.shown(accounts(w).usage_of(Caller("alice")))
    assert usage["generations"] == {"limit": 5, "used": 1, "remaining": 4}
    assert usage["edits"]["used"] == 1 and usage["tier"] == "signed_in"
    assert 0 < usage["reset_in_s"] <= 86_400


def test_the_export_lists_everything_of_the_caller_and_nothing_of_others() -> None:
    w = busy_world()
    export = w.shown(accounts(w).export(Caller("alice")))
    assert [u["upload_id"] for u in export["uploads"]] == [w.ids["u1"]]
    assert export["uploads"][0]["image_url"].startswith("https://signed.example/assets/selfies/alice/")
    (session,) = export["sessions"]
    assert len(session["turns"]) == 2 and all(t["image_url"] for t in session["turns"])
    assert "bob" not in str(export)


def test_deleting_the_account_removes_everything_of_the_caller_and_is_idempotent() -> None:
    w = busy_world()
    # A leftover object no document names any more is removed too.
    w.blobs.write("assets", avatar_path("alice", "s_lost", "t_1", "image/png"), b"x", "image/png")
    w.blobs.write("up", upload_object("alice", "u_stray"), b"x", "image/png")
    answer = w.shown(accounts(w).delete(Caller("alice")))
    assert answer["complete"] is True
    assert answer["deleted"]["sessions"] == 1 and answer["deleted"]["uploads"] == 1
    assert answer["deleted"]["images"] == 2 and answer["deleted"]["idempotency_keys"] == 1
    assert answer["deleted"]["objects"] == 2
    assert not any("alice" in path for _, path in w.blobs.objects)
    assert all(s.owner != "alice" for s in w.sessions.sessions.values())
    assert all(u.owner != "alice" for u in w.uploads.docs.values())
    assert all(k[0] != "alice" for k in w.idempotency.entries)
    # Bob keeps everything; a second deletion removes nothing more.
    assert any("bob" in path for _, path in w.blobs.objects)
    again = w.shown(accounts(w).delete(Caller("alice")))
    assert again["complete"] and set(again["deleted"].values()) == {0}


def test_deleting_the_account_does_not_give_back_the_days_quota() -> None:
    w = World(settings(no_face="allow", daily_generations=1))
    w.upload()
    w.generate()
    assert w.shown(accounts(w).delete(Caller("alice")))["complete"] is True
    w.upload()
    with pytest.raises(RateLimited) as refused:
        w.generate()
    assert refused.value.code == "quota_exceeded"
    assert w.shown(accounts(w).usage_of(Caller("alice")))["generations"]["remaining"] == 0
