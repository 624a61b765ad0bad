"""Self-supervised speech encoders from ``transformers`` (HuBERT, wav2vec 2.0, WavLM), mean-pooled.

``hf_speech`` turns each audio fragment into the time average of one hidden layer of any
``HubertModel`` / ``Wav2Vec2Model`` / ``WavLMModel`` checkpoint (a hub id resolved by ``transformers``
or a local ``save_pretrained`` folder). The shared machinery here — checkpoint and feature-extractor
loading, exact length buckets, minimum-length padding, bf16 weights — also serves ``wavlm_xvector``.

How rows of different lengths are batched: rows are grouped by their exact length and each group runs
without padding, so a row's output depends only on its own samples, for every checkpoint. (Models
with ``feat_extract_norm="group"`` — wav2vec2-base, HuBERT-base, WavLM-base(-plus) — normalise the
first convolution over time, so zero padding changes their output even with an attention mask.) The
checkpoint's feature extractor (``preprocessor_config.json``; zero-mean/unit-variance normalisation
when ``do_normalize``) is applied to each row's real samples only.

Minimum length: a row shorter than the model's receptive field (400 samples = 25 ms for the standard
wav2vec2 convolution stack) is right-padded with zeros, after normalisation, to that length.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from affectfuse.extractors.base import Extractor, ExtractorInput, InputContract, register_extractor
from affectfuse.extractors.audio.logmel import audio_rows, check_dtype, check_positive, reject_unknown

__all__ = ["HFSpeech", "HFSpeechBase", "read_hf_config", "conv_min_samples"]

# Output widths of well-known checkpoints, used only when their config is not on disk (offline).
KNOWN_HIDDEN = {
    "facebook/hubert-base-ls960": 768,
    "facebook/hubert-large-ll60k": 1024,
    "facebook/wav2vec2-base": 768,
    "facebook/wav2vec2-base-960h": 768,
    "facebook/wav2vec2-large-960h": 1024,
    "microsoft/wavlm-base": 768,
    "microsoft/wavlm-base-plus": 768,
    "microsoft/wavlm-base-plus-sv": 768,
    "microsoft/wavlm-base-sv": 768,
    "microsoft/wavlm-large": 1024,
}


def read_hf_config(model: str) -> dict[str, Any] | None:
    """The ``config.json`` of a local checkpoint folder or of a hub id already in the HF cache.

    Returns:
        the parsed config, or None for a hub id that is not cached.

    Raises:
        FileNotFoundError: ``model`` is a folder without ``config.json``.
    """
    p = Path(model).expanduser()
    if p.is_dir():
        f = p / "config.json"
        if not f.exists():
            raise FileNotFoundError(
                f"{p}: no config.json; expected a transformers checkpoint folder (config.json + model.safetensors)"
            )
        return json.loads(f.read_text())
    if p.exists():
        raise FileNotFoundError(f"{p}: expected a transformers checkpoint folder or a hub id, got a file")
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(model, "config.json")
    except Exception:  # noqa: BLE001 - a malformed id is simply "not cached"
        return None
    return json.loads(Path(hit).read_text()) if isinstance(hit, str) else None


def conv_min_samples(conv_kernel, conv_stride, frames: int) -> int:
    """Fewest input samples for which a stack of valid 1-D convolutions yields ``frames`` outputs.

    ``out = (in - k) // s + 1`` per layer, inverted from the last layer to the first.
    """
    n = int(frames)
    for k, s in reversed(list(zip(conv_kernel, conv_stride))):
        n = (n - 1) * int(s) + int(k)
    return n


def _torch_dtype(dtype: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


class HFSpeechBase(Extractor):
    """Shared loading and batching for transformers speech encoders (not registered itself).

    Subclasses set ``name``, ``default_model``, ``_load_model(torch_dtype)``, ``_min_frames(config)``
    and ``_embed(x) -> (B, dim)`` and compute ``self.dim`` in ``__init__``.
    """

    modality = "audio"
    default_model: ClassVar[str] = ""

    def _setup(self, model: str, dtype: str, batch_size: int, sample_rate: int, device: str, extra: dict) -> None:
        check_dtype(self.name, dtype)
        check_positive(self.name, batch_size=batch_size, sample_rate=sample_rate)
        super().__init__(dict(model=str(model), dtype=dtype, sample_rate=int(sample_rate), **extra))
        self.batch_size = int(batch_size)
        self.device = device
        self.config = read_hf_config(str(model))
        self.contract = InputContract(kind="audio_fragment", sample_rate=int(sample_rate))
        self._model = None
        self._fe = None
        self._min_len = 1

    # -- loading --------------------------------------------------------------------------------
    def _load_feature_extractor(self):
        from transformers import AutoFeatureExtractor, Wav2Vec2FeatureExtractor

        model = self.params["model"]
        try:
            fe = AutoFeatureExtractor.from_pretrained(model)
        except (OSError, ValueError) as e:
            cfg = self._model.config
            fe = Wav2Vec2FeatureExtractor(
                feature_size=1,
                sampling_rate=self.params["sample_rate"],
                padding_value=0.0,
                do_normalize=True,
                return_attention_mask=getattr(cfg, "feat_extract_norm", "group") == "layer",
            )
            warnings.warn(
                f"{model}: no feature extractor config ({type(e).__name__}); using Wav2Vec2FeatureExtractor "
                "defaults (zero-mean/unit-variance normalisation)",
                stacklevel=2,
            )
        if getattr(fe, "sampling_rate", self.params["sample_rate"]) != self.params["sample_rate"]:
            raise ValueError(
                f"{model}: the checkpoint expects {fe.sampling_rate} Hz audio but extractor {self.name!r} was "
                f"created with sample_rate={self.params['sample_rate']}"
            )
        return fe

    @staticmethod
    def _check_loading(model: str, info: dict) -> None:
        missing = [k for k in info.get("missing_keys", []) if "masked_spec_embed" not in k]
        if missing:
            raise ValueError(
                f"{model}: the checkpoint lacks {len(missing)} weight(s) the model needs "
                f"(e.g. {', '.join(missing[:3])}); they would be random. Is it the right kind of checkpoint?"
            )

    def _load_model(self, torch_dtype):
        raise NotImplementedError

    def _min_frames(self, config) -> int:
        return 1

    def load(self) -> None:
        import torch  # noqa: F401

        self._model = self._load_model(_torch_dtype(self.params["dtype"]))
        self._model.eval().to(self.device)
        self._fe = self._load_feature_extractor()
        cfg = self._model.config
        self._min_len = conv_min_samples(cfg.conv_kernel, cfg.conv_stride, self._min_frames(cfg))

    # -- running --------------------------------------------------------------------------------
    def _embed(self, x):
        """``(B, L)`` model-dtype tensor -> ``(B, dim)`` tensor."""
        raise NotImplementedError

    def _prepare(self, row: np.ndarray, length: int) -> np.ndarray:
        """The feature extractor on a row's real samples, then zero padding to ``length``.

        Shape:
            ``(l,)`` -> ``(length,)`` float32 with ``length >= l``.
        """
        v = self._fe(row, sampling_rate=self.params["sample_rate"], return_tensors="np")["input_values"][0]  # (l,)
        v = np.asarray(v, dtype=np.float32).reshape(-1)
        if len(v) < length:
            v = np.pad(v, (0, length - len(v)), constant_values=float(getattr(self._fe, "padding_value", 0.0)))
        return v

    def forward(self, batch: ExtractorInput) -> np.ndarray:
        """Embeddings of every fragment.

        Shape:
            ``batch.audio (N, L)`` -> ``(N, dim)`` float32; rows of length 0 or ``valid == False`` give zeros.
        """
        import torch

        rows, active = audio_rows(self.name, batch)
        out = np.zeros((len(rows), self.dim), np.float32)
        eff = {int(i): max(len(rows[i]), self._min_len) for i in np.flatnonzero(active)}
        groups: dict[int, list[int]] = {}
        for i, n in eff.items():
            groups.setdefault(n, []).append(i)
        tdtype = _torch_dtype(self.params["dtype"])
        with torch.inference_mode():
            for n, idx in groups.items():
                for s in range(0, len(idx), self.batch_size):
                    chunk = idx[s : s + self.batch_size]
                    x = np.stack([self._prepare(rows[i], n) for i in chunk])  # (B, n)
                    xt = torch.from_numpy(x).to(self.device, tdtype)  # (B, n)
                    out[chunk] = self._embed(xt).float().cpu().numpy()  # (B, dim)
        return out


@register_extractor
class HFSpeech(HFSpeechBase):
    """Time-averaged hidden states of a HuBERT / wav2vec 2.0 / WavLM checkpoint.

    Each fragment runs alone at its own length (see the module docstring), so the average is over the
    fragment's own frames only; a fragment shorter than the convolutional receptive field (400
    samples for the standard stack) is zero-padded to it.

    Args:
        model: hub id (resolved by ``transformers``; offline it must be in the HF cache) or a local
            checkpoint folder (``config.json`` + weights, optionally ``preprocessor_config.json``).
        layer: -1 (default) averages ``last_hidden_state``, the encoder's output (for
            stable-layer-norm checkpoints such as wav2vec2-large / WavLM-large that is after the final
            layer norm); any other value indexes ``hidden_states`` (0 = the input of the first
            transformer layer, i = the output of layer i).
        dtype: ``"float32"``, or ``"bfloat16"`` / ``"float16"`` weights (activations follow).
        batch_size: fragments per forward pass (within a group of equal length).
        sample_rate: Hz the fragments arrive at; must match the checkpoint's feature extractor.
        device: torch device to run on (does not change the output, so not part of the key).

    Shape:
        output ``(N, hidden_size)`` float32.
    """

    name = "hf_speech"
    default_model = "facebook/hubert-base-ls960"

    def __init__(
        self,
        *,
        model: str = "facebook/hubert-base-ls960",
        layer: int = -1,
        dtype: str = "float32",
        batch_size: int = 16,
        sample_rate: int = 16000,
        device: str = "cpu",
        **unknown: Any,
    ) -> None:
        reject_unknown(self.name, unknown, ("model", "layer", "dtype", "batch_size", "sample_rate", "device"))
        self._setup(model, dtype, batch_size, sample_rate, device, dict(layer=int(layer)))
        if self.config is not None:
            self.dim = int(self.config["hidden_size"])
            n_layers = int(self.config.get("num_hidden_layers", 0))
            if not -(n_layers + 1) <= int(layer) <= n_layers:
                raise ValueError(
                    f"extractor {self.name!r}: layer={layer} is outside [-{n_layers + 1}, {n_layers}] for {model} "
                    f"({n_layers} layers)"
                )
        elif str(model) in KNOWN_HIDDEN:
            self.dim = KNOWN_HIDDEN[str(model)]
        else:
            raise ValueError(
                f"extractor {self.name!r}: cannot read the config of {model!r}: it is not a local folder and not "
                "in the Hugging Face cache (offline). Pass a local checkpoint folder."
            )

    def _load_model(self, torch_dtype):
        from transformers import AutoModel

        model, info = AutoModel.from_pretrained(self.params["model"], output_loading_info=True)
        self._check_loading(self.params["model"], info)
        if not hasattr(model.config, "conv_kernel"):
            raise ValueError(
                f"{self.params['model']}: {type(model).__name__} is not a wav2vec2-style speech encoder "
                "(HuBERT / wav2vec2 / WavLM / data2vec-audio expected)"
            )
        return model.to(torch_dtype)

    def _embed(self, x):
        layer = self.params["layer"]
        if layer == -1:
            h = self._model(x).last_hidden_state  # (B, T, H)
        else:
            h = self._model(x, output_hidden_states=True).hidden_states[layer]  # (B, T, H)
        return h.mean(dim=1)  # (B, H)
