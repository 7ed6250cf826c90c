"""A durable stack's stores come back from an outage with what they held, and
clients made before it carry on (what `make load` relies on)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from local.stack import Stack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def durable() -> Iterator[Stack]:
    logs = ROOT / "out" / "stack" / "test-durable"
    with Stack(components=["firestore", "storage"], log_dir=logs, quiet=True, durable=True) as stack:
        yield stack


def test_firestore_comes_back_with_its_documents_and_its_clients_reconnect(durable: Stack) -> None:
    db = durable.firestore_client()
    db.collection("outage").document("before").set({"n": 1})
    db.collection("outage").document("before").collection("turns").document("t1").set({"n": 2})
    before = durable.firestore_calls()
    down = durable.restart_firestore(down_s=0.5)
    assert down >= 0.5
    # The same client, through the gate again: its data survived the export and import.
    assert db.collection("outage").document("before").get().to_dict() == {"n": 1}
    assert [d.id for d in db.collection("outage").document("before").collection("turns").stream()] == ["t1"]
    db.collection("outage").document("after").set({"n": 3})
    counted = durable.firestore_calls() - before
    assert counted["BatchGetDocuments"] >= 1 and counted["RunQuery"] >= 1 and counted["Commit"] >= 1
    # A direct client (not counted at the gate) sees the same database.
    direct = durable.firestore_client(direct=True)
    assert direct.collection("outage").document("after").get().to_dict() == {"n": 3}
    assert durable.firestore_calls() - before == counted
    assert not list((ROOT / "out" / "stack" / "test-durable").glob("firestore-export-*"))  # tidied


def test_storage_comes_back_with_its_objects_generations_and_metadata(durable: Stack) -> None:
    gcs = durable.storage_client()
    blob = gcs.bucket(durable.assets_bucket).blob("outage/a.png")
    blob.metadata = {"owner": "alice"}
    blob.upload_from_string(b"\x89PNG kept", content_type="image/png", if_generation_match=0)
    generation = blob.generation
    durable.restart_storage(down_s=0.5)
    again = gcs.bucket(durable.assets_bucket).get_blob("outage/a.png")
    assert again is not None and again.generation == generation and again.metadata == {"owner": "alice"}
    assert again.download_as_bytes() == b"\x89PNG kept"
    from google.api_core.exceptions import PreconditionFailed

    with pytest.raises(PreconditionFailed):  # create-only still holds: the object is there
        gcs.bucket(durable.assets_bucket).blob("outage/a.png").upload_from_string(b"x", if_generation_match=0)


def test_only_a_durable_stack_can_restart_its_stores() -> None:
    stack = Stack(components=["firestore", "storage"], quiet=True)
    with pytest.raises(RuntimeError, match="durable"):
        stack.restart_storage()
    with pytest.raises(RuntimeError, match="durable"):
        stack.restart_firestore()
    with pytest.raises(ValueError, match="durable needs firestore and storage"):
        Stack(components=["storage"], durable=True)
