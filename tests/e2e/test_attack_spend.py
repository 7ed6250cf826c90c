"""Spend under concurrency, through the local stack: one user firing eight
generations at once against a daily quota of three gets exactly three."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from local.app import AppClient
from local.stack import Stack
from samples import SELFIE

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    env = {"PIXME_DAILY_GENERATIONS": "3", "PIXME_USER_MAX_IN_FLIGHT": "8", "PIXME_DAILY_EDITS": "3"}
    with Stack(env_overrides=env, log_dir=ROOT / "out" / "stack" / "test-spend", quiet=True) as s:
        yield s


def test_eight_concurrent_generations_against_a_quota_of_three_give_exactly_three(stack: Stack) -> None:
    app = AppClient(stack.functions, stack.token(f"burst{uuid.uuid4().hex[:8]}"))
    upload_id = app.upload(SELFIE, "image/png")
    assert app.wait_upload(upload_id)["status"] == "ready"

    def generate(_: int) -> requests.Response:
        return app.request("POST", "generate", "/", {"upload_id": upload_id, "style": "pixel_art"})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(generate, range(8)))
    outcomes = Counter((a.status_code, a.json().get("error", {}).get("code")) for a in answers)
    assert outcomes == {(201, None): 3, (429, "quota_exceeded"): 5}, outcomes
    for answer in answers:
        assert answer.headers["RateLimit-Limit"] == "3"
        assert int(answer.headers["RateLimit-Reset"]) > 0
    remaining = sorted(a.headers["RateLimit-Remaining"] for a in answers if a.status_code == 201)
    assert remaining == ["0", "1", "2"]
    usage = app.call("GET", "account", "/usage")
    assert usage["generations"] == {"limit": 3, "used": 3, "remaining": 0}
    # Edits have their own quota, with the same guarantee.
    session_id = next(a.json()["session_id"] for a in answers if a.status_code == 201)

    def edit(_: int) -> requests.Response:
        return app.request("POST", "edit", "/", {"session_id": session_id, "instruction": "add glasses"})

    with ThreadPoolExecutor(6) as pool:
        edits = Counter(r.status_code for r in pool.map(edit, range(6)))
    assert edits == {201: 3, 429: 3}, edits
