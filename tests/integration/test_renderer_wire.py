"""The offline renderer on the wire: the real google-genai SDK against it.

The renderer runs as its own process from the repo's `.venv-renderer` (it
needs mediapipe, which cannot live in the functions' environment). Requests
are built with the backend's own prompt layouts (pixme.prompts), so the test
checks the contract the backend relies on: one generate per catalog style,
edits that carry the image's thought signature back, faults that surface the
way Gemini's would, determinism, and text-only answers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from google import genai
from google.genai import errors, types
from PIL import Image

from pixme.adapters.gemini import to_contents
from pixme.prompts import ImageRef, edit_messages, generation_messages
from pixme.styles import STYLES, get_style

ROOT = Path(__file__).resolve().parents[2]
VENV_PYTHON = ROOT / ".venv-renderer" / "bin" / "python"
SELFIE_BYTES = (ROOT / "assets" / "selfie-astronaut.png").read_bytes()
CAT_BYTES = (ROOT / "assets" / "noface-cat.png").read_bytes()
SELFIE = ImageRef(SELFIE_BYTES, "image/png")
MODEL = "gemini-nano-banana-2.1"
# The renderer's default signing secret (local/renderer/protocol.py), so the
# test can check that signatures really are an HMAC over the image bytes.
SECRET = b"pixme-offline-renderer/thought-signature/v1"
CONFIG = types.GenerateContentConfig(
    response_modalities=["TEXT", "IMAGE"],
    image_config=types.ImageConfig(aspect_ratio="1:1", image_size="1K"),
)


# --------------------------------------------------------------------------
# the server process


class Server:
    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._clients: dict[str, genai.Client] = {}

    def client(self, **http: object) -> genai.Client:
        # Long-lived clients: a throw-away genai.Client can be collected
        # (and its HTTP client closed) while a call is still running.
        key = repr(sorted(http.items()))
        if key not in self._clients:
            self._clients[key] = genai.Client(
                api_key="offline-test",
                http_options=types.HttpOptions(base_url=self.url, api_version="v1beta", **http),  # type: ignore[arg-type]
            )
        return self._clients[key]


def _read_ready_line(proc: subprocess.Popen[str], timeout_s: float) -> str:
    box: list[str] = []
    reader = threading.Thread(
        target=lambda: box.append(proc.stdout.readline() if proc.stdout else ""), daemon=True
    )
    reader.start()
    reader.join(timeout_s)
    return box[0] if box else ""


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    if not VENV_PYTHON.exists():
        pytest.fail(
            f"The offline renderer's virtualenv is missing ({VENV_PYTHON}).\n"
            "Create it from the repo root (or run `make setup`):\n"
            "  python3.12 -m venv .venv-renderer\n"
            "  .venv-renderer/bin/pip install --no-deps -r local/renderer/requirements.txt\n"
            "  .venv-renderer/bin/pip install --no-deps -r local/renderer/requirements-nodeps.txt"
        )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIXME_RENDERER_SECRET")}
    proc = subprocess.Popen(
        [
            str(VENV_PYTHON),
            "-m",
            "local.renderer",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--quiet",
            "--timeout-seconds",
            "20",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = _read_ready_line(proc, 60)
        if "listening on http://127.0.0.1:" not in line:
            proc.kill()
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"the renderer did not start: {line!r}\n{err[-3000:]}")
        port = int(line.split("http://127.0.0.1:")[1].split()[0])
        srv = Server(proc, port)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{srv.url}/healthz", timeout=2) as r:
                    assert json.loads(r.read()) == {"ok": True}
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("the renderer never answered /healthz")
                time.sleep(0.1)
        # drain stderr so a chatty child can never block on a full pipe
        threading.Thread(target=lambda: proc.stderr and proc.stderr.read(), daemon=True).start()
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# --------------------------------------------------------------------------
# helpers


def split(resp: types.GenerateContentResponse) -> tuple[str, types.Part | None]:
    assert resp.candidates, resp
    parts = resp.candidates[0].content.parts if resp.candidates[0].content else []
    text = " ".join(p.text for p in parts or [] if p.text)
    images = [p for p in parts or [] if p.inline_data is not None]
    return text, (images[-1] if images else None)


def pixels(data: bytes) -> list[int]:
    with Image.open(io.BytesIO(data)) as im:
        return list(im.convert("RGB").resize((128, 128)).tobytes())


def meta(data: bytes) -> dict:
    with Image.open(io.BytesIO(data)) as im:
        raw = im.info["pixme-geometry"]
    return json.loads(zlib.decompress(base64.b64decode(raw)))


def generate(
    server: Server, style_id: str = "comics", model: str = MODEL, **kw: object
) -> types.GenerateContentResponse:
    msgs = generation_messages(get_style(style_id), SELFIE, **kw)  # type: ignore[arg-type]
    return server.client().models.generate_content(model=model, contents=to_contents(msgs), config=CONFIG)


def post(server: Server, path: str, body: object, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode()
    req = urllib.request.Request(f"{server.url}{path}", data=data, method="POST")
    req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# --------------------------------------------------------------------------
# generation


@pytest.mark.parametrize("style_id", [s.id for s in STYLES])
def test_each_catalog_style_answers_text_and_a_signed_image(server: Server, style_id: str) -> None:
    resp = generate(server, style_id)
    text, image = split(resp)
    assert resp.candidates[0].finish_reason == types.FinishReason.STOP
    assert text.startswith("Rendered offline as")
    assert image is not None and image.inline_data.mime_type == "image/png"
    data = image.inline_data.data
    assert data.startswith(b"\x89PNG")
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (1024, 1024)
    assert image.thought_signature == b"pxo1" + hmac.new(SECRET, data, hashlib.sha256).digest()
    assert meta(data)["style"] == style_id  # the catalog prompt picked its own look
    usage = resp.usage_metadata
    assert usage.prompt_token_count > 1120 and usage.candidates_token_count > 1120
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert resp.model_version == f"{MODEL}-offline-1" and resp.response_id


def test_caption_and_extra_are_applied(server: Server) -> None:
    text, image = split(generate(server, "manga", extra="wearing glasses", caption="Ana"))
    assert image is not None
    assert "glasses" in text and '"Ana"' in text
    assert meta(image.inline_data.data)["captions"] == [{"text": "Ana", "pos": "bottom"}]


def test_same_input_twice_gives_the_same_pixels(server: Server) -> None:
    a = split(generate(server, "zombie"))[1]
    b = split(generate(server, "zombie"))[1]
    assert a is not None and b is not None
    pa, pb = pixels(a.inline_data.data), pixels(b.inline_data.data)
    assert sum(abs(x - y) for x, y in zip(pa, pb, strict=True)) / len(pa) < 1.0


def test_image_size_and_aspect_ratio_are_honoured(server: Server) -> None:
    msgs = generation_messages(get_style("pixel_art"), SELFIE)
    for size, ratio, want in (("512", "1:1", (512, 512)), ("1K", "16:9", (1360, 768))):
        cfg = types.GenerateContentConfig(
            response_modalities=["TEXT", "IMAGE"],
            image_config=types.ImageConfig(aspect_ratio=ratio, image_size=size),
        )
        resp = server.client().models.generate_content(model=MODEL, contents=to_contents(msgs), config=cfg)
        image = split(resp)[1]
        assert image is not None
        with Image.open(io.BytesIO(image.inline_data.data)) as im:
            assert im.size == want


def test_image_only_modality_answers_the_image_alone(server: Server) -> None:
    cfg = types.GenerateContentConfig(response_modalities=["IMAGE"])
    msgs = to_contents(generation_messages(get_style("cyberpunk"), SELFIE))
    text, image = split(server.client().models.generate_content(model=MODEL, contents=msgs, config=cfg))
    assert image is not None and image.thought_signature and text == ""


def test_a_photo_without_a_face_gets_a_text_only_answer(server: Server) -> None:
    msgs = generation_messages(get_style("comics"), ImageRef(CAT_BYTES, "image/png"))
    resp = server.client().models.generate_content(model=MODEL, contents=to_contents(msgs), config=CONFIG)
    text, image = split(resp)
    assert image is None and "No face was found" in text
    assert resp.candidates[0].finish_reason == types.FinishReason.STOP


def test_a_request_without_a_photo_asks_for_one(server: Server) -> None:
    resp = server.client().models.generate_content(
        model=MODEL, contents="Make me a comic book hero", config=CONFIG
    )
    text, image = split(resp)
    assert image is None and "photo" in text


# --------------------------------------------------------------------------
# edits


def test_edits_round_trip_with_the_signature_and_keep_earlier_edits(server: Server) -> None:
    style = get_style("comics")
    first = split(generate(server))[1]
    assert first is not None
    current = ImageRef(first.inline_data.data, "image/png", first.thought_signature)
    client = server.client()

    resp = client.models.generate_content(
        model=MODEL,
        contents=to_contents(edit_messages(style, SELFIE, current, [], "add glasses")),
        config=CONFIG,
    )
    text, second = split(resp)
    assert second is not None and second.thought_signature
    assert "glasses" in text
    assert resp.usage_metadata.prompt_token_count >= 2 * 1120  # selfie + current image

    current = ImageRef(second.inline_data.data, "image/png", second.thought_signature)
    resp = client.models.generate_content(
        model=MODEL,
        contents=to_contents(
            edit_messages(style, SELFIE, current, ["add glasses"], "make the background blue")
        ),
        config=CONFIG,
    )
    text, third = split(resp)
    assert third is not None
    assert "background" in text and "glasses" not in text  # the memory is never re-applied
    with Image.open(io.BytesIO(third.inline_data.data)) as im:
        r, g, b = im.convert("RGB").getpixel((80, 80))
    assert b > r + 60 and b > g + 40  # the corner, inside the panel frame, is now blue
    # the glasses drawn by the first edit are still there: the eye band is unchanged
    lms = meta(second.inline_data.data)["faces"][0]
    (x0, y0), (x1, y1) = lms[33], lms[263]
    box = (int(x0) - 20, int(min(y0, y1)) - 25, int(x1) + 20, int(max(y0, y1)) + 25)

    def band(data: bytes) -> bytes:
        with Image.open(io.BytesIO(data)) as im:
            return im.convert("L").crop(box).tobytes()

    e1, e2, e3 = band(first.inline_data.data), band(second.inline_data.data), band(third.inline_data.data)
    assert sum(abs(x - y) for x, y in zip(e1, e2, strict=True)) / len(e1) > 10  # the glasses went on
    assert sum(abs(x - y) for x, y in zip(e2, e3, strict=True)) / len(e2) < 3  # and stayed on


def test_an_edit_it_cannot_do_is_answered_in_words(server: Server) -> None:
    first = split(generate(server))[1]
    assert first is not None
    current = ImageRef(first.inline_data.data, "image/png", first.thought_signature)
    msgs = edit_messages(get_style("comics"), SELFIE, current, [], "give me a pirate hat")
    resp = server.client().models.generate_content(model=MODEL, contents=to_contents(msgs), config=CONFIG)
    text, image = split(resp)
    assert image is None
    assert "cannot" in text and "glasses" in text  # says what it can do instead
    assert resp.candidates[0].finish_reason == types.FinishReason.STOP


@pytest.fixture(scope="module")
def comic(server: Server) -> ImageRef:
    image = split(generate(server))[1]
    assert image is not None
    return ImageRef(image.inline_data.data, "image/png", image.thought_signature)


@pytest.mark.parametrize(
    ("instruction", "expected"),
    [
        ("Make it black and white", ["black and white"]),
        ("warmer and a bit brighter", ["warmer", "brighter"]),
        ("make it cooler, then darker", ["cooler", "darker"]),
        ("blur the background", ["blurred the background"]),
        ("make the background dark green", ["plain dark green"]),
        ("change the eye colour to green", ["irises green"]),
        ('add the name Ana and write "Hello there"', ['"Ana"', '"Hello there"']),
        ("SUNGLASSES, and a pirate hat", ["sunglasses", "cannot do: 'a pirate hat'"]),
    ],
)
def test_edit_phrases(server: Server, comic: ImageRef, instruction: str, expected: list[str]) -> None:
    msgs = edit_messages(get_style("comics"), SELFIE, comic, [], instruction)
    resp = server.client().models.generate_content(model=MODEL, contents=to_contents(msgs), config=CONFIG)
    text, image = split(resp)
    assert image is not None and image.thought_signature, text
    assert text.startswith("Edited offline:")
    for word in expected:
        assert word in text
    assert image.inline_data.data != comic.data


@pytest.mark.parametrize("signature", [None, b"forged-signature"])
def test_a_model_image_without_its_true_signature_is_refused(server: Server, signature: bytes | None) -> None:
    first = split(generate(server))[1]
    assert first is not None
    current = ImageRef(first.inline_data.data, "image/png", signature)
    msgs = edit_messages(get_style("comics"), SELFIE, current, [], "add glasses")
    with pytest.raises(errors.ClientError) as caught:
        server.client().models.generate_content(model=MODEL, contents=to_contents(msgs), config=CONFIG)
    assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"
    assert caught.value.message.startswith("Image part is missing a thought_signature")


# --------------------------------------------------------------------------
# faults and protocol edges


@pytest.mark.parametrize(
    ("fault", "error", "code", "status"),
    [
        ("429", errors.ClientError, 429, "RESOURCE_EXHAUSTED"),
        ("400", errors.ClientError, 400, "INVALID_ARGUMENT"),
        ("503", errors.ServerError, 503, "UNAVAILABLE"),
        ("500", errors.ServerError, 500, "INTERNAL"),
    ],
)
def test_error_faults_raise_what_gemini_would(
    server: Server, fault: str, error: type[errors.APIError], code: int, status: str
) -> None:
    with pytest.raises(error) as caught:
        generate(server, model=f"{MODEL}@{fault}")
    assert caught.value.code == code and caught.value.status == status
    if fault == "429":
        assert caught.value.response.headers.get("retry-after") == "1"
    if fault == "503":
        assert "overloaded" in caught.value.message


def test_a_blocked_prompt_has_feedback_and_no_candidates(server: Server) -> None:
    resp = generate(server, model=f"{MODEL}@blocked")
    assert not resp.candidates
    assert resp.prompt_feedback and resp.prompt_feedback.block_reason == types.BlockedReason.SAFETY


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("image_safety", types.FinishReason.IMAGE_SAFETY),
        ("no_image", types.FinishReason.NO_IMAGE),
        ("malformed_response", types.FinishReason.MALFORMED_RESPONSE),
        ("continuation", types.FinishReason.CONTINUATION),
        ("model_armor", types.FinishReason.MODEL_ARMOR),
        ("escalation", types.FinishReason.ESCALATION),
        ("pup_limited", types.FinishReason.PUP_LIMITED_DISABLED),
        ("missing_signature", types.FinishReason.MISSING_THOUGHT_SIGNATURE),
    ],
)
def test_no_image_finish_reasons(server: Server, fault: str, reason: types.FinishReason) -> None:
    resp = generate(server, model=f"{MODEL}@{fault}")
    assert resp.candidates[0].finish_reason == reason
    assert not (resp.candidates[0].content and resp.candidates[0].content.parts)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("blocked_image_safety", types.BlockedReason.IMAGE_SAFETY),
        ("blocked_model_armor", types.BlockedReason.MODEL_ARMOR),
        ("blocked_jailbreak", types.BlockedReason.JAILBREAK),
    ],
)
def test_newer_block_reasons(server: Server, fault: str, reason: types.BlockedReason) -> None:
    resp = generate(server, model=f"{MODEL}@{fault}")
    assert not resp.candidates
    assert resp.prompt_feedback and resp.prompt_feedback.block_reason == reason


def test_the_jpeg_fault_answers_a_signed_jpeg(server: Server) -> None:
    _, image = split(generate(server, model=f"{MODEL}@jpeg"))
    assert image is not None and image.inline_data and image.inline_data.data
    assert image.inline_data.mime_type == "image/jpeg"
    assert image.inline_data.data.startswith(b"\xff\xd8\xff")
    assert (
        image.thought_signature == b"pxo1" + hmac.new(SECRET, image.inline_data.data, hashlib.sha256).digest()
    )


def test_text_only_and_unsigned_faults_via_the_header(server: Server) -> None:
    msgs = to_contents(generation_messages(get_style("sketch"), SELFIE))
    client = server.client(headers={"x-pixme-fault": "text_only"})
    text, image = split(client.models.generate_content(model=MODEL, contents=msgs, config=CONFIG))
    assert text and image is None
    client = server.client(headers={"x-pixme-fault": "no_signature"})
    text, image = split(client.models.generate_content(model=MODEL, contents=msgs, config=CONFIG))
    assert image is not None and image.thought_signature is None


def test_a_slow_model_trips_the_client_timeout(server: Server) -> None:
    client = server.client(timeout=1500, headers={"x-pixme-fault": "timeout"})
    started = time.monotonic()
    with pytest.raises(Exception) as caught:  # the SDK lets its HTTP library's timeout through
        client.models.generate_content(model=MODEL, contents="hi", config=CONFIG)
    assert "Timeout" in type(caught.value).__name__
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    "model",
    ["gemini-2.0-flash-exp", "gemini-2.0-flash-preview-image-generation", "gemini-2.5-flash-image-preview"],
)
def test_retired_models_are_not_found(server: Server, model: str) -> None:
    with pytest.raises(errors.ClientError) as caught:
        generate(server, model=model)
    assert caught.value.code == 404 and caught.value.status == "NOT_FOUND"
    assert model in caught.value.message


def test_keys_and_tokens_are_required_and_vertex_paths_work(server: Server) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hello"}]}]}
    code, err = post(server, f"/v1beta/models/{MODEL}:generateContent", body)
    assert code == 403 and err["error"]["status"] == "PERMISSION_DENIED"
    vertex = f"/v1beta1/projects/p/locations/global/publishers/google/models/{MODEL}:generateContent"
    code, err = post(server, vertex, body)
    assert code == 401 and err["error"]["status"] == "UNAUTHENTICATED"
    code, ok = post(server, vertex, body, {"Authorization": "Bearer anything"})
    assert code == 200 and ok["candidates"][0]["finishReason"] == "STOP"


def test_the_vertex_paths_through_the_sdk(server: Server) -> None:
    """Vertex AI mode as the adapter builds it: explicit project, location and
    static credentials, so the SDK posts to the Vertex path with a bearer token."""
    from google.oauth2.credentials import Credentials

    client = genai.Client(
        vertexai=True,
        project="p",
        location="global",
        credentials=Credentials(token="local"),  # type: ignore[no-untyped-call]
        http_options=types.HttpOptions(base_url=server.url),
    )
    msgs = to_contents(generation_messages(get_style("comics"), SELFIE))
    text, image = split(client.models.generate_content(model=MODEL, contents=msgs, config=CONFIG))
    assert text and image is not None and image.thought_signature
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model="gemini-2.0-flash-exp", contents=msgs, config=CONFIG)
    assert caught.value.code == 404 and caught.value.status == "NOT_FOUND"


def test_snake_case_fields_and_url_safe_base64_are_accepted(server: Server) -> None:
    body = {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Render this person as retro pixel art."},
                    {
                        "inline_data": {
                            "mime_type": "image/png",
                            "data": base64.urlsafe_b64encode(SELFIE_BYTES).decode(),
                        }
                    },
                ],
            }
        ],
        "generation_config": {
            "response_modalities": ["TEXT", "IMAGE"],
            "image_config": {"image_size": "512"},
        },
    }
    code, resp = post(server, f"/v1/models/{MODEL}:generateContent", body, {"x-goog-api-key": "k"})
    assert code == 200, resp
    parts = resp["candidates"][0]["content"]["parts"]
    assert parts[1]["inlineData"]["mimeType"] == "image/png" and parts[1]["thoughtSignature"]
    details = {d["modality"]: d["tokenCount"] for d in resp["usageMetadata"]["promptTokensDetails"]}
    assert details["IMAGE"] == 1120 and details["TEXT"] == -(
        -len(body["contents"][0]["parts"][0]["text"]) // 4
    )


def test_malformed_requests_get_gemini_shaped_errors(server: Server) -> None:
    headers = {"x-goog-api-key": "k"}
    path = f"/v1beta/models/{MODEL}:generateContent"
    for body in (
        {},
        {"contents": [{"role": "robot", "parts": [{"text": "x"}]}]},
        {"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "bm90IGFuIGltYWdl"}}]}]},
    ):
        code, err = post(server, path, body, headers)
        assert code == 400 and err["error"]["status"] == "INVALID_ARGUMENT" and err["error"]["message"]
    code, err = post(server, "/v1beta/models/x:countTokens", {}, headers)
    assert code == 404 and err["error"]["status"] == "NOT_FOUND"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
