"""What a user and the project may spend: quotas, refunds, calls in flight,
tiers, gated models and the budget's kill switch — through the avatars
service, against fakes of our ports."""

from __future__ import annotations

import pytest
from test_avatars import World

from fakes import settings
from pixme.config import ModelAlias, Settings
from pixme.errors import Forbidden, ModelRefused, RateLimited, Unavailable, UpstreamMisconfigured
from pixme.identity import Caller
from pixme.spending import EDITS, GENERATIONS

ALIASES = {
    "flash": ModelAlias("flash", "gemini-3.1-flash-image"),
    "pro": ModelAlias("pro", "gemini-3-pro-image", cost=4, requires=("plan", "pro")),
}


def world(**overrides: object) -> World:
    base: dict[str, object] = {"no_face": "allow", "aliases": ALIASES, "daily_generations": 5}
    base.update(overrides)
    w = World(settings(**base))
    w.upload()
    return w


def test_every_answer_says_what_is_left(monkeypatch: pytest.MonkeyPatch) -> None:
    w = world(daily_generations=3)
    answer = w.avatars.generate(Caller("alice"), w.request())
    assert answer.headers["RateLimit-Limit"] == "3" and answer.headers["RateLimit-Remaining"] == "2"
    assert 0 < int(answer.headers["RateLimit-Reset"]) <= 86_400


def test_generations_stop_at_the_daily_quota_with_retry_after_until_midnight() -> None:
    w = world(daily_generations=3)
    for _ in range(3):
        w.generate()
    with pytest.raises(RateLimited) as caught:
        w.generate()
    err = caught.value
    assert err.code == "quota_exceeded" and err.details["quota"] == GENERATIONS
    assert err.retry_after_s == 12 * 3600 + 1  # the fake clock says 12:00 UTC
    assert err.headers["RateLimit-Remaining"] == "0"
    assert len(w.model.calls) == 3  # the refused request never reached the model
    w.clock.advance(hours=12, seconds=2)
    w.generate()  # a new UTC day


def test_edits_have_their_own_quota() -> None:
    w = world(daily_generations=1, daily_edits=2)
    sid = w.generate()["session_id"]
    w.edit(sid, "add glasses")
    w.edit(sid, "warmer")
    with pytest.raises(RateLimited) as caught:
        w.edit(sid, "cooler")
    assert caught.value.details["quota"] == EDITS


def test_an_expensive_model_counts_its_cost_and_needs_its_plan() -> None:
    w = world(daily_generations=5, daily_edits=5)
    with pytest.raises(Forbidden) as caught:
        w.generate(model="pro")
    assert caught.value.code == "model_not_allowed" and caught.value.status == 403
    assert w.model.calls == []
    pro = Caller("alice", claims={"plan": "pro"})
    result = w.generate(owner=pro, model="pro")
    assert w.usage.used("alice", GENERATIONS, "2026-11-24") == 4
    # Edits of a Pro session cost the same, against the edits quota.
    w.avatars.edit(pro, w.edit_request(result["session_id"], "add glasses"))
    assert w.usage.used("alice", EDITS, "2026-11-24") == 4
    with pytest.raises(RateLimited):
        w.avatars.edit(pro, w.edit_request(result["session_id"], "warmer"))
    w.generate(owner=pro, model="flash")  # 1 unit still fits


def test_anonymous_users_have_their_own_lower_quota() -> None:
    w = world(daily_generations=5, anonymous_daily_generations=1)
    guest = Caller("guest", provider="anonymous")
    w.upload(owner="guest")
    w.generate(owner=guest)
    with pytest.raises(RateLimited) as caught:
        w.generate(owner=guest)
    assert caught.value.details["limit"] == 1


@pytest.mark.parametrize(
    ("failure", "refunded"),
    [
        (Unavailable("model_unavailable", "overloaded"), True),
        (RateLimited("model_rate_limited", "busy"), True),
        (UpstreamMisconfigured("model_not_found", "retired"), True),
        (RuntimeError("a bug of ours"), True),
        (ModelRefused("image_safety", "refused"), False),
        (ModelRefused("text_only", "I cannot do that"), False),
    ],
)
def test_a_failure_that_is_not_the_users_is_refunded(failure: Exception, refunded: bool) -> None:
    w = world(daily_generations=1)
    w.model.failures.append(failure)  # type: ignore[arg-type]
    with pytest.raises(type(failure)) as caught:
        w.generate()
    if isinstance(failure, Exception) and hasattr(caught.value, "headers"):
        assert caught.value.headers["RateLimit-Remaining"] == ("1" if refunded else "0")
    assert w.usage.used("alice", GENERATIONS, "2026-11-24") == (0 if refunded else 1)
    assert w.usage.in_flight["alice"] == {}  # the slot is freed either way
    if refunded:
        w.generate()
    else:
        with pytest.raises(RateLimited):
            w.generate()


def test_a_user_cannot_hold_more_model_calls_than_the_cap() -> None:
    w = world(user_max_in_flight=2, daily_generations=10)
    seen: list[str] = []

    def nested(*args: object) -> object:
        # While this call is "in flight", the user starts more.
        if len(seen) < 2:
            seen.append("call")
            if len(seen) == 1:
                w.generate()  # the second concurrent call is admitted
            else:
                with pytest.raises(RateLimited) as caught:
                    w.generate()  # the third is not
                assert caught.value.code == "too_many_in_flight" and caught.value.retry_after_s > 0
        return original(*args)

    original = w.model.generate
    w.model.generate = nested  # type: ignore[method-assign]
    w.generate()
    assert seen == ["call", "call"]
    assert w.usage.in_flight["alice"] == {}


@pytest.mark.parametrize(
    ("overrides", "stale_s"),
    [({}, 180), ({"request_stale_s": 5, "model_deadline_s": 1, "model_timeout_s": 1}, 5)],
)
def test_a_killed_requests_in_flight_slot_stops_counting_after_request_stale_s(
    overrides: dict[str, int], stale_s: int
) -> None:
    from datetime import timedelta

    w = world(user_max_in_flight=1, daily_generations=10, **overrides)
    start = w.clock.now()
    # Charged, then killed before it could settle: its slot stays in the store.
    w.spending.charge(Caller("alice"), GENERATIONS, 1)
    for age in (1, stale_s - 1):  # it might still be calling the model: the cap holds
        w.clock.current = start + timedelta(seconds=age)
        with pytest.raises(RateLimited) as caught:
            w.generate()
        assert caught.value.code == "too_many_in_flight", age
    w.clock.current = start + timedelta(seconds=stale_s + 1)  # past its function's timeout: dead
    w.generate()
    assert len(w.model.calls) == 1


def test_the_budget_is_a_kill_switch_for_everyone() -> None:
    w = world(daily_budget=2, budget_cache_s=0)
    w.generate()
    w.upload(owner="bob")
    w.generate(owner="bob")
    with pytest.raises(Unavailable) as caught:
        w.generate(owner="bob")
    assert caught.value.code == "budget_exhausted" and caught.value.status == 503
    # The operator raises it at run time, then stops everything with 0.
    w.usage.override = 10
    w.generate(owner="bob")
    w.usage.override = 0
    calls = len(w.model.calls)
    with pytest.raises(Unavailable):
        w.generate()
    assert len(w.model.calls) == calls


def test_replays_cost_nothing_and_still_say_what_is_left() -> None:
    w = world(daily_generations=2)
    first = w.avatars.generate(Caller("alice"), w.request(), "key-00000001")
    again = w.avatars.generate(Caller("alice"), w.request(), "key-00000001")
    assert again.body.replayed is True and again.headers["RateLimit-Remaining"] == "1"
    assert first.headers["RateLimit-Remaining"] == "1"
    assert len(w.model.calls) == 1


def test_spending_settings_are_read_and_checked() -> None:
    from pixme.errors import ConfigError

    base = {"GOOGLE_CLOUD_PROJECT": "p", "PIXME_UPLOADS_BUCKET": "u", "PIXME_ASSETS_BUCKET": "a"}
    s = Settings.from_env(
        base
        | {
            "PIXME_MODELS": "flash=gemini-3.1-flash-image,pro=gemini-3-pro-image;cost=4;requires=plan:pro",
            "PIXME_DAILY_BUDGET": "0",
            "PIXME_ANONYMOUS": "deny",
        }
    )
    assert s.alias("pro") == ModelAlias("pro", "gemini-3-pro-image", 4, ("plan", "pro"))
    assert s.models == {"flash": "gemini-3.1-flash-image", "pro": "gemini-3-pro-image"}
    assert s.cost_of("gemini-3-pro-image") == 4 and s.daily_budget == 0 and s.anonymous == "deny"
    for bad in (
        {"PIXME_MODELS": "pro=gemini-3-pro-image;cost=zero"},
        {"PIXME_MODELS": "pro=gemini-3-pro-image;vip"},
        {"PIXME_ANONYMOUS": "sometimes"},
        {"PIXME_APP_CHECK": "enforce"},  # needs the project number
    ):
        with pytest.raises(ConfigError):
            Settings.from_env(base | bad)


def test_the_models_route_shows_each_alias_cost_and_whether_the_caller_may_use_it() -> None:
    from pixme.responses import ModelChoice
    from pixme.spending import model_choices

    s = settings(aliases=ALIASES, model="gemini-3.1-flash-image")
    free = {c.alias: c for c in model_choices(s, Caller("bob"))}
    assert free["flash"] == ModelChoice(alias="flash", cost=1, allowed=True, default=True)
    assert free["pro"].allowed is False and free["pro"].cost == 4
    paying = {c.alias: c.allowed for c in model_choices(s, Caller("ann", claims={"plan": "pro"}))}
    assert paying == {"flash": True, "pro": True}
