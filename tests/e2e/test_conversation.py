"""Conversation features over HTTP: idempotent retries, stale heads, model outcomes."""

from __future__ import annotations

import uuid

import pytest
import requests
from test_flow import SELFIE, App

from local.stack import Stack


@pytest.fixture(scope="module")
def ready_user(stack: Stack) -> App:
    app = App(stack, f"conv{uuid.uuid4().hex[:8]}")
    app.upload_named(SELFIE.read_bytes(), "me")
    assert app.wait_named("me")["status"] == "ready"
    return app


def test_a_retry_with_the_same_idempotency_key_is_not_paid_twice(ready_user: App) -> None:
    body = {"upload_id": ready_user.ids["me"], "style": "manga"}
    headers = {**ready_user.headers, "Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    url = ready_user.url("generate")
    first = requests.post(url, json=body, headers=headers, timeout=60)
    again = requests.post(url, json=body, headers=headers, timeout=60)
    assert first.status_code == 201 and again.status_code == 201
    assert again.json()["session_id"] == first.json()["session_id"] and again.json()["replayed"]
    assert requests.get(again.json()["image_url"], timeout=10).status_code == 200
    listed = [s["session_id"] for s in ready_user.get("/").json()["sessions"]]
    assert listed.count(first.json()["session_id"]) == 1
    other = requests.post(url, json={**body, "style": "comics"}, headers=headers, timeout=60)
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"


def test_if_head_turns_a_stale_edit_into_409(ready_user: App) -> None:
    first = ready_user.post("generate", {"upload_id": "me", "style": "sketch"}).json()
    sid = first["session_id"]
    assert ready_user.post("edit", {"session_id": sid, "instruction": "add glasses"}).status_code == 201
    stale = ready_user.post("edit", {"session_id": sid, "instruction": "darker", "if_head": first["turn_id"]})
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "stale_head" and stale.json()["error"]["head_turn_id"]


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [
        ("busy", 429, "model_rate_limited"),
        ("retired", 502, "model_not_found"),
        ("unsafe", 422, "image_safety"),
    ],
)
def test_model_outcomes_reach_the_app_as_stable_errors(
    ready_user: App, model: str, status: int, code: str
) -> None:
    resp = ready_user.post("generate", {"upload_id": "me", "style": "comics", "model": model})
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code
    if status == 429:
        assert int(resp.headers["Retry-After"]) >= 1
    assert "Traceback" not in resp.text


def test_an_edit_the_model_cannot_do_is_answered_in_words(ready_user: App) -> None:
    first = ready_user.post("generate", {"upload_id": "me", "style": "comics"}).json()
    resp = ready_user.post(
        "edit", {"session_id": first["session_id"], "instruction": "make her fly to the moon"}
    )
    assert resp.status_code == 422
    error = resp.json()["error"]
    assert error["code"] == "text_only" and error["message"]
    detail = ready_user.get(f"/{first['session_id']}").json()
    assert detail["turn_count"] == 1  # nothing was appended


def test_a_style_pack_answers_each_style_and_a_session_pages_its_turns(ready_user: App) -> None:
    resp = ready_user.post("generate", {"upload_id": "me", "styles": ["comics", "manga", "pop_art"]})
    assert resp.status_code == 201, resp.text
    results = resp.json()["results"]
    assert [r["style"] for r in results] == ["comics", "manga", "pop_art"]
    assert all(requests.get(r["image_url"], timeout=10).status_code == 200 for r in results)
    sid = results[0]["session_id"]
    made = [results[0]["turn_id"]]
    for instruction in ("add glasses", "make it warmer", "make it cooler"):
        edit = ready_user.post("edit", {"session_id": sid, "instruction": instruction})
        assert edit.status_code == 201, edit.text
        made.append(edit.json()["turn_id"])
    first = ready_user.get(f"/{sid}?limit=2").json()
    assert [t["turn_id"] for t in first["turns"]] == made[:2] and first["next_page_token"]
    rest = ready_user.get(f"/{sid}?limit=2&page_token={first['next_page_token']}").json()
    assert [t["turn_id"] for t in rest["turns"]] == made[2:] and rest["next_page_token"] is None
    newest = ready_user.get(f"/{sid}?order=newest&limit=1").json()
    assert [t["turn_id"] for t in newest["turns"]] == made[-1:]
    bad = ready_user.get(f"/{sid}?limit=500")
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "limit"
    too_many = ready_user.post("generate", {"upload_id": "me", "styles": ["comics"] * 7})
    assert too_many.status_code == 400 and too_many.json()["error"]["field"] == "styles"
