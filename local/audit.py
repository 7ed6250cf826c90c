"""The storage audit: every object in both buckets is named by exactly one
document, and every object a document names exists.

It reads the emulators directly (not through the functions' adapters), from
the raw documents, so it checks the code rather than agreeing with it:

- uploads bucket: an object belongs to the upload document whose
  `source_path` it is, while that upload is unfinished (`pending`,
  `processing`) or keeps its rejected original (`original_kept`);
- assets bucket: an object belongs to the upload document naming it as
  `image_path`, `face_path` or `quarantine_path`, or to the turn naming it as
  `image_path`;
- named objects must exist, except the original of a `pending` upload
  (the app may never send it) and of a `processing` one (it may be deleted
  under the trigger, which then records `gone`).

`python -m local.audit` audits a running `make up` stack (reads out/stack/stack.env).
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

UNFINISHED = ("pending", "processing")


@dataclass
class Report:
    objects: int = 0
    documents: int = 0
    orphans: list[str] = field(default_factory=list)  # objects no document names
    shared: list[str] = field(default_factory=list)  # objects more than one document names
    dangling: list[str] = field(default_factory=list)  # documents naming a missing object

    @property
    def ok(self) -> bool:
        return not (self.orphans or self.shared or self.dangling)

    def summary(self) -> str:
        if self.ok:
            return f"audit: pass ({self.objects} objects, {self.documents} documents)"
        parts = [
            f"{label} {len(items)}: {', '.join(sorted(items)[:5])}"
            for label, items in (
                ("orphans", self.orphans),
                ("shared", self.shared),
                ("dangling", self.dangling),
            )
            if items
        ]
        return "audit: FAIL " + "; ".join(parts)


Named = dict[tuple[str, str], list[str]]


def _claims(
    uploads: Iterable[dict[str, Any]], turns: Iterable[tuple[str, dict[str, Any]]], assets: str
) -> tuple[Named, set[tuple[str, str]]]:
    """(bucket, path) → the documents naming it; and those that must exist."""
    named: Named = defaultdict(list)
    required: set[tuple[str, str]] = set()
    for doc in uploads:
        who = f"uploads/{doc.get('owner')}:{doc.get('upload_id')}"
        status = doc.get("status")
        if status in UNFINISHED or doc.get("original_kept"):
            source = (str(doc.get("source_bucket")), str(doc.get("source_path")))
            named[source].append(who)
            if status not in UNFINISHED:
                required.add(source)
        for name in ("image_path", "face_path", "quarantine_path"):
            if doc.get(name):
                key = (assets, str(doc[name]))
                named[key].append(who)
                required.add(key)
    for who, doc in turns:
        key = (assets, str(doc.get("image_path")))
        named[key].append(who)
        required.add(key)
    return named, required


def audit_once(db: Any, gcs: Any, buckets: tuple[str, str], prefix: str = "") -> Report:
    """One pass. `prefix` limits the audit to one user's objects (`uploads/<uid>/`
    style prefixes are derived per bucket), or everything when empty."""
    assets_bucket = buckets[1]
    uploads = [d.to_dict() or {} for d in db.collection("uploads").stream()]
    turns = [(d.reference.path, d.to_dict() or {}) for d in db.collection_group("turns").stream()]
    if prefix:
        uploads = [u for u in uploads if u.get("owner") == prefix]
        turns = [(who, t) for who, t in turns if f"/{prefix}/" in str(t.get("image_path"))]
    named, required = _claims(uploads, turns, assets_bucket)
    stored: set[tuple[str, str]] = set()
    tops = ("uploads", "selfies", "quarantine", "avatars")
    scopes = [f"{top}/{prefix}/" for top in tops] if prefix else [""]
    for bucket in buckets:
        for scope in scopes:
            stored |= {(bucket, b.name) for b in gcs.list_blobs(bucket, prefix=scope or None)}
    report = Report(objects=len(stored), documents=len(uploads) + len(turns))
    report.orphans = [f"{b}/{p}" for b, p in stored if (b, p) not in named]
    report.shared = [f"{b}/{p} ({', '.join(w)})" for (b, p), w in named.items() if len(w) > 1]
    report.dangling = [f"{b}/{p} ({', '.join(named[(b, p)])})" for b, p in required if (b, p) not in stored]
    return report


def audit(db: Any, gcs: Any, buckets: tuple[str, str], prefix: str = "", settle_s: float = 10.0) -> Report:
    """Audit until the stores agree or `settle_s` passes: work in flight
    (an event still travelling to the trigger) may need a moment to land."""
    deadline = time.monotonic() + settle_s
    while True:
        report = audit_once(db, gcs, buckets, prefix)
        if report.ok or time.monotonic() > deadline:
            return report
        time.sleep(0.5)


def main() -> int:
    import os
    import shlex

    from .procs import REPO_ROOT

    env_file = REPO_ROOT / "out" / "stack" / "stack.env"
    if not env_file.exists():
        print("no running stack: start one with `make up`", file=sys.stderr)
        return 2
    for line in env_file.read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        os.environ[name] = shlex.split(value)[0] if value else ""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore, storage  # type: ignore[attr-defined]

    db = firestore.Client(project=os.environ["GOOGLE_CLOUD_PROJECT"])
    gcs = storage.Client(
        project=os.environ["GOOGLE_CLOUD_PROJECT"],
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": os.environ["STORAGE_EMULATOR_HOST"]},
    )
    report = audit(db, gcs, (os.environ["PIXME_UPLOADS_BUCKET"], os.environ["PIXME_ASSETS_BUCKET"]))
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
