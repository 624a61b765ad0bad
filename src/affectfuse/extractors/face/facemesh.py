"""Facial geometry from MediaPipe FaceMesh as a stand-in for facial action units.

No registry package ships an AU detector or MediaPipe's blendshape model (design note
``offline-models.md`` §2), but MediaPipe 0.10.21 ships the 478-point FaceMesh with iris
(``mediapipe.solutions.face_mesh``, ``static_image_mode=True, refine_landmarks=True``). This module
turns the mesh of a face crop into :attr:`FaceMeshGeometry.measures`: 24 named, face-size-normalised
measures that follow the muscles the common AUs describe (mouth opening ~ AU25/26/27, lip corner
height ~ AU12/15, brow heights ~ AU1/2/4, eye opening ~ AU5/7/43, nose-to-eye distance ~ AU9,
lower lid to lip corner ~ AU6) plus head-pose and gaze proxies.

Geometry. Landmarks are taken in pixels ``(x·W, y·H, z·W)`` (MediaPipe scales ``z`` like ``x``).
Lengths are divided by the 3-D distance between the outer eye corners (points 33 and 263, ``iod``),
so every length measure is independent of the crop scale. "Heights" are coordinates along the
face's own up axis: the eye line (33→263) is the face's x axis and ``up`` is the component of
(eye midpoint − chin 152) orthogonal to it, so a tilted head does not change them. ``_l`` / ``_r``
are the subject's left / right (MediaPipe's "left eye" 362/263 appears on the image's right).
Head pose proxies are angles in radians: roll of the eye line in the image plane (atan2 of its
y and x), yaw = elevation of the cheek line 234→454 out of the image plane, pitch = elevation of the
chin→forehead line 152→10 out of it (arcsin of the z share; positive where the second point is
farther from the camera, MediaPipe's z grows away from it). Yaw and pitch do not change with roll.

Runtimes. ``runtime="mediapipe"`` runs MediaPipe's own solution (the ``mediapipe`` package); ``"torch"`` runs the
same ``face_landmark_with_attention.tflite`` graph and BlazeFace detector without it
(:class:`affectfuse.io.facemesh_graph.FaceMeshGraph`: the graph's custom ops are not in LiteRT, so it runs in
PyTorch), which is what a ``pip install`` gets; ``"auto"`` (default, or ``$AFFECTFUSE_FACEMESH``) takes the package
where it is installed. The runtime is not part of the identity: both give the same landmarks
(``tests/test_facemesh_graph.py``), so features from either share a store key.

Rows where the mesh is not found: :meth:`FaceMeshGeometry.measure` returns NaN; the extractor's
``forward`` returns zeros there together with a valid mask that is False for them, so calling the
extractor gives ``Features(values, valid)`` with those rows invalid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from affectfuse.extractors._torch_utils import CheckedConfig, check_range, on_valid_rows, require_images
from affectfuse.extractors.base import Extractor, ExtractorInput, InputContract, register_extractor, runtime

__all__ = ["FaceMeshGeometry", "FaceMeshConfig", "MEASURES", "geometry_from_landmarks"]

# MediaPipe FaceMesh landmark ids (canonical 468-point topology + 10 iris points when refined).
_EYE_R_OUT, _EYE_R_IN, _EYE_R_UP, _EYE_R_LO = 33, 133, 159, 145
_EYE_L_IN, _EYE_L_OUT, _EYE_L_UP, _EYE_L_LO = 362, 263, 386, 374
_BROW_R = (107, 66, 105, 63, 70)  # inner → outer, upper edge of the subject's right brow
_BROW_L = (336, 296, 334, 293, 300)  # inner → outer, subject's left brow
_LIP_UP_IN, _LIP_LO_IN, _LIP_UP_OUT, _LIP_LO_OUT = 13, 14, 0, 17
_MOUTH_R, _MOUTH_L = 61, 291
_NOSE_TIP, _SUBNASALE, _ALA_R, _ALA_L = 1, 2, 129, 358
_CHIN, _FOREHEAD, _CHEEK_R, _CHEEK_L = 152, 10, 234, 454
_IRIS_R, _IRIS_L = 468, 473

#: names of the output columns, in order.
MEASURES: tuple[str, ...] = (
    "mouth_open",  # inner lip gap / iod (AU25-27)
    "mouth_width",  # lip corner distance / iod (AU20 stretch, AU18/22 pucker)
    "mouth_aspect",  # inner lip gap / mouth width
    "lip_corner_raise",  # height of lip corners above the inner-lip centre / iod (AU12 +, AU15 -)
    "nose_to_upper_lip",  # subnasale to upper lip top / iod (AU10 shortens it)
    "lip_height",  # outer upper to outer lower lip / iod (AU23/24 press shortens it)
    "eye_open_l",  # lid gap / eye width, subject's left (AU5 +, AU7/43 -)
    "eye_open_r",
    "brow_raise_l",  # brow (mean of 5 points) above the upper lid / iod (AU1+2 +, AU4 -)
    "brow_raise_r",
    "inner_brow_raise_l",  # inner brow end above the inner eye corner / iod (AU1)
    "inner_brow_raise_r",
    "outer_brow_raise_l",  # outer brow end above the outer eye corner / iod (AU2)
    "outer_brow_raise_r",
    "brow_distance",  # distance between the inner brow ends / iod (AU4 shortens it)
    "nose_wrinkle",  # inner eye corners above the nose alae / iod (AU9 shortens it)
    "cheek_raise_l",  # lower lid above the lip corner / iod (AU6+12 shorten it)
    "cheek_raise_r",
    "jaw_drop",  # nose tip above the chin / iod (AU26/27)
    "head_yaw",  # radians, elevation of the cheek line (234->454) out of the image plane
    "head_pitch",  # radians, elevation of the chin->forehead line (152->10) out of the image plane
    "head_roll",  # radians, eye line in the image plane
    "gaze_horizontal",  # iris position between the eye corners along image x, 0..1, mean of both eyes
    "gaze_vertical",  # iris position between upper (0) and lower (1) lid, mean of both eyes
)


def geometry_from_landmarks(pts: np.ndarray) -> np.ndarray:
    """The :data:`MEASURES` of one face from its refined FaceMesh landmarks in pixel units.

    Args:
        pts: ``(478, 3)`` landmarks ``(x, y, z)`` in pixels (``z`` scaled like ``x``).

    Shape:
        returns ``(len(MEASURES),)`` float64.
    """
    p = np.asarray(pts, dtype=np.float64)
    if p.shape[0] < 478 or p.shape[1] != 3:
        raise ValueError(f"geometry_from_landmarks needs (478, 3) refined landmarks, got {p.shape}")

    def d(a: int, b: int) -> float:
        return float(np.linalg.norm(p[a] - p[b]))

    iod = d(_EYE_R_OUT, _EYE_L_OUT)
    ex = p[_EYE_L_OUT] - p[_EYE_R_OUT]
    ex = ex / np.linalg.norm(ex)  # face x axis (3,)
    eye_mid = (p[_EYE_L_OUT] + p[_EYE_R_OUT]) / 2
    up = eye_mid - p[_CHIN]
    up = up - ex * (up @ ex)
    up = up / np.linalg.norm(up)  # face up axis (3,), image y points down so up has y < 0

    def v(*ids: int) -> float:  # mean height of the points along the face's up axis
        return float(np.mean([p[i] @ up for i in ids]))

    def frac(pt: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        ab = b - a
        return float((pt - a) @ ab / (ab @ ab))

    gaze_h = (
        frac(p[_IRIS_R, :2], p[_EYE_R_OUT, :2], p[_EYE_R_IN, :2])
        + frac(p[_IRIS_L, :2], p[_EYE_L_IN, :2], p[_EYE_L_OUT, :2])
    ) / 2
    gaze_v = (
        (v(_EYE_R_UP) - v(_IRIS_R)) / max(v(_EYE_R_UP) - v(_EYE_R_LO), 1e-6)
        + (v(_EYE_L_UP) - v(_IRIS_L)) / max(v(_EYE_L_UP) - v(_EYE_L_LO), 1e-6)
    ) / 2
    eye_line = p[_EYE_L_OUT] - p[_EYE_R_OUT]
    cheek_line = p[_CHEEK_L] - p[_CHEEK_R]
    chin_up = p[_FOREHEAD] - p[_CHIN]
    out = [
        d(_LIP_UP_IN, _LIP_LO_IN) / iod,
        d(_MOUTH_R, _MOUTH_L) / iod,
        d(_LIP_UP_IN, _LIP_LO_IN) / max(d(_MOUTH_R, _MOUTH_L), 1e-6),
        (v(_MOUTH_R, _MOUTH_L) - v(_LIP_UP_IN, _LIP_LO_IN)) / iod,
        d(_SUBNASALE, _LIP_UP_OUT) / iod,
        d(_LIP_UP_OUT, _LIP_LO_OUT) / iod,
        d(_EYE_L_UP, _EYE_L_LO) / max(d(_EYE_L_IN, _EYE_L_OUT), 1e-6),
        d(_EYE_R_UP, _EYE_R_LO) / max(d(_EYE_R_IN, _EYE_R_OUT), 1e-6),
        (v(*_BROW_L) - v(_EYE_L_UP)) / iod,
        (v(*_BROW_R) - v(_EYE_R_UP)) / iod,
        (v(_BROW_L[0]) - v(_EYE_L_IN)) / iod,
        (v(_BROW_R[0]) - v(_EYE_R_IN)) / iod,
        (v(_BROW_L[-1]) - v(_EYE_L_OUT)) / iod,
        (v(_BROW_R[-1]) - v(_EYE_R_OUT)) / iod,
        d(_BROW_L[0], _BROW_R[0]) / iod,
        (v(_EYE_L_IN, _EYE_R_IN) - v(_ALA_L, _ALA_R)) / iod,
        (v(_EYE_L_LO) - v(_MOUTH_L)) / iod,
        (v(_EYE_R_LO) - v(_MOUTH_R)) / iod,
        (v(_NOSE_TIP) - v(_CHIN)) / iod,
        float(np.arcsin(np.clip(cheek_line[2] / np.linalg.norm(cheek_line), -1.0, 1.0))),
        float(np.arcsin(np.clip(chin_up[2] / np.linalg.norm(chin_up), -1.0, 1.0))),
        float(np.arctan2(eye_line[1], eye_line[0])),
        gaze_h,
        gaze_v,
    ]
    return np.asarray(out, dtype=np.float64)


@dataclass(frozen=True, kw_only=True)
class FaceMeshConfig(CheckedConfig):
    """Parameters of :class:`FaceMeshGeometry`.

    Attributes:
        margin: border added around each crop before the mesh runs, as a fraction of the crop side
            (MediaPipe's face detector inside FaceMesh misses faces that fill the whole image);
            filled with the crop's edge pixels. In [0, 2], default 0.25.
        min_detection_confidence: MediaPipe's detection threshold in (0, 1) (default 0.5).
        runtime: ``"auto"`` (default: ``$AFFECTFUSE_FACEMESH``, else the ``mediapipe`` package where installed,
            else ``"torch"``), ``"mediapipe"`` or ``"torch"`` (see the module docstring); not part of the identity.
    """

    margin: float = 0.25
    min_detection_confidence: float = 0.5
    runtime: str = runtime("auto")

    def validate(self) -> "FaceMeshConfig":
        check_range(self, "margin", 0, 2, "[]")
        check_range(self, "min_detection_confidence", 0, 1, "()")
        if self.runtime not in _RUNTIMES:
            raise ValueError(f"facemesh_geometry: runtime must be one of {', '.join(_RUNTIMES)}; got {self.runtime!r}")
        return self


_RUNTIMES = ("auto", "mediapipe", "torch")


def resolve_runtime(requested: str = "auto") -> str:
    """``"mediapipe"`` or ``"torch"``: what runs the mesh for ``requested`` (see :class:`FaceMeshConfig`)."""
    from affectfuse._compat import mediapipe_or_port

    return mediapipe_or_port(requested, "AFFECTFUSE_FACEMESH", "torch")


@register_extractor
class FaceMeshGeometry(Extractor):
    """24 AU-like geometric measures of a face crop from MediaPipe FaceMesh (see module docstring).

    Parameters: :class:`FaceMeshConfig`. Columns: :data:`MEASURES`. Rows where no mesh is found are
    zeros and invalid in the returned :class:`~affectfuse.extractors.base.Features`.
    """

    name = "facemesh_geometry"
    weights_from = "package"
    modality = "fau"
    Config = FaceMeshConfig
    #: output column names (:data:`MEASURES`).
    measures: tuple[str, ...] = MEASURES

    def __init__(self, config: FaceMeshConfig | None = None, /, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.dim = len(MEASURES)
        self.contract = InputContract(kind="face", image_size=256)
        self._mesh: Any = None

    @property
    def columns(self) -> list[str]:
        return list(MEASURES)

    def _load(self) -> None:
        self._mesh_warm = False
        if resolve_runtime(self.config.runtime) == "torch":
            from affectfuse.io.facemesh_graph import FaceMeshGraph

            self._mesh = FaceMeshGraph(min_detection_confidence=self.config.min_detection_confidence)
            return
        import mediapipe as mp  # heavy optional dependency: only when the mesh runs

        from affectfuse._quiet import native_stderr_quiet

        with native_stderr_quiet():  # TFLite's native log lines (--verbose keeps them)
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True,
                max_num_faces=1,
                refine_landmarks=True,
                min_detection_confidence=self.config.min_detection_confidence,
            )
        self._mesh_warm = False

    def landmarks(self, images: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """Refined FaceMesh landmarks of each image in that image's pixels, NaN where no face (loads the mesh).

        Shape:
            images ``(N, H, W, 3)`` uint8 RGB → ``(N, 478, 3)`` float64 ``(x, y, z)``.
        """
        self.load()
        out = np.full((len(images), 478, 3), np.nan)
        for i, img in enumerate(images):
            img = np.asarray(img)
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(
                    f"facemesh_geometry expects uint8 RGB images (H, W, 3), got {img.dtype} {img.shape}"
                )
            h, w = img.shape[:2]
            m = int(round(self.config.margin * max(h, w)))
            padded = np.ascontiguousarray(np.pad(img, ((m, m), (m, m), (0, 0)), mode="edge"))
            ph, pw = padded.shape[:2]
            if not hasattr(self._mesh, "process"):  # the graph without mediapipe: normalised (478, 3) or None
                lm = self._mesh(padded)
                if lm is not None:
                    out[i] = np.stack([lm[:, 0] * pw - m, lm[:, 1] * ph - m, lm[:, 2] * pw], 1)[:478]
                continue
            if self._mesh_warm:
                res = self._mesh.process(padded)
            else:  # the first call logs absl warnings from C++
                from affectfuse._quiet import native_stderr_quiet

                with native_stderr_quiet():
                    res = self._mesh.process(padded)
                self._mesh_warm = True
            if not res.multi_face_landmarks:
                continue
            lm = res.multi_face_landmarks[0].landmark
            pts = np.array([(q.x * pw - m, q.y * ph - m, q.z * pw) for q in lm])  # (478, 3)
            out[i, : len(pts)] = pts[:478]
        return out

    def measure(self, images: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """The :data:`MEASURES` of every image, NaN rows where no face mesh was found.

        Shape:
            images ``(N, H, W, 3)`` uint8 RGB → ``(N, 24)`` float64.
        """
        lms = self.landmarks(images)
        out = np.full((len(lms), len(MEASURES)), np.nan)
        for i, pts in enumerate(lms):
            if np.isfinite(pts).all():
                out[i] = geometry_from_landmarks(pts)
        return out

    def forward(self, batch: ExtractorInput) -> tuple[np.ndarray, np.ndarray]:
        """The measures and the rows where a mesh was found (rows with ``valid == False`` are not run).

        Shape:
            ``batch.images (N, S, S, 3)`` uint8 → ``(N, 24)`` float32 (zeros without a mesh) and ``(N,)`` bool.
        """
        images = require_images(batch, self.name, self.contract.image_size)
        m = on_valid_rows(batch, images, self.dim, self.measure)  # (N, 24), NaN rows: no mesh
        found = np.isfinite(m).all(axis=1)
        return np.where(found[:, None], m, np.float32(0.0)), found
