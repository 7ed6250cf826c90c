"""Firebase App Check token verification (the `X-Firebase-AppCheck` header).

An App Check token is an RS256 JWT from Firebase App Check: `kid` names a key
of the JWKS at `settings.app_check_jwks_url`, `iss` is
`https://firebaseappcheck.googleapis.com/<project number>`, `aud` is a list
holding `projects/<project number>` (and `projects/<project id>`), `sub` is
the app id. It says the request comes from our genuine app, not who the user
is: it complements the ID token, never replaces it.

The header policy and the key cache are auth.py's (one fetch discipline for
both key sets). The signature is checked by google-auth's `jwt.decode`, the
same path as ID tokens; `cryptography` only turns each JWK into a PEM public
key, which that path accepts.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pixme.adapters.auth import BadToken, CertCache, check_lifetime, parse_jws, verify_signature
from pixme.config import Settings
from pixme.errors import ConfigError, Unauthenticated, Unavailable

log = logging.getLogger(__name__)

ISSUER_PREFIX = "https://firebaseappcheck.googleapis.com/"
# Firebase advises caching the App Check keys for up to 6 hours.
JWKS_MAX_AGE_S = 6 * 3600
MAX_APP_ID_CHARS = 256
_MIN_RSA_BITS = 2048


def jwks_public_keys(payload: Any) -> dict[str, str]:
    """`{kid: PEM public key}` for the usable RS256 keys of a JWKS."""
    keys = payload.get("keys") if isinstance(payload, dict) else None
    if not isinstance(keys, list):
        raise ValueError("expected a JWKS object with a 'keys' list")
    found = dict(filter(None, (_rsa_key(jwk) for jwk in keys)))
    if not found:
        raise ValueError("the JWKS has no usable RS256 key")
    return found


def _rsa_key(jwk: Any) -> tuple[str, str] | None:
    # Keys of another type or use are skipped, not fatal: a JWKS may mix them.
    if not isinstance(jwk, dict) or jwk.get("kty") != "RSA":
        return None
    if jwk.get("alg", "RS256") != "RS256" or jwk.get("use", "sig") != "sig":
        return None
    kid, n, e = jwk.get("kid"), jwk.get("n"), jwk.get("e")
    if not (isinstance(kid, str) and kid and isinstance(n, str) and isinstance(e, str)):
        return None
    try:
        key = rsa.RSAPublicNumbers(_b64_int(e), _b64_int(n)).public_key()
    except ValueError:
        return None
    if key.key_size < _MIN_RSA_BITS:
        return None
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return kid, pem.decode("ascii")


def _b64_int(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


class AppCheckVerifier:
    """Reads `settings.app_check`, `settings.project_number` and `settings.app_check_jwks_url`."""

    def __init__(self, settings: Settings, keys: CertCache | None = None) -> None:
        number = settings.project_number.strip()
        self.mode = settings.app_check
        # Off needs no number: the wiring may build this verifier whatever the mode.
        if self.mode != "off" and not number.isdigit():
            raise ConfigError("App Check needs the project number (digits only), e.g. 123456789012.")
        self.issuer = ISSUER_PREFIX + number
        self.audience = f"projects/{number}"
        self.keys = keys or CertCache(
            settings.app_check_jwks_url, parse=jwks_public_keys, default_max_age_s=JWKS_MAX_AGE_S
        )

    def check(self, token: str | None) -> str | None:
        """Apply the mode: the app id when verified; None when off, or failing in monitor.

        Monitor logs what enforce would refuse, so the share of requests
        without a valid token is known before enforcing (Firebase's advice).
        Any mode other than off and monitor enforces: fail closed.
        """
        if self.mode == "off":
            return None
        try:
            return self.verify(token or "")
        except (Unauthenticated, Unavailable) as err:
            if self.mode != "monitor":
                raise
            log.warning("app check (monitor) would refuse: %s: %s", err.code, err.message)
            return None

    def verify(self, token: str) -> str:
        """The app id (`sub`) of a valid App Check token."""
        if not token:
            raise Unauthenticated("invalid_app_check", "Send an App Check token as X-Firebase-AppCheck.")
        try:
            return self._app_id(token)
        except BadToken as bad:
            raise Unauthenticated("invalid_app_check", str(bad)) from None

    def _app_id(self, token: str) -> str:
        jws = parse_jws(token)
        if jws.header.get("typ") != "JWT":  # App Check always sets it; Firebase's SDKs require it
            raise BadToken("The token is not a JWT.")
        pem = self.keys.key(jws.kid)
        if pem is None:
            raise BadToken("The token was signed by an unknown key.")
        claims = verify_signature(token, jws.kid, pem)
        if claims.get("iss") != self.issuer:
            raise BadToken("The token has the wrong issuer.")
        audience = claims.get("aud")
        if not isinstance(audience, list) or self.audience not in audience:
            raise BadToken("The token is not valid for this project.")
        check_lifetime(claims, time.time(), "iat")
        app_id = claims.get("sub")
        if not isinstance(app_id, str) or not 0 < len(app_id) <= MAX_APP_ID_CHARS:
            raise BadToken("The token has no valid app id.")
        return app_id
