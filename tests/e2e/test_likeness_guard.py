"""PIXME_IDENTITY_CHECK=guard through the real functions, the offline renderer
and the real likeness measure (dlib): an honest avatar passes as the same
person; one whose face the renderer swaps (its `identity_drift` fault) is
asked for again and, drifting again, comes back flagged."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.app import AppClient
from local.stack import MODEL_BACKEND_VARS, Stack
from samples import SELFIE

ROOT = Path(__file__).resolve().parents[2]
MODELS = "flash=gemini-nano-banana-2.1,drift=gemini-nano-banana-2.1@identity_drift"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    env = {"PIXME_MODELS": MODELS, "PIXME_IDENTITY_CHECK": "guard"}
    log_dir = ROOT / "out" / "stack" / "test-likeness"
    # Without the caller's own model backend: the renderer answers.
    caller = {k: v for k, v in os.environ.items() if k not in MODEL_BACKEND_VARS}
    with Stack(env_overrides=env, caller_env=caller, log_dir=log_dir, quiet=True) as running:
        yield running


def test_an_honest_avatar_passes_and_a_swapped_face_is_retried_then_flagged(stack: Stack) -> None:
    app = AppClient(stack.functions, stack.token(f"likeness{uuid.uuid4().hex[:8]}"))
    upload_id = app.upload(SELFIE, "image/png")
    assert app.wait_upload(upload_id)["status"] == "ready"

    honest = app.call("POST", "generate", "/", {"upload_id": upload_id, "style": "comics", "model": "flash"})
    identity = honest["identity"]
    assert identity["same_person"] is True and identity["retried"] is False and identity["flagged"] is False
    assert identity["distance"] < identity["threshold"] == 0.68

    edit = app.call("POST", "edit", "/", {"session_id": honest["session_id"], "instruction": "add glasses"})
    assert edit["identity"]["same_person"] is True and edit["identity"]["flagged"] is False

    drifted = app.call("POST", "generate", "/", {"upload_id": upload_id, "style": "comics", "model": "drift"})
    identity = drifted["identity"]
    assert identity["retried"] is True and identity["flagged"] is True and identity["same_person"] is False
    assert identity["distance"] > identity["threshold"]
    # The guard's second call is an image like any other: two units of the day's quota.
    usage = app.call("GET", "account", "/usage")
    assert usage["generations"]["used"] == 3
