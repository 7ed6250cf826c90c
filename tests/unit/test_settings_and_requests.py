"""Settings from the environment and validation of API request bodies."""

from __future__ import annotations

from pathlib import Path

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
    assert s.model == "gemini-nano-banana-2.1" and s.models == {"default": s.model}
    assert s.issuer == "https://securetoken.google.com/p"
    s = Settings.from_env({**REQUIRED, "PIXME_MODELS": "flash=m1, pro=m2", "PIXME_RETENTION_DAYS": "7"})
    assert s.models == {"flash": "m1", "pro": "m2"} and s.retention_days == 7


def test_the_model_backend_defaults_to_the_developer_api_and_names_the_key() -> None:
    s = Settings.from_env(REQUIRED)
    assert (s.vertexai, s.location, s.gemini_base_url, s.vertex_base_url) == (False, "global", "", "")
    problem = s.model_backend_problem()
    assert problem and "GEMINI_API_KEY" in problem and "GOOGLE_GENAI_USE_VERTEXAI" in problem


def test_vertex_ai_settings_come_from_the_sdks_own_variables() -> None:
    s = Settings.from_env(
        {
            **REQUIRED,
            "GOOGLE_GENAI_USE_VERTEXAI": "True",
            "GOOGLE_CLOUD_LOCATION": "us-central1",
            "GOOGLE_VERTEX_BASE_URL": "http://127.0.0.1:8089",
            "GOOGLE_GEMINI_BASE_URL": "http://127.0.0.1:8090",
        }
    )
    assert s.vertexai and s.location == "us-central1" and s.model_backend_problem() is None
    assert (s.vertex_base_url, s.gemini_base_url) == ("http://127.0.0.1:8089", "http://127.0.0.1:8090")


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"GEMINI_API_KEY": "gemini-key-1"}, "gemini-key-1"),
        ({"GOOGLE_API_KEY": "google-key-2"}, "google-key-2"),
        # Both set: GOOGLE_API_KEY wins, as in the SDK.
        ({"GEMINI_API_KEY": "gemini-key-1", "GOOGLE_API_KEY": "google-key-2"}, "google-key-2"),
    ],
)
def test_the_api_key_is_read_like_the_sdk_and_never_shown(env: dict[str, str], key: str) -> None:
    s = Settings.from_env({**REQUIRED, **env})
    assert s.api_key == key and s.model_backend_problem() is None
    assert key not in repr(s)


def test_vertex_without_a_project_names_it() -> None:
    s = Settings(project="", uploads_bucket="u", assets_bucket="a", vertexai=True)
    assert "GOOGLE_CLOUD_PROJECT" in (s.model_backend_problem() or "")


def test_model_fallbacks_keep_the_alias_options() -> None:
    s = Settings.from_env(
        {
            **REQUIRED,
            "PIXME_MODELS": "flash=gemini-nano-banana-2.1|gemini-3.1-flash-image;cost=2;requires=plan:pro",
        }
    )
    alias = s.alias("flash")
    assert alias.model_id == "gemini-nano-banana-2.1|gemini-3.1-flash-image"
    assert alias.cost == 2 and alias.requires == ("plan", "pro")
    assert s.cost_of(alias.model_id) == 2


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


@pytest.mark.parametrize(
    "env",
    [
        {"PIXME_REQUEST_STALE_S": "0"},
        {"PIXME_REQUEST_STALE_S": "-5"},
        {"PIXME_REQUEST_STALE_S": "3 min"},
        {"PIXME_REQUEST_STALE_S": "90"},  # the default model deadline: a live call could be taken over
        {"PIXME_REQUEST_STALE_S": "60", "PIXME_MODEL_TIMEOUT_S": "30"},
        {"PIXME_REQUEST_STALE_S": "200", "PIXME_MODEL_DEADLINE_S": "300"},
    ],
)
def test_request_stale_s_is_positive_and_above_the_model_deadline(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**REQUIRED, **env})
    assert "PIXME_REQUEST_STALE_S" in caught.value.message


@pytest.mark.parametrize(
    ("env", "stale_s"),
    [
        ({}, 180),
        ({"PIXME_REQUEST_STALE_S": "5", "PIXME_MODEL_TIMEOUT_S": "1", "PIXME_MODEL_DEADLINE_S": "4"}, 5),
        ({"PIXME_REQUEST_STALE_S": "91"}, 91),
        # Unset, it stays above a longer deadline (the function's timeout must be longer still).
        ({"PIXME_MODEL_DEADLINE_S": "300"}, 360),
        ({"PIXME_MODEL_TIMEOUT_S": "200"}, 260),
    ],
)
def test_request_stale_s_defaults_above_the_model_deadline(env: dict[str, str], stale_s: int) -> None:
    assert Settings.from_env({**REQUIRED, **env}).request_stale_s == stale_s


def test_a_bad_request_stale_s_answers_misconfigured(monkeypatch: pytest.MonkeyPatch) -> None:
    from test_cors import ENV, client

    from pixme import wiring

    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in {**ENV, "PIXME_REQUEST_STALE_S": "60"}.items():
        monkeypatch.setenv(name, value)
    wiring.settings.cache_clear()
    try:
        resp = client("generate").post("/", json={"upload_id": "u_1", "style": "comics"})
    finally:
        wiring.settings.cache_clear()
    assert resp.status_code == 500 and resp.json is not None
    assert resp.json["error"]["code"] == "misconfigured"


def test_every_setting_is_declared_once_and_the_readme_table_is_made_from_it() -> None:
    from local.docs import rendered
    from pixme.config import settings_table

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert rendered(readme) == readme, "README.md's settings table drifted: run `make docs`"
    table = settings_table()
    for name in ENV_VARS:
        assert f"`{name}`" in table or f"`{name}` /" in table or f"/ `{name}`" in table, name
    assert len(ENV_VARS) == len(set(ENV_VARS))


def test_only_the_declared_variables_are_read() -> None:
    s = Settings.from_env({**REQUIRED, "PIXME_RETENTION_DAY": "1", "PIXME_MAX_SIDE": "300"})
    assert s.retention_days == 30 and s.max_side == 300  # a misspelt name is not a setting


def test_a_bad_value_is_named_with_what_was_given() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**REQUIRED, "PIXME_MAX_SIDE": "12", "PIXME_NO_FACE": "maybe"})
    assert "PIXME_MAX_SIDE" in caught.value.message and "'12'" in caught.value.message
    assert "PIXME_NO_FACE" in caught.value.message and "'maybe'" in caught.value.message


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
    s = settings()
    req = GenerateRequest.parse({"upload_id": "u1", "style": "manga", "model": "pro"}, s)
    assert s.alias(req.model_alias).model_id == "gemini-3-pro-image"


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
