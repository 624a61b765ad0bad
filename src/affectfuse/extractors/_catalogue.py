"""Published pretrained affect models that users fetch themselves: where each comes from, its licence, its hash.

Nothing here is bundled or fetched behind the user's back: ``affectfuse fetch-models NAME...`` (or
:func:`fetch_model`) downloads a model into ``$AFFECTFUSE_CACHE/models/<name>/`` (``$AFFECTFUSE_MODELS/<name>/``
when that variable names another folder of models) and checks it; the extractors (``hsemotion``,
``audeering_dim``, ``pyfeat_multitask``) read it from there, or from a local path, or (for hub models) from the
Hugging Face cache. Models are read as ONNX graphs or as safetensors / ``weights_only`` state dicts — never by
unpickling a whole model.

Verification. A file whose SHA-256 the catalogue pins is refused unless it matches (at fetch and at load). Where
the catalogue has no pin (``sha256=None``: no published hash was found, and a made-up one would be worse than
none), a URL file is fetched only when asked for (``allow_unverified`` / ``--allow-unverified``): its SHA-256 is
recorded in the folder's ``MANIFEST.json`` with ``"verified": false`` and ``fetch-models`` says so loudly. A hub
file is compared with the SHA-256 the hub records for it (its LFS object id), which checks the transfer, not the
publisher. A later load compares the file with the manifest, so a file
changed after it was fetched is noticed.

Licences are recorded in each extractor's identity (so in the feature store) and logged once per process when a
model loads (``affectfuse`` logger, level WARNING): several of these models are for non-commercial use only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from affectfuse.assets import cache_dir

__all__ = [
    "PublishedModel",
    "CATALOGUE",
    "ModelFetchError",
    "MODELS_ENV",
    "models_dir",
    "model_dir",
    "sha256_file",
    "read_manifest",
    "is_fetched",
    "fetch_model",
    "download_url",
    "missing_model_error",
    "announce_licence",
    "check_sha256",
    "is_url",
    "verify_fetched",
]

log = logging.getLogger("affectfuse.models")

_HSE_LICENCE = "Apache-2.0 (EmotiEffLib / HSEmotion, A. Savchenko; https://github.com/sb-ai-lab/EmotiEffLib)"
_HSE_MIRRORS = (  # where hsemotion-onnx (PyPI) downloads them, then EmotiEffLib's upstream repository
    "https://github.com/HSE-asavchenko/face-emotion-recognition/raw/main/models/affectnet_emotions/onnx/{f}",
    "https://github.com/sb-ai-lab/EmotiEffLib/raw/main/models/affectnet_emotions/onnx/{f}",
)
_LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"
_PYFEAT_LICENCE = ("CC-BY-NC-4.0 and research-only terms (py-feat's multitask weights are designated for "
                   "non-commercial research: CC-BY-NC-4.0 ConvNeXt-V2 backbone weights and img2pose teacher, Gaze360 / "
                   "ETH-XGaze terms; py-feat LICENSES/PYFEAT-V2.md; py-feat's code is MIT)")


@dataclass(frozen=True)
class PublishedModel:
    """One published model.

    Attributes:
        name: the catalogue name (``affectfuse fetch-models NAME``), also its cache folder.
        kind: ``"url"`` (files at direct URLs) or ``"hub"`` (a Hugging Face model repository).
        source: the hub id (``kind="hub"``) or a description of where the URLs point.
        files: file names in the model's folder.
        urls: per file, the URLs tried in order (``kind="url"``).
        sha256: per file, the pinned SHA-256, or None where it is not known (never invented).
        pin_source: per file, where its pin comes from (recorded in the manifest, shown by ``fetch-models``).
        licence: the licence of the weights, as the publisher states it.
        extractor: the extractor that reads it.
        revision: the hub revision (branch, tag or commit) for ``kind="hub"``.
        notes: what the model outputs, in one line.
        weights_choice: ``kind="hub"``: weight files in order of preference; the first the repository holds is
            fetched (safetensors before a ``weights_only`` torch file).
    """

    name: str
    kind: str
    source: str
    files: tuple[str, ...]
    licence: str
    extractor: str
    urls: tuple[tuple[str, ...], ...] = ()
    sha256: tuple[str | None, ...] = ()
    pin_source: tuple[str, ...] = ()
    revision: str | None = None
    notes: str = ""
    weights_choice: tuple[str, ...] = ()

    def pinned(self, file: str) -> str | None:
        """The pinned SHA-256 of ``file``, or None."""
        return dict(zip(self.files, self.sha256)).get(file)

    def pin_source_of(self, file: str) -> str:
        """Where the pin of ``file`` comes from ("" when it has none)."""
        return dict(zip(self.files, self.pin_source)).get(file, "")

    @property
    def non_commercial(self) -> bool:
        """Whether the licence forbids commercial use (a Creative Commons ``NC`` licence)."""
        return "-NC" in self.licence.split(" ")[0].upper()


#: SHA-256 pins of HSEmotion files, each with the immutable (commit) URL its hash was computed from and where the
#: pin comes from. None of these files could be downloaded here (no internet); the pins are the hashes published in
#: other projects' verified download manifests, so a wrong one fails loudly (the file is refused, with both hashes)
#: rather than passing silently. Files without a published hash stay unpinned (never invented).
_HSE_PINS: dict[str, tuple[str, str, str]] = {
    "enet_b0_8_va_mtl.onnx": (
        "c43e056ad388d4a8dc911832b8291435b2af537f967e5870ebd731574ec7e812",
        "https://raw.githubusercontent.com/sb-ai-lab/EmotiEffLib/520a051c64cd191521e5934655314e769a319684/models/"
        "affectnet_emotions/onnx/enet_b0_8_va_mtl.onnx",
        "two independent public download manifests agree (one for EmotiEffLib commit 520a051c, one for "
        "face-emotion-recognition's main branch); the first's pin of silero_vad.onnx v5.1.2 matches the file in "
        "PyPI's silero-vad 5.1.2 byte for byte",
    ),
    "enet_b2_8.onnx": (
        "180a9d4845b59393de4511598a0d1d34b705034691ea32959ce5009db7cf52b7",
        "https://raw.githubusercontent.com/sb-ai-lab/EmotiEffLib/af833487321c3efdcb1768a91a6c656a1986fdf6/models/"
        "affectnet_emotions/onnx/enet_b2_8.onnx",
        "one public download manifest, computed from EmotiEffLib commit af833487 (30,779,724 bytes)",
    ),
    "enet_b0_8_best_vgaf.onnx": (
        "00085f9a8ef0bf8fc24a645550185703768951a53aff9f141c8637529eba1840",
        "https://github.com/av-savchenko/hsemotion-onnx/raw/bd500bd3a685013d18883c349e8940d020cacd98/models/"
        "affectnet_emotions/onnx/enet_b0_8_best_vgaf.onnx",
        "one public download manifest, computed from hsemotion-onnx commit bd500bd3",
    ),
}


def _hse(stem: str, notes: str) -> PublishedModel:
    f = f"{stem}.onnx"
    mirrors = tuple(u.format(f=f) for u in _HSE_MIRRORS)
    # pinned: the commit the hash was computed from first, then the moving branches (the same bytes, or refused);
    # NOT pinned where no published SHA-256 of the file was found (fetched only with allow_unverified)
    pin, at_commit, source = _HSE_PINS.get(f, (None, None, ""))
    return PublishedModel(
        name=f"hsemotion-{stem}", kind="url", source="EmotiEffLib / HSEmotion ONNX models on GitHub", files=(f,),
        urls=((at_commit, *mirrors) if at_commit else mirrors,), sha256=(pin,), pin_source=(source,),
        licence=_HSE_LICENCE, extractor="hsemotion", notes=notes,
    )


CATALOGUE: dict[str, PublishedModel] = {
    m.name: m
    for m in [
        _hse("enet_b0_8_va_mtl", "EfficientNet-B0, 224 px: 8 AffectNet expressions + valence + arousal"),
        _hse("enet_b0_8_best_afew", "EfficientNet-B0, 224 px: 8 AffectNet expressions (AFEW-selected)"),
        _hse("enet_b0_8_best_vgaf", "EfficientNet-B0, 224 px: 8 AffectNet expressions (VGAF-selected)"),
        _hse("enet_b2_8", "EfficientNet-B2, 260 px: 8 AffectNet expressions"),
        _hse("enet_b2_7", "EfficientNet-B2, 260 px: 7 AffectNet expressions (no contempt)"),
        PublishedModel(
            name="audeering-msp-dim", kind="hub", source="audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim",
            files=("config.json", "preprocessor_config.json"),
            weights_choice=("model.safetensors", "pytorch_model.bin"),
            licence="CC-BY-NC-SA-4.0 (audEERING; research use only, commercial licences from audEERING)",
            extractor="audeering_dim", revision=None,  # NOT PINNED: the hub's main branch
            notes="wav2vec2-large-robust pruned to 12 layers, MSP-Podcast: arousal, dominance, valence (~0..1)",
        ),
        PublishedModel(
            name="pyfeat-multitask-v28", kind="hub", source="py-feat/face_multitask_v2", files=(),
            weights_choice=("face_multitask_v28.safetensors",),  # safetensors only, its ModelV2Config in the metadata
            licence=_PYFEAT_LICENCE, extractor="pyfeat_multitask", revision=None,  # NOT PINNED: the hub's main branch
            notes="py-feat Detectorv2's multitask model (ConvNeXt-V2 tiny, 256-px chip): 20 AU probabilities, "
                  "7 emotions, valence, arousal (+ gaze, pose, mesh, blendshapes, not read)",
        ),
    ]
}


class ModelFetchError(OSError):
    """A model could not be fetched or failed its check (one line: what, where)."""


def is_url(s: str) -> bool:
    return s.startswith(("https://", "http://"))


#: an environment variable naming another folder of models (``<folder>/<name>/``) instead of the cache's
MODELS_ENV = "AFFECTFUSE_MODELS"


def models_dir() -> Path:
    """``$AFFECTFUSE_MODELS`` when set, else ``$AFFECTFUSE_CACHE/models``."""
    env = os.environ.get(MODELS_ENV, "").strip()
    return Path(env).expanduser() if env else cache_dir() / "models"


def model_dir(name: str) -> Path:
    """The cache folder of a catalogue model."""
    return models_dir() / name


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def check_sha256(path: str | Path, expected: str, what: str) -> None:
    """Raise :class:`ModelFetchError` unless ``path``'s SHA-256 is ``expected``."""
    got = sha256_file(path)
    if got != expected.lower():
        raise ModelFetchError(f"{what}: {path} has sha256 {got}, expected {expected.lower()} (pinned); "
                              "delete it and fetch it again")


def read_manifest(name: str) -> dict:
    """The ``MANIFEST.json`` of a fetched model ({} when there is none)."""
    p = model_dir(name) / "MANIFEST.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def is_fetched(name: str) -> bool:
    """Whether every file of a catalogue model is in its cache folder (and a hub model has its weights)."""
    m = CATALOGUE[name]
    d = model_dir(name)
    if not all((d / f).is_file() for f in m.files):
        return False
    return m.kind != "hub" or any((d / f).is_file() for f in m.weights_choice)


def missing_model_error(name: str, where: Path | str | None = None) -> FileNotFoundError:
    """The one error for a catalogue model that is not on this machine: what, where from, how to get it."""
    m = CATALOGUE[name]
    src = m.urls[0][0] if m.kind == "url" else f"https://huggingface.co/{m.source}"
    return FileNotFoundError(
        f"model {name!r} is not in {where or model_dir(name)}; fetch it with `affectfuse fetch-models {name}` "
        f"(from {src}; licence {m.licence.split(' (')[0]}), or pass a local path")


_announced: set[str] = set()


def announce_licence(what: str, licence: str) -> None:
    """Log a model's licence once per process (WARNING on the ``affectfuse.models`` logger: printed by default)."""
    if what in _announced:
        return
    _announced.add(what)
    log.warning("loading %s — licence: %s", what, licence)


# -- downloading ----------------------------------------------------------------------------------
def download_url(url: str, dest: Path, *, sha256: str | None = None, timeout: float = 60.0) -> str:
    """Download ``url`` to ``dest`` atomically; returns the SHA-256 of what came.

    Raises:
        ModelFetchError: the URL cannot be reached (the message names it), the answer is a git-LFS pointer
            instead of the file, or the content does not match ``sha256``.
    """
    import urllib.error
    import urllib.request

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.part")
    h = hashlib.sha256()
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "affectfuse-fetch-models"})
        with urllib.request.urlopen(req, timeout=timeout) as r, open(tmp, "wb") as out:
            first = True
            for block in iter(lambda: r.read(1 << 20), b""):
                if first and block.startswith(_LFS_POINTER):
                    raise ModelFetchError(f"{url} answered with a git-LFS pointer, not the file")
                first = False
                h.update(block)
                out.write(block)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        tmp.unlink(missing_ok=True)
        reason = getattr(e, "reason", None) or e
        raise ModelFetchError(f"cannot reach {url} ({reason})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    got = h.hexdigest()
    if sha256 is not None and got != sha256.lower():
        tmp.unlink(missing_ok=True)
        raise ModelFetchError(f"{url}: sha256 {got} does not match the pinned {sha256.lower()}")
    os.replace(tmp, dest)
    return got


def _fetch_url_model(m: PublishedModel, d: Path, log_fn: Callable[[str], None]) -> dict[str, dict]:
    files = {}
    for f, urls, pin in zip(m.files, m.urls, m.sha256):
        errors = []
        for url in urls:
            try:
                got = download_url(url, d / f, sha256=pin)
            except ModelFetchError as e:
                errors.append(str(e))
                continue
            files[f] = {"sha256": got, "size": (d / f).stat().st_size, "url": url, "pinned": pin,
                        "verified": pin is not None, "pin_source": m.pin_source_of(f)}
            break
        else:
            raise ModelFetchError("; ".join(errors))
    return files


def _fetch_hub_model(m: PublishedModel, d: Path, log_fn: Callable[[str], None]) -> dict[str, dict]:
    from huggingface_hub import HfApi, hf_hub_download  # only for fetching

    api = HfApi()
    try:
        listed = set(api.list_repo_files(m.source, revision=m.revision))
    except Exception as e:  # noqa: BLE001 - offline, unknown repo, no network: one line naming the hub id
        raise ModelFetchError(f"cannot reach the Hugging Face hub for {m.source} ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else 'no answer'})") from None
    weights = next((w for w in m.weights_choice if w in listed), None)
    if weights is None:
        raise ModelFetchError(f"{m.source} holds none of {', '.join(m.weights_choice)}")
    wanted = [*m.files, weights]
    absent = [f for f in wanted if f not in listed]
    if absent:
        raise ModelFetchError(f"{m.source} lacks {', '.join(absent)}")
    recorded: dict[str, str] = {}
    try:
        for info in api.get_paths_info(m.source, wanted, revision=m.revision):
            lfs = getattr(info, "lfs", None)
            sha = getattr(lfs, "sha256", None) if lfs is not None else None
            if sha:
                recorded[info.path] = sha
    except Exception as e:  # noqa: BLE001 - the check is extra; say so and go on
        log_fn(f"  (the hub's file records could not be read: {type(e).__name__}; the transfer is not checked)")
    files = {}
    for f in wanted:
        try:
            p = Path(hf_hub_download(m.source, f, revision=m.revision, local_dir=str(d)))
        except Exception as e:  # noqa: BLE001
            raise ModelFetchError(f"cannot fetch {f} of {m.source} from the Hugging Face hub "
                                  f"({type(e).__name__})") from None
        got = sha256_file(p)
        pin = m.pinned(f)
        if pin is not None and got != pin:
            raise ModelFetchError(f"{m.source}/{f}: sha256 {got} does not match the pinned {pin}")
        if f in recorded and got != recorded[f]:
            raise ModelFetchError(f"{m.source}/{f}: sha256 {got} differs from the hub's record {recorded[f]}")
        files[f] = {"sha256": got, "size": p.stat().st_size, "pinned": pin, "verified": pin is not None,
                    "hub_record_matches": (got == recorded[f]) if f in recorded else None}
    return files


def fetch_model(name: str, *, force: bool = False, allow_unverified: bool = False,
                log_fn: Callable[[str], None] = print) -> dict:
    """Download and check a catalogue model into :func:`model_dir`; returns its manifest.

    A file at a URL is fetched only with a pinned SHA-256, unless ``allow_unverified`` (then its hash is recorded
    and the manifest says ``"verified": false``). Hub files are checked against the hub's record of them.

    Raises:
        KeyError: not a catalogue name (the message lists them).
        ModelFetchError: unreachable (one line naming the URL / hub id), a hash mismatch, or an unpinned URL file
            without ``allow_unverified``.
    """
    if name not in CATALOGUE:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(CATALOGUE)}")
    m = CATALOGUE[name]
    d = model_dir(name)
    if is_fetched(name) and not force:
        return read_manifest(name)
    unpinned = [f for f, pin in zip(m.files, m.sha256) if pin is None] if m.kind == "url" else []
    if unpinned and not allow_unverified:
        raise ModelFetchError(f"{name}: no SHA-256 is pinned for {', '.join(unpinned)} (none is published that this "
                              f"catalogue could check), so it is not fetched by default; `affectfuse fetch-models "
                              f"--allow-unverified {name}` fetches it and records the hash it came with")
    log_fn(f"fetching {name} from {m.source} ...")
    d.mkdir(parents=True, exist_ok=True)
    try:
        files = (_fetch_url_model if m.kind == "url" else _fetch_hub_model)(m, d, log_fn)
    except ModelFetchError as e:
        raise ModelFetchError(f"{name}: {e}") from None
    manifest = {"name": name, "source": m.source, "revision": m.revision, "licence": m.licence,
                "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "files": files,
                "verified": all(v["verified"] for v in files.values())}
    tmp = d / "MANIFEST.json.part"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, d / "MANIFEST.json")
    return manifest


_FULL_CHECK = 256 << 20  # unpinned files up to this size are re-hashed at load; larger ones are checked by size


def verify_fetched(name: str, file: str, path: Path) -> None:
    """At load: a pinned file must match its pin; a fetched one what its manifest recorded (the SHA-256 for
    files up to 256 MiB, the size for larger ones: hashing a 1.2 GB checkpoint at every load costs seconds).

    Raises:
        ModelFetchError: the file differs (the message says how to fetch it again).
    """
    m = CATALOGUE[name]
    pin = m.pinned(file)
    if pin is not None:
        check_sha256(path, pin, f"model {name!r}")
        return
    rec = read_manifest(name).get("files", {}).get(file, {})
    size = path.stat().st_size
    changed = (rec.get("size") is not None and rec["size"] != size) or (
        rec.get("sha256") is not None and size <= _FULL_CHECK and sha256_file(path) != rec["sha256"])
    if changed:
        raise ModelFetchError(f"model {name!r}: {path} changed since it was fetched (sha256 differs from "
                              f"MANIFEST.json); fetch it again with `affectfuse fetch-models --force {name}`")

