"""Tiny randomly initialised stand-ins of the published affect models, in their real file formats.

Shared by ``tests/extractors/test_published.py`` and ``tests/test_preset_best.py``: an ONNX graph with EmotiEffLib's
input / output names and shapes (``input`` (B, 3, S, S) -> ``output`` (B, n_out)), a wav2vec 2.0 + regression
head folder written by ``save_pretrained`` with audEERING's module names and ``id2label``, and a py-feat multitask
checkpoint (py-feat's own ``MEGraphAUv2`` with a ConvNeXt-V2-atto backbone, saved as safetensors with its
``ModelV2Config`` JSON under the metadata key ``config``, as ``face_multitask_v28.safetensors`` is).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch


class TinyEnet(torch.nn.Module):
    """Stands in for EfficientNet-B0: (B, 3, S, S) -> (B, n_out)."""

    def __init__(self, n_out: int = 10) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 8, stride=8)
        self.fc = torch.nn.Linear(6, n_out)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3))) * 3.0


def export_tiny(path: Path, n_out: int = 10, size: int = 224, seed: int = 0) -> TinyEnet:
    """Export as EmotiEffLib's convert_pt_to_onnx does: input ``input``, output ``output``, dynamic batch."""
    torch.manual_seed(seed)
    net = TinyEnet(n_out).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's notes
        torch.onnx.export(net, (torch.randn(1, 3, size, size),), str(path), input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "batch_size"}, "output": {0: "batch_size"}},
                          opset_version=17, dynamo=False)
    return net


def tiny_w2v2_config(**kw):
    from transformers import Wav2Vec2Config

    base = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                conv_dim=(16,) * 7, feat_extract_norm="layer", do_stable_layer_norm=True,
                num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, num_labels=3,
                id2label={0: "arousal", 1: "dominance", 2: "valence"},
                label2id={"arousal": 0, "dominance": 1, "valence": 2}, final_dropout=0.1)
    return Wav2Vec2Config(**{**base, **kw})


def save_tiny_ser(d: Path, bias: tuple[float, float, float] = (0.5, 0.4, 0.6), seed: int = 0) -> Path:
    """A tiny audEERING-layout model (wav2vec2 + ``classifier.dense`` / ``classifier.out_proj``) saved to ``d`` with
    its ``preprocessor_config.json``; the head's bias is set so that the outputs are visibly away from zero."""
    from transformers import Wav2Vec2FeatureExtractor

    from affectfuse.extractors.audio.speech_emotion import dimensional_emotion_class

    torch.manual_seed(seed)
    model = dimensional_emotion_class()(tiny_w2v2_config()).eval()
    with torch.no_grad():  # a head with visible outputs (random init has tiny biases)
        model.classifier.out_proj.bias.copy_(torch.tensor(bias))
    model.save_pretrained(d)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=True).save_pretrained(d)
    return d


#: a tiny py-feat multitask model: ConvNeXt-V2-atto backbone, narrow heads (tests/extractors/test_pyfeat_multitask.py)
PYFEAT_TINY = dict(backbone="convnextv2_atto", afg_channels=64, mefl_channels=64, unified_lmk_dim=32,
                   drop_path_rate=0.0)
#: the v3 heads with the shipped model's 20 AUs / 7 emotions, blendshapes and normalised mesh. The v2.6 gaze-eye RoI
#: (``gaze_eye_roi``) is left off: it feeds only the gaze head (not read) and costs seconds per new batch size here.
PYFEAT_V28 = dict(use_head_v3=True, drop_mefl=True, emotion_use_au_prob=True, n_au=20, n_emotion=7, n_blendshape=52,
                  mesh_normalized=True)


def save_tiny_pyfeat(path: Path, seed: int = 0, **flags) -> Path:
    """A tiny randomly initialised py-feat multitask checkpoint (20 AUs, 7 emotions unless ``flags`` say otherwise)
    saved to ``path`` (a ``.safetensors`` file) as py-feat distributes its weights; built with py-feat's own model
    code (the pinned ``pyfeat-multitask`` asset, as the extractor runs it). Needs timm."""
    import dataclasses
    import json

    from safetensors.torch import save_file

    from affectfuse.extractors.face.pyfeat_multitask import pyfeat_namespace

    torch.manual_seed(seed)
    with pyfeat_namespace() as mods:
        mv2 = mods["feat.multitask.model_v2"]
        cfg = mv2.ModelV2Config(**PYFEAT_TINY, pretrained=False, **{**PYFEAT_V28, **flags})
        model = mv2.MEGraphAUv2(cfg).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**dataclasses.asdict(cfg), "pretrained": True}  # as trained
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"config": json.dumps(meta)})
    return path


def pin_catalogue(mp, name: str, path: Path) -> str:
    """Pin catalogue model ``name`` to the SHA-256 of the tiny file ``path`` (through ``mp``, a MonkeyPatch): the
    real pins name the published weights, which a tiny stand-in put in the model's folder can never match."""
    import dataclasses
    import hashlib

    from affectfuse.extractors._catalogue import CATALOGUE

    sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    entry = CATALOGUE[name]
    mp.setitem(CATALOGUE, name, dataclasses.replace(entry, sha256=(sha,) * len(entry.files),
                                                    pin_source=("a tiny test stand-in",) * len(entry.files)))
    return sha
