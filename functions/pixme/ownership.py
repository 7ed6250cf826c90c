"""What a caller owns, looked up so that nothing else leaks: core, for every service."""

from __future__ import annotations

from datetime import datetime

from pixme.conversation import Session
from pixme.errors import NotFound
from pixme.ports import SessionStore


def owned_session(sessions: SessionStore, owner: str, session_id: str, now: datetime) -> Session:
    """The caller's live session, or NotFound.

    Someone else's session and an expired one look exactly like a missing one.
    """
    session = sessions.get(session_id)
    if session is None or session.owner != owner or session.expired(now):
        raise NotFound("session_not_found", "No session with this id.")
    return session
