"""Turns Cloud Storage notifications from Pub/Sub into Eventarc's CloudEvents.

Run as `python -m local.bridge --port P --target URL`. The Pub/Sub emulator's
push subscription posts each notification fake-gcs-server published
(`{"message": {"attributes": {eventType, bucketId, objectId, ...}, "data":
base64(object JSON), "messageId": ...}, "subscription": ...}`). For
OBJECT_FINALIZE the bridge POSTs what Eventarc would deliver in production — a
binary-mode CloudEvent of type `google.cloud.storage.object.v1.finalized`
whose data is the object resource — to the target (the on_upload function),
and answers Pub/Sub with the function's outcome: 204 (ack) for a 2xx, 502/503
otherwise so that Pub/Sub redelivers, as Eventarc retries a failed function.
Other event types, and messages that can never be converted, are acked and
dropped. One log line per message.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .procs import serve_until_interrupted

FINALIZED = "google.cloud.storage.object.v1.finalized"
# Pub/Sub notification event types and the CloudEvent type Eventarc uses.
EVENT_TYPES = {
    "OBJECT_FINALIZE": FINALIZED,
    "OBJECT_DELETE": "google.cloud.storage.object.v1.deleted",
    "OBJECT_ARCHIVE": "google.cloud.storage.object.v1.archived",
    "OBJECT_METADATA_UPDATE": "google.cloud.storage.object.v1.metadataUpdated",
}
# The bridge forwards only what the production trigger subscribes to.
FORWARDED = {"OBJECT_FINALIZE"}
_STRING_FIELDS = ("generation", "metageneration", "size")


class Unconvertible(ValueError):
    """A push message that no retry can turn into a CloudEvent."""


def to_cloudevent(push: Mapping[str, Any]) -> tuple[dict[str, str], bytes] | None:
    """(headers, body) of the binary-mode CloudEvent for a Pub/Sub push body,
    or None for event types that are not forwarded."""
    message = push.get("message")
    if not isinstance(message, dict):
        raise Unconvertible("push body has no message")
    attrs = message.get("attributes") or {}
    event_type = attrs.get("eventType", "")
    if event_type not in FORWARDED:
        return None
    try:
        obj = json.loads(base64.b64decode(message.get("data") or "", validate=True))
    except (binascii.Error, ValueError) as err:
        raise Unconvertible(f"data is not base64 JSON: {err}") from None
    if not isinstance(obj, dict):
        raise Unconvertible("data is not a JSON object")
    bucket = obj.get("bucket") or attrs.get("bucketId")
    name = obj.get("name") or attrs.get("objectId")
    if not bucket or not name:
        raise Unconvertible("object has no bucket or name")
    obj["bucket"], obj["name"] = bucket, name
    if "generation" not in obj and attrs.get("objectGeneration"):
        obj["generation"] = attrs["objectGeneration"]
    # A finalize creates a new generation, whose first metageneration is 1.
    obj.setdefault("metageneration", "1")
    for field in _STRING_FIELDS:
        if field in obj and obj[field] is not None:
            obj[field] = str(obj[field])
    message_id = str(message.get("messageId") or message.get("message_id") or "")
    if not message_id:
        raise Unconvertible("message has no messageId")
    time_ = (
        obj.get("updated")
        or obj.get("timeCreated")
        or attrs.get("eventTime")
        or message.get("publishTime")
        or dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    )
    headers = {
        "ce-specversion": "1.0",
        "ce-id": message_id,
        "ce-source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
        "ce-type": EVENT_TYPES[event_type],
        "ce-subject": f"objects/{name}",
        "ce-time": time_,
        "content-type": "application/json",
    }
    return headers, json.dumps(obj).encode()


class _Handler(BaseHTTPRequestHandler):
    server: BridgeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:  # per-event lines instead
        pass

    def _answer(self, status: int, text: str = "") -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/healthz":
            self._answer(200, "ok")
        else:
            self._answer(404, "not found")

    def do_POST(self) -> None:
        t0 = time.monotonic()
        try:
            length = int(self.headers.get("Content-Length") or 0)
            push = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(push, dict):
                raise Unconvertible("push body is not a JSON object")
            converted = to_cloudevent(push)
        except (Unconvertible, ValueError) as err:
            self.server.log(f"dropped unconvertible message: {err} -> ack")
            self._answer(204)
            return
        message = push["message"]
        attrs = message.get("attributes") or {}
        mid = message.get("messageId") or message.get("message_id")
        what = f"{attrs.get('eventType', '?')} gs://{attrs.get('bucketId', '?')}/{attrs.get('objectId', '?')}"
        if converted is None:
            self.server.log(f"msg {mid} {what}: not forwarded -> ack")
            self._answer(204)
            return
        headers, body = converted
        what += f"#{json.loads(body).get('generation', '?')}"
        status, detail = self.server.forward(headers, body)
        took = time.monotonic() - t0
        if status is not None and 200 <= status < 300:
            self.server.log(f"msg {mid} {what} -> {status} in {took:.2f} s -> ack")
            self._answer(204)
        else:
            answer = 503 if status is None else 502
            self.server.log(
                f"msg {mid} {what} -> {status or detail} in {took:.2f} s -> {answer} (Pub/Sub redelivers)"
            )
            self._answer(answer, f"target answered {status or detail}")


class BridgeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, target: str, timeout_s: float) -> None:
        self.target = target
        self.timeout_s = timeout_s
        super().__init__((host, port), _Handler)

    def log(self, line: str) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%H:%M:%S.%f")[:-3]
        sys.stdout.write(f"{stamp} bridge: {line}\n")
        sys.stdout.flush()

    def forward(self, headers: Mapping[str, str], body: bytes) -> tuple[int | None, str]:
        req = urllib.request.Request(self.target, data=body, headers=dict(headers), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                resp.read()
                return resp.status, ""
        except urllib.error.HTTPError as err:
            err.read()
            return err.code, ""
        except (OSError, ValueError) as err:
            return None, f"unreachable ({err})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.bridge", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target", required=True, help="URL of the CloudEvent function")
    parser.add_argument(
        "--timeout", type=float, default=540.0, help="seconds to wait for the function (default 540)"
    )
    args = parser.parse_args(argv)
    server = BridgeServer(args.host, args.port, args.target, args.timeout)
    server.log(f"listening on http://{args.host}:{server.server_address[1]}, target {args.target}")
    return serve_until_interrupted(server)


if __name__ == "__main__":
    sys.exit(main())
