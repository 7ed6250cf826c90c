"""Firebase ID token verification against the local issuer's real certificates."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from local.issuer import encode_rs256, fetch_certs, firebase_claims, mint_token
from local.procs import free_ports
from local.stack import Stack
from pixme.adapters.auth import MAX_TOKEN_CHARS, CertCache, FirebaseTokenVerifier
from pixme.config import Settings
from pixme.errors import Unauthenticated, Unavailable


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


# --- hardening: what an attack run tried ------------------------------------------


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _counting(cache: CertCache) -> list[int]:
    """Counts the cache's certificate fetches (one list entry per fetch)."""
    calls: list[int] = []
    real_get = cache.session.get

    def counting_get(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real_get(*args, **kwargs)

    cache.session.get = counting_get  # type: ignore[method-assign]
    return calls


def _refused(verifier: FirebaseTokenVerifier, token: str) -> None:
    with pytest.raises(Unauthenticated) as info:
        verifier.verify(token)
    assert info.value.code == "invalid_token" and info.value.status == 401


def test_an_anonymous_caller_keeps_its_provider_and_custom_claims(
    emulators: Stack, settings: Settings
) -> None:
    claims = {"firebase": {"sign_in_provider": "anonymous"}, "plan": "pro"}
    caller = FirebaseTokenVerifier(settings).verify(emulators.token("anon-1", claims=claims))
    assert caller.anonymous and caller.claims == {"plan": "pro"}


@pytest.mark.parametrize("uid", ["first.last", "someone@example.com", "tenant:42", "u" * 128])
def test_uids_firebase_allows_are_accepted(emulators: Stack, settings: Settings, uid: str) -> None:
    assert FirebaseTokenVerifier(settings).verify(emulators.token(uid)).uid == uid


@pytest.mark.parametrize(
    "change",
    [
        {"sub": "u" * 129},
        {"sub": "a/b"},
        {"sub": "."},
        {"sub": ".."},
        {"sub": "line\nbreak"},
        {"iat": int(time.time()) + 3600},
        {"auth_time": None},
        {"exp": "never"},
    ],
    ids=["long-subject", "slash", "dot", "dotdot", "control", "future-iat", "no-auth-time", "string-exp"],
)
def test_more_wrong_claims_are_refused(emulators: Stack, settings: Settings, change: dict) -> None:  # type: ignore[type-arg]
    _refused(FirebaseTokenVerifier(settings), emulators.token("alice", claims=change))


@pytest.mark.parametrize(
    "header",
    [
        {"kid": ["a", "b"]},
        {"kid": {"nested": True}},
        {"kid": None},
        {"alg": "none"},
        {"alg": "HS256"},
        {"jku": "http://127.0.0.1:1/jwks"},
        {"x5u": "http://127.0.0.1:1/cert.pem"},
        {"x5c": ["MIIB"]},
        {"jwk": {"kty": "RSA", "n": "AQAB", "e": "AQAB"}},
    ],
    ids=["kid-list", "kid-object", "no-kid", "alg-none", "alg-hs256", "jku", "x5u", "x5c", "jwk"],
)
def test_issuer_signed_tokens_with_a_lying_header_are_refused(
    emulators: Stack,
    settings: Settings,
    header: dict,  # type: ignore[type-arg]
) -> None:
    assert emulators.issuer_url
    token = mint_token(emulators.issuer_url, "alice", header=header)
    _refused(FirebaseTokenVerifier(settings), token)


def test_hs256_keyed_with_the_certificate_is_refused(emulators: Stack, settings: Settings) -> None:
    assert emulators.issuer_url
    kid, pem = next(iter(fetch_certs(emulators.issuer_url).items()))
    header = _b64url(json.dumps({"alg": "HS256", "kid": kid, "typ": "JWT"}).encode())
    claims = _b64url(json.dumps(firebase_claims(emulators.project, "alice")).encode())
    mac = hmac.new(pem.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    _refused(FirebaseTokenVerifier(settings), f"{header}.{claims}.{_b64url(mac)}")


def test_an_over_long_token_is_refused(emulators: Stack, settings: Settings) -> None:
    token = emulators.token("alice", claims={"padding": "x" * MAX_TOKEN_CHARS})
    _refused(FirebaseTokenVerifier(settings), token)


def test_unknown_kids_do_not_storm_the_certificate_endpoint(emulators: Stack, settings: Settings) -> None:
    assert emulators.issuer_url
    cache = CertCache(settings.auth_certs_url)
    calls = _counting(cache)
    verifier = FirebaseTokenVerifier(settings, cache)
    for i in range(50):
        _refused(verifier, mint_token(emulators.issuer_url, "alice", header={"kid": f"rotated-{i}"}))
    assert len(calls) <= 2
    assert verifier.verify(emulators.token("alice")).uid == "alice"
    assert len(calls) <= 2


def test_a_dead_certificate_endpoint_is_503_and_not_retried_per_request(settings: Settings) -> None:
    (port,) = free_ports(1)  # nothing listens there
    cache = CertCache(f"http://127.0.0.1:{port}/certs", timeout_s=1)
    calls = _counting(cache)
    verifier = FirebaseTokenVerifier(settings, cache)
    token = encode_rs256(
        rsa.generate_private_key(public_exponent=65537, key_size=2048), "k", firebase_claims("p", "alice")
    )
    for _ in range(20):
        with pytest.raises(Unavailable) as info:
            verifier.verify(token)
        assert info.value.code == "auth_unavailable" and info.value.status == 503
    assert len(calls) == 1
