"""Use cases: generate a styled avatar from a ready upload, and edit it.

The model call happens before any write, and the session is written last; a
turn that cannot be recorded takes its image back, so a failed or refused
call leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pixme.api import EditRequest, GenerateRequest
from pixme.config import ModelAlias, Settings
from pixme.conversation import Session, Turn, earlier_instructions, expiry, lineage, new_id
from pixme.errors import Conflict, Forbidden, InvalidRequest, NotFound, NotReady, PixmeError
from pixme.identity import Caller
from pixme.layout import avatar_path
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
from pixme.prompts import ImageRef, edit_messages, generation_messages
from pixme.services.library import owned_session
from pixme.spending import EDITS, GENERATIONS, Spending, charge_headers, rate_limit_headers, refundable
from pixme.styles import get_style


@dataclass(frozen=True)
class Answer:
    """A generate or edit result, with the headers the edge sends with it."""

    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

log = logging.getLogger(__name__)
IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_-]{8,128}$")
IDEMPOTENCY_TTL = timedelta(hours=24)


def _public(result: dict[str, Any]) -> dict[str, Any]:
    """Drop internal fields (the storage path) from a turn result."""
    return {k: v for k, v in result.items() if k != "image_path"}


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
    ) -> None:
        self.spending = spending
        self.settings = settings
        self.blobs = blobs
        self.uploads = uploads
        self.sessions = sessions
        self.model = model
        self.clock = clock
        self.idempotency = idempotency

    def generate(self, caller: Caller, req: GenerateRequest, idempotency_key: str | None = None) -> Answer:
        return self._once(
            caller, GENERATIONS, idempotency_key, ("generate", req), lambda: self._generate(caller, req)
        )

    def edit(self, caller: Caller, req: EditRequest, idempotency_key: str | None = None) -> Answer:
        return self._once(caller, EDITS, idempotency_key, ("edit", req), lambda: self._edit(caller, req))

    def _once(
        self, caller: Caller, kind: str, key: str | None, request: tuple[str, Any], run: Callable[[], Answer]
    ) -> Answer:
        """Run a request at most once per Idempotency-Key: a retry gets the first result."""
        owner = caller.uid
        if key is None:
            answer = run()
            return Answer(_public(answer.body), answer.headers)
        if not IDEMPOTENCY_KEY.match(key):
            raise InvalidRequest(
                "invalid_idempotency_key", "Idempotency-Key must be 8-128 letters, digits, '-' or '_'."
            )
        fingerprint = hashlib.sha256(repr(request).encode()).hexdigest()
        now = self.clock.now()
        stored = self.idempotency.begin(owner, key, fingerprint, now, now + IDEMPOTENCY_TTL)
        if stored is not None:
            replay = dict(stored)
            # URLs expire: sign the stored image again rather than replaying an old URL.
            path = replay.pop("image_path")
            replay["image_url"] = self.blobs.signed_url(
                self.settings.assets_bucket, path, self.settings.url_ttl_s
            )
            replay["replayed"] = True
            allowance = self.spending.allowance(caller, kind)  # a replay costs nothing
            return Answer(replay, rate_limit_headers(allowance.limit, allowance.remaining, allowance.reset_s))
        try:
            answer = run()
        except BaseException:
            self.idempotency.abandon(owner, key)
            raise
        record = {k: v for k, v in answer.body.items() if k != "image_url"}
        self.idempotency.finish(owner, key, record)
        return Answer(_public(answer.body), answer.headers)

    def _generate(self, caller: Caller, req: GenerateRequest) -> Answer:
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
        style = get_style(req.style)
        # The face-centred crop when ingest made one: the model sees the person, not the room.
        selfie_path = upload.face_path or upload.image_path
        selfie = ImageRef(self.blobs.read(self.settings.assets_bucket, selfie_path), "image/jpeg")
        references = tuple(self._head_image(owner, sid) for sid in req.references)
        messages = generation_messages(style, selfie, req.prompt, req.context, req.caption, references)
        options = RenderOptions(req.aspect_ratio, req.image_size)
        reply, ms, charge = self._call(caller, GENERATIONS, alias.cost, req.model, messages, options)

        now = self.clock.now()
        session_id, turn_id = new_id("s_"), new_id("t_")
        turn = self._store_turn(owner, session_id, turn_id, None, req.prompt, req.model, reply, ms)
        session = Session(
            session_id=session_id,
            owner=owner,
            style=style.id,
            model=req.model,
            upload_id=req.upload_id,
            selfie_path=selfie_path,
            created_at=now,
            updated_at=now,
            expires_at=expiry(now, self.settings.retention_days),
            head_turn=turn_id,
            turn_count=1,
            caption=req.caption,
            cost=alias.cost,
        )
        with self._unless_recorded(turn):
            self.sessions.create(session, turn)
        return Answer(self._result(session, turn), charge_headers(charge))

    def _edit(self, caller: Caller, req: EditRequest) -> Answer:
        owner = caller.uid
        session = owned_session(self.sessions, owner, req.session_id, self.clock.now())
        if req.if_head and req.if_head != session.head_turn:
            raise Conflict(
                "stale_head", "The session has moved on; reload it and retry.", head_turn_id=session.head_turn
            )
        turns = {t.turn_id: t for t in self.sessions.turns(session.session_id)}
        base_id = req.from_turn or session.head_turn
        base = turns.get(base_id)
        if base is None:
            raise NotFound("turn_not_found", "No turn with this id in the session.")
        path = lineage(turns, base_id)
        bucket = self.settings.assets_bucket
        selfie = ImageRef(self.blobs.read(bucket, session.selfie_path), "image/jpeg")
        current = ImageRef(self.blobs.read(bucket, base.image_path), base.mime_type, base.thought_signature)
        messages = edit_messages(
            get_style(session.style),
            selfie,
            current,
            earlier_instructions(path),
            req.instruction,
            caption=session.caption,
        )
        reply, ms, charge = self._call(
            caller, EDITS, session.cost, session.model, messages, RenderOptions()
        )
        turn = self._store_turn(
            owner, session.session_id, new_id("t_"), base_id, req.instruction, session.model, reply, ms
        )
        with self._unless_recorded(turn):
            session = self.sessions.append(session.session_id, turn, self.clock.now(), req.if_head)
        return Answer(self._result(session, turn), charge_headers(charge))

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

    def _head_image(self, owner: str, session_id: str) -> ImageRef:
        session = owned_session(self.sessions, owner, session_id, self.clock.now())
        head = {t.turn_id: t for t in self.sessions.turns(session_id)}.get(session.head_turn)
        if head is None:
            raise NotFound("session_not_found", "No session with this id.")
        data = self.blobs.read(self.settings.assets_bucket, head.image_path)
        # Sent as a plain user image: no signature needed, and none is replayed.
        return ImageRef(data, head.mime_type)

    def _allowed(self, caller: Caller, alias_name: str | None) -> ModelAlias:
        alias = self.settings.alias(alias_name)
        if alias.requires is not None:
            claim, wanted = alias.requires
            if str(caller.claims.get(claim, "")) != wanted:
                raise Forbidden(
                    "model_not_allowed",
                    f"The model '{alias.alias}' needs the {claim} '{wanted}'.",
                    model=alias.alias,
                )
        return alias

    def _call(
        self, caller: Caller, kind: str, cost: int, model_id: str, messages: Any, options: RenderOptions
    ) -> tuple[ModelReply, int, Charge]:
        """The one model call of a request, charged before it is made."""
        charge = self.spending.charge(caller, kind, cost)
        started = time.perf_counter()
        try:
            reply = self.model.generate(model_id, messages, options)
        except BaseException as err:
            refund = refundable(err)
            self.spending.settle(charge, refund=refund)
            if isinstance(err, PixmeError):
                err.headers.update(charge_headers(charge, refunded=refund))
            raise
        self.spending.settle(charge, refund=False)
        return reply, int((time.perf_counter() - started) * 1000), charge

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
            model=model_id,
            model_version=reply.model_version,
            usage=reply.usage,
            ms=ms,
            created_at=self.clock.now(),
        )

    def _result(self, session: Session, turn: Turn) -> dict[str, Any]:
        ttl = self.settings.url_ttl_s
        return {
            "session_id": session.session_id,
            "turn_id": turn.turn_id,
            "parent_turn_id": turn.parent,
            "style": session.style,
            "text": turn.text,
            "image_url": self.blobs.signed_url(self.settings.assets_bucket, turn.image_path, ttl),
            "image_url_expires_in_s": ttl,
            "turn_count": session.turn_count,
            "model": turn.model,
            "model_version": turn.model_version,
            "usage": turn.usage,
            "ms": turn.ms,
            "image_path": turn.image_path,
        }
