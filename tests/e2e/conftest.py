"""The whole local stack, started once for the end-to-end tests.

It calls the offline renderer in Vertex AI mode, as production calls Vertex
AI; test_model_modes.py runs the model paths again in Developer API mode.
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


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    with Stack(
        env_overrides={"PIXME_MODELS": MODELS}, caller_env=offline_env(), model_mode="vertex"
    ) as running:
        yield running


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The storage audit runs after every other test, so it audits what they all left."""
    items.sort(key=lambda item: item.module.__name__.endswith("test_storage_audit") if item.module else False)
