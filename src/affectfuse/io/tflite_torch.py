"""A small executor of TFLite graphs in PyTorch, for MediaPipe graphs whose custom ops LiteRT lacks.

LiteRT cannot run MediaPipe's attention face mesh (three MediaPipe custom ops), so :class:`TFLiteTorchGraph`
reads the flatbuffer with the ``tflite`` package and runs it in PyTorch (float32; 4-D tensors held NCHW, the file's NHWC restored at
reshapes, slices and outputs). It implements the builtin ops of MediaPipe's face graphs (DEQUANTIZE, CONV_2D,
DEPTHWISE_CONV_2D, MAX_POOL_2D, PRELU, ADD, MUL, PAD, RESHAPE, STRIDED_SLICE; SAME / VALID padding as TFLite
defines it, strides, dilations, fused activations) and the custom ops of ``mediapipe/util/tflite/operations``
(version 2, the one MediaPipe's CPU resolver registers):

* ``Landmarks2TransformMatrix`` — :func:`landmarks_to_transform_matrix`: the rotated box (1.5x) around a subset
  of the mesh, rotation from two of its points, as the affine map of a 16 x 16 crop into the feature map;
* ``TransformTensorBilinear`` — :func:`transform_tensor_bilinear`: that crop of the feature map, bilinear,
  half-pixel centres, zero outside the map;
* ``TransformLandmarks`` — :func:`transform_landmarks`: the crop's points mapped back by the same affine map.

Used by :mod:`affectfuse.io.facemesh_graph`; ``tests/test_facemesh_graph.py`` checks it against LiteRT on the
plain ``face_landmark.tflite`` and the custom ops by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["TFLiteTorchGraph", "landmarks_to_transform_matrix", "transform_tensor_bilinear", "transform_landmarks"]


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
