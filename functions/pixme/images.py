"""Probe, validate and normalize images. Pillow only, no I/O.

Order matters for speed and memory: check the header before decoding, shrink
on load (JPEG DCT scaling), and orient the small image last.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageCms

from pixme.errors import Rejected

# Never disabled: a pixel count above twice this raises inside Pillow itself,
# whatever our own checks say.
Image.MAX_IMAGE_PIXELS = 64_000_000

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
ACCEPTED = ("jpeg", "png", "webp", "heif")
CANONICAL_MIME = "image/jpeg"


@dataclass(frozen=True)
class Probe:
    format: str
    width: int
    height: int


@dataclass(frozen=True)
class Normalized:
    data: bytes
    mime_type: str
    width: int
    height: int


def sniff(head: bytes) -> str | None:
    """The real format from magic bytes; file names and content types lie."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return "heif"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"%PDF"):
        return "pdf"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    stripped = head.lstrip()[:256].lower()
    if stripped.startswith((b"<?xml", b"<svg")) or b"<svg" in stripped:
        return "svg"
    return None


def _open(data: bytes, fmt: str) -> Image.Image:
    if fmt == "heif":
        from pillow_heif import register_heif_opener  # only HEIC pays for libheif

        register_heif_opener()
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise Rejected("too_many_pixels", "The image has too many pixels.") from None
        except Exception:
            raise Rejected("unreadable", "The file is not a readable image.") from None


def probe(data: bytes, max_bytes: int, max_pixels: int) -> Probe:
    """Validate from the header only: format, size in bytes and in pixels."""
    if not data:
        raise Rejected("empty", "The file is empty.")
    if len(data) > max_bytes:
        raise Rejected("too_large", f"The file is larger than {max_bytes // (1024 * 1024)} MB.")
    fmt = sniff(data[:512])
    if fmt not in ACCEPTED:
        raise Rejected(
            "unsupported_format",
            "Only JPEG, PNG, WebP and HEIC photos are accepted.",
            detected=fmt or "unknown",
        )
    img = _open(data, fmt)
    width, height = img.size
    if width < 64 or height < 64:
        raise Rejected("too_small", "The photo must be at least 64 pixels on each side.")
    if width * height > max_pixels:
        raise Rejected(
            "too_many_pixels",
            f"The photo has {width * height / 1e6:.0f} MP; the limit is {max_pixels / 1e6:.0f} MP.",
        )
    if getattr(img, "n_frames", 1) > 1:
        raise Rejected("animated", "Animated images are not accepted.")
    return Probe(fmt, width, height)


def _fit(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _to_srgb(img: Image.Image) -> Image.Image:
    icc = img.info.get("icc_profile")
    if icc and img.mode in ("RGB", "CMYK"):
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.createProfile("sRGB")
            converted = ImageCms.profileToProfile(img, src, dst, outputMode="RGB")
            if converted is not None:
                return converted
        except (ImageCms.PyCMSError, OSError):
            pass  # a broken profile is not worth rejecting a selfie for
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if img.mode.startswith("I;16") or img.mode == "I":
        # 16-bit greyscale: scale down to 8 bits instead of clipping to white.
        return img.point(lambda v: v / 256).convert("L").convert("RGB")
    return img.convert("RGB")


def normalize(data: bytes, max_bytes: int, max_pixels: int, max_side: int) -> Normalized:
    """Decode safely, shrink on load, orient, drop metadata, encode one JPEG."""
    info = probe(data, max_bytes, max_pixels)
    img = _open(data, info.format)
    orientation = img.getexif().get(0x0112, 1)
    # EXIF orientations 5-8 swap the axes: the draft target is in stored axes.
    stored_w, stored_h = img.size
    target = _fit(stored_w, stored_h, max_side)
    try:
        if info.format == "jpeg":
            img.draft("RGB", target)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
    except Rejected:
        raise
    except Exception:
        raise Rejected("truncated", "The image data is incomplete or corrupt.") from None
    rgb = _to_srgb(img)
    if rgb.size != target:
        rgb = rgb.resize(target, Image.Resampling.LANCZOS, reducing_gap=2.0)
    rgb = _with_orientation(rgb, orientation)
    out = io.BytesIO()
    # No exif, no icc, no comments: nothing of the original's metadata survives.
    rgb.save(out, "JPEG", quality=88, optimize=False)
    return Normalized(out.getvalue(), CANONICAL_MIME, rgb.width, rgb.height)


_TRANSPOSE = {
    2: [Image.Transpose.FLIP_LEFT_RIGHT],
    3: [Image.Transpose.ROTATE_180],
    4: [Image.Transpose.FLIP_TOP_BOTTOM],
    5: [Image.Transpose.TRANSPOSE],
    6: [Image.Transpose.ROTATE_270],
    7: [Image.Transpose.TRANSVERSE],
    8: [Image.Transpose.ROTATE_90],
}


def _with_orientation(img: Image.Image, orientation: int) -> Image.Image:
    for op in _TRANSPOSE.get(orientation, []):
        img = img.transpose(op)
    return img


def dimensions(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size
