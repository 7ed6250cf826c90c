"""Firebase ID token verification against the local issuer's real certificates."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from local.issuer import encode_rs256, fetch_certs, firebase_claims
from local.stack import Stack
from pixme.adapters.auth import CertCache, FirebaseTokenVerifier
from pixme.config import Settings
from pixme.errors import Unauthenticated


def test_a_token_from_the_issuer_gives_its_uid(emulators: Stack, settings: Settings) -> None:
    verifier = FirebaseTokenVerifier(settings)
    assert verifier.verify(emulators.token("alice")).uid == "alice"


def test_certificates_are_cached_between_calls(emulators: Stack, settings: Settings) -> None:
    cache = CertCache(settings.auth_certs_url)
    calls = 0
    real_get = cache.session.get

    def counting_get(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return real_get(*args, **kwargs)

    cache.session.get = counting_get  # type: ignore[method-assign]
    verifier = FirebaseTokenVerifier(settings, cache)
    for uid in ("a", "b", "c"):
        assert verifier.verify(emulators.token(uid)).uid == uid
    assert calls == 1


def _kid(emulators: Stack) -> str:
    assert emulators.issuer_url
    return next(iter(fetch_certs(emulators.issuer_url)))


@pytest.mark.parametrize(
    "change",
    [
        {"aud": "another-project"},
        {"iss": "https://securetoken.google.com/another-project"},
        {"exp": int(time.time()) - 60},
        {"sub": ""},
        {"sub": "../../etc"},
        {"auth_time": int(time.time()) + 3600},
    ],
    ids=["audience", "issuer", "expired", "no-subject", "bad-subject", "future-auth"],
)
def test_tokens_with_wrong_claims_are_refused(emulators: Stack, settings: Settings, change: dict) -> None:  # type: ignore[type-arg]
    verifier = FirebaseTokenVerifier(settings)
    token = emulators.token("alice", claims=change)
    with pytest.raises(Unauthenticated):
        verifier.verify(token)


def test_a_forged_signature_is_refused(emulators: Stack, settings: Settings) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = encode_rs256(key, _kid(emulators), firebase_claims(emulators.project, "alice"))
    with pytest.raises(Unauthenticated):
        FirebaseTokenVerifier(settings).verify(forged)
