"""Ray engine against the local process engine on the same clips, side by side in one run (not a test).

Each engine runs ``af.extract`` in a fresh process (start-up, model loading and, for Ray, starting a local Ray
instance included) with the offline default extractors at clip level, 32 frames. It prints both wall times,
their ratio and the largest difference between the two stores' features (target: equal within 1e-4).

    .venv/bin/python benchmarks/ray_vs_local.py [--clips 8] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from _clips import OUT  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import affectfuse as af
cfg = af.ExtractConfig(frames=32, workers=int(sys.argv[3]), engine=sys.argv[2])
rep = af.extract([sys.argv[1]], sys.argv[4], cfg, progress=False)
json.dump({"wall": time.perf_counter() - t0, "done": len(rep.done), "failed": len(rep.failed), "keys": rep.keys},
          open(sys.argv[4] + ".json", "w"))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2, help="local worker processes = Ray actors")
    ap.add_argument("--seconds", type=float, default=12.0)
    args = ap.parse_args()

    import numpy as np
    from skimage import data

    from affectfuse.features.store import FeatureStore
    from affectfuse.io.synthetic import write_video

    folder = OUT / "ray_vs_local" / "clips"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(args.clips):
        p = folder / f"clip_{i:02d}.mp4"
        if not p.exists():
            write_video(p, duration=args.seconds, fps=30, size=(640, 480), face=data.astronaut()[30:250, 140:340],
                        face_size=240, seed=i, tone_hz=300 + 40 * i)
    work = OUT / "ray_vs_local" / "work"
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    res = {}
    for engine in ("local", "ray"):
        out = work / engine
        run = subprocess.run([sys.executable, "-c", _CHILD, str(folder), engine, str(args.workers), str(out)],
                             capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if run.returncode:
            print(run.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"{engine} failed")
        res[engine] = json.loads(Path(str(out) + ".json").read_text())
    a, b = FeatureStore(work / "local", create=False), FeatureStore(work / "ray", create=False)
    worst = 0.0
    for key in res["local"]["keys"].values():
        for vid in a.video_ids(key):
            fa, fb = a.get(vid, key), b.get(vid, key)
            assert (fa.valid == fb.valid).all(), f"valid masks differ: {vid} {key}"
            worst = max(worst, float(np.abs(fa.values - fb.values).max(initial=0.0)))
    loc, ray = res["local"]["wall"], res["ray"]["wall"]
    print(f"{args.clips} clips x {args.seconds:.0f} s, 640x480, 30 fps, clip level (32 frames), default extractors; "
          f"{os.cpu_count()} cores; {args.workers} local processes vs {args.workers} Ray actors, each run in a fresh "
          "process (start-up, model loading and the local Ray instance included)")
    print(f"  local engine : {loc:7.1f} s  ({res['local']['done']} entries, {res['local']['failed']} failed)")
    print(f"  Ray engine   : {ray:7.1f} s  ({res['ray']['done']} entries, {res['ray']['failed']} failed)   "
          f"ray / local {ray / loc:.2f}x")
    print(f"  largest feature difference: {worst:.2e} (target <= 1e-4)")


if __name__ == "__main__":
    main()
