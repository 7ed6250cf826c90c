"""CORS at the edge: off unless PIXME_CORS_ORIGINS lists an origin, and then
for exactly that origin, through the real entry points in process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import functions_framework
import pytest
from flask import Flask
from flask.testing import FlaskClient

from pixme import wiring
from pixme.config import ENV_VARS, Settings
from pixme.errors import ConfigError

SOURCE = Path(__file__).resolve().parents[2] / "functions" / "main.py"
ENV = {"GOOGLE_CLOUD_PROJECT": "p", "PIXME_UPLOADS_BUCKET": "u", "PIXME_ASSETS_BUCKET": "a"}
PAGE = "http://127.0.0.1:8080"
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}

_apps: dict[str, Flask] = {}


def client(target: str) -> FlaskClient:
    if target not in _apps:
        _apps[target] = functions_framework.create_app(target, source=str(SOURCE))  # type: ignore[no-untyped-call]
    return _apps[target].test_client()


@pytest.fixture
def origins(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """The edge with a clean environment; set PIXME_CORS_ORIGINS through it."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    wiring.settings.cache_clear()
    yield monkeypatch
    wiring.settings.cache_clear()


def test_off_by_default(origins: pytest.MonkeyPatch) -> None:
    assert Settings.from_env(ENV).cors_origins == ()
    pre = client("generate").options("/", headers={"Origin": PAGE, **PREFLIGHT})
    assert pre.status_code == 405 and "Access-Control-Allow-Origin" not in pre.headers
    resp = client("generate").post("/", json={}, headers={"Origin": PAGE})
    assert resp.status_code == 401 and "Access-Control-Allow-Origin" not in resp.headers


def test_a_listed_origin_gets_its_preflight_and_headers(origins: pytest.MonkeyPatch) -> None:
    origins.setenv("PIXME_CORS_ORIGINS", f"{PAGE}, https://play.example")
    pre = client("uploads").options("/u_1", headers={"Origin": PAGE, **PREFLIGHT})
    assert pre.status_code == 204 and pre.data == b""
    assert pre.headers["Access-Control-Allow-Origin"] == PAGE
    assert pre.headers["Access-Control-Allow-Methods"] == "GET, DELETE"  # those of /{upload_id}
    assert "Authorization" in pre.headers["Access-Control-Allow-Headers"]
    assert pre.headers["Vary"] == "Origin"
    # Answers, refusals included, say who may read them and which headers.
    resp = client("generate").post("/", json={}, headers={"Origin": "https://play.example"})
    assert resp.status_code == 401
    assert resp.headers["Access-Control-Allow-Origin"] == "https://play.example"
    assert "RateLimit-Remaining" in resp.headers["Access-Control-Expose-Headers"]


def test_other_origins_get_nothing(origins: pytest.MonkeyPatch) -> None:
    origins.setenv("PIXME_CORS_ORIGINS", PAGE)
    for other in ("http://127.0.0.1:8081", "https://127.0.0.1:8080", "null", f"{PAGE}.evil.example"):
        pre = client("edit").options("/", headers={"Origin": other, **PREFLIGHT})
        assert pre.status_code == 405 and "Access-Control-Allow-Origin" not in pre.headers, other
        resp = client("edit").post("/", json={}, headers={"Origin": other})
        assert "Access-Control-Allow-Origin" not in resp.headers, other
    # Without Access-Control-Request-Method an OPTIONS is no preflight: 405.
    plain = client("edit").options("/", headers={"Origin": PAGE})
    assert plain.status_code == 405 and plain.headers["Access-Control-Allow-Origin"] == PAGE


@pytest.mark.parametrize(
    "value", ["*", "http://a.example/", "http://a.example/path", "a.example", "ftp://a.example"]
)
def test_only_exact_origins_are_accepted(value: str) -> None:
    with pytest.raises(ConfigError, match="PIXME_CORS_ORIGINS"):
        Settings.from_env({**ENV, "PIXME_CORS_ORIGINS": value})


def test_a_misconfigured_setting_is_the_usual_clean_500(origins: pytest.MonkeyPatch) -> None:
    origins.setenv("PIXME_CORS_ORIGINS", "*")
    pre = client("generate").options("/", headers={"Origin": PAGE, **PREFLIGHT})
    assert pre.status_code == 500 and pre.json is not None
    assert pre.json["error"]["code"] == "misconfigured"
