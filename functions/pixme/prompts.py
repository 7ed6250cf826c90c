"""How a style, a user's context and an edit become model input.

The output is a list of provider-neutral `Message`s; the Gemini adapter turns
them into SDK contents. Layout of an edit request (bounded, whatever the turn):

    user:  the pinned brief (style, the generation's prompt, context, caption,
           format) + memory of earlier edits, the normalized selfie (+ references)
    model: the image being edited, with its thought signature
    user:  the new instruction only

The new instruction sits alone in the last user message so that neither the
model nor the offline renderer re-applies edits listed in the memory. The
format sentence names the session's aspect ratio, so no text contradicts the
image config the request carries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from pixme.conversation import Memory
from pixme.styles import Style, fidelity_clause

IDENTITY_CLAUSE = (
    "The photo is the only reference for who the person is: it must stay "
    "the same person, with the same age and expression."
)
ANSWER_CLAUSE = "Answer with one square image and one short sentence describing it."


def answer_clause(aspect_ratio: str | None = None) -> str:
    """What to answer with, in the session's format (square unless asked otherwise)."""
    if aspect_ratio in (None, "1:1"):
        return ANSWER_CLAUSE
    assert aspect_ratio is not None
    width, _, height = aspect_ratio.partition(":")
    shape = "landscape" if int(width) > int(height) else "portrait"
    return (
        f"Answer with one {shape} image in the {aspect_ratio} aspect ratio "
        "and one short sentence describing it."
    )


@dataclass(frozen=True)
class ImageRef:
    """An image the model sees: bytes plus, for model output, its signature.

    Where the platform reads Cloud Storage itself (Vertex AI), a user image
    goes by reference instead: `uri` is its gs:// address and `data` empty,
    so the request stays small and the bytes are never read by the function.
    """

    data: bytes
    mime_type: str
    thought_signature: bytes | None = None
    uri: str | None = None


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
    answer: str | None = None,
) -> str:
    """What defines the avatar. `answer` (the format sentence) goes before the
    free text, so a prompt is never read as running into it."""
    parts = [style.prompt, fidelity_clause(style), IDENTITY_CLAUSE]
    if answer:
        parts.append(answer)
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
    aspect_ratio: str | None = None,
) -> list[Message]:
    brief = style_brief(style, extra, context, caption, answer=answer_clause(aspect_ratio))
    texts: tuple[str, ...] = (brief,)
    if references:
        texts += (REFERENCES_CLAUSE,)
    # The selfie stays the first image: it is the identity the model must keep.
    return [Message("user", texts, (selfie, *references))]


def memory_text(earlier: Sequence[str] | Memory, limit: int = 12) -> str:
    """A condensed memory of the edits that lead to the image being edited.

    Only the most recent `limit` instructions are kept verbatim; older ones are
    counted, so the text stays bounded however long the conversation gets.
    """
    memory = earlier if isinstance(earlier, Memory) else Memory.of(list(earlier), limit)
    kept = memory.edits[-limit:] if limit else ()
    dropped = memory.dropped + len(memory.edits) - len(kept)
    if not kept and not dropped:
        return "No edits have been applied yet."
    head = f"{dropped} earlier edits and then: " if dropped else ""
    return "Edits already applied, keep them: " + head + "; ".join(i.strip() for i in kept) + "."


def edit_messages(
    style: Style,
    selfie: ImageRef,
    current: ImageRef,
    earlier: Sequence[str] | Memory,
    instruction: str,
    caption: str | None = None,
    *,
    prompt: str | None = None,
    context: str | None = None,
    aspect_ratio: str | None = None,
    references: tuple[ImageRef, ...] = (),
) -> list[Message]:
    """An edit: the pinned brief (everything the generation was asked for)
    and the condensed edit memory, then the image, then the new instruction."""
    brief = style_brief(style, prompt, context, caption)
    texts: tuple[str, ...] = (brief, memory_text(earlier))
    if references:
        texts += (REFERENCES_CLAUSE,)
    return [
        Message("user", texts, (selfie, *references)),
        Message("model", (), (current,)),
        Message(
            "user",
            (
                f"Edit the last image: {instruction.strip()}. Keep the same person, "
                f"the style and every earlier edit. {answer_clause(aspect_ratio)}",
            ),
        ),
    ]


# What the likeness guard adds when an avatar came out looking like someone else.
LIKENESS_REMINDER = (
    "Important: the previous attempt did not look like the person in the photo. Keep this exact "
    "person recognisable: the same face shape, eyes, nose, mouth, skin tone, hairline and hairstyle; "
    "apply the style around the likeness, never instead of it."
)


def with_likeness_reminder(messages: Sequence[Message]) -> list[Message]:
    """The same request with the reminder added to its last user message."""
    out = list(messages)
    for index in range(len(out) - 1, -1, -1):
        if out[index].role == "user":
            out[index] = replace(out[index], texts=(*out[index].texts, LIKENESS_REMINDER))
            break
    return out
