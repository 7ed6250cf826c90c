"""The whole local stack for the end-to-end tests, started once per model mode:
the suite runs against the offline renderer in Vertex AI mode (as production
calls Vertex AI: images by gs:// reference, a bearer token) and again in
Developer API mode (an API key, every image inline).

pytest runs every test of one mode before it starts the other's stack, in
file order, so test_storage_audit.py (last by name) audits each stack after
everything else ran against it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from local.stack import MODEL_BACKEND_VARS, Stack

# Model aliases that route to the renderer's fault injection, so outcomes can be
# checked end to end through the real functions. `fallback` lists a retired id
# first: the next one answers.
MODELS = (
    "flash=gemini-nano-banana-2.1,"
    "busy=gemini-nano-banana-2.1@429,"
    "retired=gemini-2.0-flash-exp,"
    "unsafe=gemini-nano-banana-2.1@image_safety,"
    "fallback=gemini-2.0-flash-exp|gemini-nano-banana-2.1"
)


def offline_env() -> dict[str, str]:
    """The caller's environment without a model backend of their own: a key or
    Vertex AI in the developer's shell must not send the tests to Google."""
    return {k: v for k, v in os.environ.items() if k not in MODEL_BACKEND_VARS}


@pytest.fixture(scope="session", params=["vertex", "developer"])
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    with Stack(
        env_overrides={"PIXME_MODELS": MODELS}, caller_env=offline_env(), model_mode=request.param
    ) as running:
        yield running
