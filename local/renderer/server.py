"""HTTP front: routes, auth, fault injection, and the render call.

Standard library only (`http.server.ThreadingHTTPServer`). Rendering is CPU
bound, so at most `max_renders` run at once; other requests wait their turn.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from . import imaging as im
from . import protocol as P
from .engine import Outcome, Renderer

RETIRED_MODELS = frozenset(
    {
        "gemini-2.0-flash-exp",
        "gemini-2.0-flash-preview-image-generation",
        "gemini-2.5-flash-image-preview",
    }
)

FAULTS = (
    "429",
    "503",
    "500",
    "400",
    "403",
    "region",
    "timeout",
    "blocked",
    "image_safety",
    "no_image",
    "text_only",
    "no_signature",
    "jpeg",
    "identity_drift",
    "malformed_response",
    "continuation",
    "model_armor",
    "escalation",
    "pup_limited",
    "missing_signature",
    "blocked_image_safety",
    "blocked_model_armor",
    "blocked_jailbreak",
)

# Newer finish reasons, as faults: a candidate with that reason and no content.
_FINISH_FAULTS = {
    "malformed_response": "MALFORMED_RESPONSE",
    "continuation": "CONTINUATION",
    "model_armor": "MODEL_ARMOR",
    "escalation": "ESCALATION",
    "pup_limited": "PUP_LIMITED_DISABLED",
    "missing_signature": "MISSING_THOUGHT_SIGNATURE",
}
# Newer block reasons: no candidates, promptFeedback.blockReason set.
_BLOCK_FAULTS = {
    "blocked_image_safety": "IMAGE_SAFETY",
    "blocked_model_armor": "MODEL_ARMOR",
    "blocked_jailbreak": "JAILBREAK",
}

# The errors Gemini answers, as the fault kinds that imitate them.
_FAULT_ERRORS: dict[str, tuple[int, str, str, dict[str, str] | None]] = {
    "429": (
        429,
        "RESOURCE_EXHAUSTED",
        "Resource has been exhausted (e.g. check quota).",
        {"Retry-After": "1"},
    ),
    "503": (503, "UNAVAILABLE", "The model is overloaded. Please try again later.", None),
    "500": (500, "INTERNAL", "An internal error has occurred. Please retry.", None),
    "400": (400, "INVALID_ARGUMENT", "Request contains an invalid argument.", None),
    "403": (403, "PERMISSION_DENIED", "Permission denied on resource project.", None),
    "region": (400, "FAILED_PRECONDITION", "User location is not supported for the API use.", None),
}

MAX_BODY = 100 * 1024 * 1024  # the Developer API's inline request limit

_API_KEY_PATH = re.compile(r"^/(v1|v1beta|v1alpha)/models/([^/:]+):(generateContent|streamGenerateContent)$")
_VERTEX_PATH = re.compile(
    r"^/(v1|v1beta1)/projects/[^/]+/locations/[^/]+/publishers/google/models/([^/:]+):"
    r"(generateContent|streamGenerateContent)$"
)


def output_size(size: int, aspect: tuple[int, int]) -> tuple[int, int]:
    r = aspect[0] / aspect[1]
    w = max(64, round(size * math.sqrt(r) / 16) * 16)
    h = max(64, round(size / math.sqrt(r) / 16) * 16)
    return w, h




def read_gcs(storage_url: str | None, uri: str) -> bytes:
    """The bytes of `gs://bucket/name` from a Cloud Storage JSON API host (fake-gcs)."""
    if not uri.startswith("gs://") or "/" not in uri[5:]:
        raise P.invalid(f"Invalid file URI {uri!r}: expected gs://bucket/object.")
    if not storage_url:
        raise P.invalid("This renderer was started without --storage-url: it cannot read gs:// files.")
    bucket, _, name = uri[5:].partition("/")
    base = storage_url.rstrip("/")
    url = f"{base}/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}?alt=media"
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            data: bytes = resp.read()
    except urllib.error.HTTPError as err:
        # Vertex answers a file it cannot read as a bad request, naming the URI.
        raise P.invalid(f"Cannot fetch content from the provided URL {uri} ({err.code}).") from None
    except OSError as err:
        raise P.ApiError(503, "UNAVAILABLE", f"Storage unreachable reading {uri}: {err}") from None
    return data

class RendererServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        addr: tuple[str, int],
        renderer: Renderer,
        fault: str | None = None,
        timeout_s: float = 30.0,
        max_renders: int = 2,
        quiet: bool = False,
        storage_url: str | None = None,
    ) -> None:
        super().__init__(addr, Handler)
        self.storage_url = storage_url
        self.renderer = renderer
        self.fault = fault
        self.timeout_s = timeout_s
        self.render_slots = threading.BoundedSemaphore(max_renders)
        self.stopping = threading.Event()
        self.quiet = quiet

    def shutdown(self) -> None:
        self.stopping.set()
        super().shutdown()


class Handler(BaseHTTPRequestHandler):
    server: RendererServer
    protocol_version = "HTTP/1.1"
    server_version = "pixme-offline-renderer/1"

    # -- plumbing -------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _log(self, status: int, started: float, note: str = "") -> None:
        if self.server.quiet:
            return
        ms = (time.perf_counter() - started) * 1000
        sys.stderr.write(f"{self.command} {urlsplit(self.path).path} -> {status} {ms:.0f} ms {note}\n")
        sys.stderr.flush()

    def _send_json(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None, sse: bool = False
    ) -> None:
        if sse:
            data = b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\r\n\r\n"
            ctype = "text/event-stream"
        else:
            data = json.dumps(body, separators=(",", ":")).encode()
            ctype = "application/json; charset=UTF-8"
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _error(self, err: P.ApiError, started: float) -> None:
        self._send_json(err.code, err.body(), err.headers)
        self._log(err.code, started, err.status)

    def _drain(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                raise P.invalid("Chunked request bodies are not supported; send Content-Length.")
            return b""
        n = int(length)
        if n > MAX_BODY:
            self.close_connection = True
            raise P.ApiError(
                400, "INVALID_ARGUMENT", "Request payload size exceeds the limit: 104857600 bytes."
            )
        return self.rfile.read(n)

    # -- verbs ----------------------------------------------------------------
    def do_GET(self) -> None:
        started = time.perf_counter()
        path = urlsplit(self.path).path
        if path == "/healthz":
            self._send_json(200, {"ok": True})
            return
        self._error(P.ApiError(404, "NOT_FOUND", f"Method not found: GET {path}"), started)

    def do_POST(self) -> None:
        started = time.perf_counter()
        try:
            body = self._drain()
            self._post(body, started)
        except P.ApiError as err:
            self._error(err, started)
        except Exception as exc:  # never a bare stack trace to the client
            import traceback

            traceback.print_exc()
            self._error(
                P.ApiError(500, "INTERNAL", f"Internal error in the offline renderer: {type(exc).__name__}."),
                started,
            )

    def _unsupported(self) -> None:
        started = time.perf_counter()
        with contextlib.suppress(P.ApiError):
            self._drain()
        self._error(
            P.ApiError(404, "NOT_FOUND", f"Method not found: {self.command} {urlsplit(self.path).path}"),
            started,
        )

    do_PUT = do_DELETE = do_PATCH = _unsupported

    # -- generateContent --------------------------------------------------------
    def _post(self, raw: bytes, started: float) -> None:
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = parse_qs(split.query)
        m = _API_KEY_PATH.match(path)
        vertex = False
        if not m:
            m = _VERTEX_PATH.match(path)
            vertex = True
        if not m:
            raise P.ApiError(404, "NOT_FOUND", f"Method not found: POST {path}")
        model_full, method = m.group(2), m.group(3)
        sse = method == "streamGenerateContent"
        self._check_auth(vertex, query)
        model, _, suffix = model_full.partition("@")
        model = model.removeprefix("models/")
        if model in RETIRED_MODELS:
            raise P.ApiError(
                404,
                "NOT_FOUND",
                f"models/{model} is not found for API version {m.group(1)}, or is not supported for "
                "generateContent. Call ListModels to see the list of available models and their "
                "supported methods.",
            )
        fault = (
            self.headers.get("x-pixme-fault") or suffix or self.server.fault or ""
        ).strip().lower() or None
        if fault is not None and fault not in FAULTS:
            raise P.invalid(f"Unknown fault kind {fault!r}; known kinds: {', '.join(FAULTS)}.")
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            raise P.invalid("Invalid JSON payload received.") from None
        req = P.parse_request(body)
        self._resolve_files(req, vertex)
        P.check_signatures(req)
        self._fault_before(fault)
        result, note = self._render(req, model, fault)
        self._send_json(200, result, sse=sse)
        self._log(200, started, f"{model} {note}")

    def _resolve_files(self, req: P.Request, vertex: bool) -> None:
        """Read `gs://` file parts from the stack's storage, as Vertex AI reads
        them from Cloud Storage. The Developer API path takes inline data only."""
        for content in req.contents:
            for part in content.parts:
                if part.file_uri is None:
                    continue
                if not vertex:
                    raise P.invalid("gs:// file_data is only accepted on Vertex AI; send inline_data.")
                part.data = read_gcs(self.server.storage_url, part.file_uri)

    def _check_auth(self, vertex: bool, query: dict[str, list[str]]) -> None:
        if vertex:
            auth = self.headers.get("Authorization", "")
            if not auth.lower().startswith("bearer ") or not auth[7:].strip():
                raise P.ApiError(
                    401,
                    "UNAUTHENTICATED",
                    "Request is missing required authentication credential. Expected OAuth 2 access token.",
                )
            return
        key = self.headers.get("x-goog-api-key") or (query.get("key") or [""])[0]
        if not key.strip():
            raise P.ApiError(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
            )

    def _fault_before(self, fault: str | None) -> None:
        if fault in _FAULT_ERRORS:
            code, status, message, headers = _FAULT_ERRORS[fault]
            raise P.ApiError(code, status, f"{message} (injected fault)", headers)
        if fault == "timeout":
            # A slow model: wait, bounded, and give up early if the server stops.
            self.server.stopping.wait(self.server.timeout_s)

    def _render(self, req: P.Request, model: str, fault: str | None) -> tuple[dict[str, Any], str]:
        if fault == "blocked":
            return P.blocked(req, model), "blocked"
        if fault in _BLOCK_FAULTS:
            return P.blocked(req, model, _BLOCK_FAULTS[fault]), fault
        if fault in _FINISH_FAULTS:
            return P.no_content(req, model, _FINISH_FAULTS[fault]), fault
        if fault == "image_safety":
            return P.no_content(req, model, "IMAGE_SAFETY"), "image_safety"
        if fault == "no_image":
            return P.no_content(req, model, "NO_IMAGE"), "no_image"
        if fault == "text_only":
            return (
                P.answer(
                    req,
                    model,
                    "I can describe the avatar in words, but I did not make an image this time.",
                    None,
                ),
                "text_only",
            )
        if "IMAGE" not in req.modalities:
            text = "The offline renderer only makes images: ask for the IMAGE response modality."
            return P.answer(req, model, text, None), "text-modality"
        try:
            with self.server.render_slots:
                outcome, note = self._run_renderer(req)
                if fault == "identity_drift" and outcome.png is not None:
                    # Silently, as a model that loses the likeness says nothing of it.
                    outcome, note = self.server.renderer.drifted(outcome), note + " identity_drift"
        except im.BadImage as exc:
            raise P.invalid(f"Unable to process input image: {exc}.") from None
        signed = fault != "no_signature"
        note += "" if outcome.png else " text-only"
        # With response_modalities ["IMAGE"] an image comes alone; a text-only
        # outcome (no face, impossible edit) still has to be said in words.
        reply: str | None = outcome.text if (outcome.png is None or "TEXT" in req.modalities) else None
        image, mime = outcome.png, "image/png"
        if image is not None and fault == "jpeg":
            # Gemini 3 models answer JPEG: clients must keep whatever type comes.
            image, mime = im.to_jpeg(image), "image/jpeg"
        return P.answer(req, model, reply, image, signed=signed, mime_type=mime), note

    def _run_renderer(self, req: P.Request) -> tuple[Outcome, str]:
        renderer = self.server.renderer
        # Interim "thought" images are drafts: edit the last final one.
        model_images = [p for p in req.images("model") if not p.thought] or req.images("model")
        if model_images:
            # An edit: the base is the last image the model produced; the
            # instruction is only the last user turn (the memory text in the
            # first turn lists edits that are already in that image).
            last_text = " ".join(p.text for p in req.contents[-1].parts if p.text)
            base = model_images[-1].data or b""
            return renderer.edit(base, last_text, trusted=True), "edit"
        user_images = req.images("user")
        all_text = " ".join(p.text for c in req.contents if c.role == "user" for p in c.parts if p.text)
        w, h = output_size(req.image_size, req.aspect)
        size_note = " (4K is not available offline; rendered at 2K.)" if req.size_label == "4K" else ""
        selfie = user_images[0].data if user_images else None
        return renderer.generate(all_text, selfie, w, h, size_note), "generate"


def serve(
    host: str,
    port: int,
    fault: str | None = None,
    timeout_s: float = 30.0,
    quiet: bool = False,
    storage_url: str | None = None,
) -> None:
    t0 = time.perf_counter()
    renderer = Renderer()  # loads the mediapipe models before we listen
    httpd = RendererServer(
        (host, port), renderer, fault=fault, timeout_s=timeout_s, quiet=quiet, storage_url=storage_url
    )
    real_port = httpd.server_address[1]
    print(
        f"pixme offline renderer listening on http://{host}:{real_port} "
        f"(models loaded in {time.perf_counter() - t0:.1f} s{', fault ' + fault if fault else ''})",
        flush=True,
    )

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)  # a clean stop, like Ctrl-C
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        httpd.stopping.set()
        httpd.server_close()
