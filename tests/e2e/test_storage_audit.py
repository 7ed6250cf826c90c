"""Nothing left behind: after a run of replacements, rejections, deletions,
duplicate and concurrent deliveries — and after every other end-to-end test,
since this module runs last (see conftest.py) — every object in both buckets
is named by exactly one document, and every named object exists."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests
from test_flow import App

from local.audit import audit
from local.load import finalized_event
from local.stack import Stack
from samples import CAT, SELFIE, two_faces


def redeliver(stack: Stack, name: str, times: int) -> None:
    """The same finalized event `times` times at once, as Eventarc may deliver it."""
    event = finalized_event(stack, name)
    if event is None:
        return  # already processed and deleted: a redelivery would find nothing either
    resource, headers = event

    def post(_: int) -> int:
        url = stack.functions["on_upload"]
        return requests.post(url, data=json.dumps(resource), headers=headers, timeout=60).status_code

    with ThreadPoolExecutor(times) as pool:
        list(pool.map(post, range(times)))


def test_every_object_is_named_by_exactly_one_document(stack: Stack) -> None:
    app = App(stack, f"audit{uuid.uuid4().hex[:8]}")
    pictures = [SELFIE, CAT, two_faces(), b"not a picture at all", SELFIE]
    tickets = []
    for data in pictures:
        ticket = app.start_upload("image/jpeg")
        assert app.put(ticket, data).status_code == 200
        tickets.append(ticket)
        redeliver(stack, f"uploads/{app.uid}/{ticket['upload_id']}", 3)
    outcomes = [app.wait_upload(t["upload_id"])["status"] for t in tickets]
    assert outcomes == ["ready", "rejected", "rejected", "rejected", "ready"]
    # A second write to a finished upload, and a planted object.
    app.put(tickets[0], CAT)
    plant = stack.storage_client().bucket(stack.uploads_bucket).blob(f"uploads/{app.uid}/planted")
    plant.upload_from_string(SELFIE)
    # Sessions from both ready uploads, edits, then one upload deleted with its sessions.
    ready = [t["upload_id"] for t in tickets if app.upload_status(t["upload_id"])["status"] == "ready"]
    sessions = []
    for upload_id in ready:
        gen = app.post("generate", {"upload_id": upload_id, "style": "sketch"})
        assert gen.status_code == 201, gen.text
        sessions.append(gen.json()["session_id"])
    with ThreadPoolExecutor(2) as pool:  # PIXME_USER_MAX_IN_FLIGHT
        edits = list(
            pool.map(
                lambda i: app.post("edit", {"session_id": sessions[0], "instruction": "add glasses"}),
                range(2),
            )
        )
    assert all(e.status_code == 201 for e in edits)
    stale = app.post("edit", {"session_id": sessions[1], "instruction": "darker", "if_head": "t_stale"})
    assert stale.status_code == 409
    deleted = app.request("DELETE", "uploads", f"/{ready[0]}")
    assert deleted.status_code == 200 and deleted.json()["sessions_deleted"] == 1
    # A pending upload never sent, and one deleted before it was sent.
    app.start_upload("image/png")
    never = app.start_upload("image/png")
    assert app.request("DELETE", "uploads", f"/{never['upload_id']}").status_code == 200
    assert app.put(never, SELFIE).status_code == 200  # the URL still works; the trigger deletes it

    db, gcs = stack.firestore_client(), stack.storage_client()
    buckets = (stack.uploads_bucket, stack.assets_bucket)
    mine = audit(db, gcs, buckets, prefix=app.uid)
    assert mine.ok, mine.summary()
    assert mine.objects == 3  # the second ready upload's two copies and its session's image
    everything = audit(db, gcs, buckets)
    assert everything.ok, everything.summary()
    print("\n" + everything.summary())
