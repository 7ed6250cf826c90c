"""Face analysis with the models shipped inside the mediapipe 0.10.21 wheel.

Three legacy `mp.solutions` graphs are loaded once at start-up: full-range
face detection (to find and frame the face), the 478-point face mesh with
irises (eyes, face oval) and selfie segmentation (the person mask). The graphs
are not thread-safe, so every call goes through one lock.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Ordered landmark loops of the 478-point mesh (indices from mediapipe's
# face_mesh_connections, put in drawing order).
FACE_OVAL = (
    10,
    338,
    297,
    332,
    284,
    251,
    389,
    356,
    454,
    323,
    361,
    288,
    397,
    365,
    379,
    378,
    400,
    377,
    152,
    148,
    176,
    149,
    150,
    136,
    172,
    58,
    132,
    93,
    234,
    127,
    162,
    21,
    54,
    103,
    67,
    109,
)
EYE_A = (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7)
EYE_B = (362, 398, 384, 385, 386, 387, 388, 466, 263, 249, 390, 373, 374, 380, 381, 382)
IRIS_A = (468, 469, 470, 471, 472)
IRIS_B = (473, 474, 475, 476, 477)
BROW_A = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
BROW_B = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
LIPS_OUTER = (
    61,
    185,
    40,
    39,
    37,
    0,
    267,
    269,
    270,
    409,
    291,
    375,
    321,
    405,
    314,
    17,
    84,
    181,
    91,
    146,
)
CHIN = 152
FOREHEAD = 10
TEMPLE_A = 127
TEMPLE_B = 356

MIN_SCORE = 0.6

Box = tuple[float, float, float, float]  # x, y, w, h in pixels
Detection = tuple[float, float, float, float, float]  # box and score
CLEAR_SCORE = 0.85


@dataclass
class Geometry:
    """Where the face(s) and the person are in an output image.

    `faces` holds one (478, 2) float32 array of pixel coordinates per face
    (pop art has four); `mask` is the person mask, float32 in [0, 1], at the
    image's size.
    """

    faces: list[np.ndarray]
    mask: np.ndarray | None


@dataclass
class Framing:
    """A face-centred crop of the input, already scaled to the output size."""

    image: np.ndarray  # RGB uint8, out_h x out_w
    landmarks: np.ndarray | None  # (478, 2) pixel coordinates in `image`
    mask: np.ndarray  # float32 person mask in [0, 1]
    box: tuple[float, float, float, float]  # face box (x, y, w, h) in `image`


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence native (C++) log lines written straight to file descriptor 2."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class FaceAnalyzer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mesh_quiet = True
        with _quiet_stderr():
            import mediapipe as mp

            sol = mp.solutions
            self._detector = sol.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)
            self._mesh = sol.face_mesh.FaceMesh(
                static_image_mode=True,
                refine_landmarks=True,
                max_num_faces=1,
                min_detection_confidence=0.5,
            )
            self._segmenter = sol.selfie_segmentation.SelfieSegmentation(model_selection=0)
            # Warm up every graph so that the first request is not slow and the
            # graphs' start-up log lines go to /dev/null.
            probe = np.full((256, 256, 3), 128, np.uint8)
            cv2.circle(probe, (128, 110), 60, (200, 170, 150), -1)
            self._detector.process(probe)
            self._mesh.process(probe)
            self._segmenter.process(probe)

    # -- raw model calls ---------------------------------------------------
    def detect(self, rgb: np.ndarray) -> Detection | None:
        """Largest confident face as (x, y, w, h, score) in pixels, or None.

        The detector sees a 192 px square, so a small face in a large photo
        vanishes: when the whole image finds nothing, overlapping tiles
        (2x2, then 3x3) are tried.
        """
        found = self._detect_once(rgb)
        if found is not None:
            return found
        h, w = rgb.shape[:2]
        for n in (2, 3):
            if max(h, w) / n < 320:
                break
            th, tw = int(h / n * 1.35), int(w / n * 1.35)
            best = None
            for i in range(n):
                for j in range(n):
                    y0 = min(h - th, int(i * (h - th) / (n - 1)))
                    x0 = min(w - tw, int(j * (w - tw) / (n - 1)))
                    hit = self._detect_once(rgb[y0 : y0 + th, x0 : x0 + tw])
                    if hit is not None and (best is None or hit[2] * hit[3] > best[2] * best[3]):
                        best = (hit[0] + x0, hit[1] + y0, hit[2], hit[3], hit[4])
            if best is not None:
                return best
        return None

    def _detect_once(self, rgb: np.ndarray) -> Detection | None:
        h, w = rgb.shape[:2]
        scale = 1.0
        small = rgb
        if max(h, w) > 1280:  # the detector works on 192 px anyway
            scale = 1280 / max(h, w)
            small = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        with self._lock:
            result = self._detector.process(np.ascontiguousarray(small))
        best = None
        for det in result.detections or ():
            score = float(det.score[0]) if det.score else 0.0
            if score < MIN_SCORE:
                continue
            bb = det.location_data.relative_bounding_box
            box = (bb.xmin * w, bb.ymin * h, bb.width * w, bb.height * h, score)
            if best is None or box[2] * box[3] > best[2] * best[3]:
                best = box
        return best

    def landmarks(self, rgb: np.ndarray) -> np.ndarray | None:
        h, w = rgb.shape[:2]
        with self._lock:
            if self._mesh_quiet:
                # The mesh graph logs a one-off native warning the first time
                # it tracks a real face; keep it out of the server's log.
                with _quiet_stderr():
                    result = self._mesh.process(np.ascontiguousarray(rgb))
                self._mesh_quiet = not result.multi_face_landmarks
            else:
                result = self._mesh.process(np.ascontiguousarray(rgb))
        if not result.multi_face_landmarks:
            return None
        pts = result.multi_face_landmarks[0].landmark
        return np.array([(p.x * w, p.y * h) for p in pts], np.float32)

    def person_mask(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        work = rgb
        if max(h, w) > 512:
            s = 512 / max(h, w)
            work = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        with self._lock:
            result = self._segmenter.process(np.ascontiguousarray(work))
        mask = result.segmentation_mask.astype(np.float32)
        # Edge-aware refinement so that the mask follows hair and shoulders.
        guide = work.astype(np.float32) / 255.0
        mask = cv2.ximgproc.guidedFilter(guide, mask, 6, 1e-3)
        mask = np.clip((mask - 0.35) / 0.3, 0.0, 1.0)
        if mask.shape[:2] != (h, w):
            mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
        return mask

    # -- higher level --------------------------------------------------------
    def find_face(self, rgb: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float, float]] | None:
        """Find a face and turn the image so that the face is upright.

        Returns the (possibly rotated) image and the face box, or None. A
        clear upright face is taken at once. Otherwise the four orientations
        compete on detector score, and the face mesh (which aligns itself to
        the face) settles which way is up: the detector alone also reports
        faces lying sideways, with scores close to the upright ones.
        """
        best = None
        for rot in (None, cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_90_COUNTERCLOCKWISE, cv2.ROTATE_180):
            img = rgb if rot is None else cv2.rotate(rgb, rot)
            found = self.detect(img)
            if found is None:
                continue
            if rot is None and found[4] >= CLEAR_SCORE:
                return img, found[:4]
            if best is None or found[4] > best[1][4]:
                best = (img, found)
        if best is None:
            return None
        img, found = best
        turn = self._which_way_up(img, found[:4])
        if turn is not None:
            upright = cv2.rotate(img, turn)
            again = self.detect(upright)
            if again is not None:
                return upright, again[:4]
        return img, found[:4]

    def _which_way_up(self, rgb: np.ndarray, box: Box) -> int | None:
        """The cv2 rotation that makes the face upright, from mesh landmarks."""
        x, y, w, h = box
        size = 2.2 * max(w, h)
        cx, cy = x + w / 2, y + h / 2
        x0, y0 = int(max(0, cx - size / 2)), int(max(0, cy - size / 2))
        x1, y1 = int(min(rgb.shape[1], cx + size / 2)), int(min(rgb.shape[0], cy + size / 2))
        crop = rgb[y0:y1, x0:x1]
        if crop.size == 0:
            return None
        scale = 384 / max(crop.shape[:2])
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))))
        lms = self.landmarks(crop)
        if lms is None:
            return None
        eyes = (lms[33] + lms[263]) / 2
        dx, dy = (lms[13] - eyes).tolist()  # eyes to mouth: "down" for the face
        if abs(dx) > 1.2 * abs(dy):
            return int(cv2.ROTATE_90_CLOCKWISE if dx > 0 else cv2.ROTATE_90_COUNTERCLOCKWISE)
        if dy < 0 and abs(dy) > 1.2 * abs(dx):
            return int(cv2.ROTATE_180)
        return None

    def frame(
        self, rgb: np.ndarray, box: tuple[float, float, float, float], out_w: int, out_h: int
    ) -> Framing:
        """Crop around the face generously (hair and shoulders) and analyse the crop."""
        img_h, img_w = rgb.shape[:2]
        x, y, w, h = box
        size = max(w, h)
        cx = x + w / 2
        cy = y + h / 2 + 0.18 * size  # a little lower: shoulders matter more than sky
        aspect = out_w / out_h
        crop_h = 2.5 * size
        crop_w = crop_h * aspect
        # Shrink to fit inside the image, then slide inside it.
        fit = min(1.0, img_w / crop_w, img_h / crop_h)
        crop_w *= fit
        crop_h *= fit
        x0 = min(max(cx - crop_w / 2, 0.0), img_w - crop_w)
        y0 = min(max(cy - crop_h / 2, 0.0), img_h - crop_h)
        sx = out_w / crop_w
        sy = out_h / crop_h
        src, k = rgb, 1.0
        if sx < 0.8:  # shrink with area averaging first: warpAffine alone would alias
            k = sx * 1.25
            src = cv2.resize(
                rgb, (max(1, round(img_w * k)), max(1, round(img_h * k))), interpolation=cv2.INTER_AREA
            )
        ax, ay = sx / k, sy / k
        m = np.array([[ax, 0, -x0 * k * ax], [0, ay, -y0 * k * ay]], np.float32)
        interp = cv2.INTER_LINEAR if ax < 1 else cv2.INTER_CUBIC
        crop = cv2.warpAffine(src, m, (out_w, out_h), flags=interp, borderMode=cv2.BORDER_REPLICATE)
        lms = self.landmarks(crop)
        mask = self.person_mask(crop)
        fbox = ((x - x0) * sx, (y - y0) * sy, w * sx, h * sy)
        return Framing(crop, lms, mask, fbox)

    def geometry_of(self, rgb: np.ndarray) -> Geometry:
        """Analyse an image we did not render ourselves (no stored geometry)."""
        lms = self.landmarks(rgb)
        return Geometry([lms] if lms is not None else [], self.person_mask(rgb))
