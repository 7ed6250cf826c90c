"""The model paths through the functions in both of google-genai's modes.

The session stack (conftest.py) runs once per mode: these checks of the wiring,
generate, edit, fallbacks and outcomes run against each, and the wiring of
caller-supplied servers is checked without starting anything.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import requests
from test_flow import SELFIE, App

from local.stack import Stack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def user(stack: Stack) -> App:
    app = App(stack, f"mode{uuid.uuid4().hex[:8]}")
    app.upload_named(SELFIE.read_bytes(), "me")
    assert app.wait_named("me")["status"] == "ready"
    return app


def test_the_functions_are_wired_to_the_renderer_in_their_mode(user: App) -> None:
    env = user.stack.env
    if user.stack.model_mode == "vertex":
        assert env["GOOGLE_GENAI_USE_VERTEXAI"] == "true"
        assert env["GOOGLE_VERTEX_BASE_URL"] == user.stack.renderer_url
        assert "GEMINI_API_KEY" not in env and "GOOGLE_GEMINI_BASE_URL" not in env
    else:
        assert env["GOOGLE_GENAI_USE_VERTEXAI"] == "false"
        assert env["GOOGLE_GEMINI_BASE_URL"] == user.stack.renderer_url and env["GEMINI_API_KEY"]


def test_generate_then_edit(user: App) -> None:
    first = user.post("generate", {"upload_id": "me", "style": "comics"})
    assert first.status_code == 201, first.text
    assert requests.get(first.json()["image_url"], timeout=10).status_code == 200
    edit = user.post("edit", {"session_id": first.json()["session_id"], "instruction": "add glasses"})
    assert edit.status_code == 201, edit.text
    assert edit.json()["parent_turn_id"] == first.json()["turn_id"]


def test_a_retired_first_choice_falls_back_to_the_next(user: App) -> None:
    resp = user.post("generate", {"upload_id": "me", "style": "manga", "model": "fallback"})
    assert resp.status_code == 201, resp.text
    assert resp.json()["model_version"].startswith("gemini-nano-banana-2.1")  # who answered
    assert "gemini-2.0-flash-exp" in user.stack.logs()["fn-generate"].read_text()  # the warning


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [
        ("busy", 429, "model_rate_limited"),
        ("retired", 502, "model_not_found"),
        ("unsafe", 422, "image_safety"),
    ],
)
def test_model_outcomes_are_the_same_stable_errors(user: App, model: str, status: int, code: str) -> None:
    resp = user.post("generate", {"upload_id": "me", "style": "comics", "model": model})
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code


# --- what `make up` passes to the functions (no processes started) -------------

BASE = {"PATH": "/usr/bin", "PIXME_MAX_SIDE": "512", "PIXME_DAILY_EDITS": "7"}


def model_env(caller: dict[str, str], renderer_url: str | None = None) -> tuple[Stack, dict[str, str]]:
    stack = Stack(caller_env={**BASE, **caller})
    stack.renderer_url = renderer_url if "renderer" in stack.components else None  # as start() sets it
    env = stack._functions_env()
    assert env["PIXME_MAX_SIDE"] == "512" and env["PIXME_DAILY_EDITS"] == "7"  # every PIXME_* passes
    return stack, env


def test_the_default_local_mode_is_vertex_against_the_renderer() -> None:
    stack, env = model_env({}, "http://127.0.0.1:9999")
    assert stack.model_mode == "vertex" and "renderer" in stack.components
    assert (
        env["GOOGLE_GENAI_USE_VERTEXAI"] == "true"
        and env["GOOGLE_VERTEX_BASE_URL"] == "http://127.0.0.1:9999"
    )
    assert env["GOOGLE_CLOUD_LOCATION"] == "global" and "GEMINI_API_KEY" not in env


def test_developer_mode_against_the_renderer_on_request() -> None:
    stack, env = model_env({"GOOGLE_GENAI_USE_VERTEXAI": "false"}, "http://127.0.0.1:9999")
    assert stack.model_mode == "developer" and "renderer" in stack.components
    assert env["GOOGLE_GEMINI_BASE_URL"] == "http://127.0.0.1:9999" and env["GEMINI_API_KEY"]


def test_a_callers_gemini_compatible_server_is_kept_in_developer_mode() -> None:
    # Dropping the base URL would send the key "test" to Google's endpoint.
    stack, env = model_env({"GEMINI_API_KEY": "test", "GOOGLE_GEMINI_BASE_URL": "http://127.0.0.1:7000"})
    assert "renderer" not in stack.components and stack.model_mode == "developer"
    assert env["GOOGLE_GEMINI_BASE_URL"] == "http://127.0.0.1:7000" and env["GEMINI_API_KEY"] == "test"
    assert env["GOOGLE_GENAI_USE_VERTEXAI"] == "false"


def test_a_callers_vertex_server_is_kept_in_vertex_mode() -> None:
    stack, env = model_env(
        {"GOOGLE_VERTEX_BASE_URL": "http://127.0.0.1:7001", "GOOGLE_CLOUD_LOCATION": "europe-west4"}
    )
    assert "renderer" not in stack.components and stack.model_mode == "vertex"
    assert (
        env["GOOGLE_GENAI_USE_VERTEXAI"] == "true"
        and env["GOOGLE_VERTEX_BASE_URL"] == "http://127.0.0.1:7001"
    )
    assert env["GOOGLE_CLOUD_LOCATION"] == "europe-west4"


def test_real_vertex_ai_uses_the_callers_project() -> None:
    stack, env = model_env({"GOOGLE_GENAI_USE_VERTEXAI": "true", "GOOGLE_CLOUD_PROJECT": "my-project"})
    assert "renderer" not in stack.components and stack.project == env["GOOGLE_CLOUD_PROJECT"] == "my-project"
    assert "GOOGLE_VERTEX_BASE_URL" not in env and "GEMINI_API_KEY" not in env
