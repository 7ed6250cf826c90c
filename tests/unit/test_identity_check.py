"""PIXME_IDENTITY_CHECK in generate and edit, against fakes of our ports and a
likeness measure that answers what the test queues (the real one is tested in
test_likeness.py and, end to end, in tests/e2e/test_likeness_guard.py)."""

from __future__ import annotations

from test_avatars import World

from fakes import settings
from pixme.likeness import THRESHOLDS, Likeness
from pixme.prompts import LIKENESS_REMINDER
from pixme.services.avatars import Avatars


class Measure:
    """Distances to answer, in order; what it was asked to compare."""

    def __init__(self, *distances: float | None) -> None:
        self.distances = list(distances)
        self.calls: list[tuple[bytes, bytes]] = []

    def __call__(self, source: bytes, avatar: bytes) -> Likeness:
        self.calls.append((source, avatar))
        distance = self.distances.pop(0)
        return Likeness(detected=distance is not None, distance=distance, tone_source=None, tone_avatar=None)


def world(mode: str, measure: Measure) -> World:
    w = World(settings(no_face="allow", identity_check=mode))
    w.avatars = Avatars(
        w.s, w.blobs, w.uploads, w.sessions, w.model, w.clock, w.idempotency, w.spending, likeness=measure
    )
    w.upload()
    return w


def test_guard_asks_again_with_a_likeness_reminder_and_keeps_the_better_answer() -> None:
    measure = Measure(0.9, 0.3)
    w = world("guard", measure)
    body = w.generate()
    assert body["identity"] == {
        "distance": 0.3, "threshold": THRESHOLDS["comics"], "same_person": True, "tone_shift": None,
        "retried": True, "flagged": False,
    }  # fmt: skip
    (_, first), (_, second) = w.model.calls
    assert LIKENESS_REMINDER not in " ".join(t for m in first for t in m.texts)
    assert LIKENESS_REMINDER in second[-1].texts
    assert measure.calls[0][0] == measure.calls[1][0]  # always against the selfie's face crop
    assert body["text"] == "image 2"  # the retry's image is the one stored and shown
    assert len(w.sessions.sessions) == 1 and body["turn_count"] == 1


def test_guard_flags_what_still_looks_like_someone_else() -> None:
    w = world("guard", Measure(0.9, 0.85))
    body = w.generate()
    assert body["identity"]["retried"] is True and body["identity"]["flagged"] is True
    assert len(w.model.calls) == 2


def test_an_honest_edit_passes_the_guard_without_a_second_call() -> None:
    w = world("guard", Measure(0.3, 0.4))
    first = w.generate()
    edit = w.edit(first["session_id"], "add glasses")
    assert edit["identity"]["same_person"] is True and edit["identity"]["retried"] is False
    assert len(w.model.calls) == 2  # one per request


def test_report_only_measures_and_nothing_is_guarded_where_the_measure_cannot_tell() -> None:
    w = world("report", Measure(0.9))
    body = w.generate()
    assert body["identity"]["same_person"] is False and body["identity"]["retried"] is False
    assert body["identity"]["flagged"] is False and len(w.model.calls) == 1
    w = world("guard", Measure(0.95))
    pixel = w.generate(style="pixel_art")  # no calibrated threshold: the guard does not act
    assert pixel["identity"]["threshold"] is None and pixel["identity"]["same_person"] is None
    assert pixel["identity"]["retried"] is False and len(w.model.calls) == 1


def test_off_adds_nothing() -> None:
    w = world("off", Measure())
    assert "identity" not in w.generate()
