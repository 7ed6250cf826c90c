"""Use cases: generate a styled avatar from a ready upload, and edit it.

The model call happens before any write, and the session is written last; a
turn that cannot be recorded takes its image back, so a failed or refused
call leaves nothing behind.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from pixme import logs
from pixme.api import EditRequest, GenerateRequest
from pixme.config import ModelAlias, Settings
from pixme.conversation import (
    Memory,
    Session,
    Turn,
    earlier_instructions,
    keyed_id,
    lineage,
    new_id,
    session_expiry,
)
from pixme.errors import Conflict, Forbidden, InvalidRequest, ModelRefused, NotFound, NotReady, PixmeError
from pixme.identity import Caller
from pixme.layout import avatar_path
from pixme.likeness import THRESHOLDS, Likeness
from pixme.ownership import owned_session
from pixme.ports import (
    BlobStore,
    Charge,
    Clock,
    IdempotencyStore,
    ImageModel,
    ModelReply,
    RenderOptions,
    SessionStore,
    UploadStore,
)
from pixme.prompts import ImageRef, edit_messages, generation_messages, with_likeness_reminder
from pixme.responses import AvatarTurn, Identity, PackFailure, Stored, StylePack, avatar_answer
from pixme.spending import (
    EDITS,
    GENERATIONS,
    Spending,
    charge_headers,
    may_use,
    rate_limit_headers,
    refundable,
)
from pixme.styles import get_style


@dataclass(frozen=True)
class Answer:
    """A generate or edit result, with the headers the edge sends with it."""

    body: AvatarTurn | StylePack
    headers: dict[str, str] = field(default_factory=dict)


log = logging.getLogger(__name__)
IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_-]{8,128}$")
IDEMPOTENCY_TTL = timedelta(hours=24)
PACK_FAN_OUT = 3  # model calls of one style pack at once (and never over the in-flight cap)
_MIME = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}
LEGACY_WALK = 200  # turns walked for a turn stored without its memory


def fingerprint(kind: str, request: BaseModel) -> str:
    """The request as canonical JSON (sorted keys, fields at their default
    left out), hashed: a deploy that adds a defaulted field keeps old
    fingerprints, so retries across it still replay."""
    body = request.model_dump(exclude_defaults=True)
    canonical = json.dumps({"kind": kind, **body}, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _record(body: AvatarTurn | StylePack) -> dict[str, Any]:
    """What an idempotency key keeps: the answer dumped without signing, so each
    image is its path (URLs expire; the edge signs a replay afresh). The path is
    also kept as `image_path`, the field the previous deploy replays from, so a
    rollback within the keys' 24 h still answers them."""

    def with_path(result: dict[str, Any]) -> dict[str, Any]:
        return {**result, "image_path": result["image_url"]} if "image_url" in result else result

    record = body.model_dump(mode="json", exclude_unset=True)
    if "results" in record:
        return {**record, "results": [with_path(r) for r in record["results"]]}
    return with_path(record)


def _replay(stored: dict[str, Any]) -> AvatarTurn | StylePack:
    """A kept answer, validated back, marked as replayed. Records kept before
    answers were models held the path as `image_path` (and no `image_url`)."""

    def upgraded(result: dict[str, Any]) -> dict[str, Any]:
        if "image_path" not in result:
            return result
        rest = {k: v for k, v in result.items() if k != "image_path"}
        return {**rest, "image_url": result["image_path"]}

    record = dict(stored)
    if "results" in record:
        record["results"] = [upgraded(dict(r)) for r in record["results"]]
    else:
        record = upgraded(record)
    return avatar_answer(record).model_copy(update={"replayed": True})


class Avatars:
    def __init__(
        self,
        settings: Settings,
        blobs: BlobStore,
        uploads: UploadStore,
        sessions: SessionStore,
        model: ImageModel,
        clock: Clock,
        idempotency: IdempotencyStore,
        spending: Spending,
        likeness: Callable[[bytes, bytes], Likeness] | None = None,
    ) -> None:
        # How like the selfie an avatar is (PIXME_IDENTITY_CHECK report or guard).
        self.likeness = likeness
        self.spending = spending
        self.settings = settings
        self.blobs = blobs
        self.uploads = uploads
        self.sessions = sessions
        self.model = model
        self.clock = clock
        self.idempotency = idempotency

    def generate(self, caller: Caller, req: GenerateRequest, idempotency_key: str | None = None) -> Answer:
        key = idempotency_key

        def run() -> Answer:
            return self._pack(caller, req, key) if req.styles else self._generate(caller, req, key)

        return self._once(caller, GENERATIONS, key, ("generate", req), run)

    def _pack(self, caller: Caller, req: GenerateRequest, key: str | None) -> Answer:
        """A style pack: one session per style, the model calls in parallel
        (at most PACK_FAN_OUT, never more than the caller's in-flight cap), each
        style's outcome on its own. Every image is charged like a generate.
        When no style succeeded, the first style's error is the answer."""
        fan_out = max(1, min(PACK_FAN_OUT, self.settings.user_max_in_flight, len(req.styles)))

        def one(style: str) -> Answer | PixmeError:
            try:
                return self._generate(caller, req.one(style), key, style)
            except PixmeError as err:
                return err

        with ThreadPoolExecutor(fan_out, thread_name_prefix="pack") as pool:
            # Each style in a copy of the request's context: its lines keep the
            # trace and caller, and its session id stays its own.
            futures = [pool.submit(contextvars.copy_context().run, one, style) for style in req.styles]
            outcomes = [f.result() for f in futures]
        answers = [o for o in outcomes if isinstance(o, Answer)]
        if not answers:
            first = outcomes[0]
            assert isinstance(first, PixmeError)
            raise first
        results: list[AvatarTurn | PackFailure] = []
        for style, outcome in zip(req.styles, outcomes, strict=True):
            if isinstance(outcome, Answer):
                assert isinstance(outcome.body, AvatarTurn)
                results.append(outcome.body)
            else:
                results.append(PackFailure.model_validate({"style": style, **outcome.body()}))
        # The headers of the charge that left the least: what the caller has now.
        headers = min(
            (a.headers for a in answers), key=lambda h: int(h.get("RateLimit-Remaining", "1000000000"))
        )
        body = StylePack(results=results, succeeded=len(answers), failed=len(outcomes) - len(answers))
        return Answer(body, dict(headers))

    def edit(self, caller: Caller, req: EditRequest, idempotency_key: str | None = None) -> Answer:
        key = idempotency_key
        return self._once(caller, EDITS, key, ("edit", req), lambda: self._edit(caller, req, key))

    def _once(
        self, caller: Caller, kind: str, key: str | None, request: tuple[str, Any], run: Callable[[], Answer]
    ) -> Answer:
        """Run a request at most once per Idempotency-Key: a retry gets the first result."""
        owner = caller.uid
        if key is None:
            return run()
        if not IDEMPOTENCY_KEY.match(key):
            raise InvalidRequest(
                "invalid_idempotency_key", "Idempotency-Key must be 8-128 letters, digits, '-' or '_'."
            )
        now = self.clock.now()
        # A reservation older than the function's timeout (PIXME_REQUEST_STALE_S
        # is set above it) cannot still be running: its process was killed, and
        # a retry takes the key over instead of answering request_in_progress.
        stale_before = now - timedelta(seconds=self.settings.request_stale_s)
        stored = self.idempotency.begin(
            owner, key, fingerprint(*request), now, now + IDEMPOTENCY_TTL, stale_before
        )
        if stored is not None:
            return Answer(_replay(stored), self._free(caller, kind))
        try:
            answer = run()
        except BaseException:
            self.idempotency.abandon(owner, key)
            raise
        self.idempotency.finish(owner, key, _record(answer.body))
        return answer

    def _free(self, caller: Caller, kind: str) -> dict[str, str]:
        """The rate-limit headers of an answer that cost nothing (a replay)."""
        allowance = self.spending.allowance(caller, kind)
        return rate_limit_headers(allowance.limit, allowance.remaining, allowance.reset_s)

    def _generate(self, caller: Caller, req: GenerateRequest, key: str | None = None, *part: str) -> Answer:
        """key: the request's Idempotency-Key (with `part`, the style of a pack):
        its session and turn get ids derived from it, so a retry after an
        attempt that died once they were stored answers them, made once."""
        owner = caller.uid
        alias = self._allowed(caller, req.model_alias)
        upload = self.uploads.get(owner, req.upload_id)
        if upload is None:
            raise NotFound("upload_not_found", "No upload with this id.")
        if upload.status == "processing":
            raise NotReady("upload_processing", "The photo is still being processed; retry shortly.")
        if upload.status != "ready" or upload.image_path is None:
            raise NotReady(
                "upload_rejected",
                upload.message or "The photo was rejected.",
                reason=upload.reason,
            )
        if key is None:
            session_id, turn_id = new_id("s_"), new_id("t_")
        else:  # before reading any image: a dead attempt's stored avatar is the answer
            session_id, turn_id = keyed_id("s_", owner, key, *part), keyed_id("t_", owner, key, *part)
            landed = self.sessions.get(session_id)
            if landed is not None and (first := self.sessions.turn(session_id, turn_id)) is not None:
                return Answer(self._result(landed, first), self._free(caller, GENERATIONS))
        style = get_style(req.style)
        # The face-centred crop when ingest made one: the model sees the person, not the room.
        selfie_path = upload.face_path or upload.image_path
        selfie = self._user_image(selfie_path, "image/jpeg")
        heads = [self._head_image(owner, sid) for sid in req.references]
        references = tuple(image for image, _ in heads)
        messages = generation_messages(
            style, selfie, req.prompt, req.context, req.caption, references, aspect_ratio=req.aspect_ratio
        )
        options = RenderOptions(req.aspect_ratio, req.image_size)
        logs.bind(session_id=session_id, turn_id=turn_id)
        reply, ms, charge = self._call(
            caller, GENERATIONS, alias.cost, alias.model_id, messages, options, style.id
        )
        reply, ms, charge, identity = self._likeness_checked(
            (caller, GENERATIONS, alias.cost, alias.model_id, messages, options, style.id),
            selfie_path, reply, ms, charge,
        )  # fmt: skip

        now = self.clock.now()
        model_id = alias.model_id
        turn = self._store_turn(owner, session_id, turn_id, None, req.prompt, model_id, reply, ms, Memory())
        session = Session(
            session_id=session_id,
            owner=owner,
            style=style.id,
            model=alias.model_id,
            upload_id=req.upload_id,
            selfie_path=selfie_path,
            created_at=now,
            updated_at=now,
            expires_at=session_expiry(now, self.settings.retention_days, upload.expires_at),
            head_turn=turn_id,
            turn_count=1,
            caption=req.caption,
            cost=alias.cost,
            prompt=req.prompt,
            context=req.context,
            aspect_ratio=req.aspect_ratio,
            image_size=req.image_size,
            references=req.references,
            reference_paths=tuple(path for _, path in heads),
        )
        with self._unless_recorded(turn):
            self.sessions.create(session, turn)
        return Answer(self._result(session, turn, identity), charge_headers(charge))

    def _edit(self, caller: Caller, req: EditRequest, key: str | None = None) -> Answer:
        owner = caller.uid
        logs.bind(session_id=req.session_id)
        session = owned_session(self.sessions, owner, req.session_id, self.clock.now())
        turn_id = new_id("t_") if key is None else keyed_id("t_", owner, key, session.session_id)
        if key is not None:  # an earlier attempt that died after storing its turn: that is the answer
            landed = self.sessions.turn(session.session_id, turn_id)
            if landed is not None:
                return Answer(self._result(session, landed), self._free(caller, EDITS))
        if req.if_head and req.if_head != session.head_turn:
            raise Conflict(
                "stale_head", "The session has moved on; reload it and retry.", head_turn_id=session.head_turn
            )
        # Two document reads whatever the session's length: the session (above)
        # and the turn edited, which carries its lineage's condensed memory.
        base_id = req.from_turn or session.head_turn
        base = self.sessions.turn(session.session_id, base_id)
        if base is None:
            raise NotFound("turn_not_found", "No turn with this id in the session.")
        memory = base.memory if base.memory is not None else self._legacy_memory(session.session_id, base)
        bucket = self.settings.assets_bucket
        selfie = self._user_image(session.selfie_path, "image/jpeg")
        current = ImageRef(self.blobs.read(bucket, base.image_path), base.mime_type, base.thought_signature)
        messages = edit_messages(
            get_style(session.style),
            selfie,
            current,
            memory,
            req.instruction,
            caption=session.caption,
            prompt=session.prompt,
            context=session.context,
            aspect_ratio=session.aspect_ratio,
            references=self._references(session),
        )
        options = RenderOptions(session.aspect_ratio, session.image_size)
        logs.bind(turn_id=turn_id)
        reply, ms, charge = self._call(
            caller, EDITS, session.cost, session.model, messages, options, session.style
        )
        reply, ms, charge, identity = self._likeness_checked(
            (caller, EDITS, session.cost, session.model, messages, options, session.style),
            session.selfie_path, reply, ms, charge,
        )  # fmt: skip
        turn = self._store_turn(
            owner, session.session_id, turn_id, base_id, req.instruction, session.model, reply, ms,
            memory.then(req.instruction),
        )  # fmt: skip
        with self._unless_recorded(turn):
            session = self.sessions.append(session.session_id, turn, self.clock.now(), req.if_head)
        return Answer(self._result(session, turn, identity), charge_headers(charge))

    @contextmanager
    def _unless_recorded(self, turn: Turn) -> Iterator[None]:
        """Take the turn's image back when the turn was certainly not recorded
        (a stale head, a deleted session): no image without a turn. After an
        ambiguous failure (the database unavailable mid-commit, or a retried
        commit that had landed) the image stays, since a turn may name it."""
        try:
            yield
        except (Conflict, NotFound) as err:
            if err.code == "turn_exists":
                raise
            try:
                self.blobs.delete(self.settings.assets_bucket, turn.image_path)
            except Exception:
                log.warning("could not remove %s; the bucket's lifecycle rule will", turn.image_path)
            raise

    def _legacy_memory(self, session_id: str, base: Turn) -> Memory:
        """The memory of a turn stored before turns carried it: walk its lineage
        (once per such turn; every turn written since carries its memory)."""
        found = {base.turn_id: base}
        parent = base.parent
        while parent is not None and parent not in found and len(found) < LEGACY_WALK:
            turn = self.sessions.turn(session_id, parent)
            if turn is None:
                break
            found[parent] = turn
            parent = turn.parent
        return Memory.of(earlier_instructions(lineage(found, base.turn_id)))

    def _references(self, session: Session) -> tuple[ImageRef, ...]:
        """The reference avatars chosen at generation, as plain user images;
        one deleted since is left out rather than failing the edit."""
        images: list[ImageRef] = []
        for path in session.reference_paths:
            try:
                images.append(self._user_image(path, _MIME.get(path.rsplit(".", 1)[-1], "image/png")))
            except NotFound:
                continue
        return tuple(images)

    def _user_image(self, path: str, mime_type: str) -> ImageRef:
        """A user image (selfie, reference avatar) as the model should get it:
        by gs:// reference where the platform reads the bucket, else inline."""
        bucket = self.settings.assets_bucket
        if self.model.by_reference:
            return ImageRef(b"", mime_type, uri=f"gs://{bucket}/{path}")
        return ImageRef(self.blobs.read(bucket, path), mime_type)

    def _head_image(self, owner: str, session_id: str) -> tuple[ImageRef, str]:
        session = owned_session(self.sessions, owner, session_id, self.clock.now())
        head = self.sessions.turn(session_id, session.head_turn)
        if head is None:
            raise NotFound("session_not_found", "No session with this id.")
        # Sent as a plain user image: no signature needed, and none is replayed.
        return self._user_image(head.image_path, head.mime_type), head.image_path

    def _allowed(self, caller: Caller, alias_name: str | None) -> ModelAlias:
        alias = self.settings.alias(alias_name)
        if not may_use(alias, caller):
            assert alias.requires is not None
            claim, wanted = alias.requires
            raise Forbidden(
                "model_not_allowed",
                f"The model '{alias.alias}' needs the {claim} '{wanted}'.",
                model=alias.alias,
            )
        return alias

    def _call(
        self,
        caller: Caller,
        kind: str,
        cost: int,
        model_id: str,
        messages: Any,
        options: RenderOptions,
        style: str,
    ) -> tuple[ModelReply, int, Charge]:
        """The one model call of a request, charged before it is made; logged as
        one `generation` line (outcome, model, latency, cost kept)."""
        charge = self.spending.charge(caller, kind, cost)
        started = time.perf_counter()
        try:
            reply = self.model.generate(model_id, messages, options)
        except BaseException as err:
            refund = refundable(err)
            self.spending.settle(charge, refund=refund)
            if isinstance(err, PixmeError):
                err.headers.update(charge_headers(charge, refunded=refund))
                outcome = "refused" if isinstance(err, ModelRefused) else "failed"
                _generation_line(kind, outcome, err.code, model_id, style, started, 0 if refund else cost)
            raise
        self.spending.settle(charge, refund=False)
        ms = _generation_line(kind, "image", None, reply.model_id or model_id, style, started, cost)
        return reply, ms, charge

    def _store_turn(
        self,
        owner: str,
        session_id: str,
        turn_id: str,
        parent: str | None,
        instruction: str | None,
        model_id: str,
        reply: ModelReply,
        ms: int,
        memory: Memory,
    ) -> Turn:
        path = avatar_path(owner, session_id, turn_id, reply.mime_type)
        self.blobs.write(self.settings.assets_bucket, path, reply.image, reply.mime_type)
        return Turn(
            turn_id=turn_id,
            parent=parent,
            instruction=instruction,
            text=reply.text,
            image_path=path,
            mime_type=reply.mime_type,
            thought_signature=reply.thought_signature,
            # The model that answered (an alias may list fallbacks: "a|b").
            model=reply.model_id or model_id,
            model_version=reply.model_version,
            usage=reply.usage,
            ms=ms,
            created_at=self.clock.now(),
            memory=memory,
        )

    def _likeness_checked(
        self, call: tuple[Any, ...], selfie_path: str, reply: ModelReply, ms: int, charge: Charge
    ) -> tuple[ModelReply, int, Charge, Identity | None]:
        """With PIXME_IDENTITY_CHECK on, measure the avatar against the selfie's
        face crop; in guard mode, ask once more (charged like any image) when
        the style's threshold says another person, and flag it if it still does."""
        if self.likeness is None or self.settings.identity_check == "off":
            return reply, ms, charge, None
        style = call[-1]
        source = self.blobs.read(self.settings.assets_bucket, selfie_path)
        measured = self.likeness(source, reply.image)
        retried = False
        if self.settings.identity_check == "guard" and measured.same_person(style) is False:
            log.warning("likeness %.2f over %s's threshold: asking again", measured.distance or 0, style)
            caller, kind, cost, model_id, messages, options, _ = call
            again = with_likeness_reminder(messages)
            reply, ms, charge = self._call(caller, kind, cost, model_id, again, options, style)
            measured, retried = self.likeness(source, reply.image), True
        same = measured.same_person(style)
        identity = Identity(
            distance=None if measured.distance is None else round(measured.distance, 3),
            threshold=THRESHOLDS.get(style),
            same_person=same,
            tone_shift=None if measured.tone_shift is None else round(measured.tone_shift, 1),
            retried=retried,
            flagged=self.settings.identity_check == "guard" and same is False,
        )
        logs.bind(identity_distance=identity.distance, identity_flagged=identity.flagged)
        return reply, ms, charge, identity

    def _result(self, session: Session, turn: Turn, identity: Identity | None = None) -> AvatarTurn:
        if identity is not None:
            return self._result(session, turn).model_copy(update={"identity": identity})
        return AvatarTurn(
            session_id=session.session_id,
            turn_id=turn.turn_id,
            parent_turn_id=turn.parent,
            style=session.style,
            text=turn.text,
            image_url=Stored(turn.image_path),
            image_url_expires_in_s=self.settings.url_ttl_s,
            turn_count=session.turn_count,
            model=turn.model,
            model_version=turn.model_version,
            usage=turn.usage,
            ms=turn.ms,
        )


def _generation_line(
    kind: str, outcome: str, code: str | None, model: str, style: str, started: float, cost: int
) -> int:
    """Log one model call for the log-based metrics (generations, refusals by
    code, model latency, cost units spent); returns its latency in ms."""
    ms = int((time.perf_counter() - started) * 1000)
    fields: dict[str, Any] = {
        "event": "generation",
        "kind": "generate" if kind == GENERATIONS else "edit",
        "outcome": outcome,
        "model": model,
        "style": style,
        "latency_ms": ms,
        "cost": cost,
    }
    if code is not None:
        fields["code"] = code
    level = logging.INFO if outcome == "image" else logging.WARNING
    suffix = f": {code}" if code else ""
    log.log(level, "%s %s with %s in %s ms%s", fields["kind"], outcome, model, ms, suffix, extra=fields)
    return ms
