"""Face backbones of the ABAW5 expression recipe: ``inception_resnet_v1`` and ``regnet``.

Li, Chen et al. (HFUT-MAC, CVPRW 2023, §3.2; papers/abaw5-eri-multimodal-fusion.md) stitch together
features of InceptionResnetV1 pretrained on VGGFace2 ("InceptionResnetV1-1", validation F1 0.339 on
Aff-Wild2 expressions), the same network pretrained on CASIA-WebFace ("-2", 0.284) and an ImageNet
RegNet (0.3035), then fuse them with a transformer.

* ``inception_resnet_v1`` is facenet-pytorch's ``InceptionResnetV1`` (the 2018 David Sandberg FaceNet
  weights): 160x160 face crops, ``fixed_image_standardization`` ((x - 127.5) / 128), output the
  L2-normalised 512-d embedding (the network's own output with ``classify=False``).
* ``regnet``: the paper names neither the RegNet variant nor the input size, so ``model`` is any timm
  RegNet (``regnetx_*``, ``regnety_*``, ``regnetv_*``, ``regnetz_*``); the default ``regnety_016``
  (RegNetY-1.6GF, 888-d, 224x224, ImageNet mean/std) is a mid-size choice, not a documented one.

Pretrained weights download on a user's machine (facenet's GitHub release files into
``$TORCH_HOME/checkpoints``; timm's from the Hugging Face hub). ``weights=`` takes a local state dict
instead and overrides ``pretrained``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affectfuse._compat import import_torchvision
from affectfuse.extractors._torch_utils import (
    IMAGE_DTYPES,
    TorchExtractor,
    WeightsFileConfig,
    check_choice,
    check_torch_runtime,
    config_error,
    load_state_dict,
    load_weights_into,
    prepare_module,
)
from affectfuse.extractors.base import InputContract, register_extractor, runtime
from affectfuse.extractors.visual.timm_backbone import TimmBackboneBase, TimmConfigBase

__all__ = ["InceptionResnetV1Face", "InceptionResnetV1Config", "RegNet", "RegNetConfig", "facenet_weights_file"]

#: facenet-pytorch's release files (what ``InceptionResnetV1(pretrained=...)`` downloads).
FACENET_URLS = {
    "vggface2": "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
    "casia-webface": "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180408-102900-casia-webface.pt",
}
#: fixed_image_standardization expressed on [0, 1] inputs: (255 x - 127.5) / 128.
FACENET_MEAN = (127.5 / 255.0,) * 3
FACENET_STD = (128.0 / 255.0,) * 3


def facenet_weights_file(pretrained: str) -> Path:
    """Local file of facenet's ``pretrained`` weights, downloaded into ``$TORCH_HOME/checkpoints`` if missing.

    Raises:
        ValueError: unknown name.
        RuntimeError: the file is not cached and cannot be downloaded (offline).
    """
    import torch  # heavy: only to find (or download into) torch's hub folder

    if pretrained not in FACENET_URLS:
        raise ValueError(f"pretrained must be one of {sorted(FACENET_URLS)} or None, got {pretrained!r}")
    url = FACENET_URLS[pretrained]
    path = Path(torch.hub.get_dir()).parent / "checkpoints" / url.rsplit("/", 1)[1]
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(path), progress=False)
        except Exception as e:  # noqa: BLE001
            raise RuntimeError(
                f"InceptionResnetV1 {pretrained!r} weights are not in {path} and could not be downloaded "
                f"from {url} ({e}); download the file there by hand or pass weights=<local file>"
            ) from e
    return path


@dataclass(frozen=True, kw_only=True)
class InceptionResnetV1Config(WeightsFileConfig):
    """Parameters of :class:`InceptionResnetV1Face`.

    Attributes:
        pretrained: ``"vggface2"`` (default, the recipe's best), ``"casia-webface"`` or None (random).
        weights: local state dict of ``InceptionResnetV1`` (a ``logits.*`` head is ignored); overrides
            ``pretrained`` (the identity then says ``pretrained: None``); stored resolved, its content
            fingerprint is in the identity.
        dtype: ``"float32"`` or ``"bfloat16"``.
        batch_size: rows per forward pass (not in the identity).
        device: torch device (not in the identity).
        backend: ``"auto"`` (ONNX Runtime on the CPU when installed), ``"torch"`` or ``"onnx"`` (not in the identity).
    """

    pretrained: str | None = "vggface2"
    weights: str | None = None
    dtype: str = "float32"
    batch_size: int = runtime(32)
    device: str = runtime("cpu")
    backend: str = runtime("auto")

    @property
    def use_pretrained(self) -> str | None:
        """The facenet weights in effect (None when a local file is given)."""
        return self.pretrained if self.weights is None else None

    def validate(self) -> "InceptionResnetV1Config":
        check_torch_runtime(self, IMAGE_DTYPES)
        if self.weights is None and self.pretrained is not None:
            check_choice(self, "pretrained", sorted(FACENET_URLS))
        return super().validate()

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "pretrained": self.use_pretrained}


@register_extractor
class InceptionResnetV1Face(TorchExtractor):
    """512-d FaceNet embedding (facenet-pytorch InceptionResnetV1) of 160x160 face crops.

    Parameters: :class:`InceptionResnetV1Config`.

    Shape:
        input ``images (N, 160, 160, 3)`` uint8 face crops; output ``(N, 512)``, unit L2 norm.
    """

    name = "inception_resnet_v1"
    weights_from = "download"
    modality = "visual"
    channels_last = True
    Config = InceptionResnetV1Config

    def __init__(self, config: InceptionResnetV1Config | None = None, /, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.dim = 512
        # aligned crops: the ABAW5 expression recipe feeds Aff-Wild2's organiser-made cropped_aligned faces
        self.contract = InputContract(kind="face", image_size=160, mean=FACENET_MEAN, std=FACENET_STD, align=True)

    def _load(self) -> None:
        import_torchvision()  # facenet_pytorch imports torchvision (MTCNN)
        from facenet_pytorch import InceptionResnetV1  # heavy optional dependency: only when loading

        net = InceptionResnetV1(pretrained=None, classify=False)
        c = self.config
        path = c.weights or (facenet_weights_file(c.use_pretrained) if c.use_pretrained else None)
        if path is not None:
            load_weights_into(net, load_state_dict(path), path, ignore_prefixes=("logits.",))
        self.module = prepare_module(net, self.torch_dtype, c.device, channels_last=True)

    def encode(self, x):
        """Shape: ``(B, 3, 160, 160)`` -> ``(B, 512)`` L2-normalised."""
        return self.module(x)  # (B, 512)


@dataclass(frozen=True, kw_only=True)
class RegNetConfig(TimmConfigBase):
    """Parameters of :class:`RegNet`.

    Attributes:
        model: a timm RegNet name (default ``"regnety_016"``; the paper does not name the variant).
        pretrained: timm's ImageNet weights (downloads on a user's machine); ignored when ``weights``
            is given (the identity then says ``pretrained: False``).
        weights: local ``.safetensors`` / ``.pth`` state dict (head keys ignored); stored resolved,
            its content fingerprint is in the identity.
        input: ``"face"`` (the recipe's face crops) or ``"frame"``.
        image_size: input side; None: the model's ``pretrained_cfg`` (224 for RegNets).
        dtype: ``"float32"`` or ``"bfloat16"``.
        batch_size: rows per forward pass (not in the identity).
        device: torch device (not in the identity).
        backend: ``"auto"`` (ONNX Runtime on the CPU when installed), ``"torch"`` or ``"onnx"`` (not in the identity).
    """

    model: str = "regnety_016"
    pretrained: bool = True
    weights: str | None = None
    input: str = "face"
    image_size: int | None = None
    dtype: str = "float32"
    batch_size: int = runtime(32)
    device: str = runtime("cpu")
    backend: str = runtime("auto")

    def validate(self) -> "RegNetConfig":
        if not self.model.startswith("regnet"):
            raise config_error(self, "model", "a timm RegNet (regnetx_*/regnety_*/...)", self.model)
        return super().validate()


@register_extractor
class RegNet(TimmBackboneBase):
    """Pooled features of a timm RegNet (the ABAW5 recipe's ImageNet backbone).

    Parameters: :class:`RegNetConfig`.

    Shape:
        input ``images (N, S, S, 3)`` uint8; output ``(N, num_features)`` (888 for regnety_016).
    """

    name = "regnet"
    weights_from = "hub"
    modality = "visual"
    Config = RegNetConfig
