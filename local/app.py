"""What the mobile app does over HTTP, for the demo, the tests, the load run and the smoke test.

The upload is the production flow: ask `uploads` for a signed URL, PUT the
bytes to it with exactly the headers it names, then poll the upload's status.
Nothing here knows about the emulators: it only sees URLs and a token.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

FINISHED = ("ready", "rejected")


class AppError(Exception):
    def __init__(self, what: str, resp: requests.Response) -> None:
        try:
            error = resp.json().get("error", {})
        except ValueError:
            error = {"message": resp.text[:200]}
        super().__init__(f"{what}: {resp.status_code} {error.get('code')}: {error.get('message')}")
        self.status = resp.status_code
        self.code = error.get("code")


class AppClient:
    def __init__(
        self,
        functions: Mapping[str, str],
        token: str,
        timeout_s: float = 120,
        app_check: str | None = None,
    ) -> None:
        """app_check: an App Check token, sent as the app does, for a deployment
        that enforces it."""
        self.functions = dict(functions)
        self.headers = {"Authorization": f"Bearer {token}"}
        if app_check is not None:
            self.headers["X-Firebase-AppCheck"] = app_check
        self.timeout_s = timeout_s
        self.http = requests.Session()

    def url(self, function: str, path: str = "/") -> str:
        return self.functions[function].rstrip("/") + path

    def request(
        self, method: str, function: str, path: str = "/", body: Any = None, **kwargs: Any
    ) -> requests.Response:
        return self.http.request(
            method,
            self.url(function, path),
            json=body,
            headers={**self.headers, **kwargs.pop("headers", {})},
            timeout=kwargs.pop("timeout", self.timeout_s),
            **kwargs,
        )

    def call(self, method: str, function: str, path: str = "/", body: Any = None) -> dict[str, Any]:
        """The JSON answer of a call that must succeed."""
        resp = self.request(method, function, path, body)
        if resp.status_code >= 400:
            raise AppError(f"{method} {function}{path}", resp)
        return dict(resp.json())

    def start_upload(self, content_type: str) -> dict[str, Any]:
        return self.call("POST", "uploads", "/", {"content_type": content_type})

    def put(self, ticket: Mapping[str, Any], data: bytes) -> requests.Response:
        """Send the photo the way the ticket says: its method, its URL, its headers."""
        return self.http.request(
            ticket["method"], ticket["upload_url"], data=data, headers=dict(ticket["headers"]), timeout=60
        )

    def upload(self, data: bytes, content_type: str) -> str:
        """Ask for an upload, send the bytes; returns the upload id."""
        ticket = self.start_upload(content_type)
        resp = self.put(ticket, data)
        if resp.status_code >= 300:
            raise AppError("PUT to the signed upload URL", resp)
        return str(ticket["upload_id"])

    def upload_status(self, upload_id: str) -> dict[str, Any]:
        return self.call("GET", "uploads", f"/{upload_id}")

    def wait_upload(
        self,
        upload_id: str,
        timeout_s: float = 30,
        poll_s: float = 0.1,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the upload is ready or rejected; `progress` sees every
        unfinished status. Against a deployment each poll is an invocation, so
        poll_s is larger there than against the local stack."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.upload_status(upload_id)
            if status["status"] in FINISHED:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"upload {upload_id} still {status['status']} after {timeout_s:.0f} s")
            if progress is not None:
                progress(status)
            time.sleep(poll_s)


def content_type_of(data: bytes) -> str:
    """The type an app would declare for a picture, from its first bytes."""
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        return "image/heic"
    return "image/jpeg"
