"""The whole local stack, started once for the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.stack import Stack


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    with Stack() as running:
        yield running
