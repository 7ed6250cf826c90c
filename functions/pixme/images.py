"""Probe, validate and normalize images. Pillow only, no I/O.

Order matters for speed and memory: everything that can be judged from the
header is judged before any pixel is decoded; JPEGs shrink on load (DCT
scaling to the smallest size still at least the target); colour conversion
and EXIF orientation run on the small image, last.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageCms

from pixme.config import PIXEL_CEILING
from pixme.errors import Rejected

# Never disabled. Above this Pillow warns (an error here, see below) and above
# twice this it refuses by itself, whatever our own checks say.
Image.MAX_IMAGE_PIXELS = PIXEL_CEILING
# Process-wide, and again around every open/load (tests and frameworks may
# reset warning filters): a decompression-bomb warning is a rejection.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)

ACCEPTED = ("jpeg", "png", "webp", "heif")
CANONICAL_MIME = "image/jpeg"
JPEG_QUALITY = 88
MIN_SIDE = 64

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
# Only the plugins of the sniffed format may parse the file (MPO is how
# Pillow opens JPEGs that carry extra pictures, as many phones write them).
_PLUGINS = {"jpeg": ["JPEG", "MPO"], "png": ["PNG"], "webp": ["WEBP"], "heif": ["HEIF"]}
# Formats whose extra frames are an animation. In JPEG (MPO) and HEIF they are
# previews, depth maps or bursts: the primary picture is used.
_ANIMATED = {"png", "webp"}
# Markup or a PDF header near either end of the file makes it a polyglot: a
# browser or a PDF reader would find something to run in it.
_ACTIVE = re.compile(
    rb"<(?:script|html|body|svg|iframe|object|embed|\?php)[\s>/]|<!doctype\s+html|%PDF-", re.IGNORECASE
)
_SCAN = 64 * 1024
_ZIP_EOCD = b"PK\x05\x06"
_ZIP_CENTRAL = b"PK\x01\x02"


@dataclass(frozen=True)
class Probe:
    format: str
    width: int
    height: int
    orientation: int = 1


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
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    stripped = head.lstrip()[:256].lower()
    if stripped.startswith((b"<?xml", b"<svg")) or b"<svg" in stripped:
        return "svg"
    return None


def polyglot(data: bytes) -> str | None:
    """What else the file is, besides an image: "markup", "zip" or None.

    Cheap by design (the two ends of the file and the ZIP directory), since
    the output is re-encoded anyway: this keeps hostile originals out of
    quarantine and logs, it is not what makes the output safe.
    """
    if _ACTIVE.search(data, 0, _SCAN) or _ACTIVE.search(data, max(0, len(data) - _SCAN)):
        return "markup"
    # A ZIP reader looks for the end-of-directory record at the end and
    # tolerates anything before the archive: check the directory it names.
    eocd = data.rfind(_ZIP_EOCD, max(0, len(data) - 65_557))
    if eocd >= 0 and len(data) >= eocd + 22:
        (directory_size,) = struct.unpack("<I", data[eocd + 12 : eocd + 16])
        start = eocd - directory_size
        if start >= 0 and data[start : start + 4] == _ZIP_CENTRAL:
            return "zip"
    return None


_heif_registered = False


def _register_heif() -> None:
    global _heif_registered
    if not _heif_registered:
        from pillow_heif import register_heif_opener  # only HEIC pays for libheif

        register_heif_opener()
        _heif_registered = True


def _too_many_pixels(pixels: int, max_pixels: int) -> Rejected:
    return Rejected(
        "too_many_pixels",
        f"The photo has {pixels / 1e6:.0f} MP; the limit is {max_pixels / 1e6:.0f} MP.",
    )


def open_checked(data: bytes, max_bytes: int, max_pixels: int) -> tuple[Probe, Image.Image]:
    """The header gate: format, bytes, pixels, frames; no pixel is decoded."""
    if not data:
        raise Rejected("empty", "The file is empty.")
    if len(data) > max_bytes:
        raise Rejected("too_large", f"The file is larger than {max_bytes / (1024 * 1024):.0f} MB.")
    fmt = sniff(data[:512])
    if fmt not in ACCEPTED:
        raise Rejected(
            "unsupported_format",
            "Only JPEG, PNG, WebP and HEIC photos are accepted.",
            detected=fmt or "unknown",
        )
    other = polyglot(data)
    if other:
        raise Rejected(
            "polyglot", "The file is not only a photo; save the photo again and retry.", found=other
        )
    if fmt == "heif":
        _register_heif()
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=_PLUGINS[fmt])
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise Rejected("too_many_pixels", "The photo has too many pixels.") from None
        except Exception:  # hostile input: whatever the parser trips on means the same
            raise Rejected("unreadable", "The file is not a readable image.") from None
    width, height = img.size
    if width < MIN_SIDE or height < MIN_SIDE:
        raise Rejected("too_small", f"The photo must be at least {MIN_SIDE} pixels on each side.")
    if width * height > max_pixels:
        raise _too_many_pixels(width * height, max_pixels)
    if fmt in _ANIMATED and getattr(img, "n_frames", 1) > 1:
        raise Rejected("animated", "Animated images are not accepted.")
    return Probe(fmt, width, height, _orientation(img, fmt)), img


def _orientation(img: Image.Image, fmt: str) -> int:
    if fmt == "heif":
        return 1  # libheif has applied it already
    if fmt == "png" and "exif" not in img.info:
        # Pillow would decode the whole image looking for an eXIf chunk after
        # the pixel data; the header gate decodes nothing.
        return 1
    try:
        value = img.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block is not worth rejecting a selfie for
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def probe(data: bytes, max_bytes: int, max_pixels: int) -> Probe:
    """Validate from the header only: format, size in bytes and in pixels."""
    return open_checked(data, max_bytes, max_pixels)[0]


def _fit(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _resizable(img: Image.Image) -> Image.Image:
    """A mode Pillow resamples properly (palette images only resize nearest)."""
    if img.mode in ("RGB", "RGBA", "L", "LA", "CMYK"):
        return img
    if img.mode == "P":
        return img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode == "PA":
        return img.convert("RGBA")
    if img.mode.startswith("I;16") or img.mode == "I":
        # 16-bit greyscale: scale down to 8 bits instead of clipping to white.
        return img.point(lambda v: v / 256).convert("L")
    if img.mode == "1":
        return img.convert("L")
    return img.convert("RGB")


@lru_cache(maxsize=8)
def _to_srgb_transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        dst = ImageCms.createProfile("sRGB")
        return ImageCms.buildTransform(src, dst, mode, "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None  # a broken profile is not worth rejecting a selfie for


def _to_srgb(img: Image.Image, icc: bytes | None) -> Image.Image:
    if img.mode in ("RGBA", "LA"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img.convert("RGB"), mask=img.getchannel("A"))
        img = background  # transparent pixels become white, never black
    if icc and img.mode in ("RGB", "CMYK"):
        transform = _to_srgb_transform(icc, img.mode)
        if transform is not None:
            try:
                converted = ImageCms.applyTransform(img, transform)
            except (ImageCms.PyCMSError, ValueError):
                converted = None  # a profile for another colour space
            if converted is not None:
                return converted
    return img if img.mode == "RGB" else img.convert("RGB")


def _load(img: Image.Image) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img.load()
        except (EOFError, OSError) as exc:
            if isinstance(exc, EOFError) or "truncated" in str(exc) or "broken data" in str(exc):
                raise Rejected("truncated", "The image data is incomplete.") from None
            raise Rejected("unreadable", "The image data is corrupt.") from None
        except Exception:
            raise Rejected("unreadable", "The image data is corrupt.") from None


def decode(data: bytes, max_bytes: int, max_pixels: int, max_side: int) -> Image.Image:
    """Gate, shrink on load, convert to sRGB RGB, orient: the upright picture."""
    info, img = open_checked(data, max_bytes, max_pixels)
    # The target is in stored axes: EXIF orientations 5-8 swap them later.
    target = _fit(info.width, info.height, max_side)
    icc = img.info.get("icc_profile")
    if info.format in ("jpeg", "heif"):
        # Aspect-preserving target: a square box would block DCT scaling.
        img.draft("RGB", target)
    _load(img)
    img = _resizable(img)
    if img.size != target:
        # Formats without shrink-on-load (PNG, WebP, most HEIC) first halve
        # by box averaging, as the JPEG DCT scaling does: half the time, and
        # bicubic still does the last >= 1.3x step.
        img = img.resize(target, Image.Resampling.BICUBIC, reducing_gap=1.3)
    img = _to_srgb(img, icc if isinstance(icc, bytes) else None)
    return _with_orientation(img, info.orientation)


def encode(img: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    out = io.BytesIO()
    # A fresh image carries no exif, icc or comments: nothing of the original's
    # metadata survives.
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def normalize(data: bytes, max_bytes: int, max_pixels: int, max_side: int) -> Normalized:
    """Decode safely, shrink on load, orient, drop metadata, encode one JPEG."""
    img = decode(data, max_bytes, max_pixels, max_side)
    return Normalized(encode(img), CANONICAL_MIME, img.width, img.height)


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
