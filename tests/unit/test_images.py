"""The image pipeline: header gate, safe decode, orientation, metadata stripping."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from pixme import images
from pixme.errors import Rejected
from samples import stored_for

MB = 1024 * 1024
LIMITS = {"max_bytes": 40 * MB, "max_pixels": 50_000_000}


def encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kwargs)
    return out.getvalue()


def portrait(width: int = 300, height: int = 200) -> Image.Image:
    """Left half red, right half blue: orientation is visible in the pixels."""
    img = Image.new("RGB", (width, height), (220, 30, 30))
    img.paste((30, 30, 220), (width // 2, 0, width, height))
    return img


def with_exif(img: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "PhoneMaker"
    gps = {1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)}
    exif[0x8825] = gps
    return encode(img, "JPEG", exif=exif, quality=95)


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares `width` x `height` with almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + struct.pack(">I", 0)
        + b"IEND"
        + struct.pack(">I", zlib.crc32(b"IEND"))
    )


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\xff\xd8\xff\xe0" + b"\0" * 8, "jpeg"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 8, "png"),
        (b"RIFF\0\0\0\0WEBPVP8 ", "webp"),
        (b"\0\0\0\x18ftypheic\0\0\0\0", "heif"),
        (b"GIF89a\x01\x00", "gif"),
        (b"%PDF-1.7", "pdf"),
        (b"  <?xml version='1.0'?><svg>", "svg"),
        (b"II*\x00\x08\x00", "tiff"),
        (b"hello world", None),
    ],
)
def test_sniff_reads_magic_bytes(head: bytes, expected: str | None) -> None:
    assert images.sniff(head) == expected


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty"),
        (b"GIF89a" + b"\0" * 100, "unsupported_format"),
        (b"<svg onload='alert(1)'></svg>", "unsupported_format"),
        (b"%PDF-1.4 not an image", "unsupported_format"),
        (b"\xff\xd8\xff\xe0 truncated", "unreadable"),
        (png_header(20000, 10000), "too_many_pixels"),
        (png_header(60000, 60000), "too_many_pixels"),
        (png_header(32, 32), "too_small"),
    ],
)
def test_probe_rejects_bad_input_before_decoding(data: bytes, code: str) -> None:
    with pytest.raises(Rejected) as caught:
        images.probe(data, **LIMITS)
    assert caught.value.code == code


def test_probe_rejects_files_over_the_byte_cap() -> None:
    data = encode(portrait(), "PNG")
    with pytest.raises(Rejected) as caught:
        images.probe(data, max_bytes=len(data) - 1, max_pixels=LIMITS["max_pixels"])
    assert caught.value.code == "too_large"


def test_probe_rejects_animation() -> None:
    frames = [portrait(), portrait().rotate(180)]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:])
    with pytest.raises(Rejected) as caught:
        images.probe(data, **LIMITS)
    assert caught.value.code == "animated"


def test_a_jpeg_named_png_is_judged_by_its_bytes() -> None:
    # The pipeline never sees the name; the sniffed format is what counts.
    data = encode(portrait(), "JPEG")
    assert images.probe(data, **LIMITS).format == "jpeg"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_normalize_applies_every_exif_orientation(orientation: int) -> None:
    # Store the image so that applying `orientation` yields the upright picture.
    stored = stored_for(portrait(300, 200), orientation)
    result = images.normalize(with_exif(stored, orientation), **LIMITS, max_side=1536)
    out = Image.open(io.BytesIO(result.data))
    assert out.size == (300, 200)
    left, right = out.getpixel((40, 100)), out.getpixel((260, 100))
    assert isinstance(left, tuple) and isinstance(right, tuple)
    assert left[0] > 150 and right[2] > 150, (orientation, left, right)


def test_normalize_strips_all_metadata() -> None:
    result = images.normalize(with_exif(portrait(), 6), **LIMITS, max_side=1536)
    out = Image.open(io.BytesIO(result.data))
    assert len(out.getexif()) == 0
    assert "exif" not in out.info and "icc_profile" not in out.info
    assert b"PhoneMaker" not in result.data


def test_normalize_downscales_to_the_max_side_keeping_aspect() -> None:
    data = encode(portrait(4000, 3000), "JPEG", quality=90)
    result = images.normalize(data, **LIMITS, max_side=1024)
    assert (result.width, result.height) == (1024, 768)
    assert result.mime_type == "image/jpeg"


@pytest.mark.parametrize(
    "img",
    [
        Image.new("CMYK", (200, 200), (0, 255, 255, 0)),
        Image.new("I;16", (200, 200), 40000),
        Image.new("LA", (200, 200), (100, 50)),
        Image.new("P", (200, 200), 3),
        Image.new("RGBA", (200, 200), (10, 200, 10, 0)),
    ],
    ids=["cmyk", "16bit", "grey-alpha", "palette", "transparent"],
)
def test_normalize_converts_every_mode_to_rgb(img: Image.Image) -> None:
    fmt = "JPEG" if img.mode == "CMYK" else "PNG"
    result = images.normalize(encode(img, fmt), **LIMITS, max_side=1024)
    out = Image.open(io.BytesIO(result.data))
    assert out.mode == "RGB" and out.size == (200, 200)


def test_transparent_pixels_become_white_not_black() -> None:
    result = images.normalize(
        encode(Image.new("RGBA", (100, 100), (0, 0, 0, 0)), "PNG"), **LIMITS, max_side=1024
    )
    pixel = Image.open(io.BytesIO(result.data)).getpixel((50, 50))
    assert isinstance(pixel, tuple) and min(pixel) > 240


def test_truncated_jpeg_is_rejected_not_half_decoded() -> None:
    data = encode(portrait(800, 600), "JPEG")
    with pytest.raises(Rejected) as caught:
        images.normalize(data[: len(data) // 2], **LIMITS, max_side=1024)
    assert caught.value.code in {"truncated", "unreadable"}


# --- the header gate decodes nothing ---------------------------------------------------


def test_pillow_bomb_limit_stays_on_and_its_warning_is_a_rejection() -> None:
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS <= 100_000_000
    # Our own cap set above Pillow's: Pillow's warning still rejects.
    with pytest.raises(Rejected) as caught:
        images.probe(png_header(12_000, 12_000), max_bytes=LIMITS["max_bytes"], max_pixels=10**12)
    assert caught.value.code == "too_many_pixels"


def test_the_header_gate_accepts_what_only_decoding_would_find_broken() -> None:
    data = encode(portrait(800, 600), "PNG")
    half = data[: len(data) // 2]
    assert images.probe(half, **LIMITS) == images.Probe("png", 800, 600, 1)
    with pytest.raises(Rejected) as caught:
        images.normalize(half, **LIMITS, max_side=1024)
    assert caught.value.code == "truncated"


def test_a_48_megapixel_photo_is_admitted_and_a_60_megapixel_one_is_not() -> None:
    assert images.probe(png_header(8000, 6000), **LIMITS).width == 8000
    with pytest.raises(Rejected) as caught:
        images.probe(png_header(9000, 6700), **LIMITS)
    assert caught.value.code == "too_many_pixels"


# --- polyglots ----------------------------------------------------------------------------


def zip_bytes() -> bytes:
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("run.js", "alert(1)")
    return out.getvalue()


@pytest.mark.parametrize(
    ("make", "found"),
    [
        (lambda jpeg: jpeg + zip_bytes(), "zip"),
        (lambda jpeg: jpeg[:2] + b"\xff\xfe\x00\x12<script>x()</sc" + jpeg[2:], "markup"),
        (lambda jpeg: jpeg + b"<HTML><body onload=x()>", "markup"),
        (lambda jpeg: jpeg[:2] + b"\xff\xfe\x00\x0a%PDF-1.4" + jpeg[2:], "markup"),
    ],
    ids=["zip-appended", "script-in-comment", "html-trailer", "pdf-header"],
)
def test_a_photo_that_is_also_something_else_is_rejected(make, found: str) -> None:  # type: ignore[no-untyped-def]
    data = make(encode(portrait(), "JPEG"))
    assert images.polyglot(data) == found
    with pytest.raises(Rejected) as caught:
        images.probe(data, **LIMITS)
    assert caught.value.code == "polyglot"


def test_ordinary_photos_are_not_polyglots() -> None:
    for fmt in ("JPEG", "PNG", "WEBP"):
        assert images.polyglot(encode(portrait(640, 480), fmt)) is None
    # Random data ending in something ZIP-like but without a directory is fine.
    assert images.polyglot(b"\xff\xd8\xff" + bytes(1000) + b"PK\x05\x06" + bytes(18)) is None


# --- formats phones write -----------------------------------------------------------------


def test_a_multi_picture_jpeg_uses_its_primary_picture() -> None:
    data = encode(portrait(300, 200), "MPO", save_all=True, append_images=[portrait(120, 80)])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    result = images.normalize(data, **LIMITS, max_side=1536)
    assert (result.width, result.height) == (300, 200)


def test_heic_is_decoded_and_its_orientation_applied_once() -> None:
    from pillow_heif import register_heif_opener

    register_heif_opener()
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(portrait(300, 200).transpose(Image.Transpose.ROTATE_90), "HEIF", exif=exif.tobytes())
    assert images.sniff(data[:32]) == "heif"
    result = images.normalize(data, **LIMITS, max_side=1536)
    out = Image.open(io.BytesIO(result.data))
    assert out.size == (300, 200)
    left, right = out.getpixel((40, 100)), out.getpixel((260, 100))
    assert isinstance(left, tuple) and isinstance(right, tuple)
    assert left[0] > 150 and right[2] > 150


def test_a_broken_colour_profile_is_ignored_not_fatal() -> None:
    data = encode(portrait(), "JPEG", icc_profile=b"not a profile at all")
    assert images.normalize(data, **LIMITS, max_side=1024).width == 300


def test_a_16_bit_png_keeps_its_tones() -> None:
    grey = Image.new("I;16", (100, 100), 128 * 256)
    result = images.normalize(encode(grey, "PNG"), **LIMITS, max_side=1024)
    pixel = Image.open(io.BytesIO(result.data)).getpixel((50, 50))
    assert isinstance(pixel, tuple) and all(120 <= v <= 136 for v in pixel)


def test_a_big_jpeg_shrinks_on_load() -> None:
    # 4000x3000 decoded at 1/2 scale: the DCT does most of the work.
    data = encode(portrait(4000, 3000), "JPEG", quality=85)
    img = Image.open(io.BytesIO(data))
    img.draft("RGB", (1536, 1152))
    assert img.size == (2000, 1500)
    result = images.normalize(data, **LIMITS, max_side=1536)
    assert (result.width, result.height) == (1536, 1152)


# --- faces --------------------------------------------------------------------------------


def test_the_crop_is_a_square_around_the_face_kept_inside_the_picture() -> None:
    from pixme.faces import CROP_SCALE, Face, crop_box

    middle = Face(x=400, y=300, w=100, h=120, score=90)
    left, top, right, bottom = crop_box(middle, 1000, 800)
    assert right - left == bottom - top == round(120 * CROP_SCALE)
    assert left < 400 and right > 500 and top < 300 and bottom > 420
    corner = Face(x=0, y=0, w=100, h=120, score=90)
    assert crop_box(corner, 1000, 800)[:2] == (0, 0)
    # A face too big for a 2.6x square gets the largest square the picture has.
    left, top, right, bottom = crop_box(Face(x=100, y=50, w=400, h=500, score=90), 600, 800)
    assert (left, right, bottom - top) == (0, 600, 600) and 0 <= top <= 200


def test_a_small_face_far_behind_does_not_make_a_group_photo() -> None:
    from pixme.faces import Face, prominent

    me, stranger, friend = Face(0, 0, 200, 240, 93), Face(0, 0, 60, 70, 85), Face(0, 0, 150, 180, 90)
    assert prominent([me, stranger]) == [me]
    assert prominent([me, stranger, friend]) == [me, friend]
    assert prominent([]) == []
