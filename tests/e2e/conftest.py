"""The whole local stack, started once for the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.stack import Stack

# Model aliases that route to the renderer's fault injection, so outcomes can be
# checked end to end through the real functions.
MODELS = (
    "flash=gemini-3.1-flash-image,"
    "busy=gemini-3.1-flash-image@429,"
    "retired=gemini-2.0-flash-exp,"
    "unsafe=gemini-3.1-flash-image@image_safety"
)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    with Stack(env_overrides={"PIXME_MODELS": MODELS}) as running:
        yield running


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The storage audit runs after every other test, so it audits what they all left."""
    items.sort(key=lambda item: item.module.__name__.endswith("test_storage_audit") if item.module else False)
