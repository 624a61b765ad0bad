"""Offline-default prediction speed and memory: a 12 s and a 10 min clip, 30 fps 640x480 (not a test).

Each measurement runs ``affectfuse predict CLIP --fps 5`` (no ``--run``: MediaPipe faces + face-api
expressions) in a fresh process and reports wall time, sampled frames per second of wall time, seconds
of video per second and the child's peak RSS. Target: the 10 min clip's peak RSS within 1.2x of the
12 s clip's (frames are streamed in windows; nothing holds all frames).

The clips are shared with ``benchmarks/extract.py`` (``bench_out/extract_{12,600}s_640x480.mp4``, the
skimage astronaut's face moving over a noisy background, with audio) and generated when missing.

    .venv/bin/python benchmarks/predict.py [--fps 5] [--long 600]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _clips import OUT, ROOT, make_clip  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def run_child(video: Path, fps: str) -> tuple[float, float, int, int, int]:
    """Wall seconds, peak RSS (MiB), exit code, rows written and face rows of a fresh `affectfuse predict`."""
    with tempfile.TemporaryDirectory() as tmp:
        code = (
            "import resource, sys\n"
            "from affectfuse.cli import main\n"
            "rc = main(sys.argv[1:])\n"
            "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
            "sys.exit(rc)\n"
        )
        out = Path(tmp) / "pred.csv"
        cmd = [sys.executable, "-c", code, "predict", str(video), "--out", str(out), "--fps", fps, "--quiet"]
        t = time.time()
        res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wall = time.time() - t
        peak = next((int(line.split()[1]) for line in res.stderr.splitlines() if line.startswith("PEAK_RSS_KB")), 0)
        if res.returncode != 0:
            print(res.stdout[-2000:], res.stderr[-2000:], file=sys.stderr)
        rows = faces = 0
        if out.exists():
            with open(out, newline="") as fh:
                for r in csv.DictReader(fh):
                    rows += 1
                    faces += r["face"] == "True"
        return wall, peak / 1024, res.returncode, rows, faces


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fps", default="5", help="sampled frames per second")
    ap.add_argument("--long", type=float, default=600.0, help="seconds of the long clip")
    args = ap.parse_args()
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"affectfuse predict (offline default), fps {args.fps}, 1 process, {os.cpu_count()} cores, "
          f"OMP_NUM_THREADS={threads}")
    print(f"{'clip':>10s} {'wall s':>8s} {'frames':>7s} {'faces':>6s} {'frames/s':>9s} {'video s/s':>10s} "
          f"{'peak RSS MiB':>13s}")
    res = {}
    for secs in (12.0, args.long):
        clip = make_clip(secs)
        wall, peak, rc, rows, faces = run_child(clip, args.fps)
        res[secs] = (wall, peak, rows)
        flag = "" if rc == 0 else f"  (exit {rc})"
        print(f"{secs:>9.0f}s {wall:8.2f} {rows:7d} {faces:6d} {rows / wall:9.1f} {secs / wall:10.1f} "
              f"{peak:13.0f}{flag}")
    (w0, p0, n0), (w1, p1, n1) = res[12.0], res[args.long]
    if n1 > n0 and w1 > w0:
        print(f"steady rate (long minus short, start-up excluded): {(n1 - n0) / (w1 - w0):.1f} frames/s")
    ratio = p1 / max(p0, 1)
    print(f"peak RSS ratio long/short: {ratio:.2f} (target <= 1.2): {'OK' if ratio <= 1.2 else 'OVER'}")


if __name__ == "__main__":
    main()
