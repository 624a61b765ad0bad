"""face-api.js FaceExpressionNet, ported to PyTorch: 7 expression probabilities and a 256-d face feature.

The weights are the uint8-quantised ``face_expression_model.bin`` of the npm package
``@vladmandic/face-api`` 1.7.15 (MIT), read through its ``weights_manifest.json`` and dequantised as
``q * scale + min`` — exactly what tfjs does when it loads them (fetch with
``affectfuse fetch-assets face-api``).

The network (face-api ``FaceFeatureExtractor`` + ``FaceExpressionNet``):

* input: RGB 0..255, zero-padded to a square (the extra pixel of an odd difference goes bottom/right,
  ``padToSquare(isCenterImage=True)``), resized to 112×112 with TF's legacy bilinear resize
  (``alignCorners=False, halfPixelCenters=False``), minus the mean RGB (122.782, 117.001, 104.298),
  then divided by 255;
* four dense blocks of four convolutions each (the first conv of block 0 is a plain 3×3 conv, every
  other conv a depthwise-separable 3×3 conv); the first conv of each block has stride 2 and the
  block output is ``relu(out1 + out2 + out3 + out4)`` with dense skip sums in between;
  112 → 56 → 28 → 14 → 7, channels 32, 64, 128, 256;
* a 7×7 average pool → the 256-d feature; a fully connected layer → 7 logits; softmax.

TF "same" padding with stride 2 on an even input puts the extra pixel at the bottom/right, which is
what :func:`_same_pad` does (PyTorch's symmetric ``padding=1`` would shift the grid by one pixel).
The port was checked against face-api.js itself (tfjs 4.22, wasm backend) on fixed inputs; the
golden numbers are in ``tests/extractors/test_face.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from affectfuse.assets import asset_path
from affectfuse.extractors._runtime import BACKENDS, OnnxNet, load_network
from affectfuse.extractors._torch_utils import CheckedConfig, check_choice, on_valid_rows, require_images
from affectfuse.extractors.base import Extractor, ExtractorInput, InputContract, register_extractor, runtime

__all__ = [
    "EXPRESSIONS",
    "FACEAPI_MEAN_RGB",
    "FaceApiExpression",
    "FaceApiConfig",
    "load_faceapi_weights",
    "build_faceapi_net",
    "faceapi_preprocess",
]

#: face-api's class order (``FaceExpressions``).
EXPRESSIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
#: mean RGB subtracted before the division by 255.
FACEAPI_MEAN_RGB: tuple[float, float, float] = (122.782, 117.001, 104.298)
_INPUT = 112
_WIDTHS = {"probs": 7, "feature": 256, "both": 263}


# ---------------------------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------------------------
def load_faceapi_weights(manifest: str | Path | None = None) -> dict[str, np.ndarray]:
    """Read and dequantise the weights of a tfjs weights manifest (default: face-api's expression net).

    Args:
        manifest: path of ``*-weights_manifest.json``; its ``paths`` are read next to it.
            Default: the fetched ``face-api`` asset.

    Returns:
        name → float32 array in the manifest's (TF) layout, e.g. ``dense0/conv0/filters`` (3, 3, 3, 32).

    Raises:
        FileNotFoundError: the asset is missing (the message says how to fetch it).
        ValueError: the binary does not hold what the manifest describes.
    """
    if manifest is None:
        manifest = asset_path("face-api", "face_expression_model-weights_manifest.json")
        asset_path("face-api", "face_expression_model.bin")  # fail early with the fetch hint
    manifest = Path(manifest)
    groups = json.loads(manifest.read_text())
    out: dict[str, np.ndarray] = {}
    for group in groups:
        blob = b"".join((manifest.parent / p).read_bytes() for p in group["paths"])
        off = 0
        for w in group["weights"]:
            shape = tuple(w["shape"])
            n = int(np.prod(shape)) if shape else 1
            q = w.get("quantization")
            if q is not None:
                qdtype = np.dtype(q["dtype"])
                raw = np.frombuffer(blob, qdtype, count=n, offset=off)
                off += n * qdtype.itemsize
                if q["dtype"] in ("uint8", "uint16"):
                    arr = raw.astype(np.float32) * np.float32(q["scale"]) + np.float32(q["min"])
                else:  # float16
                    arr = raw.astype(np.float32)
            else:
                dt = np.dtype(w["dtype"])
                arr = np.frombuffer(blob, dt, count=n, offset=off).astype(np.float32)
                off += n * dt.itemsize
            out[w["name"]] = arr.reshape(shape)
        if off != len(blob):
            raise ValueError(
                f"{manifest}: the manifest describes {off} bytes but {group['paths']} hold {len(blob)}"
            )
    return out


def build_faceapi_net(weights: dict[str, np.ndarray] | None = None):
    """The FaceExpressionNet as a ``torch.nn.Module`` with face-api's weights loaded.

    Returns:
        a module whose ``forward(x)`` takes the normalised input ``(N, 3, 112, 112)`` and returns
        ``(feature (N, 256), logits (N, 7))``.
    """
    import torch  # heavy: only when the network is built
    import torch.nn.functional as F
    from torch import nn

    w = load_faceapi_weights() if weights is None else weights

    def _same_pad(x: torch.Tensor, stride: int) -> torch.Tensor:
        # TF "same" for a 3x3 kernel: total pad = max(3 - stride, 0) for even sizes with stride 2
        # (= 1, all at the end) and 2 (1 / 1) for stride 1.
        h = x.shape[-1]
        total = max((-(-h // stride) - 1) * stride + 3 - h, 0)
        before = total // 2
        return F.pad(x, (before, total - before, before, total - before))

    class _SepConv(nn.Module):
        def __init__(self, prefix: str) -> None:
            super().__init__()
            dw = w[f"{prefix}/depthwise_filter"]  # (3, 3, C, 1)
            pw = w[f"{prefix}/pointwise_filter"]  # (1, 1, C, O)
            c = dw.shape[2]
            self.dw = nn.Conv2d(c, c, 3, groups=c, bias=False)
            self.pw = nn.Conv2d(c, pw.shape[3], 1)
            self.dw.weight.data = torch.from_numpy(np.ascontiguousarray(dw.transpose(2, 3, 0, 1)))
            self.pw.weight.data = torch.from_numpy(np.ascontiguousarray(pw.transpose(3, 2, 0, 1)))
            self.pw.bias.data = torch.from_numpy(w[f"{prefix}/bias"].copy())

        def forward(self, x: torch.Tensor, stride: int) -> torch.Tensor:
            self.dw.stride = (stride, stride)
            return self.pw(self.dw(_same_pad(x, stride)))

    class _Conv(nn.Module):
        def __init__(self, prefix: str) -> None:
            super().__init__()
            f = w[f"{prefix}/filters"]  # (3, 3, I, O)
            self.conv = nn.Conv2d(f.shape[2], f.shape[3], 3, stride=2)
            self.conv.weight.data = torch.from_numpy(np.ascontiguousarray(f.transpose(3, 2, 0, 1)))
            self.conv.bias.data = torch.from_numpy(w[f"{prefix}/bias"].copy())

        def forward(self, x: torch.Tensor, stride: int) -> torch.Tensor:
            return self.conv(_same_pad(x, 2))

    class _DenseBlock4(nn.Module):
        def __init__(self, prefix: str, first: bool) -> None:
            super().__init__()
            self.conv0 = _Conv(f"{prefix}/conv0") if first else _SepConv(f"{prefix}/conv0")
            self.conv1 = _SepConv(f"{prefix}/conv1")
            self.conv2 = _SepConv(f"{prefix}/conv2")
            self.conv3 = _SepConv(f"{prefix}/conv3")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out1 = torch.relu(self.conv0(x, 2))  # (N, C, H/2, W/2)
            out2 = self.conv1(out1, 1)
            out3 = self.conv2(torch.relu(out1 + out2), 1)
            out4 = self.conv3(torch.relu(out1 + out2 + out3), 1)
            return torch.relu(out1 + out2 + out3 + out4)

    class FaceExpressionNet(nn.Module):
        """face-api.js FaceExpressionNet (feature extractor + FC)."""

        def __init__(self) -> None:
            super().__init__()
            self.dense0 = _DenseBlock4("dense0", first=True)
            self.dense1 = _DenseBlock4("dense1", first=False)
            self.dense2 = _DenseBlock4("dense2", first=False)
            self.dense3 = _DenseBlock4("dense3", first=False)
            fw = w["fc/weights"]  # (256, 7)
            self.fc = nn.Linear(fw.shape[0], fw.shape[1])
            self.fc.weight.data = torch.from_numpy(np.ascontiguousarray(fw.T))
            self.fc.bias.data = torch.from_numpy(w["fc/bias"].copy())

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """Shape:
            x: ``(N, 3, 112, 112)`` normalised; returns ``(N, 256)`` feature and ``(N, 7)`` logits.
            """
            x = self.dense0(x)  # (N, 32, 56, 56)
            x = self.dense1(x)  # (N, 64, 28, 28)
            x = self.dense2(x)  # (N, 128, 14, 14)
            x = self.dense3(x)  # (N, 256, 7, 7)
            feat = F.avg_pool2d(x, 7, 2).flatten(1)  # (N, 256)
            return feat, self.fc(feat)  # (N, 256), (N, 7)

    return FaceExpressionNet().eval()


# ---------------------------------------------------------------------------------------------
# preprocessing (face-api NetInput.toBatchTensor + normalize)
# ---------------------------------------------------------------------------------------------
def _pad_to_square(img: np.ndarray) -> np.ndarray:
    """face-api ``padToSquare(isCenterImage=True)``: zeros, ``round(diff/2)`` after, the rest before."""
    h, w = img.shape[:2]
    if h == w:
        return img
    diff = abs(h - w)
    after = int(np.floor(diff * 0.5 + 0.5))  # JS Math.round
    before = diff - after
    pad = ((0, 0), (before, after), (0, 0)) if h > w else ((before, after), (0, 0), (0, 0))
    return np.pad(img, pad)


def _tf_resize_bilinear(img: np.ndarray, size: int) -> np.ndarray:
    """TF's legacy bilinear resize (``alignCorners=False, halfPixelCenters=False``), float32.

    Shape:
        img ``(H, W, C)`` → ``(size, size, C)``.
    """
    h, w = img.shape[:2]
    img = img.astype(np.float32)
    if h == size and w == size:
        return img

    def axis(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.arange(size, dtype=np.float32) * np.float32(n_in / size)
        i0 = np.floor(src).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, (src - i0).astype(np.float32)

    y0, y1, fy = axis(h)
    x0, x1, fx = axis(w)
    top = img[y0][:, x0] + (img[y0][:, x1] - img[y0][:, x0]) * fx[None, :, None]
    bot = img[y1][:, x0] + (img[y1][:, x1] - img[y1][:, x0]) * fx[None, :, None]
    return top + (bot - top) * fy[:, None, None]


def faceapi_preprocess(images: np.ndarray | list[np.ndarray]) -> np.ndarray:
    """RGB uint8 images of any size → face-api's normalised network input.

    Args:
        images: ``(N, H, W, 3)`` uint8 RGB, or a list of ``(H_i, W_i, 3)`` images.

    Shape:
        returns ``(N, 3, 112, 112)`` float32.
    """
    rows = []
    for img in images:
        img = np.asarray(img)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"face-api expects RGB images (H, W, 3), got shape {img.shape}")
        x = _tf_resize_bilinear(_pad_to_square(img.astype(np.float32)), _INPUT)  # (112, 112, 3)
        x = (x - np.asarray(FACEAPI_MEAN_RGB, np.float32)) / np.float32(255.0)
        rows.append(x.transpose(2, 0, 1))  # (3, 112, 112)
    if not rows:
        return np.zeros((0, 3, _INPUT, _INPUT), np.float32)
    return np.stack(rows).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# the extractor
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class FaceApiConfig(CheckedConfig):
    """Parameters of :class:`FaceApiExpression`.

    Attributes:
        output: ``"probs"`` (7 softmax probabilities in :data:`EXPRESSIONS` order, default),
            ``"feature"`` (the 256-d pooled feature) or ``"both"`` (feature then probabilities, 263-d).
        batch_size: faces per forward pass (not in the identity).
        backend: ``"auto"`` (ONNX Runtime when installed), ``"torch"`` or ``"onnx"`` (not in the identity).
    """

    output: str = "probs"
    batch_size: int = runtime(64)
    backend: str = runtime("auto")

    def validate(self) -> "FaceApiConfig":
        check_choice(self, "output", tuple(_WIDTHS))
        check_choice(self, "backend", BACKENDS)
        return self


@register_extractor
class FaceApiExpression(Extractor):
    """face-api.js expression probabilities and/or its 256-d face feature, per face crop.

    Parameters: :class:`FaceApiConfig`. Columns: :data:`EXPRESSIONS` for the probabilities,
    ``faceapi_f<i>`` for the feature (``"both"``: feature then probabilities).

    Input: face crops ``(N, S, S, 3)`` uint8 RGB; 112×112 is the native size (other sizes are padded to
    square and resized as face-api does). Rows with ``valid == False`` are not computed.
    """

    name = "faceapi_expression"
    weights_from = "package"
    modality = "fau"
    Config = FaceApiConfig

    def __init__(self, config: FaceApiConfig | None = None, /, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.dim = _WIDTHS[self.config.output]
        self.contract = InputContract(kind="face", image_size=_INPUT, mean=FACEAPI_MEAN_RGB, std=(255.0, 255.0, 255.0))
        self.net: Any = None
        self._onnx: OnnxNet | None = None

    @property
    def columns(self) -> list[str]:
        feat = [f"faceapi_f{i}" for i in range(256)]
        probs = list(EXPRESSIONS)
        return {"probs": probs, "feature": feat, "both": feat + probs}[self.config.output]

    def _load(self) -> None:
        self.net = build_faceapi_net()

    def load(self) -> "FaceApiExpression":
        """Load the network on the config's backend (ONNX Runtime or PyTorch); idempotent."""
        import torch  # heavy: only when the network is loaded

        if not self._loaded:
            self._onnx = load_network(self, lambda: torch.randn(2, 3, _INPUT, _INPUT), {0: "batch"},
                                      encode=lambda: self._both, module=lambda: self.net)
            self._loaded = True
        return self

    def _both(self, x):
        """Shape: ``(B, 3, 112, 112)`` -> ``(B, 263)``: the 256-d feature, then the 7 probabilities."""
        import torch  # heavy: only when running

        f, logits = self.net(x)  # (B, 256), (B, 7)
        return torch.cat([f, torch.softmax(logits, dim=1)], dim=1)

    def predict(self, images: np.ndarray | list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Feature and probabilities for RGB uint8 images of any size (loads the network if needed).

        Shape:
            images ``(N, H, W, 3)``; returns ``(N, 256)`` features and ``(N, 7)`` probabilities.
        """
        import torch  # heavy: only when running

        self.load()
        feats, probs = [np.zeros((0, 256), np.float32)], [np.zeros((0, 7), np.float32)]
        bs = self.config.batch_size
        for i in range(0, len(images), bs):
            x = faceapi_preprocess(images[i : i + bs])  # (B, 3, 112, 112)
            if self._onnx is not None:
                y = self._onnx(x)  # (B, 263)
            else:
                with torch.inference_mode():
                    y = self._both(torch.from_numpy(x)).numpy()
            feats.append(y[:, :256])
            probs.append(y[:, 256:])
        return np.concatenate(feats), np.concatenate(probs)

    def _outputs(self, images: np.ndarray) -> np.ndarray:
        feat, probs = self.predict(images)
        return {"probs": probs, "feature": feat, "both": np.concatenate([feat, probs], axis=1)}[self.config.output]

    def forward(self, batch: ExtractorInput) -> np.ndarray:
        """Shape: ``batch.images (N, S, S, 3)`` uint8 → ``(N, dim)`` float32 (zeros for invalid rows)."""
        images = require_images(batch, self.name, _INPUT)
        return on_valid_rows(batch, images, self.dim, self._outputs)
