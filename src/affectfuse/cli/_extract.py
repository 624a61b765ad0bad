"""``affectfuse extract``: raw media → feature store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from affectfuse.cli._common import progress_bars
from affectfuse._config import from_yaml, make_config
from affectfuse.extraction.config import DEFAULT_EXTRACTORS, ExtractConfig


def _parse_value(v: str) -> Any:
    try:
        return yaml.safe_load(v)
    except yaml.YAMLError:
        return v


def parse_sets(sets: list[str]) -> dict[str, dict[str, Any]]:
    """``["vit_cls.model=/path", "vit_cls.dtype=bfloat16"]`` → ``{"vit_cls": {"model": "/path", ...}}``."""
    out: dict[str, dict[str, Any]] = {}
    for s in sets:
        if "=" not in s or "." not in s.split("=", 1)[0]:
            raise ValueError(f"--set expects EXTRACTOR.PARAM=VALUE, got {s!r}")
        lhs, value = s.split("=", 1)
        name, param = lhs.split(".", 1)
        out.setdefault(name, {})[param] = _parse_value(value)
    return out


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help="extract features of videos into a feature store",
                       description="Decode, sample, crop faces and run feature extractors on media files. "
                                   "Re-running skips what is done; failures are recorded and reported.")
    p.add_argument("inputs", nargs="+", help="video/audio files, folders, or a CSV (path[,video_id]) / text list")
    p.add_argument("--out", required=True, help="feature store folder")
    p.add_argument("--extractors", default=",".join(DEFAULT_EXTRACTORS),
                   help=f"comma-separated extractor names (default: {','.join(DEFAULT_EXTRACTORS)}); "
                        "see `affectfuse extractors`")
    p.add_argument("--set", action="append", default=[], metavar="EXTRACTOR.PARAM=VALUE",
                   help="extractor parameter, e.g. vit_cls.model=/models/vit (repeatable)")
    p.add_argument("--config", help="YAML with ExtractConfig fields (command-line options win)")
    p.add_argument("--frames", type=int, help="rows per video at clip level (default 32, ViPER)")
    p.add_argument("--level", choices=["clip", "frame"], help="clip: N frames per video; frame: every frame / rate")
    p.add_argument("--step", type=int, dest="frame_step", help="frame level: every STEP-th frame")
    p.add_argument("--fps", type=float, dest="frame_fps", help="frame level: frames per second")
    p.add_argument("--face-detector", dest="face_detector", metavar="NAME",
                   help="mediapipe (BlazeFace full- then short-range; default), mediapipe_short or mtcnn")
    p.add_argument("--no-face", dest="no_face", choices=["mask", "full_frame", "previous"],
                   help="rows without a face: mask (invalid), full_frame or previous crop")
    p.add_argument("--margin", type=float, dest="face_margin", metavar="FRACTION",
                   help="face crop margin added on each side, as a fraction of the box side (default 0.25)")
    p.add_argument("--face-align", dest="face_align", choices=["auto", "none", "similarity"],
                   help="face crops aligned by their key points: auto (for backbones trained on aligned faces; "
                        "default), none, or similarity (for all)")
    p.add_argument("--workers", type=int, help="decoding / face processes (default: half the cores, 2 to 8, at most "
                                                "one per video, none for a single video; 0 = prepare in this process)")
    p.add_argument("--batch-rows", type=int, dest="batch_rows", metavar="N",
                   help="frames / audio fragments per backbone call, across videos (default 64; lower it if memory is short)")
    p.add_argument("--float16", action="store_true", default=None, help="store values as float16")
    p.add_argument("--overwrite", action="store_true", default=None, help="recompute existing entries")
    p.add_argument("--device", help="where the backbones run: auto (the GPU where one is present; default), cpu, "
                                    "cuda, cuda:N")
    p.add_argument("--backend", choices=["auto", "torch", "onnx"],
                   help="auto (ONNX Runtime for float32 on the CPU when installed, else PyTorch; default), torch "
                        "(eager) or onnx; the features are the same to 1e-4 and keep their keys")
    p.add_argument("--timeout", type=float,
                   help="seconds a video may go without progress before it is stopped and recorded as failed "
                        "(default 300; 0 = no limit; needs --workers >= 1)")
    p.add_argument("--fragments", choices=["paper", "code"],
                   help="clip-level audio: paper (ViPER §3.2: non-overlapping fragments centred on the frames; default) "
                        "or code (ViPER's code: 50%% overlapping windows of 2L/(N+1), ~0.74 s at 32 rows over 12 s)")
    p.add_argument("--span", choices=["decodable", "declared"],
                   help="truncated files: sample over what decodes (default) or over the declared duration, "
                        "rows past the data invalid")
    p.add_argument("--engine", choices=["local", "ray"],
                   help="where videos are decoded and cropped: local (--workers processes; default) or ray "
                        "(--workers Ray actors, default 1; needs affectfuse[distributed]); the features are the same")
    p.add_argument("--address", help="with --engine ray: the cluster (auto, ray://HOST:10001, HOST:6379); "
                                     "default: a local Ray instance")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    base = from_yaml(ExtractConfig, Path(args.config)) if args.config else ExtractConfig()
    over: dict[str, Any] = {k: getattr(args, k) for k in (
        "frames", "level", "frame_step", "frame_fps", "face_detector", "no_face", "face_margin", "face_align", "workers",
        "batch_rows", "float16", "overwrite", "timeout", "span", "fragments", "device", "backend", "engine", "address") if getattr(args, k, None) is not None}
    names = tuple(n.strip() for n in args.extractors.split(",") if n.strip())
    params = {**base.extractor_params}
    for n, kv in parse_sets(args.set).items():
        params[n] = {**params.get(n, {}), **kv}
    over["extractors"] = names
    over["extractor_params"] = params
    cfg = make_config(ExtractConfig, over, base=base)
    from affectfuse.extraction.run import extract  # torch, PyAV: when the command runs
    from affectfuse.io.inputs import list_inputs

    pairs = list_inputs(args.inputs)
    if not pairs:
        print(f"affectfuse extract: no media files found in {' '.join(args.inputs)}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"extracting {len(pairs)} media file(s) into {out} with {', '.join(names)}", file=sys.stderr)
    report = extract(pairs, out, cfg, progress=progress_bars(args))
    print(report.text())
    if report.interrupted:
        return 130
    return 1 if report.failed else 0
