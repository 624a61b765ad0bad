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

from pathlib import Path

from affectfuse.extractors._torch_utils import (
    TorchExtractor,
    check_batch_size,
    check_dtype,
    file_fingerprint,
    load_state_dict,
    load_weights_into,
    prepare_module,
)
from affectfuse.extractors.base import InputContract, register_extractor
from affectfuse.extractors.visual.timm_backbone import TimmBackboneBase

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
    import torch

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


@register_extractor
class InceptionResnetV1Face(TorchExtractor):
    """512-d FaceNet embedding (facenet-pytorch InceptionResnetV1) of 160x160 face crops.

    Args:
        pretrained: ``"vggface2"`` (default, the recipe's best), ``"casia-webface"`` or None (random).
        weights: local state dict of ``InceptionResnetV1`` (a ``logits.*`` head is ignored); overrides
            ``pretrained``.
        dtype: ``"float32"`` or ``"bfloat16"``.
        batch_size: rows per forward pass (does not change the output).
        device: torch device.

    Shape:
        input ``images (N, 160, 160, 3)`` uint8 face crops; output ``(N, 512)``, unit L2 norm.
    """

    name = "inception_resnet_v1"
    modality = "visual"
    channels_last = True

    def __init__(
        self,
        *,
        pretrained: str | None = "vggface2",
        weights: str | None = None,
        dtype: str = "float32",
        batch_size: int = 32,
        device: str = "cpu",
    ) -> None:
        check_dtype(dtype)
        check_batch_size(batch_size)
        if weights is not None:
            pretrained = None
        elif pretrained is not None and pretrained not in FACENET_URLS:
            raise ValueError(f"{self.name}: pretrained must be one of {sorted(FACENET_URLS)} or None, got {pretrained!r}")
        wpath = None if weights is None else str(Path(weights).expanduser().resolve())
        params = {"pretrained": pretrained, "weights": wpath, "dtype": dtype}
        if wpath is not None:
            params["fingerprint"] = file_fingerprint(wpath)
        super().__init__(params)
        self.setup_runtime(dtype=dtype, batch_size=batch_size, device=device)
        self.pretrained, self.weights_path = pretrained, wpath
        self.dim = 512
        self.contract = InputContract(kind="face", image_size=160, mean=FACENET_MEAN, std=FACENET_STD)

    def load(self) -> None:
        from affectfuse._compat import import_torchvision

        import_torchvision()  # facenet_pytorch imports torchvision (MTCNN)
        from facenet_pytorch import InceptionResnetV1

        net = InceptionResnetV1(pretrained=None, classify=False)
        path = self.weights_path or (facenet_weights_file(self.pretrained) if self.pretrained else None)
        if path is not None:
            load_weights_into(net, load_state_dict(path), path, ignore_prefixes=("logits.",))
        self.module = prepare_module(net, self.torch_dtype, self.device, channels_last=True)

    def encode(self, x):
        """Shape: ``(B, 3, 160, 160)`` -> ``(B, 512)`` L2-normalised."""
        return self.module(x)  # (B, 512)


@register_extractor
class RegNet(TimmBackboneBase):
    """Pooled features of a timm RegNet (the ABAW5 recipe's ImageNet backbone).

    Args:
        model: a timm RegNet name (default ``"regnety_016"``; the paper does not name the variant).
        pretrained: timm's ImageNet weights (downloads on a user's machine); ignored when ``weights``.
        weights: local ``.safetensors`` / ``.pth`` state dict (head keys ignored).
        input: ``"face"`` (the recipe's face crops) or ``"frame"``.
        image_size: input side; default the model's ``pretrained_cfg`` (224 for RegNets).
        dtype: ``"float32"`` or ``"bfloat16"``.
        batch_size: rows per forward pass (does not change the output).
        device: torch device.

    Shape:
        input ``images (N, S, S, 3)`` uint8; output ``(N, num_features)`` (888 for regnety_016).
    """

    name = "regnet"
    modality = "visual"

    def __init__(
        self,
        *,
        model: str = "regnety_016",
        pretrained: bool = True,
        weights: str | None = None,
        input: str = "face",
        image_size: int | None = None,
        dtype: str = "float32",
        batch_size: int = 32,
        device: str = "cpu",
    ) -> None:
        if not model.startswith("regnet"):
            raise ValueError(f"{self.name}: model must be a timm RegNet (regnetx_*/regnety_*/...), got {model!r}")
        if weights is not None:
            pretrained = False
        params = {
            "model": model,
            "pretrained": bool(pretrained),
            "weights": None if weights is None else str(Path(weights).expanduser().resolve()),
            "input": input,
            "dtype": dtype,
        }
        self._setup_timm(
            params, model=model, pretrained=pretrained, weights=weights, input=input,
            image_size=image_size, dtype=dtype, batch_size=batch_size, device=device,
        )
