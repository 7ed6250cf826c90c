"""Settings from the environment and validation of API request bodies."""

from __future__ import annotations

import pytest

from fakes import settings
from pixme.api import EditRequest, GenerateRequest
from pixme.config import ENV_VARS, Settings
from pixme.errors import ConfigError, InvalidRequest

REQUIRED = {"GOOGLE_CLOUD_PROJECT": "p", "PIXME_UPLOADS_BUCKET": "u", "PIXME_ASSETS_BUCKET": "a"}


def test_missing_settings_are_named() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"GOOGLE_CLOUD_PROJECT": "p"})
    assert "PIXME_UPLOADS_BUCKET" in caught.value.message
    assert "PIXME_ASSETS_BUCKET" in caught.value.message


def test_defaults_and_overrides() -> None:
    s = Settings.from_env(REQUIRED)
    assert s.model == "gemini-3.1-flash-image" and s.models == {"default": s.model}
    assert s.issuer == "https://securetoken.google.com/p"
    s = Settings.from_env({**REQUIRED, "PIXME_MODELS": "flash=m1, pro=m2", "PIXME_RETENTION_DAYS": "7"})
    assert s.models == {"flash": "m1", "pro": "m2"} and s.retention_days == 7


@pytest.mark.parametrize(
    "env",
    [
        {"PIXME_RETENTION_DAYS": "soon"},
        {"PIXME_RETENTION_DAYS": "0"},
        {"PIXME_MODELS": "flash"},
        {"PIXME_MODEL_TIMEOUT_S": "100", "PIXME_MODEL_DEADLINE_S": "50"},
    ],
)
def test_bad_settings_fail_fast(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Settings.from_env({**REQUIRED, **env})


def test_every_setting_read_is_declared() -> None:
    import inspect

    from pixme import config

    source = inspect.getsource(config.Settings.from_env)
    import re

    read = set(re.findall(r'"((?:PIXME|GOOGLE)_[A-Z_]+)"', source))
    assert read == set(ENV_VARS)


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"style": "comics"}, "missing_field", "upload_id"),
        ({"upload_id": "u1"}, "missing_field", "style"),
        ({"upload_id": "../x", "style": "comics"}, "invalid_field", "upload_id"),
        ({"upload_id": "u1", "style": "comics", "prompt": "x" * 501}, "field_too_long", "prompt"),
        ({"upload_id": "u1", "style": "comics", "aspect_ratio": "7:1"}, "invalid_field", "aspect_ratio"),
        ({"upload_id": "u1", "style": "comics", "model": "ultra"}, "invalid_field", "model"),
        ({"upload_id": 5, "style": "comics"}, "invalid_field", "upload_id"),
    ],
)
def test_generate_request_errors_name_the_field(body: dict, code: str, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidRequest) as caught:
        GenerateRequest.parse(body, settings())
    assert caught.value.code == code and caught.value.details["field"] == field


def test_closed_sets_list_the_allowed_values() -> None:
    with pytest.raises(InvalidRequest) as caught:
        GenerateRequest.parse({"upload_id": "u1", "style": "vaporwave"}, settings())
    assert caught.value.code == "unknown_style" and "manga" in caught.value.details["allowed"]
    with pytest.raises(InvalidRequest) as caught:
        GenerateRequest.parse({"upload_id": "u1", "style": "comics", "model": "x"}, settings())
    assert caught.value.details["allowed"] == ["flash", "pro"]


def test_model_alias_resolves_through_the_allowlist() -> None:
    req = GenerateRequest.parse({"upload_id": "u1", "style": "manga", "model": "pro"}, settings())
    assert req.model == "gemini-3-pro-image"


def test_edit_request_needs_an_instruction() -> None:
    with pytest.raises(InvalidRequest) as caught:
        EditRequest.parse({"session_id": "s_1", "instruction": "  "}, settings())
    assert caught.value.details["field"] == "instruction"
    req = EditRequest.parse(
        {"session_id": "s_1", "instruction": "add glasses", "from_turn": "t_1"}, settings()
    )
    assert req.from_turn == "t_1"


def test_the_readme_documents_every_setting() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [name for name in ENV_VARS if f"`{name}`" not in readme]
    assert missing == []
