"""ID-token verification without a network: an in-process fake certificate
endpoint (counting its fetches, able to fail) and a fake monotonic clock.

What an attacker controls is everything in the token, so most cases here are
tokens that lie about themselves, signed with the right key where that matters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Mapping
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from local.issuer import SigningKey, firebase_claims
from pixme import web
from pixme.adapters.appcheck import jwks_public_keys
from pixme.adapters.auth import MAX_TOKEN_CHARS, CertCache, FirebaseTokenVerifier, valid_uid
from pixme.config import Settings
from pixme.errors import Unauthenticated, Unavailable

PROJECT = "pixme-unit"
SETTINGS = Settings(
    project=PROJECT, uploads_bucket="u", assets_bucket="a", auth_certs_url="http://certs.invalid/certs"
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeCertEndpoint:
    """Stands in for the session of a CertCache: serves `payload`, counts calls."""

    def __init__(self, payload: Any, max_age: int | None = 3600) -> None:
        self.payload = payload
        self.max_age = max_age
        self.calls = 0
        self.down = False
        self.status = 200
        self.body: bytes | None = None  # raw body instead of JSON
        self.delay_s = 0.0
        self._lock = threading.Lock()

    def get(self, url: str, timeout: float) -> requests.Response:
        with self._lock:
            self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.down:
            raise requests.ConnectionError("connection refused")
        resp = requests.Response()
        resp.status_code = self.status
        resp._content = self.body if self.body is not None else json.dumps(self.payload).encode()
        if self.max_age is not None:
            resp.headers["Cache-Control"] = f"public, max-age={self.max_age}"
        return resp


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    return SigningKey.generate("someone-else")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def endpoint(key: SigningKey) -> FakeCertEndpoint:
    return FakeCertEndpoint(key.certs())


@pytest.fixture
def verifier(endpoint: FakeCertEndpoint, clock: FakeClock) -> FirebaseTokenVerifier:
    cache = CertCache(SETTINGS.auth_certs_url, endpoint, clock=clock)  # type: ignore[arg-type]
    return FirebaseTokenVerifier(SETTINGS, cache)


def token(
    key: SigningKey,
    uid: str = "alice",
    claims: Mapping[str, Any] | None = None,
    header: Mapping[str, Any] | None = None,
    ttl_s: int = 3600,
) -> str:
    return key.sign({**firebase_claims(PROJECT, uid, ttl_s), **(claims or {})}, header)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def signed_raw(key: SigningKey, header: bytes, claims: Mapping[str, Any]) -> str:
    """A token with any header bytes, validly RS256-signed with `key`."""
    signing_input = f"{b64(header)}.{b64(json.dumps(dict(claims)).encode())}"
    signature = key.private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64(signature)}"


def refused(verifier: FirebaseTokenVerifier, tok: str) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as info:
        verifier.verify(tok)
    assert info.value.code == "invalid_token" and info.value.status == 401
    return info.value


# --- what a valid token gives ------------------------------------------------


def test_a_valid_token_gives_the_caller_with_provider_and_custom_claims(
    verifier: FirebaseTokenVerifier, key: SigningKey
) -> None:
    caller = verifier.verify(token(key, claims={"plan": "pro"}))
    assert (caller.uid, caller.provider, dict(caller.claims)) == ("alice", "custom", {"plan": "pro"})


def test_an_anonymous_sign_in_is_seen_as_such(verifier: FirebaseTokenVerifier, key: SigningKey) -> None:
    caller = verifier.verify(token(key, claims={"firebase": {"sign_in_provider": "anonymous"}}))
    assert caller.anonymous and caller.provider == "anonymous"


@pytest.mark.parametrize(
    "uid",
    ["user.name", "alice@example.com", "x:y", "a" * 128, "...", "__x__", "a b", "名前-ü", "+33 6 12"],
)
def test_uids_firebase_allows_are_accepted(
    verifier: FirebaseTokenVerifier, key: SigningKey, uid: str
) -> None:
    assert verifier.verify(token(key, uid)).uid == uid


# --- malformed tokens and lying headers ----------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        {"kid": ["a", "b"]},
        {"kid": {"a": 1}},
        {"kid": 7},
        {"kid": ""},
        {"kid": None},
        {"kid": "k" * 300},
        {"alg": None},
        {"alg": "none"},
        {"alg": "HS256"},
        {"alg": "ES256"},
        {"alg": "rs256"},
        {"alg": ["RS256"]},
        {"typ": "at+jwt"},
        {"jku": "https://evil.example/jwks"},
        {"x5u": "https://evil.example/cert.pem"},
        {"x5c": ["MIIB..."]},
        {"jwk": {"kty": "RSA", "n": "AQAB", "e": "AQAB"}},
        {"crit": ["exp"]},
    ],
    ids=lambda h: "-".join(f"{k}={str(v)[:12]}" for k, v in h.items()),
)
def test_tokens_with_a_lying_header_are_refused(
    verifier: FirebaseTokenVerifier, key: SigningKey, endpoint: FakeCertEndpoint, header: dict[str, Any]
) -> None:
    refused(verifier, token(key, header=header))


@pytest.mark.parametrize(
    "header",
    [b"[1]", b'"RS256"', b"1", b"null", b"{", b"\xff\xfe", b"[" * 2500 + b"]" * 2500],
    ids=["list", "string", "number", "null", "not-json", "not-utf8", "deeply-nested"],
)
def test_a_header_that_is_not_a_json_object_is_refused(
    verifier: FirebaseTokenVerifier, key: SigningKey, header: bytes
) -> None:
    refused(verifier, signed_raw(key, header, firebase_claims(PROJECT, "alice")))


def test_a_payload_that_is_not_a_json_object_is_refused(
    verifier: FirebaseTokenVerifier, key: SigningKey
) -> None:
    header = b64(json.dumps({"alg": "RS256", "kid": key.kid}).encode())
    signing_input = f"{header}.{b64(b'[1, 2]')}"
    signature = key.private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    refused(verifier, f"{signing_input}.{b64(signature)}")


@pytest.mark.parametrize(
    "damage",
    [
        lambda t: t.rsplit(".", 1)[0],  # two segments
        lambda t: t + ".x",  # four
        lambda t: t.rsplit(".", 1)[0] + ".",  # no signature
        lambda t: t.replace(".", "=.", 1),  # padding
        lambda t: "+/" + t,  # standard, not url-safe, base64
        lambda t: "!" + t,
        lambda t: "é" + t,
        lambda t: t + "\n",
        lambda t: "A." + t.split(".", 1)[1],  # a 1-character segment is never valid base64
        lambda t: "",
        lambda t: "...",
    ],
    ids=[
        "two-segments", "four-segments", "empty-signature", "padding", "std-b64", "bang",
        "non-ascii", "newline", "short-segment", "empty", "dots",
    ],
)  # fmt: skip
def test_a_token_that_is_not_compact_base64url_is_refused(
    verifier: FirebaseTokenVerifier, key: SigningKey, damage: Any
) -> None:
    refused(verifier, damage(token(key)))


def test_an_over_long_token_is_refused_even_when_valid(
    verifier: FirebaseTokenVerifier, key: SigningKey
) -> None:
    tok = token(key, claims={"bio": "x" * MAX_TOKEN_CHARS})
    assert "longer" in refused(verifier, tok).message


def test_malformed_tokens_never_reach_the_certificate_endpoint(
    verifier: FirebaseTokenVerifier, key: SigningKey, endpoint: FakeCertEndpoint
) -> None:
    for bad in ("x", "a.b.c", token(key, header={"kid": ["a"]}), token(key, header={"alg": "none"})):
        refused(verifier, bad)
    assert endpoint.calls == 0


# --- signatures ----------------------------------------------------------------


def test_alg_none_without_a_signature_is_refused(verifier: FirebaseTokenVerifier, key: SigningKey) -> None:
    header = b64(json.dumps({"alg": "none", "kid": key.kid}).encode())
    payload = b64(json.dumps(firebase_claims(PROJECT, "alice")).encode())
    refused(verifier, f"{header}.{payload}.")
    refused(verifier, f"{header}.{payload}.AAAA")


def test_hs256_keyed_with_the_public_certificate_is_refused(
    verifier: FirebaseTokenVerifier, key: SigningKey
) -> None:
    # The classic confusion: the certificate is public, so an HMAC keyed with it is forgeable.
    header = b64(json.dumps({"alg": "HS256", "kid": key.kid, "typ": "JWT"}).encode())
    signing_input = f"{header}.{b64(json.dumps(firebase_claims(PROJECT, 'alice')).encode())}"
    mac = hmac.new(key.certificate_pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    refused(verifier, f"{signing_input}.{b64(mac)}")


def test_a_signature_by_another_key_under_our_kid_is_refused(
    verifier: FirebaseTokenVerifier, key: SigningKey, other_key: SigningKey
) -> None:
    refused(verifier, token(other_key, header={"kid": key.kid}))


def test_a_signature_moved_onto_other_claims_is_refused(
    verifier: FirebaseTokenVerifier, key: SigningKey
) -> None:
    genuine = token(key, "alice").split(".")
    forged = b64(json.dumps(firebase_claims(PROJECT, "mallory")).encode())
    refused(verifier, f"{genuine[0]}.{forged}.{genuine[2]}")


def test_a_random_rsa_key_is_refused(verifier: FirebaseTokenVerifier, key: SigningKey) -> None:
    stranger = SigningKey(rsa.generate_private_key(public_exponent=65537, key_size=2048), "", "unknown-kid")
    refused(verifier, token(stranger))


# --- claims --------------------------------------------------------------------

NOW = int(time.time())


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": NOW - 60},
        {"exp": "tomorrow"},
        {"exp": float("nan")},
        {"exp": True},
        {"exp": None},
        {"iat": NOW + 3600},
        {"iat": 10**400},
        {"iat": None},
        {"auth_time": NOW + 3600},
        {"auth_time": None},
        {"auth_time": "yesterday"},
        {"aud": "another-project"},
        {"aud": [PROJECT]},
        {"aud": None},
        {"iss": "https://securetoken.google.com/another-project"},
        {"iss": None},
        {"sub": ""},
        {"sub": None},
        {"sub": 42},
        {"sub": "a" * 129},
    ],
    ids=lambda c: "-".join(f"{k}={str(v)[:12]}" for k, v in c.items()),
)
def test_tokens_with_wrong_claims_are_refused(
    verifier: FirebaseTokenVerifier, key: SigningKey, claims: dict[str, Any]
) -> None:
    refused(verifier, token(key, claims=claims))


def test_clock_skew_of_a_few_seconds_is_tolerated(verifier: FirebaseTokenVerifier, key: SigningKey) -> None:
    now = int(time.time())
    assert verifier.verify(token(key, claims={"iat": now + 5, "auth_time": now + 5})).uid == "alice"


@pytest.mark.parametrize(
    "uid",
    ["a/b", "/", "../../etc", ".", "..", "a\nb", "a\rb", "nul\x00", "del\x7f", "nel\x85", "\ud800"],
    ids=["slash", "root", "traversal", "dot", "dotdot", "lf", "cr", "nul", "del", "c1", "surrogate"],
)
def test_uids_that_would_change_a_name_are_refused(
    verifier: FirebaseTokenVerifier, key: SigningKey, uid: str
) -> None:
    assert not valid_uid(uid)
    refused(verifier, token(key, uid))


# --- the certificate cache -------------------------------------------------------


def test_certificates_are_fetched_once_per_max_age(
    verifier: FirebaseTokenVerifier, key: SigningKey, endpoint: FakeCertEndpoint, clock: FakeClock
) -> None:
    for _ in range(5):
        verifier.verify(token(key))
    assert endpoint.calls == 1
    clock.advance(3599)
    verifier.verify(token(key))
    assert endpoint.calls == 1
    clock.advance(2)
    verifier.verify(token(key))
    assert endpoint.calls == 2


def test_without_max_age_certificates_are_kept_five_minutes(
    verifier: FirebaseTokenVerifier, key: SigningKey, endpoint: FakeCertEndpoint, clock: FakeClock
) -> None:
    endpoint.max_age = None
    verifier.verify(token(key))
    clock.advance(299)
    verifier.verify(token(key))
    assert endpoint.calls == 1
    clock.advance(2)
    verifier.verify(token(key))
    assert endpoint.calls == 2


def test_unknown_kids_force_at_most_one_refresh_a_minute(
    verifier: FirebaseTokenVerifier, key: SigningKey, endpoint: FakeCertEndpoint, clock: FakeClock
) -> None:
    verifier.verify(token(key))
    for i in range(50):
        refused(verifier, token(key, header={"kid": f"made-up-{i}"}))
    assert endpoint.calls == 1  # the fetch of the valid token was less than a minute ago
    clock.advance(61)
    for i in range(50):
        refused(verifier, token(key, header={"kid": f"made-up-again-{i}"}))
    assert endpoint.calls == 2


def test_a_rotated_key_is_picked_up_by_a_forced_refresh(
    verifier: FirebaseTokenVerifier, key: SigningKey, other_key: SigningKey, endpoint: FakeCertEndpoint,
    clock: FakeClock,
) -> None:  # fmt: skip
    verifier.verify(token(key))
    endpoint.payload = {**key.certs(), **other_key.certs()}
    clock.advance(61)
    assert verifier.verify(token(other_key, "bob")).uid == "bob"
    assert endpoint.calls == 2


@pytest.mark.parametrize("failure", ["down", "http-500", "not-json", "not-an-object", "empty"])
def test_stale_certificates_serve_while_the_endpoint_fails_with_backoff(
    verifier: FirebaseTokenVerifier, key: SigningKey, endpoint: FakeCertEndpoint, clock: FakeClock,
    failure: str,
) -> None:  # fmt: skip
    verifier.verify(token(key))
    _break(endpoint, failure)
    clock.advance(3601)  # the certificates are now stale
    for i in range(50):
        assert verifier.verify(token(key)).uid == "alice"
        refused(verifier, token(key, header={"kid": f"made-up-{i}"}))
    assert endpoint.calls == 2  # one failed attempt, then the backoff
    clock.advance(5)
    verifier.verify(token(key))
    assert endpoint.calls == 3
    clock.advance(9)  # the backoff doubled to 10 s
    verifier.verify(token(key))
    assert endpoint.calls == 3
    clock.advance(1)
    verifier.verify(token(key))
    assert endpoint.calls == 4


def _break(endpoint: FakeCertEndpoint, failure: str) -> None:
    if failure == "down":
        endpoint.down = True
    elif failure == "http-500":
        endpoint.status = 500
    elif failure == "not-json":
        endpoint.body = b"<html>oops</html>"
    elif failure == "not-an-object":
        endpoint.payload = ["a", "b"]
    else:
        endpoint.payload = {}


def test_no_certificates_and_the_endpoint_down_is_503_without_a_fetch_storm(
    verifier: FirebaseTokenVerifier, key: SigningKey, endpoint: FakeCertEndpoint, clock: FakeClock
) -> None:
    endpoint.down = True
    for _ in range(50):
        with pytest.raises(Unavailable) as info:
            verifier.verify(token(key))
        assert info.value.code == "auth_unavailable" and info.value.status == 503
        assert 1 <= info.value.retry_after_s <= 5
    assert endpoint.calls == 1
    endpoint.down = False
    clock.advance(5)
    assert verifier.verify(token(key)).uid == "alice"
    assert endpoint.calls == 2


def test_the_backoff_is_capped(key: SigningKey, endpoint: FakeCertEndpoint, clock: FakeClock) -> None:
    cache = CertCache("http://certs.invalid", endpoint, clock=clock)  # type: ignore[arg-type]
    endpoint.down = True
    for _ in range(12):
        with pytest.raises(Unavailable):
            cache.get()
        clock.advance(300)  # the cap: every attempt is due again
    assert endpoint.calls == 12


def test_a_cold_start_under_concurrency_makes_one_fetch(key: SigningKey, endpoint: FakeCertEndpoint) -> None:
    endpoint.delay_s = 0.2
    verifier = FirebaseTokenVerifier(SETTINGS, CertCache("http://certs.invalid", endpoint))  # type: ignore[arg-type]
    results: list[object] = []

    def call() -> None:
        try:
            results.append(verifier.verify(token(key)).uid)
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["alice"] * 8
    assert endpoint.calls == 1


# --- App Check key sets (the JWKS side of the same cache) ----------------------


def test_a_jwks_becomes_pem_public_keys(key: SigningKey) -> None:
    pem = jwks_public_keys({"keys": [key.jwk()]})[key.kid]
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")


@pytest.mark.parametrize(
    "entry",
    [
        {"kty": "EC", "crv": "P-256"},
        {"alg": "RS384"},
        {"use": "enc"},
        {"kid": 5},
        {"n": None},
        {"n": "!!!"},
    ],
    ids=["ec", "rs384", "enc", "kid-int", "no-n", "bad-n"],
)
def test_unusable_jwks_entries_are_skipped(
    key: SigningKey, other_key: SigningKey, entry: dict[str, Any]
) -> None:
    odd = {**other_key.jwk(), **entry}
    assert set(jwks_public_keys({"keys": [odd, key.jwk()]})) == {key.kid}


def test_a_small_rsa_key_is_skipped(key: SigningKey) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak = SigningKey(small, "", "weak").jwk()
    assert set(jwks_public_keys({"keys": [weak, key.jwk()]})) == {key.kid}


@pytest.mark.parametrize("payload", [[], {}, {"keys": {}}, {"keys": []}, {"keys": [{"kty": "oct"}]}])
def test_a_jwks_without_usable_keys_is_a_failed_fetch(payload: Any) -> None:
    with pytest.raises(ValueError):
        jwks_public_keys(payload)


# --- what the edge answers ----------------------------------------------------


def test_refusals_leave_the_edge_as_401_and_outages_as_503_with_retry_after(
    verifier: FirebaseTokenVerifier, key: SigningKey, endpoint: FakeCertEndpoint
) -> None:
    with pytest.raises(Unauthenticated) as refusal:
        verifier.verify(token(key, header={"kid": ["a", "b"]}))
    body, status, _ = web.error_response(refusal.value)
    assert (status, json.loads(body)["error"]["code"]) == (401, "invalid_token")
    endpoint.down = True
    with pytest.raises(Unavailable) as outage:
        verifier.verify(token(key))
    body, status, headers = web.error_response(outage.value)
    assert (status, json.loads(body)["error"]["code"]) == (503, "auth_unavailable")
    assert int(headers["Retry-After"]) >= 1
