"""openSMILE functionals per audio fragment: eGeMAPSv02 (88-d) or ComParE_2016 (6373-d).

LICENCE — read before use: the ``opensmile`` Python package (audEERING, 2.6.0) bundles the openSMILE
binary ``libSMILEapi.so`` under the **audEERING Research License: free for research, education and
private non-commercial use only**; any commercial use needs a separate licence from audEERING GmbH.
affectfuse therefore does not install it by default: it is the opt-in extra
``pip install "affectfuse[opensmile]"`` (or ``pip install opensmile``; it brings audinterface,
audobject, audformat, audiofile, audresample, audmath, audeer, soundfile, pyarrow, oyaml, iso639-lang,
iso3166, asttokens — no torch). The package is imported only when the extractor loads.

Per fragment (its real samples only) the extractor calls ``opensmile.Smile(feature_set,
FeatureLevel.Functionals).process_signal(fragment, sample_rate)`` and returns its one row of
functionals (statistics over the fragment of openSMILE's low-level descriptors: pitch, jitter,
shimmer, loudness, formants, MFCCs, spectral shape, ...; Eyben et al. 2016 for eGeMAPS, Schuller et
al. 2016 for ComParE). openSMILE returns NaN for segments shorter than 60 ms (measured: 959 samples
at 16 kHz give NaN, 960 give finite values for both sets), so shorter fragments are zero-padded on the
right to 60 ms; any value still non-finite (never observed) becomes 0. openSMILE reads the signal as
16-bit PCM (``int16(x * 32768)``, which wraps around for ``|x| >= 1``), so samples are clipped to
``[-1, 32767/32768]`` first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from affectfuse.extractors._torch_utils import AudioExtractor, CheckedConfig, config_error
from affectfuse.extractors.base import InputContract, register_extractor

__all__ = ["OpenSmileFunctionals", "OpenSmileConfig", "FEATURE_SETS", "MIN_SECONDS", "import_opensmile"]

#: feature set name -> number of functionals (openSMILE 2.6.0 configs).
FEATURE_SETS: dict[str, int] = {"eGeMAPSv02": 88, "ComParE_2016": 6373}
#: shortest fragment openSMILE gives finite functionals for; shorter ones are zero-padded to it.
MIN_SECONDS = 0.06

_INSTALL_HINT = (
    "the 'opensmile' package is not installed. It is an opt-in extra because its openSMILE binary is under the "
    "audEERING Research License (non-commercial use only): install it with `pip install \"affectfuse[opensmile]\"` "
    "(or `pip install opensmile`) only if your use is non-commercial research, education or private use"
)


def import_opensmile():
    """Import the ``opensmile`` package.

    Raises:
        ImportError: not installed; the message says how to install it and states the licence.
    """
    try:
        import opensmile  # optional, non-commercial licence: never imported before it is needed
    except ImportError as e:
        raise ImportError(f"extractor 'opensmile': {_INSTALL_HINT} ({e})") from e
    return opensmile


@dataclass(frozen=True, kw_only=True)
class OpenSmileConfig(CheckedConfig):
    """Parameters of :class:`OpenSmileFunctionals`.

    Attributes:
        feature_set: ``"eGeMAPSv02"`` or ``"ComParE_2016"``.
        sample_rate: Hz the fragments arrive at (the pipeline resamples to it); >= 8000.
    """

    feature_set: str = "eGeMAPSv02"
    sample_rate: int = 16000

    def validate(self) -> "OpenSmileConfig":
        if self.feature_set not in FEATURE_SETS:
            raise ValueError(
                f"{type(self).__name__}: unknown feature_set {self.feature_set!r}; expected one of {', '.join(FEATURE_SETS)}"
            )
        if self.sample_rate < 8000:
            raise config_error(self, "sample_rate", "an integer >= 8000 Hz", self.sample_rate)
        return self


@register_extractor
class OpenSmileFunctionals(AudioExtractor):
    """openSMILE functionals of every fragment (eGeMAPSv02: 88-d, ComParE_2016: 6373-d).

    NON-COMMERCIAL: needs the opt-in ``opensmile`` package (audEERING Research License); see the
    module docstring. Fragments shorter than 60 ms are zero-padded to 60 ms; padding of the batch
    never enters. The columns keep the default names ``opensmile_<i>``: openSMILE's own names need
    the package (:attr:`feature_names`), and the identity must not depend on whether it is installed.

    Parameters: :class:`OpenSmileConfig`.

    Shape:
        output ``(N, 88)`` or ``(N, 6373)`` float32 (zeros for empty / invalid rows).
    """

    name = "opensmile"
    weights_from = "none"
    Config = OpenSmileConfig

    def __init__(self, config: OpenSmileConfig | None = None, /, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        sr = self.config.sample_rate
        self.dim = FEATURE_SETS[self.config.feature_set]
        self.contract = InputContract(kind="audio_fragment", sample_rate=sr)
        self.min_samples = int(np.ceil(MIN_SECONDS * sr))
        self._smile: Any = None

    def _load(self) -> None:
        opensmile = import_opensmile()
        fs = self.config.feature_set
        smile = opensmile.Smile(
            feature_set=getattr(opensmile.FeatureSet, fs), feature_level=opensmile.FeatureLevel.Functionals
        )
        if smile.num_features != self.dim:
            raise RuntimeError(
                f"extractor {self.name!r}: openSMILE {getattr(opensmile, '__version__', '?')} gives "
                f"{smile.num_features} {fs} functionals, expected {self.dim} (tested with opensmile 2.6.0)"
            )
        self._smile = smile

    @property
    def feature_names(self) -> list[str]:
        """openSMILE's names of the output columns (loads the package)."""
        self.load()
        return list(self._smile.feature_names)

    def functionals(self, x: np.ndarray) -> np.ndarray:
        """Functionals of one fragment (zero-padded to 60 ms when shorter).

        Shape:
            ``(L,)`` -> ``(dim,)`` float32.
        """
        self.load()
        x = np.clip(np.asarray(x, dtype=np.float32), -1.0, 32767 / 32768)  # openSMILE's int16 would wrap
        if len(x) < self.min_samples:
            x = np.pad(x, (0, self.min_samples - len(x)))
        v = self._smile.process_signal(x, self.config.sample_rate).to_numpy(dtype=np.float32)  # (1, dim)
        return np.nan_to_num(v[0], nan=0.0, posinf=0.0, neginf=0.0)  # (dim,)

    def embed(self, rows: list[np.ndarray]) -> np.ndarray:
        """Functionals of every fragment.

        Shape:
            ``rows[i] (L_i,)`` -> ``(len(rows), dim)`` float32.
        """
        return np.stack([self.functionals(r) for r in rows])
