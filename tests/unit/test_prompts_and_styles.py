"""The style catalog and how requests become model input."""

from __future__ import annotations

import re

from pixme import prompts
from pixme.conversation import Turn, earlier_instructions, lineage
from pixme.prompts import ImageRef
from pixme.styles import STYLES, Fidelity, get_style

SELFIE = ImageRef(b"selfie", "image/jpeg")


def test_catalog_has_the_promised_styles_without_trademarks() -> None:
    ids = {s.id for s in STYLES}
    assert {
        "comics",
        "manga",
        "zombie",
        "pop_art",
        "pixel_art",
        "animated_3d",
        "cel_shaded",
        "watercolor",
        "sketch",
        "cyberpunk",
        "knight",
    } <= ids
    assert len(ids) == len(STYLES)
    banned = re.compile(r"pixar|disney|marvel|dc comics|ghibli|warhol|simpsons|minecraft", re.I)
    for style in STYLES:
        assert not banned.search(style.prompt + style.name + style.description), style.id


def test_comics_manga_and_zombie_keep_the_face_most_faithfully() -> None:
    for style_id in ("comics", "manga", "zombie"):
        assert get_style(style_id).fidelity is Fidelity.HIGH


def test_generation_prompt_carries_style_identity_and_options() -> None:
    (msg,) = prompts.generation_messages(get_style("zombie"), SELFIE, "add a hat", None, "ANA")
    text = msg.texts[0]
    assert "zombie" in text and "same person" in text and "add a hat" in text and '"ANA"' in text
    assert msg.images == (SELFIE,)


def test_edit_payload_is_the_same_size_at_turn_2_and_turn_50() -> None:
    current = ImageRef(b"x" * 1000, "image/png", b"sig")

    def size(n: int) -> int:
        msgs = prompts.edit_messages(
            get_style("comics"), SELFIE, current, [f"edit number {i}" for i in range(n)], "add glasses"
        )
        return sum(len(t) for m in msgs for t in m.texts) + sum(len(i.data) for m in msgs for i in m.images)

    assert size(50) <= size(2) * 1.25


def test_memory_keeps_recent_edits_verbatim_and_counts_the_rest() -> None:
    text = prompts.memory_text([f"e{i}" for i in range(20)], limit=5)
    assert "15 earlier edits" in text and "e19" in text and "e14" not in text
    assert prompts.memory_text([]) == "No edits have been applied yet."


def _turn(turn_id: str, parent: str | None, instruction: str | None) -> Turn:
    from datetime import UTC, datetime

    return Turn(turn_id, parent, instruction, "", "", "image/png", None, "", "", {}, 0, datetime.now(UTC))


def test_lineage_follows_parents_and_survives_cycles() -> None:
    turns = {
        t.turn_id: t
        for t in [
            _turn("a", None, None),
            _turn("b", "a", "glasses"),
            _turn("c", "b", "warmer"),
            _turn("d", "a", "cooler"),
        ]
    }
    assert [t.turn_id for t in lineage(turns, "c")] == ["a", "b", "c"]
    assert earlier_instructions(lineage(turns, "d")) == ["cooler"]
    turns["a"] = _turn("a", "c", None)  # corrupt: a cycle
    assert len(lineage(turns, "c")) == 3


def test_memory_stays_bounded_and_counts_what_it_condenses() -> None:
    from pixme.conversation import MEMORY_LIMIT, Memory

    memory = Memory()
    for i in range(40):
        memory = memory.then(f" e{i} ")
    assert len(memory.edits) == MEMORY_LIMIT and memory.dropped == 40 - MEMORY_LIMIT
    assert memory.edits[-1] == "e39" and memory == Memory.of([f"e{i}" for i in range(40)])
    assert prompts.memory_text(memory) == prompts.memory_text([f"e{i}" for i in range(40)])


def test_the_format_sentence_follows_the_aspect_ratio_and_precedes_free_text() -> None:
    assert prompts.answer_clause(None) == prompts.answer_clause("1:1") == prompts.ANSWER_CLAUSE
    assert "landscape" in prompts.answer_clause("16:9") and "portrait" in prompts.answer_clause("9:16")
    (msg,) = prompts.generation_messages(get_style("comics"), SELFIE, "add a hat", aspect_ratio="21:9")
    text = msg.texts[0]
    assert "square" not in text and text.index("21:9") < text.index("Also: add a hat")
    assert text.rstrip().endswith("add a hat")
