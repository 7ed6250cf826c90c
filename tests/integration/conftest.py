"""Real emulators for adapter tests: Firestore, fake-gcs-server and the token issuer."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.stack import Stack
from pixme.config import Settings

LOGS = Path(__file__).resolve().parents[2] / "out" / "stack" / "test-adapters"


@pytest.fixture(scope="session")
def emulators() -> Iterator[Stack]:
    stack = Stack(components=["firestore", "storage", "pubsub", "issuer"], log_dir=LOGS, quiet=True)
    with stack:
        saved = dict(os.environ)
        # The Google clients read emulator addresses from the environment when built.
        os.environ.update(stack.client_env())
        try:
            yield stack
        finally:
            os.environ.clear()
            os.environ.update(saved)


@pytest.fixture
def settings(emulators: Stack) -> Settings:
    assert emulators.issuer_url and emulators.storage_url and emulators.signing_key_file
    return Settings(
        project=emulators.project,
        uploads_bucket=emulators.uploads_bucket,
        assets_bucket=emulators.assets_bucket,
        auth_certs_url=f"{emulators.issuer_url}/certs",
        signing_key_file=emulators.signing_key_file,
        public_storage_url=emulators.storage_url,
    )
