"""App Check token verification against the local issuer's real JWKS.

The issuer is started here (not through the stack) because the tests need it
to know a project number: `python -m local.issuer --project-number N`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from local.issuer import app_check_claims, encode_rs256, fetch_jwks, mint_app_check_token
from local.procs import REPO_ROOT, Proc, free_ports, http_answers, stop_all, wait_until
from pixme.adapters.appcheck import JWKS_MAX_AGE_S, AppCheckVerifier, jwks_public_keys
from pixme.adapters.auth import CertCache
from pixme.config import Settings
from pixme.errors import ConfigError, Unauthenticated, Unavailable

LOGS = Path(__file__).resolve().parents[2] / "out" / "stack" / "test-appcheck"
PROJECT = "pixme-appcheck"
NUMBER = "123456789012"
APP_ID = "1:123456789012:android:abc123"


@dataclass
class Issuer:
    url: str
    proc: Proc

    def token(self, app_id: str = APP_ID, **kwargs: Any) -> str:
        return mint_app_check_token(self.url, app_id, **kwargs)

    def stop(self) -> None:
        stop_all([self.proc])


def start_issuer(name: str) -> Issuer:
    (port,) = free_ports(1)
    argv = [sys.executable, "-m", "local.issuer", "--port", str(port), "--project", PROJECT,
            "--project-number", NUMBER]  # fmt: skip
    proc = Proc(name, argv, LOGS / f"{name}.log", cwd=REPO_ROOT)
    proc.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(proc, http_answers(f"{url}/healthz", ok_only=True), 30, "answering /healthz")
    except Exception:
        stop_all([proc])
        raise
    return Issuer(url, proc)


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    started = start_issuer("issuer")
    try:
        yield started
    finally:
        started.stop()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def settings_for(jwks_url: str, mode: str = "enforce") -> Settings:
    return Settings(
        project=PROJECT,
        uploads_bucket="u",
        assets_bucket="a",
        app_check=mode,
        project_number=NUMBER,
        app_check_jwks_url=jwks_url,
    )


@pytest.fixture
def verifier(issuer: Issuer) -> AppCheckVerifier:
    return AppCheckVerifier(settings_for(f"{issuer.url}/appcheck/jwks"))


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def refused(verifier: AppCheckVerifier, token: str) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as info:
        verifier.verify(token)
    assert info.value.code == "invalid_app_check" and info.value.status == 401
    return info.value


def counting(cache: CertCache) -> list[int]:
    calls: list[int] = []
    real_get = cache.session.get

    def counting_get(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real_get(*args, **kwargs)

    cache.session.get = counting_get  # type: ignore[method-assign]
    return calls


# --- the issuer's side ------------------------------------------------------------


def test_the_issuer_serves_a_jwks_with_cache_control(issuer: Issuer) -> None:
    resp = requests.get(f"{issuer.url}/appcheck/jwks", timeout=5)
    (jwk,) = resp.json()["keys"]
    assert set(jwk) == {"kid", "kty", "alg", "n", "e", "use"}
    assert (jwk["kty"], jwk["alg"], jwk["use"]) == ("RSA", "RS256", "sig")
    assert f"max-age={JWKS_MAX_AGE_S}" in resp.headers["Cache-Control"]


def test_the_issuer_mints_app_check_claims_for_its_project_number(issuer: Issuer) -> None:
    payload = issuer.token().split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["iss"] == f"https://firebaseappcheck.googleapis.com/{NUMBER}"
    assert claims["aud"] == [f"projects/{NUMBER}", f"projects/{PROJECT}"]
    assert claims["sub"] == APP_ID and claims["exp"] - claims["iat"] == 3600


def test_the_issuer_refuses_a_mint_without_app_id(issuer: Issuer) -> None:
    resp = requests.post(f"{issuer.url}/appcheck/token", json={"ttl_s": 60}, timeout=5)
    assert resp.status_code == 400


# --- verification -----------------------------------------------------------------


def test_a_valid_token_gives_the_app_id(verifier: AppCheckVerifier, issuer: Issuer) -> None:
    assert verifier.verify(issuer.token()) == APP_ID


def test_keys_are_cached(verifier: AppCheckVerifier, issuer: Issuer) -> None:
    calls = counting(verifier.keys)
    for _ in range(5):
        verifier.verify(issuer.token())
    assert len(calls) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"aud": [f"projects/{PROJECT}"]},
        {"aud": f"projects/{NUMBER}"},
        {"aud": ["projects/999"]},
        {"iss": "https://firebaseappcheck.googleapis.com/999"},
        {"iss": f"https://securetoken.google.com/{PROJECT}"},
        {"exp": int(time.time()) - 60},
        {"iat": int(time.time()) + 3600},
        {"exp": "later"},
        {"sub": ""},
        {"sub": ["app"]},
    ],
    ids=[
        "audience-project-id-only", "audience-not-a-list", "audience-other", "issuer-other-number",
        "issuer-securetoken", "expired", "future-iat", "string-exp", "no-app-id", "app-id-list",
    ],
)  # fmt: skip
def test_tokens_with_wrong_claims_are_refused(
    verifier: AppCheckVerifier, issuer: Issuer, change: dict[str, Any]
) -> None:
    refused(verifier, issuer.token(claims=change))


def test_an_expired_token_by_ttl_is_refused(verifier: AppCheckVerifier, issuer: Issuer) -> None:
    assert "expired" in refused(verifier, issuer.token(ttl_s=-60)).message


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "none"},
        {"alg": "HS256"},
        {"typ": None},
        {"kid": "unknown-kid"},
        {"kid": ["a"]},
        {"jku": "http://127.0.0.1:1/jwks"},
        {"jwk": {"kty": "RSA"}},
    ],
    ids=["alg-none", "alg-hs256", "no-typ", "unknown-kid", "kid-list", "jku", "jwk"],
)
def test_issuer_signed_tokens_with_a_lying_header_are_refused(
    verifier: AppCheckVerifier, issuer: Issuer, header: dict[str, Any]
) -> None:
    refused(verifier, issuer.token(header=header))


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c"], ids=["missing", "garbage", "dots"])
def test_missing_or_malformed_tokens_are_refused(verifier: AppCheckVerifier, token: str) -> None:
    refused(verifier, token)


def test_a_token_forged_with_another_key_is_refused(verifier: AppCheckVerifier, issuer: Issuer) -> None:
    (jwk,) = fetch_jwks(issuer.url)["keys"]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused(verifier, encode_rs256(key, jwk["kid"], app_check_claims(NUMBER, PROJECT, APP_ID)))


def test_unsigned_alg_none_is_refused(verifier: AppCheckVerifier, issuer: Issuer) -> None:
    (jwk,) = fetch_jwks(issuer.url)["keys"]
    header = b64(json.dumps({"alg": "none", "kid": jwk["kid"], "typ": "JWT"}).encode())
    refused(verifier, f"{header}.{b64(json.dumps(app_check_claims(NUMBER, PROJECT, APP_ID)).encode())}.")


def test_hs256_keyed_with_the_public_key_is_refused(verifier: AppCheckVerifier, issuer: Issuer) -> None:
    jwks = fetch_jwks(issuer.url)
    (kid, pem), *_ = jwks_public_keys(jwks).items()
    header = b64(json.dumps({"alg": "HS256", "kid": kid, "typ": "JWT"}).encode())
    signing_input = f"{header}.{b64(json.dumps(app_check_claims(NUMBER, PROJECT, APP_ID)).encode())}"
    mac = hmac.new(pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    refused(verifier, f"{signing_input}.{b64(mac)}")


def test_an_id_token_is_not_an_app_check_token(verifier: AppCheckVerifier, issuer: Issuer) -> None:
    id_token = requests.post(f"{issuer.url}/token", json={"uid": "alice"}, timeout=5).json()["id_token"]
    refused(verifier, id_token)


def test_unknown_kids_force_at_most_one_refresh(verifier: AppCheckVerifier, issuer: Issuer) -> None:
    calls = counting(verifier.keys)
    for i in range(50):
        refused(verifier, issuer.token(header={"kid": f"made-up-{i}"}))
    assert len(calls) <= 2


# --- when the JWKS endpoint is down -----------------------------------------------


def test_cached_keys_keep_verifying_when_the_endpoint_goes_down() -> None:
    own = start_issuer("issuer-stopped")
    clock = FakeClock()
    try:
        url = f"{own.url}/appcheck/jwks"
        cache = CertCache(
            url, parse=jwks_public_keys, default_max_age_s=JWKS_MAX_AGE_S, clock=clock, timeout_s=1
        )
        verifier = AppCheckVerifier(settings_for(url), cache)
        tokens = [own.token() for _ in range(3)]
        assert verifier.verify(tokens[0]) == APP_ID
    finally:
        own.stop()
    calls = counting(cache)
    clock.now += JWKS_MAX_AGE_S + 1  # the keys are stale: a refresh is due, and fails
    for token in tokens * 10:
        assert verifier.verify(token) == APP_ID
    assert len(calls) == 1


def test_no_keys_and_the_endpoint_down_is_auth_unavailable() -> None:
    (port,) = free_ports(1)  # nothing listens there
    url = f"http://127.0.0.1:{port}/appcheck/jwks"
    cache = CertCache(url, parse=jwks_public_keys, timeout_s=1)
    calls = counting(cache)
    verifier = AppCheckVerifier(settings_for(url), cache)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = encode_rs256(key, "some-kid", app_check_claims(NUMBER, PROJECT, APP_ID))
    for _ in range(20):
        with pytest.raises(Unavailable) as info:
            verifier.verify(token)
        assert info.value.code == "auth_unavailable" and info.value.status == 503
    assert len(calls) == 1


# --- modes --------------------------------------------------------------------------


def test_off_never_looks_at_the_token(issuer: Issuer) -> None:
    verifier = AppCheckVerifier(settings_for("http://127.0.0.1:1/never", mode="off"))
    assert verifier.check(None) is None and verifier.check("garbage") is None


def test_monitor_logs_what_enforce_would_refuse(issuer: Issuer, caplog: pytest.LogCaptureFixture) -> None:
    verifier = AppCheckVerifier(settings_for(f"{issuer.url}/appcheck/jwks", mode="monitor"))
    assert verifier.check(issuer.token()) == APP_ID
    with caplog.at_level(logging.WARNING, logger="pixme.adapters.appcheck"):
        assert verifier.check(None) is None
        assert verifier.check(issuer.token(ttl_s=-60)) is None
    assert [r.getMessage().split(":")[1].strip() for r in caplog.records] == ["invalid_app_check"] * 2


def test_enforce_refuses_a_missing_token(verifier: AppCheckVerifier, issuer: Issuer) -> None:
    assert verifier.check(issuer.token()) == APP_ID
    with pytest.raises(Unauthenticated) as info:
        verifier.check(None)
    assert info.value.code == "invalid_app_check"


def test_a_project_number_is_required() -> None:
    with pytest.raises(ConfigError):
        AppCheckVerifier(settings_for("http://x").replace(project_number="my-project"))


def test_off_needs_no_project_number() -> None:
    off = settings_for("http://x", mode="off").replace(project_number="")
    assert AppCheckVerifier(off).check("anything") is None
