"""Use cases: what a caller owns (sessions with their turns: read, delete) and the styles."""

from __future__ import annotations

from pixme.api import PageRequest
from pixme.config import Settings
from pixme.conversation import Session, Turn
from pixme.ownership import owned_session
from pixme.ports import BlobStore, Clock, SessionStore
from pixme.removal import remove_session
from pixme.responses import (
    SessionDeleted,
    SessionList,
    SessionPage,
    SessionSummary,
    Stored,
    StyleCatalog,
    StyleInfo,
    TurnSummary,
)
from pixme.styles import CATALOG_VERSION, STYLES

MAX_LIST = 50


def styles() -> StyleCatalog:
    return StyleCatalog(version=CATALOG_VERSION, styles=[StyleInfo(**s.public()) for s in STYLES])


class Library:
    def __init__(
        self,
        settings: Settings,
        blobs: BlobStore,
        sessions: SessionStore,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.blobs = blobs
        self.sessions = sessions
        self.clock = clock

    def session(self, owner: str, session_id: str, page: PageRequest | None = None) -> SessionPage:
        """The session and one page of its turns (oldest first unless asked);
        `next_page_token` is null on the last page."""
        page = page or PageRequest()
        session = owned_session(self.sessions, owner, session_id, self.clock.now())
        # One more than the page tells whether another page follows.
        turns = self.sessions.page(session_id, page.limit + 1, page.page_token, page.newest_first)
        more = len(turns) > page.limit
        turns = turns[: page.limit]
        return SessionPage(
            **self._summary(session).model_dump(),
            turns=[_turn(t) for t in turns],
            next_page_token=turns[-1].turn_id if more and turns else None,
        )

    def delete(self, owner: str, session_id: str) -> SessionDeleted:
        """Delete one session of the caller: its turns, their images, the document."""
        session = owned_session(self.sessions, owner, session_id, self.clock.now())
        images = remove_session(self.blobs, self.sessions, self.settings.assets_bucket, session)
        return SessionDeleted(session_id=session_id, deleted=True, images_deleted=images)

    def sessions_of(self, owner: str) -> SessionList:
        now = self.clock.now()
        live = [s for s in self.sessions.list_for(owner, MAX_LIST) if not s.expired(now)]
        return SessionList(sessions=[self._summary(s) for s in live])

    def _summary(self, s: Session) -> SessionSummary:
        return SessionSummary(
            session_id=s.session_id,
            style=s.style,
            model=s.model,
            upload_id=s.upload_id,
            head_turn_id=s.head_turn,
            turn_count=s.turn_count,
            caption=s.caption,
            prompt=s.prompt,
            aspect_ratio=s.aspect_ratio,
            image_size=s.image_size,
            created_at=s.created_at.isoformat(),
            updated_at=s.updated_at.isoformat(),
            expires_at=s.expires_at.isoformat(),
        )


def _turn(t: Turn) -> TurnSummary:
    return TurnSummary(
        turn_id=t.turn_id,
        parent_turn_id=t.parent,
        instruction=t.instruction,
        text=t.text,
        image_url=Stored(t.image_path),
        model_version=t.model_version,
        ms=t.ms,
        created_at=t.created_at.isoformat(),
    )
