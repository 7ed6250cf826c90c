"""The Gemini `generateContent` JSON protocol: parsing, validation, answers.

Only what the google-genai SDK sends and reads is modelled. Requests may use
camelCase (what the SDK sends) or snake_case; base64 may be standard or
URL-safe. Errors always use Gemini's shape:
`{"error": {"code": 400, "message": "...", "status": "INVALID_ARGUMENT"}}`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import os
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

DEFAULT_SECRET = b"pixme-offline-renderer/thought-signature/v1"
SIGNATURE_PREFIX = b"pxo1"

IMAGE_TOKENS_IN = 1120
IMAGE_TOKENS_OUT = {512: 747, 1024: 1120, 2048: 1680}
MAX_IMAGES = 14

SIZES = {"512": 512, "0.5K": 512, "1K": 1024, "2K": 2048, "4K": 2048}


class ApiError(Exception):
    """An error answered in Gemini's JSON shape."""

    def __init__(self, code: int, status: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}


def invalid(message: str) -> ApiError:
    return ApiError(400, "INVALID_ARGUMENT", message)


# --------------------------------------------------------------------------
# signatures


def _secret() -> bytes:
    env = os.environ.get("PIXME_RENDERER_SECRET")
    return env.encode() if env else DEFAULT_SECRET


def sign(image: bytes) -> bytes:
    return SIGNATURE_PREFIX + hmac.new(_secret(), image, hashlib.sha256).digest()


def verify(image: bytes, signature: bytes) -> bool:
    return hmac.compare_digest(sign(image), signature)


# --------------------------------------------------------------------------
# request


def b64decode_any(text: str, what: str) -> bytes:
    """Decode standard or URL-safe base64, with or without padding."""
    if not isinstance(text, str):
        raise invalid(f"Invalid value for {what}: expected a base64 string.")
    cleaned = re.sub(r"\s+", "", text)
    cleaned = cleaned.replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"Invalid value at '{what}': base64 decoding failed.") from None


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _get(d: dict[str, Any], camel: str, snake: str, default: Any = None) -> Any:
    if camel in d:
        return d[camel]
    return d.get(snake, default)


@dataclass
class Part:
    text: str | None = None
    data: bytes | None = None
    mime_type: str | None = None
    signature: bytes | None = None
    thought: bool = False
    # A file part (`fileData`): the image is read from storage by the server.
    file_uri: str | None = None


@dataclass
class Content:
    role: str
    parts: list[Part] = field(default_factory=list)


@dataclass
class Request:
    contents: list[Content]
    system_text: str
    image_size: int
    size_label: str
    aspect: tuple[int, int]
    modalities: list[str]

    def images(self, role: str) -> list[Part]:
        return [p for c in self.contents if c.role == role for p in c.parts if p.data is not None]

    def texts(self) -> list[str]:
        out = [self.system_text] if self.system_text else []
        out += [p.text for c in self.contents for p in c.parts if p.text]
        return out


def parse_request(body: object) -> Request:
    if not isinstance(body, dict):
        raise invalid("Invalid JSON payload received. Expected an object.")
    raw_contents = body.get("contents")
    if not raw_contents:
        raise invalid("* GenerateContentRequest.contents: contents is not specified")
    if not isinstance(raw_contents, list):
        raise invalid("Invalid value at 'contents': expected a list.")
    contents: list[Content] = []
    for ci, rc in enumerate(raw_contents):
        if not isinstance(rc, dict):
            raise invalid(f"Invalid value at 'contents[{ci}]': expected an object.")
        role = rc.get("role") or "user"
        if role not in ("user", "model"):
            raise invalid(f"Please use a valid role: user, model. Got {role!r} at contents[{ci}].")
        parts_raw = rc.get("parts") or []
        if not isinstance(parts_raw, list) or not parts_raw:
            raise invalid(f"* GenerateContentRequest.contents[{ci}].parts: contents.parts must not be empty.")
        parts = [_parse_part(p, ci, pi) for pi, p in enumerate(parts_raw)]
        contents.append(Content(role, parts))
    system_text = ""
    sys_raw = _get(body, "systemInstruction", "system_instruction")
    if isinstance(sys_raw, dict):
        system_text = " ".join(p.get("text", "") for p in sys_raw.get("parts") or [] if isinstance(p, dict))
    config = _get(body, "generationConfig", "generation_config") or {}
    if not isinstance(config, dict):
        raise invalid("Invalid value at 'generation_config'.")
    modalities = [
        str(m).upper() for m in _get(config, "responseModalities", "response_modalities") or ["TEXT", "IMAGE"]
    ]
    image_cfg = _get(config, "imageConfig", "image_config") or {}
    size_label = str(_get(image_cfg, "imageSize", "image_size") or "1K")
    if size_label not in SIZES:
        raise invalid(f"Unsupported image_size {size_label!r}. Use one of 512, 1K, 2K, 4K.")
    aspect_label = str(_get(image_cfg, "aspectRatio", "aspect_ratio") or "1:1")
    m = re.fullmatch(r"\s*(\d{1,2})\s*:\s*(\d{1,2})\s*", aspect_label)
    if not m or int(m.group(1)) == 0 or int(m.group(2)) == 0:
        raise invalid(f"Unsupported aspect_ratio {aspect_label!r}.")
    aspect = (int(m.group(1)), int(m.group(2)))
    if not 0.2 <= aspect[0] / aspect[1] <= 5:
        raise invalid(f"Unsupported aspect_ratio {aspect_label!r}.")
    req = Request(contents, system_text, SIZES[size_label], size_label, aspect, modalities)
    if len(req.images("user")) + len(req.images("model")) > MAX_IMAGES:
        raise invalid(f"Too many images: at most {MAX_IMAGES} images are supported per request.")
    if contents[-1].role != "user":
        raise invalid("Please ensure that the last content comes from the user role.")
    return req


def _parse_part(p: object, ci: int, pi: int) -> Part:
    if not isinstance(p, dict):
        raise invalid(f"Invalid value at 'contents[{ci}].parts[{pi}]': expected an object.")
    part = Part()
    sig = _get(p, "thoughtSignature", "thought_signature")
    if sig is not None:
        part.signature = b64decode_any(sig, f"contents[{ci}].parts[{pi}].thought_signature")
    part.thought = bool(p.get("thought", False))
    if "text" in p:
        if not isinstance(p["text"], str):
            raise invalid(f"Invalid value at 'contents[{ci}].parts[{pi}].text'.")
        part.text = p["text"]
    blob = _get(p, "inlineData", "inline_data")
    if blob is not None:
        if not isinstance(blob, dict):
            raise invalid(f"Invalid value at 'contents[{ci}].parts[{pi}].inline_data'.")
        part.mime_type = str(_get(blob, "mimeType", "mime_type") or "")
        if not part.mime_type.startswith("image/"):
            raise invalid(
                f"Unsupported MIME type at contents[{ci}].parts[{pi}]: {part.mime_type or 'missing'}. "
                "The offline renderer takes images only."
            )
        part.data = b64decode_any(blob.get("data", ""), f"contents[{ci}].parts[{pi}].inline_data.data")
        if not part.data:
            raise invalid(f"Empty image data at contents[{ci}].parts[{pi}].")
    elif (ref := _get(p, "fileData", "file_data")) is not None:
        if not isinstance(ref, dict) or not str(_get(ref, "fileUri", "file_uri") or ""):
            raise invalid(f"Invalid value at 'contents[{ci}].parts[{pi}].file_data'.")
        part.file_uri = str(_get(ref, "fileUri", "file_uri"))
        part.mime_type = str(_get(ref, "mimeType", "mime_type") or "")
        if not part.mime_type.startswith("image/"):
            where = f"contents[{ci}].parts[{pi}]"
            raise invalid(f"Unsupported MIME type at {where}: {part.mime_type or 'missing'}.")
    if part.text is None and part.data is None and part.signature is None and part.file_uri is None:
        raise invalid(f"Unable to submit request because contents[{ci}].parts[{pi}] has no data.")
    return part


def check_signatures(req: Request) -> None:
    """Every image the model produced must come back with its signature."""
    for ci, c in enumerate(req.contents):
        if c.role != "model":
            continue
        for pi, p in enumerate(c.parts):
            if p.data is None:
                continue
            where = f"in content position {ci + 1}, part position {pi + 1}"
            if p.signature is None:
                raise invalid(
                    f"Image part is missing a thought_signature {where}. Model parts must be sent "
                    "back with the thought_signature they were returned with."
                )
            if not verify(p.data, p.signature):
                raise invalid(
                    f"Image part is missing a thought_signature {where}: the thought_signature given "
                    "does not match the image (it was altered or not produced by this model)."
                )


# --------------------------------------------------------------------------
# response


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / 4) if text else 0


def usage(req: Request, reply_text: str, out_image_tokens: int) -> dict[str, Any]:
    t_in = sum(text_tokens(t) for t in req.texts())
    n_images = len(req.images("user")) + len(req.images("model"))
    i_in = IMAGE_TOKENS_IN * n_images
    t_out = text_tokens(reply_text)
    details = [{"modality": "TEXT", "tokenCount": t_in}]
    if i_in:
        details.append({"modality": "IMAGE", "tokenCount": i_in})
    cand_details = [{"modality": "TEXT", "tokenCount": t_out}]
    if out_image_tokens:
        cand_details.append({"modality": "IMAGE", "tokenCount": out_image_tokens})
    return {
        "promptTokenCount": t_in + i_in,
        "candidatesTokenCount": t_out + out_image_tokens,
        "totalTokenCount": t_in + i_in + t_out + out_image_tokens,
        "promptTokensDetails": details,
        "candidatesTokensDetails": cand_details,
    }


def response_id() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(15)).decode().rstrip("=")


def envelope(model: str, body: dict[str, Any]) -> dict[str, Any]:
    body["modelVersion"] = f"{model}-offline-1"
    body["responseId"] = response_id()
    return body


def answer(
    req: Request,
    model: str,
    text: str | None,
    png: bytes | None,
    *,
    signed: bool = True,
    finish: str = "STOP",
    mime_type: str = "image/png",
) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if text:
        parts.append({"text": text})
    out_tokens = 0
    if png is not None:
        part: dict[str, Any] = {"inlineData": {"mimeType": mime_type, "data": b64encode(png)}}
        if signed:
            part["thoughtSignature"] = b64encode(sign(png))
        parts.append(part)
        out_tokens = IMAGE_TOKENS_OUT.get(req.image_size, 1120)
    candidate: dict[str, Any] = {"finishReason": finish, "index": 0}
    if parts:
        candidate["content"] = {"role": "model", "parts": parts}
    return envelope(model, {"candidates": [candidate], "usageMetadata": usage(req, text or "", out_tokens)})


def no_content(req: Request, model: str, finish: str) -> dict[str, Any]:
    return envelope(
        model, {"candidates": [{"finishReason": finish, "index": 0}], "usageMetadata": usage(req, "", 0)}
    )


def blocked(req: Request, model: str, reason: str = "SAFETY") -> dict[str, Any]:
    u = usage(req, "", 0)
    return envelope(model, {"promptFeedback": {"blockReason": reason}, "usageMetadata": u})
