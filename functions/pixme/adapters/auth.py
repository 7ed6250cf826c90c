"""Firebase ID token verification (RS256 against the issuer's x509 certificates).

The certificates URL is a setting: Google's securetoken endpoint in the cloud,
the local issuer's in the stack. The verification code is the same.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import requests
from google.auth import exceptions as auth_exceptions
from google.auth import jwt

from pixme.config import Settings
from pixme.errors import Unauthenticated, Unavailable
from pixme.identity import Caller

_MAX_AGE = re.compile(r"max-age=(\d+)")
UID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class CertCache:
    """Caches the certificates for the max-age the server gives (keys rotate daily)."""

    def __init__(self, url: str, session: requests.Session | None = None) -> None:
        self.url = url
        self.session = session or requests.Session()
        self._lock = threading.Lock()
        self._certs: dict[str, str] = {}
        self._expires = 0.0

    def get(self, refresh: bool = False) -> dict[str, str]:
        with self._lock:
            if refresh or time.monotonic() >= self._expires:
                try:
                    resp = self.session.get(self.url, timeout=5)
                    resp.raise_for_status()
                    certs = resp.json()
                except (requests.RequestException, ValueError) as exc:
                    if self._certs:
                        return self._certs  # stale keys beat refusing everyone
                    raise Unavailable("auth_unavailable", "Token certificates are unavailable.") from exc
                match = _MAX_AGE.search(resp.headers.get("Cache-Control", ""))
                self._certs = certs
                self._expires = time.monotonic() + (int(match.group(1)) if match else 300)
            return self._certs


class FirebaseTokenVerifier:
    def __init__(self, settings: Settings, certs: CertCache | None = None) -> None:
        self.project = settings.project
        self.issuer = settings.issuer
        self.certs = certs or CertCache(settings.auth_certs_url)

    def verify(self, token: str) -> Caller:
        try:
            header = jwt.decode_header(token)  # type: ignore[no-untyped-call]
        except (ValueError, TypeError):
            raise Unauthenticated("invalid_token", "The ID token is malformed.") from None
        if header.get("alg") != "RS256":
            raise Unauthenticated("invalid_token", "The ID token must be signed with RS256.")
        certs = self.certs.get()
        if header.get("kid") not in certs:
            certs = self.certs.get(refresh=True)  # keys may have just rotated
            if header.get("kid") not in certs:
                raise Unauthenticated("invalid_token", "The ID token was signed by an unknown key.")
        try:
            claims: dict[str, Any] = jwt.decode(  # type: ignore[no-untyped-call]
                token, certs=certs, audience=self.project, clock_skew_in_seconds=10
            )
        except (ValueError, auth_exceptions.GoogleAuthError) as exc:
            message = (
                "The ID token has expired."
                if "expired" in str(exc).lower()
                else ("The ID token is not valid for this project.")
            )
            raise Unauthenticated("invalid_token", message) from None
        if claims.get("iss") != self.issuer:
            raise Unauthenticated("invalid_token", "The ID token has the wrong issuer.")
        auth_time = claims.get("auth_time")
        if not isinstance(auth_time, int | float) or auth_time > time.time() + 10:
            raise Unauthenticated("invalid_token", "The ID token has no valid auth_time.")
        uid = claims.get("sub")
        if not isinstance(uid, str) or not UID.match(uid):
            raise Unauthenticated("invalid_token", "The ID token has no valid subject.")
        return Caller.from_claims(uid, claims)
