"""Cloud Storage adapter (also talks to fake-gcs-server via STORAGE_EMULATOR_HOST)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any

import google.auth
import google.auth.transport.requests
from google.api_core import exceptions as gexc
from google.cloud import storage  # type: ignore[attr-defined]
from google.oauth2 import service_account

from pixme.adapters import unavailable_on
from pixme.config import Settings
from pixme.errors import NotFound

_TRANSIENT = (
    gexc.ServiceUnavailable,
    gexc.InternalServerError,
    gexc.BadGateway,
    gexc.GatewayTimeout,
    gexc.TooManyRequests,
    gexc.RetryError,
    ConnectionError,
)


def _transient_as_unavailable() -> AbstractContextManager[None]:
    return unavailable_on(_TRANSIENT, "storage_unavailable", "Storage is unavailable.")


class GcsBlobStore:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = storage.Client(project=settings.project)
        self._signer_lock = threading.Lock()
        self._key_credentials: Any = None
        self._adc: Any = None

    def _blob(self, bucket: str, path: str, generation: str | None = None) -> storage.Blob:
        return self.client.bucket(bucket).blob(path, generation=int(generation) if generation else None)

    def read(self, bucket: str, path: str, generation: str | None = None) -> bytes:
        with _transient_as_unavailable():
            try:
                data: bytes = self._blob(bucket, path, generation).download_as_bytes()
                return data
            except gexc.NotFound:
                raise NotFound("object_not_found", "The stored object no longer exists.") from None

    def write(self, bucket: str, path: str, data: bytes, content_type: str) -> None:
        blob = self._blob(bucket, path)
        blob.cache_control = "private, max-age=3600"
        with _transient_as_unavailable():
            blob.upload_from_string(data, content_type=content_type)

    def delete(self, bucket: str, path: str, generation: str | None = None) -> None:
        with _transient_as_unavailable(), contextlib.suppress(gexc.NotFound):
            self._blob(bucket, path, generation).delete()

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        count = 0
        with _transient_as_unavailable():
            for blob in self.client.list_blobs(bucket, prefix=prefix):
                with contextlib.suppress(gexc.NotFound):
                    blob.delete()
                    count += 1
        return count

    def signed_url(
        self,
        bucket: str,
        path: str,
        ttl_s: int,
        method: str = "GET",
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        kwargs: dict[str, Any] = {
            "version": "v4",
            "expiration": timedelta(seconds=ttl_s),
            "method": method,
        }
        if content_type:
            kwargs["content_type"] = content_type
        if headers:
            kwargs["headers"] = dict(headers)
        if self.settings.public_storage_url:
            kwargs["api_access_endpoint"] = self.settings.public_storage_url
        with self._signer_lock:
            if self.settings.signing_key_file:
                # Local stack only: a key file made by the stack itself.
                if self._key_credentials is None:
                    self._key_credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                        self.settings.signing_key_file
                    )
                kwargs["credentials"] = self._key_credentials
            else:
                # Cloud Functions has no private key: sign through IAM signBlob
                # as the runtime service account, with a fresh access token.
                if self._adc is None:
                    self._adc, _ = google.auth.default(
                        scopes=["https://www.googleapis.com/auth/cloud-platform"]
                    )
                if not self._adc.valid:
                    self._adc.refresh(google.auth.transport.requests.Request())
                kwargs["service_account_email"] = self.settings.signing_service_account or getattr(
                    self._adc, "service_account_email", None
                )
                kwargs["access_token"] = self._adc.token
        return str(self._blob(bucket, path).generate_signed_url(**kwargs))
