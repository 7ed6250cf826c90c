"""Stand-in functions for the local stack's own tests (not the product's code).

on_upload records every CloudEvent delivery in Firestore: a counter per event
id (`stack_deliveries/<ce-id>`) and one document per delivery
(`stack_events/<auto id>`) with the headers, the data and the attempt number.
An object whose metadata says `fail_times: N` makes the first N deliveries of
its event fail with a 500, so the test can watch Pub/Sub redeliver.

The HTTP targets echo the request and the environment variables the stack
sets, so a test can check the wiring.
"""

from __future__ import annotations

import os

import flask
import functions_framework
from google.cloud import firestore

ECHOED_ENV_PREFIXES = ("PIXME_", "GOOGLE_", "GEMINI_", "FIRESTORE_", "STORAGE_", "PUBSUB_")

_db: firestore.Client | None = None


def _client() -> firestore.Client:
    global _db
    if _db is None:
        _db = firestore.Client(project=os.environ["GOOGLE_CLOUD_PROJECT"])
    return _db


@firestore.transactional
def _count(tx: firestore.Transaction, ref: firestore.DocumentReference) -> int:
    snap = ref.get(transaction=tx)
    n = (snap.get("count") if snap.exists else 0) + 1
    tx.set(ref, {"count": n})
    return n


@functions_framework.cloud_event
def on_upload(event) -> None:
    db = _client()
    ce_id = event["id"]
    attempt = _count(db.transaction(), db.collection("stack_deliveries").document(ce_id))
    data = event.data or {}
    db.collection("stack_events").add(
        {
            "ce_id": ce_id,
            "ce_type": event["type"],
            "ce_source": event["source"],
            "ce_subject": event.get("subject"),
            "ce_time": event.get("time"),
            "data": data,
            "attempt": attempt,
        }
    )
    fail_times = int((data.get("metadata") or {}).get("fail_times", "0"))
    if attempt <= fail_times:
        raise RuntimeError(f"failing delivery {attempt} of {fail_times} on purpose")


def _echo(target: str) -> flask.Response:
    req = flask.request
    return flask.jsonify(
        {
            "target": target,
            "method": req.method,
            "path": req.path,
            "authorization": req.headers.get("Authorization"),
            "env": {k: v for k, v in os.environ.items() if k.startswith(ECHOED_ENV_PREFIXES)},
        }
    )


@functions_framework.http
def generate(request):
    return _echo("generate")


@functions_framework.http
def edit(request):
    return _echo("edit")


@functions_framework.http
def sessions(request):
    return _echo("sessions")


@functions_framework.http
def uploads(request):
    return _echo("uploads")


@functions_framework.http
def account(request):
    return _echo("account")


@functions_framework.http
def cleanup(request):
    return _echo("cleanup")
