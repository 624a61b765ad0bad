"""Speech-probability statistics per audio fragment from Silero VAD 6.2.3 (MIT), run in plain torch.

The weights are those of ``silero_vad/data/silero_vad.jit`` that ships in the ``silero-vad`` wheel
(PyPI, MIT, 11 MB), fetched as the asset ``silero-vad`` (SHA-256 checked) or read from an installed package. The
package itself is never imported
(importing it calls ``torch.set_num_threads(1)`` for the whole process, and its audio I/O wants
torchaudio); its TorchScript archive is opened by path with ``torch.jit.load`` (not a pickle), the
16 kHz sub-model's ``state_dict`` is copied into the plain torch module of :func:`build_silero_net` and the archive is dropped.
(The wheel's ``silero_vad_16k.safetensors`` holds *different*, older weights — max abs difference to
the JIT's up to 18 — so it is not used.)

What the 16 kHz model computes (read from the archive's TorchScript code; re-implemented exactly):

* the signal is cut into chunks of 512 samples (32 ms); each chunk is prefixed by the last 64 samples
  before it (zeros for the first chunk) — 576 samples;
* right reflect-padding by 64, a fixed STFT as ``conv1d`` (258 basis filters of 256 taps, hop 128) ->
  4 magnitude frames of 129 bins;
* four ``Conv1d(k=3, padding=1) + ReLU`` layers (129->128, 128->64 stride 2, 64->64 stride 2, 64->128)
  -> one 128-d vector per chunk;
* an ``LSTMCell(128, 128)`` carried from chunk to chunk (the model's streaming state), then ReLU,
  ``Conv1d(128, 1, 1)`` and a sigmoid: the speech probability of the chunk.

Because the encoder sees each chunk (plus its 64-sample context) on its own, it runs on all chunks
of all fragments of a batch at once; only the LSTM steps through the chunks (one ``nn.LSTM`` call
with the same weights). The streaming state and the context start from zeros for every fragment,
exactly as the package's ``get_speech_timestamps`` does after ``model.reset_states()``; the
fragment's last partial chunk is zero-padded to 512 samples (also as there), so a fragment shorter
than one chunk is zero-padded to 512 samples. The LSTM is causal, so the zero chunks appended to
shorter rows of a batch never change the probabilities of their real chunks.
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from affectfuse.extractors._torch_utils import (
    AudioExtractor,
    CheckedConfig,
    batch_slices,
    check_batch_size,
    check_range,
)
from affectfuse.extractors.base import InputContract, register_extractor, runtime

__all__ = [
    "SileroVAD",
    "SileroVADConfig",
    "SILERO_STATS",
    "build_silero_net",
    "silero_state_shapes",
    "silero_jit_path",
    "load_silero_state",
    "chunk_fragment",
]

SAMPLE_RATE = 16000
CHUNK = 512  # samples per chunk at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous chunk prefixed to each chunk
HIDDEN = 128
#: the output columns: statistics of the chunks' speech probabilities.
SILERO_STATS = ("speech_prob_mean", "speech_prob_max", "speech_fraction")


def silero_jit_path() -> Path:
    """``silero_vad/data/silero_vad.jit`` of the installed ``silero-vad`` package (found without importing it), else
    the asset ``silero-vad`` (the same file from the package on PyPI, SHA-256 checked).

    Raises:
        FileNotFoundError: neither is there; the message says how to fetch the asset.
    """
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:  # a pip install: the same file, as a pinned asset
        from affectfuse.assets import asset_path

        return asset_path("silero-vad", "silero_vad.jit")
    p = Path(list(spec.submodule_search_locations)[0]) / "data" / "silero_vad.jit"
    if not p.exists():
        raise FileNotFoundError(f"{p}: missing; reinstall with `pip install --no-deps --force-reinstall silero-vad==6.2.3`")
    return p


def load_silero_state(path: str | Path) -> dict[str, Any]:
    """The 16 kHz sub-model's weights from a Silero VAD TorchScript archive.

    Args:
        path: ``silero_vad.jit`` (a TorchScript zip archive, loaded with ``torch.jit.load`` on CPU;
            torch 2.13 warns that ``torch.jit.load`` is deprecated — the warning is silenced here).

    Returns:
        ``{"stft.forward_basis_buffer": (258, 1, 256), "encoder.{0..3}.reparam_conv.{weight,bias}",
        "decoder.rnn.{weight_ih,weight_hh,bias_ih,bias_hh}", "decoder.decoder.2.{weight,bias}"}`` tensors.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a Silero VAD archive of the expected layout.
    """
    import torch  # heavy: imported on first use, not with the package

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: Silero VAD model not found (expected silero_vad.jit of silero-vad 6.x)")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.*deprecated", category=DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
        state = {k: v.detach().clone().float() for k, v in module._model.state_dict().items()}
        stft = (int(module._model.stft.filter_length), int(module._model.stft.hop_length))
        context = int(module._model.context_size_samples)
    except Exception as e:  # noqa: BLE001 - re-raised with the file's name
        raise ValueError(f"{path}: not a Silero VAD TorchScript archive with a 16 kHz '_model' ({type(e).__name__}: {e})") from e
    want = silero_state_shapes()
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != want or stft != (256, 128) or context != CONTEXT:
        raise ValueError(
            f"{path}: unexpected Silero VAD layout: STFT (filter, hop) {stft}, context {context}, "
            f"weights {got}; expected (256, 128), {CONTEXT}, {want} (silero-vad 6.x)"
        )
    return state


def chunk_fragment(x: np.ndarray, n_chunks: int | None = None) -> np.ndarray:
    """Cut one fragment into Silero chunks of 64 context + 512 new samples.

    The fragment is zero-padded on the right to a multiple of 512 (at least 512 samples, or to
    ``n_chunks * 512``) and prefixed by 64 zeros (the empty context of a fresh stream).

    Args:
        x: ``(L,)`` float signal at 16 kHz.
        n_chunks: pad to this many chunks (>= the fragment's own ``max(1, ceil(L / 512))``).

    Shape:
        returns ``(n_chunks, 576)`` float32.
    """
    own = max(1, -(-len(x) // CHUNK))
    n = own if n_chunks is None else n_chunks
    if n < own:
        raise ValueError(f"n_chunks={n} is fewer than the {own} chunks of a {len(x)}-sample fragment")
    padded = np.zeros(CONTEXT + n * CHUNK, np.float32)
    padded[CONTEXT : CONTEXT + len(x)] = x
    return np.lib.stride_tricks.sliding_window_view(padded, CONTEXT + CHUNK)[::CHUNK].copy()  # (n, 576)


def _net_class():
    import torch  # heavy: imported on first use, not with the package
    from torch import nn

    class _SileroVADNet(nn.Module):
        """Silero VAD 16 kHz network (see the module docstring), vectorised over chunks."""

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("basis", torch.zeros(258, 1, 256))
            self.convs = nn.ModuleList(
                [
                    nn.Conv1d(129, 128, 3, stride=1, padding=1),
                    nn.Conv1d(128, 64, 3, stride=2, padding=1),
                    nn.Conv1d(64, 64, 3, stride=2, padding=1),
                    nn.Conv1d(64, 128, 3, stride=1, padding=1),
                ]
            )
            self.lstm = nn.LSTM(HIDDEN, HIDDEN, batch_first=True)
            self.head = nn.Conv1d(HIDDEN, 1, 1)

        def load_silero(self, state: dict[str, Any]) -> None:
            """Copy the weights returned by :func:`load_silero_state`."""
            with torch.no_grad():
                self.basis.copy_(state["stft.forward_basis_buffer"])
                for i, conv in enumerate(self.convs):
                    conv.weight.copy_(state[f"encoder.{i}.reparam_conv.weight"])
                    conv.bias.copy_(state[f"encoder.{i}.reparam_conv.bias"])
                for s in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(self.lstm, f"{s}_l0").copy_(state[f"decoder.rnn.{s}"])
                self.head.weight.copy_(state["decoder.decoder.2.weight"])
                self.head.bias.copy_(state["decoder.decoder.2.bias"])

        def encode(self, chunks):
            """Per-chunk encoder.

            Shape:
                ``(M, 576)`` -> ``(M, 128)``.
            """
            x = nn.functional.pad(chunks, (0, 64), mode="reflect").unsqueeze(1)  # (M, 1, 640)
            x = nn.functional.conv1d(x, self.basis, stride=128)  # (M, 258, 4)
            x = torch.sqrt(x[:, :129] ** 2 + x[:, 129:] ** 2)  # (M, 129, 4) magnitude
            for conv in self.convs:
                x = torch.relu(conv(x))  # (M, 128, 4) -> (M, 64, 2) -> (M, 64, 1) -> (M, 128, 1)
            return x.squeeze(-1)  # (M, 128)

        def forward(self, chunks):
            """Speech probability of every chunk, the streaming state starting at zero for every row.

            Shape:
                ``(B, T, 576)`` -> ``(B, T)``.
            """
            b, t, n = chunks.shape
            z = self.encode(chunks.reshape(b * t, n)).reshape(b, t, HIDDEN)  # (B, T, 128)
            h, _ = self.lstm(z)  # (B, T, 128)
            logit = self.head(torch.relu(h).reshape(b * t, HIDDEN, 1))  # (B*T, 1, 1)
            return torch.sigmoid(logit).reshape(b, t)  # (B, T)

    return _SileroVADNet


def silero_state_shapes() -> dict[str, tuple[int, ...]]:
    """Names and shapes of the JIT ``_model`` state dict that :func:`build_silero_net` consumes."""
    shapes: dict[str, tuple[int, ...]] = {"stft.forward_basis_buffer": (258, 1, 256)}
    for i, (o, c) in enumerate([(128, 129), (64, 128), (64, 64), (128, 64)]):
        shapes[f"encoder.{i}.reparam_conv.weight"] = (o, c, 3)
        shapes[f"encoder.{i}.reparam_conv.bias"] = (o,)
    shapes.update(
        {
            "decoder.rnn.weight_ih": (4 * HIDDEN, HIDDEN),
            "decoder.rnn.weight_hh": (4 * HIDDEN, HIDDEN),
            "decoder.rnn.bias_ih": (4 * HIDDEN,),
            "decoder.rnn.bias_hh": (4 * HIDDEN,),
            "decoder.decoder.2.weight": (1, HIDDEN, 1),
            "decoder.decoder.2.bias": (1,),
        }
    )
    return shapes


def build_silero_net(state: dict[str, Any] | None = None):
    """The Silero VAD 16 kHz network as a plain ``nn.Module`` (torch is imported here).

    Args:
        state: weights from :func:`load_silero_state` (None: uninitialised).

    Returns:
        a module in eval mode with ``encode(chunks (M, 576)) -> (M, 128)`` and
        ``forward(chunks (B, T, 576)) -> (B, T)`` speech probabilities.
    """
    net = _net_class()()
    if state is not None:
        net.load_silero(state)
    return net.eval()


@dataclass(frozen=True, kw_only=True)
class SileroVADConfig(CheckedConfig):
    """Parameters of :class:`SileroVAD`.

    Attributes:
        weights: path to ``silero_vad.jit`` or None for the installed ``silero-vad`` package's file.
        threshold: probability above which a chunk counts as speech (Silero's default 0.5).
        batch_size: fragments per network pass (not in the identity).
        device: torch device (not in the identity).
    """

    weights: str | None = None
    threshold: float = 0.5
    batch_size: int = runtime(64)
    device: str = runtime("cpu")

    def validate(self) -> "SileroVADConfig":
        check_batch_size(self)
        check_range(self, "threshold", 0, 1, "[)")
        return self


@register_extractor
class SileroVAD(AudioExtractor):
    """Speech-probability statistics of every fragment from Silero VAD (dim 3).

    Output row (:data:`SILERO_STATS`): ``[mean p, max p, fraction of chunks with p > threshold]`` over
    the fragment's 32 ms chunks (512 samples at 16 kHz), where ``p`` is Silero's speech probability of a
    chunk. The model's streaming state and context are reset for every fragment; the last partial chunk
    is zero-padded, so a fragment shorter than 512 samples counts as one zero-padded chunk. Each
    fragment is processed from its own real samples only (the batch's padding never enters).

    Parameters: :class:`SileroVADConfig`.

    Shape:
        output ``(N, 3)`` float32 in [0, 1] (zeros for empty / invalid rows).
    """

    name = "silero_vad"
    weights_from = "package"
    Config = SileroVADConfig

    def __init__(self, config: SileroVADConfig | None = None, /, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.dim = len(SILERO_STATS)
        self.contract = InputContract(kind="audio_fragment", sample_rate=SAMPLE_RATE)
        self._net: Any = None

    @property
    def columns(self) -> list[str]:
        return list(SILERO_STATS)

    def _load(self) -> None:
        path = Path(self.config.weights) if self.config.weights else silero_jit_path()
        self._net = build_silero_net(load_silero_state(path)).to(self.config.device)

    def chunk_probs(self, rows: list[np.ndarray]) -> list[np.ndarray]:
        """Silero speech probability of every 32 ms chunk of each fragment (fresh stream per fragment).

        Shape:
            ``rows[i] (L_i,)`` -> ``probs[i] (max(1, ceil(L_i / 512)),)`` float32.
        """
        import torch  # heavy: only when running

        self.load()
        order = np.argsort([len(r) for r in rows], kind="stable")  # similar lengths share a batch
        probs: dict[int, np.ndarray] = {}
        for sl in batch_slices(len(order), self.config.batch_size):
            idx = order[sl]
            counts = [max(1, -(-len(rows[i]) // CHUNK)) for i in idx]
            chunks = np.stack([chunk_fragment(rows[i], max(counts)) for i in idx])  # (B, T, 576)
            with torch.inference_mode():
                p = self._net(torch.from_numpy(chunks).to(self.config.device)).float().cpu().numpy()  # (B, T)
            for j, i in enumerate(idx):
                probs[int(i)] = p[j, : counts[j]]
        return [probs[i] for i in range(len(rows))]

    def embed(self, rows: list[np.ndarray]) -> np.ndarray:
        """Speech statistics of every fragment.

        Shape:
            ``rows[i] (L_i,)`` -> ``(len(rows), 3)`` float32.
        """
        thr = self.config.threshold
        out = np.zeros((len(rows), self.dim), np.float32)
        for i, p in enumerate(self.chunk_probs(rows)):
            p = p.astype(np.float64)
            out[i] = (p.mean(), p.max(), (p > thr).mean())
        return out
