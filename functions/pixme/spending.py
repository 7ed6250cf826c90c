"""What a user, and the whole project, may spend on the model each day.

Every image costs money and the app is free, so each model call is charged
before it is made, in cost units (the alias's `cost`: a Pro image counts 4):

- against the caller's daily quota for its kind (generations or edits; the
  anonymous tier has its own, lower quotas), and a cap on the caller's model
  calls in flight;
- against the project's daily budget, the operator's kill switch: the
  `PIXME_DAILY_BUDGET` setting, overridden at run time by the Firestore
  document `config/budget` (`{"daily_budget": N}`, read with a short cache),
  so setting it to 0 stops all spending within seconds, without a deploy.

The store applies all of this in one transaction (no interleaving of
concurrent requests spends more than a limit). A call that fails for a reason
that is not the user's (the model or the platform down, rate limited,
misconfigured) is refunded; one the model refuses for the user's content is
not. Days are UTC days.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from pixme.config import ModelAlias, Settings
from pixme.errors import ModelRefused, PixmeError, RateLimited, Unavailable
from pixme.identity import Caller
from pixme.limits import seconds_to_next_day, utc_day
from pixme.ports import Charge, ChargeRequest, Clock, UsageStore
from pixme.responses import ModelChoice

log = logging.getLogger(__name__)

GENERATIONS, EDITS = "generations", "edits"
# A slot in flight frees within a model call's time: retry after about that.
IN_FLIGHT_RETRY_S = 10


def charge_headers(charge: Charge, refunded: bool = False) -> dict[str, str]:
    used = charge.used - charge.cost if refunded else charge.used
    return rate_limit_headers(charge.limit, charge.limit - used, charge.reset_s)


@dataclass(frozen=True)
class Allowance:
    kind: str
    limit: int
    used: int
    reset_s: int

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


def rate_limit_headers(limit: int, remaining: int, reset_s: int) -> dict[str, str]:
    """The IETF draft's headers, on every generate and edit answer."""
    return {
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(max(0, remaining)),
        "RateLimit-Reset": str(reset_s),
    }


def may_use(alias: ModelAlias, caller: Caller) -> bool:
    """Whether the caller's claims allow this model alias."""
    if alias.requires is None:
        return True
    claim, wanted = alias.requires
    return str(caller.claims.get(claim, "")) == wanted


def model_choices(settings: Settings, caller: Caller) -> list[ModelChoice]:
    """The operator's aliases as the app shows them: what each costs, and
    whether this caller may pick it."""
    default = settings.alias(None).alias
    return [
        ModelChoice(alias=a.alias, cost=a.cost, allowed=may_use(a, caller), default=a.alias == default)
        for a in settings.aliases.values()
    ]


def refundable(err: BaseException) -> bool:
    """Whether a failed model call is on us rather than on the user's content."""
    return not isinstance(err, ModelRefused)


class Spending:
    def __init__(self, settings: Settings, store: UsageStore, clock: Clock) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self._lock = threading.Lock()
        self._budget: tuple[float, int] | None = None  # (read at, value)

    def limit(self, caller: Caller, kind: str) -> int:
        s = self.settings
        if caller.anonymous:
            return s.anonymous_daily_generations if kind == GENERATIONS else s.anonymous_daily_edits
        return s.daily_generations if kind == GENERATIONS else s.daily_edits

    def budget(self) -> int:
        """Today's budget: the run-time override if there is one, else the setting."""
        with self._lock:
            cached = self._budget
            if cached is not None and time.monotonic() - cached[0] < self.settings.budget_cache_s:
                return cached[1]
        override = self.store.budget_override()
        value = self.settings.daily_budget if override is None else override
        with self._lock:
            self._budget = (time.monotonic(), value)
        return value

    def charge(self, caller: Caller, kind: str, cost: int) -> Charge:
        now = self.clock.now()
        reset_s = seconds_to_next_day(now)
        budget = self.budget()
        if budget <= 0:
            raise self._exhausted(reset_s, budget)
        limit = self.limit(caller, kind)
        try:
            return self.store.charge(
                ChargeRequest(
                    reset_s=reset_s,
                    owner=caller.uid,
                    kind=kind,
                    cost=cost,
                    limit=limit,
                    max_in_flight=self.settings.user_max_in_flight,
                    budget=budget,
                    day=utc_day(now),
                    now=now,
                    request_id=secrets.token_hex(8),
                    # An entry older than the function's timeout belongs to a
                    # request that was killed before it could settle: it cannot
                    # still be calling the model, so it no longer holds a slot.
                    stale_before=now - timedelta(seconds=self.settings.request_stale_s),
                )
            )
        except PixmeError as err:
            if err.code == "budget_exhausted":
                raise self._exhausted(reset_s, budget) from None
            if isinstance(err, RateLimited):
                quota = kind if err.code == "quota_exceeded" else "in_flight"
                log.warning(
                    "%s refused: %s",
                    kind,
                    err.code,
                    extra={"event": "quota_exceeded", "quota": quota, "code": err.code},
                )
            raise

    def settle(self, charge: Charge, refund: bool) -> None:
        """End the call: free its in-flight slot, and give the units back if `refund`."""
        try:
            self.store.settle(charge, refund)
        except Exception as exc:
            # The slot goes stale by itself; a lost refund is the user's loss
            # of one unit, logged so it can be seen.
            log.warning("could not settle charge %s (refund=%s): %r", charge.request_id, refund, exc)

    def allowance(self, caller: Caller, kind: str) -> Allowance:
        now = self.clock.now()
        used = self.store.used(caller.uid, kind, utc_day(now))
        return Allowance(kind, self.limit(caller, kind), used, seconds_to_next_day(now))

    def _exhausted(self, reset_s: int, budget: int) -> Unavailable:
        # Structured, so a log-based metric and an alert can count it.
        log.error("budget exhausted", extra={"event": "budget_exhausted", "daily_budget": budget})
        return Unavailable(
            "budget_exhausted",
            "Pix Me! has used today's image budget. Try again tomorrow.",
            retry_after_s=reset_s,
        )


def over_quota(kind: str, limit: int, used: int, reset_s: int) -> RateLimited:
    err = RateLimited(
        "quota_exceeded",
        f"You have used today's {kind} ({limit}). Your quota resets at midnight UTC.",
        retry_after_s=reset_s,
        quota=kind,
        limit=limit,
    )
    err.headers = rate_limit_headers(limit, limit - used, reset_s)
    return err


def too_many_in_flight(limit: int) -> RateLimited:
    return RateLimited(
        "too_many_in_flight",
        f"You already have {limit} images being made; wait for one to finish.",
        retry_after_s=IN_FLIGHT_RETRY_S,
        limit=limit,
    )
