"""Store operations per edit: Firestore reads and writes, storage operations and
model request bytes, at edits 2, 20 and 100 of one session (goal: equal).

The edit service runs as in production against the Firestore emulator (our
Firestore adapters for sessions and usage counters); every document the
client reads or writes is counted at the client (each document a `get`
returns or a query streams is a read, each write in a committed batch a
write). Storage is the in-memory fake behind a counting wrapper of our
BlobStore port (each call one storage operation); the model is a fake that
answers a fixed-size image, so request bytes are the payload we build.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "functions"), str(ROOT), str(ROOT / "tests" / "unit")]

from fakes import FakeBlobs, FakeClock, FakeIdempotency, FakeModel, FakeUploads, presented, settings  # noqa: E402
from local.stack import Stack  # noqa: E402
from pixme.api import EditRequest, GenerateRequest  # noqa: E402
from pixme.conversation import READY, Upload  # noqa: E402
from pixme.identity import Caller  # noqa: E402
from pixme.ports import ModelReply, RenderOptions  # noqa: E402
from pixme.prompts import Message  # noqa: E402
from pixme.services.avatars import Avatars  # noqa: E402
from pixme.spending import Spending  # noqa: E402

MARKS = (2, 20, 100)
OPS: Counter[str] = Counter()


def count_firestore() -> None:
    """Count document reads and writes at the Firestore client."""
    from google.cloud.firestore_v1 import batch, collection, document, query

    get, commit = document.DocumentReference.get, batch.WriteBatch.commit
    streams = {cls: cls.stream for cls in (query.Query, collection.CollectionReference)}

    def counted_get(self: Any, *args: Any, **kwargs: Any) -> Any:
        OPS["firestore reads"] += 1
        return get(self, *args, **kwargs)

    def counted_commit(self: Any, *args: Any, **kwargs: Any) -> Any:
        OPS["firestore writes"] += len(self._write_pbs)
        return commit(self, *args, **kwargs)

    def counted_stream(original: Any) -> Any:
        def stream(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
            for snap in original(self, *args, **kwargs):
                OPS["firestore reads"] += 1
                yield snap

        return stream

    document.DocumentReference.get = counted_get  # type: ignore[method-assign]
    batch.WriteBatch.commit = counted_commit  # type: ignore[method-assign]
    for cls, original in streams.items():
        cls.stream = counted_stream(original)  # type: ignore[method-assign]


class CountingBlobs(FakeBlobs):
    """The BlobStore port, counting every call: one storage operation each."""

    def read(self, bucket: str, path: str, generation: str | None = None) -> bytes:
        OPS["storage ops"] += 1
        return super().read(bucket, path, generation)

    def write(self, bucket: str, path: str, data: bytes, content_type: str) -> None:
        OPS["storage ops"] += 1
        super().write(bucket, path, data, content_type)

    def delete(self, bucket: str, path: str, generation: str | None = None) -> None:
        OPS["storage ops"] += 1
        super().delete(bucket, path, generation)

    def signed_url(
        self,
        bucket: str,
        path: str,
        ttl_s: int,
        method: str = "GET",
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        OPS["storage ops"] += 1  # an IAM signBlob round trip in the cloud
        return super().signed_url(bucket, path, ttl_s, method, content_type, headers)


class MeasuringModel(FakeModel):
    def generate(self, model_id: str, messages: Sequence[Message], options: RenderOptions) -> ModelReply:
        size = sum(len(t.encode()) for m in messages for t in m.texts)
        OPS["request bytes"] += size + sum(len(i.data) for m in messages for i in m.images)
        return super().generate(model_id, messages, options)


def main() -> int:
    logs = ROOT / "out" / "stack" / "bench-store-ops"
    with Stack(components=["firestore"], log_dir=logs, quiet=True) as stack:

        os.environ.update(stack.client_env())
        from google.cloud import firestore

        from pixme.adapters.firestore import FirestoreSessions, FirestoreUsage

        db = firestore.Client(project=stack.project)
        s = settings(no_face="allow", daily_edits=1000, daily_budget=100_000)
        clock, blobs, uploads = FakeClock(), CountingBlobs(), FakeUploads()
        clock.current = dt.datetime.now(dt.UTC)
        avatars = Avatars(
            s, blobs, uploads, FirestoreSessions(db), MeasuringModel(), clock, FakeIdempotency(),
            Spending(s, FirestoreUsage(db), clock),
        )  # fmt: skip
        owner, now = f"bench-{os.getpid()}", clock.now()
        upload = Upload(
            owner, "u_bench", READY, "up", "uploads/x", "1", now, now + dt.timedelta(days=30),
            image_path="selfies/bench.jpg",
        )  # fmt: skip
        uploads.save(upload)
        selfie = (ROOT / "assets" / "selfie-astronaut.png").read_bytes()
        blobs.objects[(s.assets_bucket, "selfies/bench.jpg")] = (selfie, "image/jpeg")
        caller = Caller(owner)
        req = GenerateRequest.parse(
            {"upload_id": "u_bench", "style": "comics", "prompt": "add a hat", "aspect_ratio": "16:9"}, s
        )
        count_firestore()
        sid = presented(avatars.generate(caller, req).body, blobs, s)["session_id"]
        rows: dict[int, dict[str, int]] = {}
        for n in range(1, max(MARKS) + 1):
            OPS.clear()
            # Presented as the edge does, so the answer's signature is counted.
            answer = avatars.edit(caller, EditRequest(session_id=sid, instruction=f"edit number {n}"))
            presented(answer.body, blobs, s)
            clock.advance(seconds=1)
            if n in MARKS:
                rows[n] = dict(OPS)
    keys = ("firestore reads", "firestore writes", "storage ops", "request bytes")
    print(f"{'edit':>5} | " + " | ".join(f"{k:>16}" for k in keys))
    for n, row in rows.items():
        print(f"{n:>5} | " + " | ".join(f"{row.get(k, 0):>16}" for k in keys))
    ratios = {
        f"{n}/{MARKS[0]}": {k: round(rows[n].get(k, 0) / max(1, rows[MARKS[0]].get(k, 0)), 3) for k in keys}
        for n in MARKS[1:]
    }
    for label, ratio in ratios.items():
        print(f"edit {label}: " + ", ".join(f"{k} x{v:.2f}" for k, v in ratio.items()))
    print("(a model call also charges and settles the usage counters: included in the Firestore counts)")
    print(json.dumps(ratios))
    equal = all(v == 1 for r in ratios.values() for k, v in r.items() if k != "request bytes")
    bounded = all(r["request bytes"] <= 1.25 for r in ratios.values())
    return 0 if equal and bounded else 1


if __name__ == "__main__":
    sys.exit(main())
