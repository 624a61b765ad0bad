"""Cutting faces and frames to a backbone's input: letterboxing, square crops around a box, landmark alignment.

The pixel geometry behind :func:`affectfuse.io.faces.crop_faces` (which re-exports the public names).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["letterbox", "crop_window", "align_points", "ALIGN_TEMPLATE"]


def _resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """cv2 resize with INTER_AREA when shrinking and INTER_LINEAR when enlarging (per the larger factor)."""
    import cv2

    h, w = img.shape[:2]
    if (w, h) == (width, height):
        return img
    interp = cv2.INTER_AREA if (width < w or height < h) else cv2.INTER_LINEAR
    return cv2.resize(img, (width, height), interpolation=interp)


def letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """Fit a whole image into a black ``size x size`` square, aspect kept, centred.

    The longer side becomes ``size``; the shorter becomes ``max(1, round(short * size / long))`` and
    the image starts at offset ``(size - short) // 2`` on that axis.

    Shape:
        image ``(H, W, 3)`` uint8 → ``(size, size, 3)`` uint8.
    """
    h, w = image.shape[:2]
    s = size / max(h, w)
    nw, nh = max(1, min(size, round(w * s))), max(1, min(size, round(h * s)))
    out = np.zeros((size, size, 3), np.uint8)
    y0, x0 = (size - nh) // 2, (size - nw) // 2
    out[y0 : y0 + nh, x0 : x0 + nw] = _resize(image, nw, nh)
    return out


def crop_window(box: np.ndarray, margin: float) -> tuple[int, int, int]:
    """The integer square window that :func:`crop_faces` cuts for a box.

    The side is the box's longer side enlarged by ``margin`` of it on each side,
    ``side = max(1, round(max(w, h) * (1 + 2 * margin)))``; the window is centred on the box centre,
    ``x0 = floor(cx - side / 2 + 0.5)`` (likewise ``y0``).

    Returns:
        ``(x0, y0, side)``; the window is ``[x0, x0 + side) x [y0, y0 + side)`` and may extend past the image.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(1, int(math.floor(max(x2 - x1, y2 - y1) * (1.0 + 2.0 * margin) + 0.5)))
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    x0 = int(math.floor(cx - side / 2.0 + 0.5))
    y0 = int(math.floor(cy - side / 2.0 + 0.5))
    return x0, y0, side


def _crop_one(image: np.ndarray, box: np.ndarray, size: int, margin: float) -> np.ndarray:
    h, w = image.shape[:2]
    x0, y0, side = crop_window(box, margin)
    win = np.zeros((side, side, 3), np.uint8)  # black where the window leaves the image
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if ix1 > ix0 and iy1 > iy0:
        win[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = image[iy0:iy1, ix0:ix1]
    return _resize(win, size, size)


#: Where the eyes, nose tip and mouth centre of an aligned face go in a 112x112 crop (the 5-point template of
#: ArcFace / InsightFace, its two mouth corners averaged): image-left eye, image-right eye, nose, mouth.
ALIGN_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [56.1396, 92.2848]],
                          np.float32)


def align_points(landmarks: np.ndarray) -> np.ndarray:
    """The 4 alignment points (image-left eye, image-right eye, nose tip, mouth centre) of detector key points.

    MediaPipe's 6 points start with the person's right eye (the image-left one), then left eye, nose tip, mouth
    centre; MTCNN's 5 are image-left eye, image-right eye, nose, mouth left, mouth right.

    Shape:
        ``(P, 2)`` with P in (5, 6) → ``(4, 2)``.
    """
    lm = np.asarray(landmarks, np.float32)
    if lm.shape == (6, 2):
        return lm[:4]
    if lm.shape == (5, 2):
        return np.concatenate([lm[:3], lm[3:5].mean(0, keepdims=True)])
    raise ValueError(f"align_points: expected MediaPipe (6, 2) or MTCNN (5, 2) key points, got {lm.shape}")


def _align_one(image: np.ndarray, points: np.ndarray, size: int) -> np.ndarray | None:
    """Warp ``image`` so that ``points`` land on :data:`ALIGN_TEMPLATE` scaled to ``size`` (similarity:
    rotation, uniform scale, translation; least squares; black outside the image). None for degenerate points."""
    import cv2  # image ops

    dst = ALIGN_TEMPLATE * (size / 112.0)
    m, _ = cv2.estimateAffinePartial2D(points.astype(np.float32), dst, method=cv2.LMEDS)
    if m is None:
        return None
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
