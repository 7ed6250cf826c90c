"""On Vertex AI user images go by gs:// reference, the model's own image inline
with its signature; on the Developer API everything is inline."""

from __future__ import annotations

from test_avatars import World

from fakes import FakeModel, settings
from pixme.adapters.gemini import to_contents


def world(by_reference: bool) -> World:
    w = World(settings(no_face="allow"))
    w.model = FakeModel(by_reference=by_reference)
    w.avatars.model = w.model
    w.upload()
    return w


def test_on_vertex_the_selfie_and_references_go_by_reference_and_are_never_read() -> None:
    w = world(by_reference=True)
    first = w.generate()
    reads: list[str] = []
    read = w.blobs.read

    def counting(bucket: str, path: str, generation: str | None = None) -> bytes:
        reads.append(path)
        return read(bucket, path, generation)

    w.blobs.read = counting  # type: ignore[method-assign]
    w.generate(references=[first["session_id"]], style="manga")
    _, messages = w.model.calls[-1]
    images = [image for m in messages for image in m.images]
    assert all(i.uri and i.uri.startswith("gs://assets/") and i.data == b"" for i in images), images
    assert reads == []  # nothing downloaded to be uploaded again
    w.edit(first["session_id"], "add glasses")
    _, messages = w.model.calls[-1]
    edit_images = [image for m in messages for image in m.images]
    selfie, current = edit_images[0], edit_images[-1]
    assert selfie.uri and selfie.data == b""
    # The model's own image goes back inline, with its signature, as it came.
    assert current.uri is None and current.data and current.thought_signature
    parts = [p for c in to_contents(messages) for p in (c.parts or [])]
    assert any(p.file_data and p.file_data.file_uri == selfie.uri for p in parts)
    assert any(p.inline_data and p.thought_signature for p in parts)


def test_on_the_developer_api_every_image_is_inline() -> None:
    w = world(by_reference=False)
    first = w.generate()
    w.edit(first["session_id"], "add glasses")
    for _, messages in w.model.calls:
        assert all(i.uri is None and i.data for m in messages for i in m.images)
        parts = [p for c in to_contents(messages) for p in (c.parts or [])]
        assert not any(p.file_data for p in parts)
