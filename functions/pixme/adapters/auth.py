"""Firebase ID token verification (RS256 against the issuer's x509 certificates).

The certificates URL is a setting: Google's securetoken endpoint in the cloud,
the local issuer's in the stack. The verification code is the same.

Everything a token says before its signature is checked is attacker input:
the header is parsed strictly here (so odd values answer 401, never 500), the
key comes only from our cached key set, and google-auth's `jwt.decode` then
checks the RS256 signature, `iat` and `exp` against that one key. Our own
checks follow, with types enforced (a NaN or string `exp` must not pass).

`CertCache` and `parse_jws` are shared with the App Check verifier
(appcheck.py): one fetch discipline and one header policy for both.
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard

import requests
from google.auth import exceptions as auth_exceptions
from google.auth import jwt

from pixme.config import Settings
from pixme.errors import Unauthenticated, Unavailable
from pixme.identity import Caller

# Firebase ID tokens are ~1 KB (custom claims are capped at 1000 bytes); 8 KB
# leaves room and bounds the work an anonymous request can cause.
MAX_TOKEN_CHARS = 8 * 1024
CLOCK_SKEW_S = 10
MAX_UID_CHARS = 128
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")  # base64url without padding (RFC 7515)
_MAX_AGE = re.compile(r"max-age=(\d{1,9})")
# Headers that name a key, or extensions we would have to understand: honouring
# any of them lets the token choose its own verification key. Refused outright.
_REFUSED_HEADERS = frozenset({"jku", "x5u", "x5c", "jwk", "crit"})
_MAX_KID_CHARS = 256
# Certificates/keys are cached at most this long whatever max-age says.
_MAX_CACHE_S = 24 * 3600


class BadToken(Exception):
    """Why a token was refused; each verifier maps it to its own error code."""


# --- the key cache -----------------------------------------------------------

KeyParser = Callable[[Any], dict[str, str]]


def x509_certs(payload: Any) -> dict[str, str]:
    """Google's securetoken format: `{kid: PEM certificate}`."""
    if not isinstance(payload, dict) or not payload:
        raise ValueError("expected a non-empty object of kid -> PEM certificate")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in payload.items()):
        raise ValueError("expected string kids and PEM certificates")
    return dict(payload)


class CertCache:
    """The keys (kid -> PEM certificate or public key) served at one URL.

    Every request can name a kid, so the fetch discipline matters more than
    the cache itself:
    - keys are fresh for the response's max-age (`default_max_age_s` without
      one, at most a day);
    - an unknown kid forces a refresh (keys may just have rotated), but at most
      one fetch per `min_refresh_s`: Google publishes new keys well before
      using them, and a flood of made-up kids must not become a flood of
      fetches;
    - after a failed fetch no new attempt is made for a backoff that doubles
      per consecutive failure; stale keys keep serving meanwhile (refusing
      everyone would be worse), and with no keys at all callers get 503
      `auth_unavailable` without a fetch each;
    - one fetch at a time: other requests use what is cached, or wait for the
      fetch in flight when nothing is.
    `clock` is monotonic seconds, injectable for tests.
    """

    def __init__(
        self,
        url: str,
        session: requests.Session | None = None,
        *,
        parse: KeyParser = x509_certs,
        default_max_age_s: float = 300,
        min_refresh_s: float = 60,
        backoff_s: tuple[float, float] = (5, 300),
        timeout_s: float = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.session = session or requests.Session()
        self.parse = parse
        self.default_max_age_s = default_max_age_s
        self.min_refresh_s = min_refresh_s
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.clock = clock
        self._cond = threading.Condition()
        self._keys: dict[str, str] = {}
        self._fresh_until = -math.inf
        self._next_attempt = -math.inf
        self._failures = 0
        self._fetching = False

    def key(self, kid: str) -> str | None:
        """The PEM for `kid`, or None when the (possibly refreshed) set lacks it."""
        pem = self.get().get(kid)
        if pem is None:
            pem = self.get(refresh=True).get(kid)
        return pem

    def get(self, refresh: bool = False) -> dict[str, str]:
        with self._cond:
            fetch = self._due(refresh)
            if fetch:
                self._fetching = True
            else:
                # With nothing cached yet, wait for the fetch in flight rather
                # than failing the requests that arrive during a cold start.
                self._cond.wait_for(lambda: self._keys or not self._fetching, timeout=2 * self.timeout_s)
        if fetch:
            self._fetch()
        with self._cond:
            if not self._keys:
                raise Unavailable(
                    "auth_unavailable",
                    "Token keys are unavailable; retry shortly.",
                    retry_after_s=max(1, math.ceil(self._next_attempt - self.clock())),
                )
            return self._keys

    def _due(self, refresh: bool) -> bool:
        now = self.clock()
        if self._fetching or now < self._next_attempt:
            return False
        return refresh or now >= self._fresh_until

    def _fetch(self) -> None:
        result = None
        try:
            result = self._download()
        except (requests.RequestException, ValueError, RecursionError):
            pass  # recorded as a failure below; an unexpected error also propagates
        finally:
            with self._cond:
                self._record(result, self.clock())
                self._fetching = False
                self._cond.notify_all()

    def _record(self, result: tuple[dict[str, str], float] | None, now: float) -> None:
        if result is None:
            self._failures += 1
            low, high = self.backoff_s
            self._next_attempt = now + min(high, low * 2 ** min(self._failures - 1, 16))
            return
        self._keys, max_age = result
        self._failures = 0
        self._fresh_until = now + min(max_age, _MAX_CACHE_S)
        self._next_attempt = now + self.min_refresh_s

    def _download(self) -> tuple[dict[str, str], float]:
        resp = self.session.get(self.url, timeout=self.timeout_s)
        resp.raise_for_status()
        keys = self.parse(resp.json())
        match = _MAX_AGE.search(resp.headers.get("Cache-Control", ""))
        return keys, float(match.group(1)) if match else self.default_max_age_s


# --- the compact JWS ---------------------------------------------------------


@dataclass(frozen=True)
class Jws:
    header: dict[str, Any]
    kid: str


def parse_jws(token: str) -> Jws:
    """The header of an RS256 compact JWS, checked strictly; BadToken otherwise.

    google-auth decodes leniently (base64 that skips stray characters, any
    JSON value as a kid); this runs first so that nothing odd reaches it.
    """
    if len(token) > MAX_TOKEN_CHARS:
        raise BadToken(f"The token is longer than {MAX_TOKEN_CHARS} characters.")
    parts = token.split(".")
    if len(parts) != 3 or not all(_SEGMENT.fullmatch(p) for p in parts):
        raise BadToken("The token is not a signed JWT.")
    header = _json_object(parts[0])
    _json_object(parts[1])  # checked now: google-auth's parse would raise RecursionError on deep nesting
    return Jws(header, _kid(header))


def _json_object(segment: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # binascii, UnicodeDecode and JSON errors are ValueErrors
        raise BadToken("The token is malformed.") from None
    if not isinstance(value, dict):
        raise BadToken("The token is malformed.")
    return value


def _kid(header: dict[str, Any]) -> str:
    if header.get("alg") != "RS256":
        raise BadToken("The token must be signed with RS256.")
    if _REFUSED_HEADERS & header.keys():
        raise BadToken("The token names its own key or extensions; they are never trusted.")
    if header.get("typ", "JWT") != "JWT":
        raise BadToken("The token is not a JWT.")
    kid = header.get("kid")
    if not isinstance(kid, str) or not 0 < len(kid) <= _MAX_KID_CHARS:
        raise BadToken("The token has no valid key id.")
    return kid


def verify_signature(token: str, kid: str, pem: str) -> dict[str, Any]:
    """The claims, once google-auth has checked the signature, iat and exp.

    The audience is checked by the caller: an exact string for ID tokens, a
    list member for App Check, and google-auth only knows the former.
    """
    try:
        # A one-entry mapping: the key is the one we looked up, never a fallback.
        claims: dict[str, Any] = jwt.decode(  # type: ignore[no-untyped-call]
            token, certs={kid: pem}, clock_skew_in_seconds=CLOCK_SKEW_S
        )
    except (ValueError, TypeError, auth_exceptions.GoogleAuthError) as exc:
        # TypeError: a validly signed token with a non-numeric iat or exp.
        raise BadToken(_reason(str(exc).lower())) from None
    return claims


def _reason(error: str) -> str:
    """A message for people from google-auth's error text (the code is what counts)."""
    if "expired" in error:
        return "The token has expired."
    if "too early" in error:
        return "The token was issued in the future."
    if "signature" in error:
        return "The token's signature is not valid."
    return "The token is not valid."


def timestamp(claims: dict[str, Any], name: str) -> float:
    """A NumericDate claim; bools, strings, NaN and infinities are refused."""
    value = claims.get(name)
    try:
        number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    except OverflowError:  # an integer beyond any float
        number = math.nan
    if not math.isfinite(number):
        raise BadToken(f"The token has no valid {name}.")
    return number


def check_lifetime(claims: dict[str, Any], now: float, *past: str) -> None:
    """`exp` not yet reached and every claim in `past` not in the future (with skew)."""
    if timestamp(claims, "exp") < now - CLOCK_SKEW_S:
        raise BadToken("The token has expired.")
    for name in past:
        if timestamp(claims, name) > now + CLOCK_SKEW_S:
            raise BadToken(f"The token's {name} is in the future.")


# --- Firebase ID tokens ------------------------------------------------------


def valid_uid(sub: object) -> TypeGuard[str]:
    """Whether `sub` is a uid we can use as a name.

    Firebase allows any 1-128 characters (`.`, `@`, `:` are common). The uid
    becomes a path segment of storage object names (`uploads/{uid}/...`) and
    part of Firestore document ids, so we refuse the few values that would
    change what a name means: `/` (a separator: another user's prefix),
    `.` and `..` (path segments storage and Firestore refuse and tools
    resolve), control characters (CR/LF are invalid in object names and forge
    log lines) and lone surrogates (not encodable as UTF-8).
    """
    if not isinstance(sub, str) or not 0 < len(sub) <= MAX_UID_CHARS or sub in (".", ".."):
        return False
    return "/" not in sub and not any(unicodedata.category(c) in ("Cc", "Cs") for c in sub)


class FirebaseTokenVerifier:
    def __init__(self, settings: Settings, certs: CertCache | None = None) -> None:
        self.project = settings.token_audience
        self.issuer = settings.issuer
        self.certs = certs or CertCache(settings.auth_certs_url)

    def verify(self, token: str) -> Caller:
        try:
            uid, claims = self._claims(token)
        except BadToken as bad:
            raise Unauthenticated("invalid_token", str(bad)) from None
        return Caller.from_claims(uid, claims)

    def _claims(self, token: str) -> tuple[str, dict[str, Any]]:
        jws = parse_jws(token)
        pem = self.certs.key(jws.kid)
        if pem is None:
            raise BadToken("The token was signed by an unknown key.")
        claims = verify_signature(token, jws.kid, pem)
        if claims.get("aud") != self.project:
            raise BadToken("The token is not valid for this project.")
        if claims.get("iss") != self.issuer:
            raise BadToken("The token has the wrong issuer.")
        check_lifetime(claims, time.time(), "iat", "auth_time")
        uid = claims.get("sub")
        if not valid_uid(uid):
            raise BadToken("The token has no valid subject.")
        return uid, claims
