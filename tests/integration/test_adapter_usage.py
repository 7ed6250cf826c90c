"""The spend counters against the Firestore emulator: quotas, calls in flight
and the sharded budget hold under concurrent requests; settling refunds."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from local.stack import Stack
from pixme.adapters.firestore import FirestoreUsage, budget_shards, shard_cap, usage_key
from pixme.errors import PixmeError
from pixme.ports import Charge, ChargeRequest


@pytest.fixture
def usage(emulators: Stack) -> FirestoreUsage:
    from google.cloud import firestore

    return FirestoreUsage(firestore.Client(project=emulators.project))


def request(owner: str, day: str, **overrides: Any) -> ChargeRequest:
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "owner": owner, "kind": "generations", "cost": 1, "limit": 3, "max_in_flight": 100,
        "budget": 10_000, "day": day, "now": now, "request_id": uuid.uuid4().hex[:16],
        "stale_before": now - timedelta(minutes=10), "reset_s": 3600,
    }  # fmt: skip
    fields.update(overrides)
    return ChargeRequest(**fields)


def race(usage: FirestoreUsage, requests: list[ChargeRequest]) -> tuple[list[Charge], list[str]]:
    def one(req: ChargeRequest) -> Charge | str:
        try:
            return usage.charge(req)
        except PixmeError as err:
            return err.code

    with ThreadPoolExecutor(len(requests)) as pool:
        results = list(pool.map(one, requests))
    return [r for r in results if isinstance(r, Charge)], [r for r in results if isinstance(r, str)]


def test_eight_concurrent_charges_against_a_quota_of_three_admit_exactly_three(usage: FirestoreUsage) -> None:
    day, owner = f"d{uuid.uuid4().hex[:8]}", f"alice.{uuid.uuid4().hex[:6]}@example.com"
    admitted, refused = race(usage, [request(owner, day) for _ in range(8)])
    assert len(admitted) == 3 and refused == ["quota_exceeded"] * 5
    assert sorted(c.used for c in admitted) == [1, 2, 3]
    assert usage.used(owner, "generations", day) == 3
    # A refund gives the unit back; settling frees the slot either way.
    usage.settle(admitted[0], refund=True)
    usage.settle(admitted[1], refund=False)
    assert usage.used(owner, "generations", day) == 2
    assert usage.used(owner, "edits", day) == 0 and usage.used(owner, "generations", "other-day") == 0


def test_calls_in_flight_are_capped_and_freed_when_settled(usage: FirestoreUsage) -> None:
    day, owner = f"d{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admitted, refused = race(usage, [request(owner, day, limit=100, max_in_flight=2) for _ in range(6)])
    assert len(admitted) == 2 and set(refused) == {"too_many_in_flight"}
    usage.settle(admitted[0], refund=False)
    assert usage.charge(request(owner, day, limit=100, max_in_flight=2)).used == 3
    # A slot whose request died (never settled) stops counting once stale.
    later = datetime.now(UTC) + timedelta(minutes=11)
    stale = later - timedelta(minutes=10)
    fresh = request(owner, day, limit=100, max_in_flight=2, now=later, stale_before=stale)
    assert usage.charge(fresh).used == 4


@pytest.mark.parametrize("budget", [10, 4_000])
def test_the_budget_is_never_overspent_by_concurrent_users(usage: FirestoreUsage, budget: int) -> None:
    day = f"d{uuid.uuid4().hex[:8]}"
    # Fill all but 5 units, spread over the counters, then race 12 users for them.
    shards = budget_shards(budget)
    from google.cloud import firestore

    db = firestore.Client(project=usage.db.project)
    for i in range(shards):
        cap = shard_cap(budget, shards, i)
        db.collection("budget").document(f"{day}-{i}").set({"day": day, "spent": cap - (5 if i == 0 else 0)})
    admitted, refused = race(usage, [request(uuid.uuid4().hex, day, budget=budget) for _ in range(12)])
    assert len(admitted) == 5 and refused == ["budget_exhausted"] * 7
    usage.settle(admitted[0], refund=True)
    assert usage.charge(request(uuid.uuid4().hex, day, budget=budget)).cost == 1
    with pytest.raises(PixmeError):
        usage.charge(request(uuid.uuid4().hex, day, budget=budget))


def test_the_operator_overrides_the_budget_at_run_time(usage: FirestoreUsage) -> None:
    ref = usage.config
    ref.delete()
    assert usage.budget_override() is None
    ref.set({"daily_budget": 0})
    assert usage.budget_override() == 0
    ref.set({"daily_budget": "lots"})
    assert usage.budget_override() is None  # nonsense is ignored, the setting stands
    ref.delete()


def test_counters_are_kept_two_days_then_purged(usage: FirestoreUsage) -> None:
    day, owner = f"d{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    charge = usage.charge(request(owner, day))
    user = usage.users.document(usage_key(owner)).get().to_dict()
    counter = usage.budget.document(charge.shard).get().to_dict()
    assert user["expires_at"] > datetime.now(UTC) + timedelta(days=1)
    assert counter["expires_at"] == user["expires_at"]
    assert usage.purge(datetime.now(UTC), 500) >= 0  # nothing of ours is due yet
    assert usage.used(owner, "generations", day) == 1
    assert usage.purge(datetime.now(UTC) + timedelta(days=3), 5000) >= 2
    assert usage.used(owner, "generations", day) == 0
    assert not usage.budget.document(charge.shard).get().exists
