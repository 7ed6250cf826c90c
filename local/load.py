"""`make load`: simulated app users against the local stack, with faults, then an audit.

Starts its own durable stack (loopback only) and runs LOAD_USERS users for
LOAD_SECONDS; each repeats: signed upload (its storage event redelivered, as
Eventarc may) → generate (sometimes a style pack) → edits with one undo →
read sessions → export → delete the upload; at the end each user deletes its
account, and the cleanup runs as Cloud Scheduler calls it. Some model calls
go to aliases whose renderer injects a fault (429, 503, a timeout, a
refusal); some edits drop the connection at once and retry with the same
Idempotency-Key. Along the run the edit function is killed mid-request, then
Firestore and then storage are stopped and started again (OUTAGES); a short
run goes on until those are over. Every loop is bounded.

It prints throughput, latency percentiles per endpoint, the functions'
overhead beyond the model call (latency minus the answer's `ms`), errors by
code, storage and Firestore operations per request and the budget ledger,
then audits the stores: no turn lost or duplicated, no orphan or dangling
object (local.audit), no quota or budget exceeded, every error a documented
code with its documented status, nothing of a deleted user left. The last
line is `audit: pass` or `audit: FAIL <what>`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import requests

from local.app import AppClient
from local.audit import audit
from local.stack import MODEL_BACKEND_VARS, Stack

ROOT = Path(__file__).resolve().parent.parent
SELFIE = ROOT / "assets" / "selfie-astronaut.png"
FINALIZED = "google.cloud.storage.object.v1.finalized"
# Aliases routed to the renderer's fault injection, and the code each must give.
FAULTS = {
    "busy": "model_rate_limited",
    "down": "model_unavailable",
    "slow": "model_timeout",
    "refuse": "text_only",
}
MODELS = "flash=gemini-nano-banana-2.1," + ",".join(
    f"{alias}=gemini-nano-banana-2.1@{kind}"
    for alias, kind in (("busy", "429"), ("down", "503"), ("slow", "timeout"), ("refuse", "text_only"))
)
# Edits the offline renderer knows how to draw (others answer text_only).
INSTRUCTIONS = ("add glasses", "make the background blue", "make the lighting warmer")
DELIVERY_ATTEMPTS = 10  # per event, backing off as Eventarc does (its own retries last up to a day)
STALE_S = 20  # PIXME_REQUEST_STALE_S: a killed request's key is taken over after this
HELD_S = STALE_S + 15.0  # how long the app retries a request_in_progress answer
RETRY_S = 60.0  # how long the app keeps retrying a request through an outage
# Answers the app retries after their Retry-After: the stores' outages. (The
# model's 503 is not among them: the `down` alias would give it every time.)
OUTAGE_CODES = ("database_unavailable", "storage_unavailable", "database_contention")
DAILY = 10_000  # quotas the run cannot reach by itself; the audit checks none is exceeded
ENV = {
    "PIXME_MODELS": MODELS,
    "PIXME_MODEL_TIMEOUT_S": "4",  # the `slow` alias hangs: a timeout answers in bounded time
    "PIXME_MODEL_DEADLINE_S": "12",
    "PIXME_REQUEST_STALE_S": str(STALE_S),
    "PIXME_DAILY_GENERATIONS": str(DAILY),
    "PIXME_DAILY_EDITS": str(DAILY),
    "PIXME_DAILY_BUDGET": str(DAILY),
}
# When each outage begins, as a fraction of the run; they follow one another.
OUTAGES = (("edit killed", 0.35), ("firestore", 0.5), ("storage", 0.7))


def _codes() -> dict[str, tuple[int, str]]:
    sys.path.insert(0, str(ROOT / "functions"))
    from pixme.errors import CODES

    return CODES


@dataclass
class Tally:
    """What every user saw, merged under one lock."""

    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    overhead: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    # function → its requests in flight (a marker each) → when each was sent
    in_flight: dict[str, dict[object, float]] = field(default_factory=lambda: defaultdict(dict))
    own_storage_ops: int = 0  # the load run's own, not the functions'
    killed_at: float = -1.0  # when a function process was killed (monotonic)
    taken_over: int = 0  # edits whose key a retry took over from the killed request
    images: set[str] = field(default_factory=set)  # every turn answered, once
    # When each store outage began and ended (inf while it lasts).
    outage_spans: list[list[float]] = field(default_factory=list)
    # Set when every outage is over: the users carry on past the deadline until then.
    outages_over: threading.Event = field(default_factory=threading.Event)
    cycles: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def problem(self, what: str) -> None:
        with self.lock:
            self.problems.append(what)


class User:
    def __init__(
        self, stack: Stack, db: Any, tally: Tally, uid: str, deadline: float, seed: int, think_s: float
    ) -> None:
        self.stack, self.tally, self.uid, self.deadline = stack, tally, uid, deadline
        self.app = AppClient(stack.functions, stack.token(uid), timeout_s=60)
        self.rng = random.Random(seed)
        self.think_s = think_s
        self.seed, self.faults_met, self.generates = seed, 0, 0
        self.span = (0.0, 0.0)  # when the last request was sent and answered
        self.photo = SELFIE.read_bytes()
        self.codes = _codes()
        self.db = db
        self.turns: dict[str, set[str]] = {}  # session → the turn ids answered to us
        self.first: dict[str, str] = {}  # session → its first turn, the undo's target

    def send(self, label: str, method: str, function: str, path: str = "/", body: Any = None,
             transient: bool = False, **kwargs: Any) -> requests.Response:  # fmt: skip
        """One request as the app makes it: repeated while a store is down (or,
        with `transient`, on any 503 with Retry-After: the model's too), when
        it may safely be repeated."""
        began = time.monotonic()
        retry_until = began + RETRY_S
        # Only a request the app may safely repeat is repeated: a read, a
        # deletion, a new upload ticket, or one with its Idempotency-Key.
        keyed = "Idempotency-Key" in kwargs.get("headers", {})
        repeatable = method in ("GET", "DELETE") or function == "uploads" or keyed
        while True:
            mark = object()
            with self.tally.lock:
                self.tally.in_flight[function][mark] = time.monotonic()
            try:
                resp = self.app.request(method, function, path, body, **kwargs)
            except requests.ConnectionError:
                # The function died under us.
                with self.tally.lock:
                    self.tally.errors[f"connection lost ({label})"] += 1
                if not repeatable or time.monotonic() > retry_until:
                    raise
                time.sleep(0.3)
                continue
            finally:
                with self.tally.lock:
                    del self.tally.in_flight[function][mark]
            data = _json(resp)
            code = _code(data)
            outage = code in OUTAGE_CODES or (transient and resp.status_code == 503)
            if not (repeatable and outage and time.monotonic() < retry_until):
                break
            # A store is down: counted as answered, then retried after Retry-After.
            self.note_error(label, resp.status_code, code)
            time.sleep(min(float(resp.headers.get("Retry-After") or 1), 2.0))
        self.span = (began, time.monotonic())
        took = (self.span[1] - began) * 1000
        with self.tally.lock:
            self.tally.latency[label].append(took)
            if resp.status_code < 400 and isinstance(data, dict) and isinstance(data.get("ms"), int | float):
                self.tally.overhead.append(took - data["ms"])
        if resp.status_code >= 400:
            self.note_error(label, resp.status_code, code)
        return resp

    def note_error(self, label: str, status: int, code: str | None) -> None:
        with self.tally.lock:
            self.tally.errors[f"{status} {code}"] += 1
        documented = self.codes.get(str(code))
        if documented is None or documented[0] != status:
            self.tally.problem(f"{label}: undocumented {status} {code}")

    def stored(self, read: Callable[[], Any]) -> Any:
        """The load run's own read of a store, retried through an outage."""
        until = time.monotonic() + RETRY_S
        while True:
            try:
                return read()
            except Exception:  # the google clients' errors while the store is down
                if time.monotonic() > until:
                    raise
                time.sleep(0.5)

    def put(self, ticket: dict[str, Any]) -> bool:
        """The signed PUT, retried as the app does while storage is down; a
        retry answered 412 (create-only) means an earlier attempt landed."""
        until, attempt = time.monotonic() + RETRY_S, 0
        while True:
            attempt += 1
            try:
                status: int | None = self.app.put(ticket, self.photo).status_code
            except requests.ConnectionError:
                status = None
            if status is not None and (status < 300 or (status == 412 and attempt > 1)):
                return True
            if (status is not None and status < 500) or time.monotonic() > until:
                self.tally.problem(f"signed PUT: {status if status is not None else 'no connection'}")
                return False
            with self.tally.lock:
                self.tally.errors[f"signed PUT {status if status is not None else 'lost'}"] += 1
            time.sleep(0.5)

    def think(self) -> None:
        time.sleep(self.rng.uniform(0, self.think_s))

    def model(self) -> str:
        """Mostly the working alias; every third generate meets a fault, the
        kinds in turn (each user starting at another), so a run meets all."""
        self.generates += 1
        if self.generates % 3 == 0:
            kinds = sorted(FAULTS)
            alias = kinds[(self.seed + self.faults_met) % len(kinds)]
            self.faults_met += 1
            with self.tally.lock:
                self.tally.faults[alias] += 1
            return alias
        return "flash"

    def expect(self, label: str, resp: requests.Response, model: str) -> dict[str, Any] | None:
        """The answer when it succeeded; a faulty alias must fail with its code."""
        if model in FAULTS:
            code = _code(_json(resp))
            if code != FAULTS[model] and resp.status_code == 503 and self.met_outage():
                # The model could not read its inputs either (the renderer
                # answers 503 while storage is down, as Vertex AI would fail).
                with self.tally.lock:
                    self.tally.faults[f"{model} met a store outage ({code})"] += 1
            elif code != FAULTS[model]:
                self.tally.problem(f"{label} via {model}: {resp.status_code} {code}, not {FAULTS[model]}")
            # Made anyway: recorded, so the turn check still accounts for it.
            return dict(resp.json()) if resp.status_code < 300 else None
        if resp.status_code >= 300:
            self.tally.problem(f"{label}: {resp.status_code} {resp.text[:120]}")
            return None
        return dict(resp.json())

    def met_outage(self) -> bool:
        """Whether the last request overlapped a store outage."""
        began, ended = self.span
        with self.tally.lock:
            return any(start <= ended and began <= end for start, end in self.tally.outage_spans)

    def record(self, answer: dict[str, Any]) -> None:
        self.first.setdefault(answer["session_id"], answer["turn_id"])
        self.turns.setdefault(answer["session_id"], set()).add(answer["turn_id"])
        with self.tally.lock:
            self.tally.images.add(answer["turn_id"])

    def active(self) -> bool:
        return time.monotonic() < self.deadline or not self.tally.outages_over.is_set()

    def run(self) -> None:
        while self.active():
            self.cycle()
            with self.tally.lock:
                self.tally.cycles += 1
        for _batch in range(20):  # resumable in bounded batches: `complete: false` means again
            gone = self.send("DELETE account", "DELETE", "account", "/")
            if not gone.ok or gone.json().get("complete", True):
                break

    def cycle(self) -> None:
        ticket = self.send("POST uploads", "POST", "uploads", "/", {"content_type": "image/png"})
        if ticket.status_code != 201:
            self.tally.problem(f"upload ticket: {ticket.status_code}")
            return
        upload_id = ticket.json()["upload_id"]
        if not self.put(ticket.json()):
            return
        event = self.stored(lambda: finalized_event(self.stack, f"uploads/{self.uid}/{upload_id}"))
        with self.tally.lock:
            self.tally.own_storage_ops += 1  # that read of the object is ours
        if event is not None:  # the storage server delivers it once; two more at once
            with self.tally.lock:
                self.tally.faults["duplicate deliveries"] += 2
            self.check_delivered("duplicate delivery", deliver(self.stack, event, 2))
        status = self.wait_ready(upload_id)
        if status != "ready":
            self.tally.problem(f"upload {upload_id}: {status}")
            return
        self.think()
        self.generate(upload_id)
        for session_id in list(self.turns):
            self.edits(session_id)
            self.think()
        self.send("GET sessions", "GET", "sessions", "/")
        for session_id, mine in self.turns.items():
            detail = self.send("GET sessions/{id}", "GET", "sessions", f"/{session_id}")
            stored = [t["turn_id"] for t in detail.json().get("turns", [])] if detail.ok else []
            if len(stored) != len(set(stored)) or set(stored) != mine:
                self.tally.problem(f"session {session_id}: listed {sorted(stored)}, answered {sorted(mine)}")
            turns = self.db.collection("sessions").document(session_id).collection("turns")
            kept: set[str] = self.stored(partial(_ids, turns))
            if kept != mine:  # the store itself, not the API's view of it
                self.tally.problem(f"session {session_id}: stored {sorted(kept)}, answered {sorted(mine)}")
        self.send("GET account/export", "GET", "account", "/export")
        usage = self.send("GET account/usage", "GET", "account", "/usage").json()
        for quota in ("generations", "edits"):
            if usage.get(quota, {}).get("used", 0) > usage.get(quota, {}).get("limit", DAILY):
                self.tally.problem(f"{self.uid}: {quota} over quota: {usage[quota]}")
        self.send("DELETE uploads/{id}", "DELETE", "uploads", f"/{upload_id}")
        if event is not None:  # out of order: the event arrives after the deletion
            with self.tally.lock:
                self.tally.faults["late deliveries"] += 1
            self.check_delivered("late delivery", deliver(self.stack, event, 1))
        self.turns.clear()
        self.first.clear()
        self.think()

    def check_delivered(self, what: str, statuses: list[int]) -> None:
        """Every delivery is acknowledged (2xx) within its retries; the audit then
        shows whether a repeat did anything twice."""
        if any(not 200 <= code < 300 for code in statuses):
            self.tally.problem(f"{what}: the trigger answered {statuses}")

    def wait_ready(self, upload_id: str) -> str:
        until = time.monotonic() + 60
        while time.monotonic() < until:
            status = str(
                self.send("GET uploads/{id}", "GET", "uploads", f"/{upload_id}").json().get("status")
            )
            if status not in ("pending", "processing"):
                return status
            time.sleep(0.2)
        return "still processing after 60 s"

    def generate(self, upload_id: str) -> None:
        model = self.model()
        key = {"Idempotency-Key": f"load-{uuid.uuid4().hex}"}  # the app's own, so it may retry
        if self.rng.random() < 0.3:
            styles = self.rng.sample(("sketch", "pixel_art", "comics"), 2)
            pack = {"upload_id": upload_id, "styles": styles, "model": model}
            resp = self.send("POST generate (pack)", "POST", "generate", "/", pack,
                             transient=model == "flash", headers=key)  # fmt: skip
            answer = self.expect("generate pack", resp, model)
            for result in (answer or {}).get("results", []):
                if "error" in result:
                    self.tally.problem(f"pack style {result['style']}: {result['error'].get('code')}")
                else:
                    self.record(result)
            return
        body = {"upload_id": upload_id, "style": self.rng.choice(("sketch", "pixel_art")), "model": model}
        flash = model == "flash"
        resp = self.send("POST generate", "POST", "generate", "/", body, transient=flash, headers=key)
        answer = self.expect("generate", resp, model)
        if answer:
            self.record(answer)

    def edits(self, session_id: str) -> None:
        first = self.first[session_id]
        for n in range(3):
            if not self.active():
                return
            # An edit keeps its session's model: the faults are met at generate.
            body: dict[str, Any] = {
                "session_id": session_id,
                "instruction": INSTRUCTIONS[n % len(INSTRUCTIONS)],
            }
            if n == 2:
                body["from_turn"] = first  # an undo: back to the first avatar
            answer = self.keyed_edit(body, drop=self.rng.random() < 0.3)
            if answer:
                self.record(answer)
            self.think()

    def keyed_edit(self, body: dict[str, Any], drop: bool) -> dict[str, Any] | None:
        """An edit with an Idempotency-Key, as the app sends it. With `drop`, the
        app gives up on the connection at once and retries with the same key: one
        turn, whatever the first request did. While the first is running the
        retry answers request_in_progress, and the app tries again."""
        key = {"Idempotency-Key": f"load-{uuid.uuid4().hex}"}
        began, label = time.monotonic(), "POST edit"
        if drop:
            label = "POST edit (retry)"
            with self.tally.lock:
                self.tally.faults["dropped+retried"] += 1
            with contextlib.suppress(requests.RequestException):  # the drop: the server carries on
                self.app.request("POST", "edit", "/", body, headers=key, timeout=0.05)
        while True:
            resp = self.send(label, "POST", "edit", "/", body, transient=True, headers=key)
            if _code(_json(resp)) != "request_in_progress":
                if time.monotonic() - began > STALE_S and self.tally.killed_at >= began:
                    # The first request died with its process; after
                    # PIXME_REQUEST_STALE_S this retry took its key over.
                    with self.tally.lock:
                        self.tally.taken_over += 1
                return self.expect("edit", resp, "flash")
            if time.monotonic() - began > HELD_S:
                break
            label = "POST edit (again)"  # the polls after request_in_progress, timed apart
            time.sleep(0.5)
        self.tally.problem(f"edit: still request_in_progress after {HELD_S:.0f} s")
        return None


def _json(resp: requests.Response) -> Any:
    with contextlib.suppress(ValueError):
        return resp.json()
    return None


def _code(answer: Any) -> str | None:
    """The error code of an answer's JSON body, if it is an error."""
    if not isinstance(answer, dict) or not isinstance(answer.get("error"), dict):
        return None
    code = answer["error"].get("code")
    return str(code) if code is not None else None


def _ids(collection: Any) -> set[str]:
    return {d.id for d in collection.stream()}


Event = tuple[dict[str, str], dict[str, str]]  # a CloudEvent's body and headers


def finalized_event(stack: Stack, name: str) -> Event | None:
    """The finalized event Eventarc sends for an object of the uploads bucket."""
    blob = stack.storage_client().bucket(stack.uploads_bucket).get_blob(name)
    if blob is None:
        return None
    resource = {
        "bucket": stack.uploads_bucket, "name": name, "generation": str(blob.generation),
        "size": str(blob.size), "timeCreated": blob.time_created.isoformat().replace("+00:00", "Z"),
    }  # fmt: skip
    headers = {
        "ce-id": f"{name}#{blob.generation}", "ce-specversion": "1.0", "ce-type": FINALIZED,
        "ce-source": f"//storage.googleapis.com/projects/_/buckets/{stack.uploads_bucket}",
        "ce-subject": f"objects/{name}", "Content-Type": "application/json",
    }  # fmt: skip
    return resource, headers


def deliver(stack: Stack, event: Event, times: int) -> list[int]:
    """The event `times` times at once, as Eventarc may; each retried as
    Eventarc does while the trigger answers a failure (a concurrent duplicate
    is told to come back: `Unavailable`), bounded; the last statuses."""
    resource, headers = event

    def post(_: int) -> int:
        for attempt in range(DELIVERY_ATTEMPTS):
            status = requests.post(stack.functions["on_upload"], data=json.dumps(resource), headers=headers,
                                   timeout=60).status_code  # fmt: skip
            if 200 <= status < 300:
                break
            time.sleep(min(0.5 * 2**attempt, 8.0))
        return status

    with ThreadPoolExecutor(times) as pool:
        return list(pool.map(post, range(times)))


def outages(stack: Stack, tally: Tally, began: float, deadline: float, down_s: float) -> None:
    """The outages of OUTAGES, one after another, each from its point in the
    run (a short run has them all, and runs on until they are over)."""
    try:
        for what, at in OUTAGES:
            while time.monotonic() < began + at * (deadline - began):
                time.sleep(0.05)
            if what == "edit killed":
                kill_mid_request(stack, tally, deadline + 60)
                continue
            restart = stack.restart_firestore if what == "firestore" else stack.restart_storage
            span = [time.monotonic(), float("inf")]
            with tally.lock:
                tally.outage_spans.append(span)
            down = restart(down_s)
            span[1] = time.monotonic()
            with tally.lock:
                tally.faults[f"{what} stopped and restarted (down {down:.1f} s)"] += 1
    finally:
        tally.outages_over.set()


def kill_mid_request(stack: Stack, tally: Tally, deadline: float, function: str = "edit") -> None:
    """Once: SIGKILL the function while a request to it has been in flight for
    a while, once the function is warm (so the request holds its
    Idempotency-Key and is calling the model, not still importing)."""
    while time.monotonic() < deadline:
        with tally.lock:
            warm = len(tally.latency["POST edit"]) >= 2
            busy = warm and any(time.monotonic() - t > 0.3 for t in tally.in_flight[function].values())
        if busy:
            with tally.lock:
                tally.killed_at = time.monotonic()
            down = stack.kill_function(function)
            with tally.lock:
                tally.faults[f"{function} killed mid-request (down {down:.1f} s)"] += 1
            return
        time.sleep(0.02)


def storage_ops(stack: Stack) -> int:
    """The storage server's requests so far: its log has one access line each."""
    log = stack.logs()["storage"]
    return sum(1 for line in log.read_text(errors="replace").splitlines() if 'msg="127.0.0.1 - - [' in line)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def report(tally: Tally, seconds: float, users: int, storage: int, firestore: Counter[str]) -> list[str]:
    total = sum(len(v) for v in tally.latency.values())
    functions_storage = storage - tally.own_storage_ops
    lines = [
        f"load: {users} users, {seconds:.0f} s, {tally.cycles} cycles, {total} requests, "
        f"{total / seconds:.1f} req/s",
        f"{'endpoint':<22} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}",
    ]
    for label, values in sorted(tally.latency.items()):
        lines.append(
            f"{label:<22} {len(values):>5} {percentile(values, 50):>8.0f} "
            f"{percentile(values, 95):>8.0f} {percentile(values, 99):>8.0f}"
        )
    if tally.overhead:
        o = tally.overhead
        lines.append(
            f"overhead beyond the model call (generate/edit): p50 {percentile(o, 50):.0f} ms, "
            f"p95 {percentile(o, 95):.0f} ms, p99 {percentile(o, 99):.0f} ms"
        )
    lines.append(
        "faults injected: " + (", ".join(f"{k} {v}" for k, v in sorted(tally.faults.items())) or "none")
    )
    lines.append(
        "errors by code: " + (", ".join(f"{k} x{v}" for k, v in sorted(tally.errors.items())) or "none")
    )
    lines.append(
        f"storage operations per request: {functions_storage / max(total, 1):.2f} "
        f"({functions_storage} by the functions and the signed-URL front)"
    )
    rpcs = sum(n for method, n in firestore.items() if method != "http")
    lines.append(
        f"Firestore operations per request: {rpcs / max(total, 1):.2f} ({rpcs} RPCs by the functions: "
        + ", ".join(f"{method} {n}" for method, n in firestore.most_common() if method != "http")
        + ")"
    )
    if tally.taken_over:
        lines.append(f"edits whose key a retry took over from the killed request: {tally.taken_over}")
    return lines


def check_ledger(db: Any, tally: Tally) -> tuple[str, list[str]]:
    """The day's budget counters against what was answered: every image
    answered and every refusal (the user's, not refunded) was paid for, and
    the budget was not exceeded. More may be charged than answered: a
    request killed after its charge, or one whose model call succeeded but
    whose answer failed (a store down) and which the app then repeated."""
    spent = sum(int((d.to_dict() or {}).get("spent", 0)) for d in db.collection("budget").stream())
    paid_for = len(tally.images) + tally.errors["422 text_only"]
    line = (
        f"budget: {spent} units spent of {DAILY}; {len(tally.images)} images and "
        f"{tally.errors['422 text_only']} refusals answered; charged without an answer: {spent - paid_for}"
    )
    problems = []
    if spent < paid_for:
        problems.append(f"budget: {spent} units spent for {paid_for} answers: some were not paid for")
    if spent > DAILY:
        problems.append(f"budget exceeded: {spent} > {DAILY}")
    return line, problems


def check_stores(stack: Stack, uids: list[str], plant: bool) -> list[str]:
    """After the run and every deletion: the stores themselves."""
    from google.cloud.firestore import FieldFilter

    db, gcs = stack.firestore_client(), stack.storage_client()
    buckets = (stack.uploads_bucket, stack.assets_bucket)
    if plant:  # an object no document names: the audit must catch it
        gcs.bucket(stack.assets_bucket).blob("avatars/planted/orphan.png").upload_from_string(b"x")
    problems = []
    everything = audit(db, gcs, buckets)
    if not everything.ok:
        problems.append(everything.summary().removeprefix("audit: FAIL "))
    for uid in uids:
        left = audit(db, gcs, buckets, prefix=uid, settle_s=0)
        if left.objects or left.documents:
            problems.append(f"deleted user {uid} left {left.objects} objects, {left.documents} documents")
        owned = db.collection("sessions").where(filter=FieldFilter("owner", "==", uid)).limit(1)
        if list(owned.stream()):
            problems.append(f"deleted user {uid} left sessions")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=int(os.environ.get("LOAD_USERS") or 4))
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("LOAD_SECONDS") or 60))
    parser.add_argument("--think", type=float, default=0.5, help="longest think time between steps, s")
    parser.add_argument("--down", type=float, default=2.0, help="seconds each store stays down")
    parser.add_argument(
        "--no-outages", action="store_true", help="no killed function, no store outage (a quick audit check)"
    )
    parser.add_argument(
        "--plant-orphan", action="store_true", help="plant an orphan object (the audit must fail)"
    )
    args = parser.parse_args(argv)
    caller = {k: v for k, v in os.environ.items() if k not in MODEL_BACKEND_VARS}  # never a real model
    logs = ROOT / "out" / "stack" / "load"
    with Stack(env_overrides=ENV, caller_env=caller, log_dir=logs, quiet=True, durable=True) as stack:
        tally = Tally()
        storage_before, firestore_before = storage_ops(stack), stack.firestore_calls()
        began = time.monotonic()
        deadline = began + args.seconds
        uids = [f"load{i}-{uuid.uuid4().hex[:6]}" for i in range(args.users)]
        db = stack.firestore_client(direct=True)  # the run's own reads are not the functions'
        users = [User(stack, db, tally, uid, deadline, i, args.think) for i, uid in enumerate(uids)]
        run: Callable[[User], None] = User.run
        with ThreadPoolExecutor(args.users + 1) as pool:
            chaos = []
            if args.no_outages:
                tally.outages_over.set()
            else:
                chaos.append(pool.submit(outages, stack, tally, began, deadline, args.down))
            work = [pool.submit(run, u) for u in users]
            for failure in [f.exception() for f in [*chaos, *work]]:
                if failure is not None:
                    tally.problem(f"a user crashed: {failure!r}")
        elapsed = time.monotonic() - began
        storage = storage_ops(stack) - storage_before
        firestore = stack.firestore_calls() - firestore_before
        ledger, overspent = check_ledger(db, tally)
        for line in [*report(tally, elapsed, args.users, storage, firestore), ledger]:
            print(line, flush=True)
        # The nightly cleanup, as Cloud Scheduler calls it: the audit comes after it.
        swept = requests.post(stack.functions["cleanup"], timeout=300)
        print(f"cleanup: {swept.status_code} {swept.text.strip()[:200]}", flush=True)
        if swept.status_code != 200:
            overspent.append(f"cleanup answered {swept.status_code}")
        problems = tally.problems + overspent + check_stores(stack, uids, args.plant_orphan)
    if problems:
        print("\n".join(f"  {p}" for p in problems[:20]))
        print("audit: FAIL " + "; ".join(problems[:3]))
        return 1
    print("audit: pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
