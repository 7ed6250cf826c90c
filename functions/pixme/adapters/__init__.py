"""Adapters: the only modules that import google.*."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pixme.errors import Unavailable


@contextmanager
def unavailable_on(transient: tuple[type[BaseException], ...], code: str, message: str) -> Iterator[None]:
    """Turn a client's transient failures into our retryable Unavailable."""
    try:
        yield
    except transient as exc:
        raise Unavailable(code, message) from exc
