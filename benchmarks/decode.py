"""Decode benchmark: probe, 32-frame sampling per access strategy, audio, and peak memory (not a test).

Generates (once, cached under ``bench_out/``) a 12-s and a 10-min clip, 30 fps, 640x480, H.264 with
x264's default GOP (250) plus AAC audio, then prints for each clip:

* probe time;
* ``read_frames`` of the 32 ViPER frames for every access strategy (``skip`` is the default);
* ``read_audio`` at 16 kHz;
* peak RSS of a fresh subprocess doing probe + read_frames(32) + read_audio, measured with
  ``resource.getrusage`` in the child, next to the same child's RSS right after its imports.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/decode.py [--repeats 3] [--out bench_out]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys
import numpy as np
from affectfuse.io import frames as F, video as V
from affectfuse.io.sampling import clip_indices
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
path = sys.argv[1]
info = V.probe(path)
idx, _ = clip_indices(info.n_frames, 32)
fb = F.read_frames(path, idx, info=info)
after_frames = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
audio, start = V.read_audio(path, info=info)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
def hwm_kb():  # this process's own high-water mark (getrusage's ru_maxrss also counts the parent's, see below)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
print(json.dumps({"hwm_kb": hwm_kb(), "base_kb": base, "after_frames_kb": after_frames, "peak_kb": peak,
                  "valid": int(fb.valid.sum()), "audio_mb": audio.nbytes / 2**20}))
"""


def make_clips(out: Path) -> dict[str, Path]:
    from affectfuse.io.synthetic import write_video

    out.mkdir(parents=True, exist_ok=True)
    clips = {}
    for name, dur in (("12s", 12.0), ("10min", 600.0)):
        p = out / f"decode_{name}_640x480_30fps.mp4"
        if not p.exists():
            t = time.perf_counter()
            tmp = p.with_suffix(".part.mp4")
            write_video(tmp, duration=dur, fps=30.0, size=(640, 480), audio=True, sample_rate=16000)
            tmp.rename(p)
            print(f"generated {p.name} in {time.perf_counter() - t:.1f} s ({p.stat().st_size / 2**20:.1f} MiB)")
        clips[name] = p
    return clips


def timed(fn, repeats: int) -> tuple[float, object]:
    ts, res = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        res = fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1000, res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench_out")
    ap.add_argument("--strategies", default=None, help="comma-separated subset of the access strategies")
    args = ap.parse_args(argv)

    from affectfuse.io import frames as F, video as V
    from affectfuse.io.sampling import clip_indices
    from affectfuse.io.synthetic import read_frame_code

    strategies = args.strategies.split(",") if args.strategies else list(F.STRATEGIES)
    clips = make_clips(args.out)
    results = {}
    for name, path in clips.items():
        reps = args.repeats if name == "12s" else 1
        V.probe(path)  # warm the page cache
        probe_ms, info = timed(lambda: V.probe(path), args.repeats)
        idx, _ = clip_indices(info.n_frames, 32)
        row = {"frames": info.n_frames, "probe_ms": round(probe_ms, 1), "read_frames_ms": {}}
        for st in strategies:
            ms, fb = timed(lambda: F._read_frames(path, idx, info=info, strategy=st), reps)
            ok = [read_frame_code(p) for p in fb.pixels] == idx.tolist() and bool(fb.valid.all())
            row["read_frames_ms"][st] = round(ms, 1) if ok else f"WRONG FRAMES ({ms:.0f} ms)"
        audio_ms, (audio, _) = timed(lambda: V.read_audio(path, info=info), args.repeats)
        row["read_audio_ms"] = round(audio_ms, 1)
        # Linux carries ru_maxrss across fork+exec, so a child forked straight from this (large) process would
        # report our peak. Launch it through a shell that forks again (``; exit``) so its count starts fresh.
        cmd = ["sh", "-c", '"$@"; exit $?', "sh", sys.executable, "-c", CHILD, str(path)]
        child = subprocess.run(cmd, capture_output=True, text=True, check=True)
        mem = json.loads(child.stdout.strip().splitlines()[-1])
        row["child_rss_after_imports_mb"] = round(mem["base_kb"] / 1024, 1)
        row["child_rss_after_frames_mb"] = round(mem["after_frames_kb"] / 1024, 1)
        row["child_peak_rss_mb"] = round(mem["peak_kb"] / 1024, 1)
        row["child_vmhwm_mb"] = round(mem["hwm_kb"] / 1024, 1)
        row["audio_array_mb"] = round(mem["audio_mb"], 1)
        results[name] = row
        print(name, json.dumps(row, indent=1))
    a, b = results["12s"]["child_peak_rss_mb"], results["10min"]["child_peak_rss_mb"]
    print(f"peak RSS 10 min / 12 s = {b / a:.3f} (limit 1.2)")
    return 0 if b <= 1.2 * a else 1


if __name__ == "__main__":
    sys.exit(main())
