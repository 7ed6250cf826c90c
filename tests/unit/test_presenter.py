"""The presenter at the HTTP edge (`web.present`): services name images by
their path, and only the edge turns them into signed URLs."""

from __future__ import annotations

import pytest
from test_entry_routes import Stack, payload

from pixme import responses as r
from pixme.errors import Unavailable
from pixme.web import present

WHEN = "2026-11-24T12:00:00+00:00"


def turn(i: int, path: str) -> r.TurnSummary:
    return r.TurnSummary(
        turn_id=f"t_{i}",
        parent_turn_id=None,
        instruction=None,
        text=None,
        image_url=r.Stored(path),
        model_version=None,
        ms=1,
        created_at=WHEN,
    )


def page(paths: list[str]) -> r.SessionPage:
    return r.SessionPage(
        session_id="s_1",
        style="comics",
        model="m",
        upload_id="u_1",
        head_turn_id="t_0",
        turn_count=len(paths),
        caption=None,
        prompt=None,
        aspect_ratio=None,
        image_size=None,
        created_at=WHEN,
        updated_at=WHEN,
        expires_at=WHEN,
        turns=[turn(i, p) for i, p in enumerate(paths)],
        next_page_token=None,
    )


class Signer:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, path: str) -> str:
        self.asked.append(path)
        return f"https://signed.example/{path}"


def test_each_image_is_signed_once_and_shown_as_its_url() -> None:
    paths = ["avatars/a/s_1/t_0.png", "avatars/a/s_1/t_1.png", "avatars/a/s_1/t_0.png"]
    sign = Signer()
    shown = present(page(paths), sign)
    assert [t["image_url"] for t in shown["turns"]] == [f"https://signed.example/{p}" for p in paths]
    assert sorted(sign.asked) == sorted(set(paths))
    assert {k: v for k, v in shown.items() if k != "turns"} == {
        k: v for k, v in page(paths).model_dump(mode="json").items() if k != "turns"
    }


def test_without_the_edge_an_image_is_its_path_and_validates_back() -> None:
    """What a stored record (an idempotency key's answer) holds."""
    original = page(["avatars/a/s_1/t_0.png"])
    record = original.model_dump(mode="json")
    assert record["turns"][0]["image_url"] == "avatars/a/s_1/t_0.png"
    assert r.SessionPage.model_validate(record) == original
    with pytest.raises(ValueError):
        r.TurnSummary.model_validate({**record["turns"][0], "image_url": 7})


def test_an_answer_without_images_asks_no_signature_and_one_with_images_needs_a_signer() -> None:
    sign = Signer()
    assert present(r.SessionList(sessions=[]), sign) == {"sessions": []} and sign.asked == []
    exported = r.ExportedTurn(
        turn_id="t_0",
        parent_turn_id=None,
        instruction=None,
        text=None,
        model_version=None,
        created_at=WHEN,
        image_url=None,
    )
    assert present(exported, sign)["image_url"] is None and sign.asked == []
    assert present(r.SessionList(sessions=[]), None) == {"sessions": []}
    with pytest.raises(RuntimeError, match="signs none"):
        present(page(["avatars/a/s_1/t_0.png"]), None)


def test_a_signer_that_is_down_is_a_clean_503(monkeypatch: pytest.MonkeyPatch) -> None:
    stack = Stack()
    stack.install(monkeypatch)
    session_id = payload(stack.generate(stack.upload()))["session_id"]

    def down(*args: object, **kwargs: object) -> str:
        raise Unavailable("storage_unavailable", "Storage is busy.", retry_after_s=2)

    monkeypatch.setattr(stack.world.blobs, "signed_url", down)
    resp = stack.call("sessions", path=f"/{session_id}")
    assert resp.status_code == 503 and payload(resp)["error"]["code"] == "storage_unavailable"
    assert resp.headers["Retry-After"] == "2"
