"""What one user may start: the upload limits, as a policy the stores apply
inside their transaction (so concurrent requests cannot slip past it)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from pixme.config import Settings
from pixme.conversation import PENDING
from pixme.errors import RateLimited
from pixme.ports import UploadUsage

# A processing upload finishes in seconds: retrying after this is enough.
_PROCESSING_RETRY_S = 5


def utc_day(now: datetime) -> str:
    return now.date().isoformat()


def seconds_to_next_day(now: datetime) -> int:
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=now.tzinfo)
    return max(1, int((midnight - now).total_seconds()) + 1)


def admit_upload(settings: Settings, now: datetime) -> Callable[[UploadUsage], None]:
    """Raise RateLimited unless the user may start one more upload now."""

    def admit(usage: UploadUsage) -> None:
        if usage.started_today >= settings.daily_uploads:
            raise RateLimited(
                "upload_quota_exceeded",
                f"You can start {settings.daily_uploads} uploads a day; try again tomorrow.",
                retry_after_s=seconds_to_next_day(now),
                limit=settings.daily_uploads,
            )
        if len(usage.unfinished) >= settings.max_pending_uploads:
            waits = [
                int((u.expires_at - now).total_seconds()) if u.status == PENDING else _PROCESSING_RETRY_S
                for u in usage.unfinished
            ]
            raise RateLimited(
                "too_many_pending_uploads",
                f"You have {len(usage.unfinished)} uploads not finished yet; "
                "finish or delete one, or wait until its upload URL expires.",
                retry_after_s=max(1, min(waits)),
                limit=settings.max_pending_uploads,
            )

    return admit
