"""Model payload per edit turn: our bounded history against the SDK's chat helper.

Runs the same conversation against the offline renderer (a generation, then
20 edits): through our Gemini adapter with the bounded history that
`pixme.prompts` builds, on the Developer API (every image inline) and on
Vertex AI (the selfie as a gs:// reference), and through google-genai's
`client.chats`, which resends the whole curated history. A counting proxy in front of the renderer
records each request's bytes and the prompt tokens the server counted.

Then a wire check: a 16:9, 2K session with a prompt, a context and a caption
goes through our edit service (stores faked, the real adapter and renderer),
and every request the proxy sees must carry the session's image config and
pinned brief, and no sentence asking for a square image.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "functions"), str(ROOT)]

from local.stack import Stack  # noqa: E402
from pixme.adapters.gemini import GeminiModel  # noqa: E402
from pixme.ports import RenderOptions  # noqa: E402
from pixme.prompts import ImageRef, edit_messages, generation_messages  # noqa: E402
from pixme.styles import get_style  # noqa: E402

MODEL = "gemini-3.1-flash-image"
EDITS = [
    "add glasses",
    "make it warmer",
    "make the background blue",
    "make the eyes green",
    "make it brighter",
    "make it cooler",
    "blur the background",
    "make it darker",
    'add the name "Eileen"',
    "make the background red",
] * 2
TURNS: list[dict[str, int]] = []
BODIES: list[dict[str, Any]] = []


class Counting(BaseHTTPRequestHandler):
    target = ""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        BODIES.append(json.loads(body))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "content-length"}}
        resp = requests.post(self.target + self.path, data=body, headers=headers, timeout=120)
        usage = resp.json().get("usageMetadata", {}) if resp.ok else {}
        TURNS.append({"bytes": len(body), "tokens": int(usage.get("promptTokenCount", 0))})
        self.send_response(resp.status_code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(resp.content)))
        self.end_headers()
        self.wfile.write(resp.content)

    def log_message(self, *args: Any) -> None:
        pass


def client(base_url: str) -> Any:
    from google import genai
    from google.genai import types

    return genai.Client(api_key="offline", http_options=types.HttpOptions(base_url=base_url, timeout=120_000))


def vertex_client(base_url: str, project: str) -> Any:
    """Vertex AI as production uses it, at the proxy (a static token: loopback)."""
    from google import genai
    from google.genai import types
    from google.oauth2.credentials import Credentials

    return genai.Client(
        vertexai=True,
        project=project,
        location="global",
        credentials=Credentials(token="local"),  # type: ignore[no-untyped-call]
        http_options=types.HttpOptions(base_url=base_url, timeout=120_000),
    )


def ours(proxy: str, selfie: ImageRef, sdk: Any = None) -> list[dict[str, int]]:
    TURNS.clear()
    model = GeminiModel(120, 300, client=sdk or client(proxy))
    style = get_style("comics")
    reply = model.generate(MODEL, generation_messages(style, selfie), RenderOptions())
    for i, instruction in enumerate(EDITS):
        current = ImageRef(reply.image, reply.mime_type, reply.thought_signature)
        reply = model.generate(
            MODEL, edit_messages(style, selfie, current, EDITS[:i], instruction), RenderOptions()
        )
    return list(TURNS)


def chat_helper(proxy: str, selfie: ImageRef) -> list[dict[str, int]]:
    from google.genai import types
    from google.genai.errors import ClientError

    TURNS.clear()
    config = types.GenerateContentConfig(response_modalities=["TEXT", "IMAGE"])
    sdk = client(proxy)  # keep a reference: a collected client closes its connection pool
    chat = sdk.chats.create(model=MODEL, config=config)
    (first,) = generation_messages(get_style("comics"), selfie)
    chat.send_message([first.texts[0], types.Part.from_bytes(data=selfie.data, mime_type=selfie.mime_type)])
    for instruction in EDITS:
        try:
            chat.send_message(f"Edit the last image: {instruction}.")
        except ClientError as exc:
            # Like Gemini, the renderer caps input images per request: the chat
            # helper's ever-growing history eventually stops fitting at all.
            TURNS[-1]["error"] = f"{exc.code} {exc.message}"  # type: ignore[assignment]
            break
    return list(TURNS)


def wire_check(proxy: str, selfie: ImageRef) -> list[str]:
    """Problems found on the wire for a 16:9, 2K session (empty: none)."""
    sys.path.insert(0, str(ROOT / "tests" / "unit"))
    from fakes import (
        FakeBlobs,
        FakeClock,
        FakeIdempotency,
        FakeSessions,
        FakeUploads,
        FakeUsage,
        presented,
        settings,
    )
    from pixme.api import EditRequest, GenerateRequest
    from pixme.conversation import READY, Upload
    from pixme.identity import Caller
    from pixme.services.avatars import Avatars
    from pixme.spending import Spending

    s = settings(no_face="allow")
    clock, blobs, uploads = FakeClock(), FakeBlobs(), FakeUploads()
    model = GeminiModel(120, 300, client=client(proxy))
    avatars = Avatars(
        s, blobs, uploads, FakeSessions(), model, clock, FakeIdempotency(), Spending(s, FakeUsage(), clock)
    )
    now = clock.now()
    uploads.save(Upload("wire", "u_wire", READY, "up", "uploads/x", "1", now, now + timedelta(days=30),
                        image_path="selfies/wire.jpg"))  # fmt: skip
    blobs.write(s.assets_bucket, "selfies/wire.jpg", selfie.data, selfie.mime_type)
    body = {"upload_id": "u_wire", "style": "comics", "prompt": "add a sailor hat", "caption": "EILEEN",
            "context": "loves sailing", "aspect_ratio": "16:9", "image_size": "2K"}  # fmt: skip
    BODIES.clear()
    made = avatars.generate(Caller("wire"), GenerateRequest.parse(body, s))
    sid = presented(made.body, blobs, s)["session_id"]
    for instruction in EDITS[:3]:
        avatars.edit(Caller("wire"), EditRequest(session_id=sid, instruction=instruction))
    problems = []
    for i, sent in enumerate(BODIES):
        config = sent.get("generationConfig", {}).get("imageConfig", {})
        if config != {"aspectRatio": "16:9", "imageSize": "2K"}:
            problems.append(f"request {i}: image config {config}")
        texts = " ".join(p.get("text", "") for c in sent["contents"] for p in c["parts"])
        first = " ".join(p.get("text", "") for p in sent["contents"][0]["parts"])
        if "square" in texts:
            problems.append(f"request {i}: asks for a square image")
        if not all(x in first for x in ("add a sailor hat", "loves sailing", '"EILEEN"', "comic")):
            problems.append(f"request {i}: the pinned brief is incomplete")
    if len(BODIES) != 4:
        problems.append(f"{len(BODIES)} requests instead of 4")
    return problems


def main() -> int:
    selfie = ImageRef((ROOT / "assets" / "selfie-astronaut.png").read_bytes(), "image/png")
    logs = ROOT / "out" / "stack" / "bench-turns"
    with Stack(components=["storage", "renderer"], log_dir=logs, quiet=True) as stack:
        Counting.target = str(stack.renderer_url)
        server = ThreadingHTTPServer(("127.0.0.1", 0), Counting)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        proxy = f"http://127.0.0.1:{server.server_address[1]}"
        # Vertex mode reads the selfie from storage: put it where the renderer looks.
        path = "selfies/bench/selfie.png"
        stack.storage_client().bucket(stack.assets_bucket).blob(path).upload_from_string(selfie.data)
        by_reference = ImageRef(b"", selfie.mime_type, uri=f"gs://{stack.assets_bucket}/{path}")
        try:
            a, b = ours(proxy, selfie), chat_helper(proxy, selfie)
            v = ours(proxy, by_reference, vertex_client(proxy, stack.project))
            problems = wire_check(proxy, selfie)
        finally:
            server.shutdown()
    print(f"{'turn':>4} | {'ours KB':>8} {'ours tok':>8} | {'vertex KB':>9} | {'chat KB':>8} {'chat tok':>8}")
    for i, x in enumerate(a):
        label = "gen" if i == 0 else str(i)
        chat = (
            ""
            if i >= len(b)
            else (
                f"{b[i]['bytes'] / 1024:8.0f} {b[i]['tokens']:8d}"
                + (f"  {b[i]['error']}" if "error" in b[i] else "")
            )
        )
        vertex = f"{v[i]['bytes'] / 1024:9.0f}"
        print(f"{label:>4} | {x['bytes'] / 1024:8.0f} {x['tokens']:8d} | {vertex} | {chat}")
    ratio = {k: a[20][k] / a[2][k] for k in ("bytes", "tokens")}
    last = max(i for i, t in enumerate(b) if "error" not in t)
    chat_ratio = {k: b[last][k] / b[2][k] for k in ("bytes", "tokens")}
    print(
        f"\nours, turn 20 / turn 2: bytes x{ratio['bytes']:.2f}, tokens x{ratio['tokens']:.2f} (bound x1.25)"
    )
    print(
        f"chat helper, turn {last} / turn 2: bytes x{chat_ratio['bytes']:.2f}, "
        f"tokens x{chat_ratio['tokens']:.2f}; "
        f"at turn {last} it sends x{b[last]['bytes'] / a[last]['bytes']:.1f} our bytes"
        + (f"; turn {len(b) - 1} failed: {b[-1]['error']}" if "error" in b[-1] else "")
    )
    v_ratio = v[20]["bytes"] / v[2]["bytes"]
    print(
        f"ours on Vertex AI (the selfie by gs:// reference, the model's image inline): turn 2 "
        f"{v[2]['bytes'] / 1024:.0f} KB vs {a[2]['bytes'] / 1024:.0f} KB inline "
        f"(x{v[2]['bytes'] / a[2]['bytes']:.2f}); turn 20 / turn 2: bytes x{v_ratio:.2f}"
    )
    print(json.dumps({"ours": ratio, "vertex_bytes": v_ratio, "chat": chat_ratio, "chat_last_turn": last}))
    print(
        "wire check, a 16:9 2K session (generate + 3 edits): "
        + ("every request carries its image config and pinned brief" if not problems else "; ".join(problems))
    )
    return 0 if max(ratio.values()) <= 1.25 and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
