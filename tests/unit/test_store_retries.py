"""The optimistic write loop behind session appends and idempotency keys: one
retry layer, jittered backoff through an injectable sleep, no transactions."""

from __future__ import annotations

from typing import Any

import pytest
from google.api_core import exceptions as gexc

from pixme.adapters.firestore import _optimistic
from pixme.errors import Unavailable


class Snap:
    exists = True
    update_time = "t0"


class Ref:
    def get(self) -> Snap:
        return Snap()


class Batch:
    def __init__(self, db: FakeDb) -> None:
        self.db = db

    def update(self, ref: Any, fields: Any, option: Any = None) -> None:
        pass

    def create(self, ref: Any, fields: Any) -> None:
        pass

    def commit(self) -> None:
        self.db.commits += 1
        if self.db.commits <= self.db.lose:
            raise gexc.FailedPrecondition("another writer won")


class FakeDb:
    def __init__(self, lose: int) -> None:
        self.lose, self.commits = lose, 0

    def batch(self) -> Batch:
        return Batch(self)

    def write_option(self, **kwargs: Any) -> Any:
        return kwargs


def test_a_lost_race_is_read_again_after_a_jittered_pause() -> None:
    db, pauses = FakeDb(lose=4), []
    ref = Ref()
    result = _optimistic(
        db, lambda: [ref], lambda snaps: ([(ref, snaps[0], {})], "won"), "busy", pauses.append
    )  # type: ignore[arg-type]
    assert result == "won" and db.commits == 5 and len(pauses) == 4
    assert all(0.005 <= p <= 0.02 * 2**i for i, p in enumerate(pauses))
    assert len(set(pauses)) == 4  # jittered: racing writers do not retry in lockstep


def test_nothing_to_write_commits_nothing_and_endless_losses_give_up() -> None:
    db = FakeDb(lose=0)
    assert (
        _optimistic(db, lambda: [Ref()], lambda snaps: ([], "read only"), "busy", lambda s: None)
        == "read only"
    )  # type: ignore[arg-type]
    assert db.commits == 0
    db = FakeDb(lose=10_000)
    ref = Ref()
    with pytest.raises(Unavailable) as caught:
        _optimistic(db, lambda: [ref], lambda snaps: ([(ref, snaps[0], {})], None), "busy", lambda s: None)  # type: ignore[arg-type]
    assert caught.value.code == "database_contention"
