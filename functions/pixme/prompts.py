"""How a style, a user's context and an edit become model input.

The output is a list of provider-neutral `Message`s; the Gemini adapter turns
them into SDK contents. Layout of an edit request (bounded, whatever the turn):

    user:  style prompt + memory of earlier edits, the normalized selfie
    model: the image being edited, with its thought signature
    user:  the new instruction only

The new instruction sits alone in the last user message so that neither the
model nor the offline renderer re-applies edits listed in the memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pixme.styles import Style, fidelity_clause

IDENTITY_CLAUSE = (
    "The photo is the only reference for who the person is: it must stay "
    "the same person, with the same age and expression."
)
ANSWER_CLAUSE = "Answer with one square image and one short sentence describing it."


@dataclass(frozen=True)
class ImageRef:
    """An image the model sees: bytes plus, for model output, its signature."""

    data: bytes
    mime_type: str
    thought_signature: bytes | None = None


@dataclass(frozen=True)
class Message:
    role: str  # "user" or "model"
    texts: tuple[str, ...] = ()
    images: tuple[ImageRef, ...] = field(default=())


def style_brief(
    style: Style,
    extra: str | None = None,
    context: str | None = None,
    caption: str | None = None,
) -> str:
    parts = [style.prompt, fidelity_clause(style), IDENTITY_CLAUSE]
    if context:
        parts.append(f"About the person, for mood and props only: {context.strip()}")
    if extra:
        parts.append(f"Also: {extra.strip()}")
    if caption:
        parts.append(f'Write the text "{caption.strip()}" on the image as a bold caption.')
    return " ".join(parts)


REFERENCES_CLAUSE = (
    "The next images are earlier avatars of the same person: use them only to keep "
    "the likeness consistent, not for style or composition."
)


def generation_messages(
    style: Style,
    selfie: ImageRef,
    extra: str | None = None,
    context: str | None = None,
    caption: str | None = None,
    references: tuple[ImageRef, ...] = (),
) -> list[Message]:
    brief = style_brief(style, extra, context, caption)
    texts: tuple[str, ...] = (f"{brief} {ANSWER_CLAUSE}",)
    if references:
        texts += (REFERENCES_CLAUSE,)
    # The selfie stays the first image: it is the identity the model must keep.
    return [Message("user", texts, (selfie, *references))]


def memory_text(earlier_instructions: list[str], limit: int = 12) -> str:
    """A condensed memory of the edits that lead to the image being edited.

    Only the most recent `limit` instructions are kept verbatim; older ones are
    counted, so the text stays bounded however long the conversation gets.
    """
    if not earlier_instructions:
        return "No edits have been applied yet."
    kept = earlier_instructions[-limit:]
    dropped = len(earlier_instructions) - len(kept)
    head = f"{dropped} earlier edits and then: " if dropped else ""
    return "Edits already applied, keep them: " + head + "; ".join(i.strip() for i in kept) + "."


def edit_messages(
    style: Style,
    selfie: ImageRef,
    current: ImageRef,
    earlier_instructions: list[str],
    instruction: str,
    caption: str | None = None,
) -> list[Message]:
    brief = style_brief(style, caption=caption)
    return [
        Message("user", (brief, memory_text(earlier_instructions)), (selfie,)),
        Message("model", (), (current,)),
        Message(
            "user",
            (
                f"Edit the last image: {instruction.strip()}. Keep the same person, "
                f"the style and every earlier edit. {ANSWER_CLAUSE}",
            ),
        ),
    ]
