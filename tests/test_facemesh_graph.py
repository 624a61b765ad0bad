"""FaceMesh without mediapipe (affectfuse.io.facemesh_graph): the 478 refined landmarks against MediaPipe's own
legacy solution, the torch executor against LiteRT, and the pieces by hand."""

from __future__ import annotations

import hashlib
import math

import cv2
import numpy as np
import pytest

from _media import video_frames  # tests/_media.py

from affectfuse.io import facemesh_graph as fg
from affectfuse.io.blazeface import BlazeFace

PHOTOS = [("pyfeat-media", f) for f in ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg",
                                         "single_face.jpg", "multi_face.jpg", "free-mountain-vector-01.jpg")] + [
    ("face-api", "sample1.jpg")]
MARGIN = 0.25  # FaceMeshConfig.margin: the extractor pads each crop by this share of its side, edge pixels
MAX_PX, MEDIAN_PX = 0.1, 0.01  # measured on this set: max 0.035 px, median <= 0.003 px (see the printed table)


def _rgb(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)




def _padded(crop: np.ndarray) -> tuple[np.ndarray, int]:
    """A crop padded as FaceMeshGeometry.landmarks pads it."""
    m = int(round(MARGIN * max(crop.shape[:2])))
    return np.ascontiguousarray(np.pad(crop, ((m, m), (m, m), (0, 0)), mode="edge")), m


@pytest.fixture(scope="module")
def mesh() -> fg.FaceMeshGraph:
    return fg.FaceMeshGraph()


@pytest.fixture(scope="module")
def solution():
    try:  # a broken install fails with more than ImportError (protobuf / numpy mismatches)
        import mediapipe as mp
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"the parity tests need the mediapipe package (the reference), which cannot be imported: "
                    f"{type(e).__name__}: {e}")
    from affectfuse._quiet import native_stderr_quiet

    with native_stderr_quiet():
        s = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                                            min_detection_confidence=0.5)
    yield s
    s.close()


def _reference(solution, img: np.ndarray) -> np.ndarray | None:
    res = solution.process(img).multi_face_landmarks
    if not res:
        return None
    return np.array([(q.x, q.y, q.z) for q in res[0].landmark])


def _images(kind: str, real_asset, astronaut) -> list[tuple[str, np.ndarray, int]]:
    """(name, image, margin) of one parity set; margin > 0 for the padded crops."""
    if kind == "photos":
        grey = np.full((240, 320, 3), 128, np.uint8)
        return [(f, _rgb(real_asset(g, f)), 0) for g, f in PHOTOS] + [("astronaut", astronaut, 0), ("grey", grey, 0)]
    if kind == "video":
        frames = video_frames(real_asset("pyfeat-media", "WolfgangLanger_Pexels.mp4"), 10, 8)
        frames += video_frames(real_asset("pyfeat-media", "single_face.mp4"), 15, 4)
        return [(f"frame{i}", f, 0) for i, f in enumerate(frames)]
    detector, out = BlazeFace("short"), []
    sources = [("multi_face", _rgb(real_asset("pyfeat-media", "multi_face.jpg"))),
               ("sample1", _rgb(real_asset("face-api", "sample1.jpg"))),
               ("0-f1-su-ph", _rgb(real_asset("pyfeat-media", "0-f1-su-ph.jpg"))), ("astronaut", astronaut)]
    for name, src in sources:
        for j, box in enumerate(detector(src)[0]):
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            crop = src[max(y1, 0):y2, max(x1, 0):x2]
            for size in (None, 256):  # as cut, and at the extractor's 256 px contract
                c = crop if size is None else cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
                padded, m = _padded(c)
                out.append((f"{name}_face{j}_{size or 'raw'}", padded, m))
    return out


@pytest.mark.parametrize("kind", ["photos", "video", "crops"])
def test_same_landmarks_as_mediapipes_solution(kind, mesh, solution, real_asset, astronaut):
    images = _images(kind, real_asset, astronaut)
    worst, medians, found = [], [], 0
    lines = [f"{kind}: landmark difference to mediapipe 0.10.21 (pixels of the image)"]
    for name, img, m in images:
        ref, ours = _reference(solution, img), mesh(img)
        assert (ref is None) == (ours is None), f"{name}: face by mediapipe {ref is not None}, ours {ours is not None}"
        if ref is None:
            lines.append(f"  {name:28s} no face (both)")
            continue
        h, w = img.shape[:2]
        assert ours.shape == (478, 3) and ours.dtype == np.float64
        scale = np.array([w, h, w], np.float64)
        d = np.abs(ours * scale - m * np.array([1, 1, 0]) - (ref * scale - m * np.array([1, 1, 0])))
        worst.append(d[:, :2].max())
        medians.append(np.median(d[:, :2]))
        found += 1
        lines.append(f"  {name:28s} max {d[:, :2].max():.4f}  median {np.median(d[:, :2]):.5f}  "
                     f"z max {d[:, 2].max():.4f}")
    lines.append(f"  all: max {max(worst):.4f} px, median of medians {np.median(medians):.5f} px, {found} faces")
    print("\n".join(lines))
    assert found >= {"photos": 6, "video": 10, "crops": 8}[kind], "\n".join(lines)
    assert max(worst) < MAX_PX and max(medians) < MEDIAN_PX, "\n".join(lines)


def test_the_executor_runs_the_plain_mesh_graph_as_litert_does(astronaut):
    """face_landmark.tflite has no custom ops, so LiteRT runs it: every output of ours agrees (builtin ops alone)."""
    try:
        path = fg.graph_file("face_landmark.tflite")
    except FileNotFoundError:
        pytest.skip("face_landmark.tflite comes only with an installed mediapipe package")
    from ai_edge_litert.interpreter import Interpreter

    from affectfuse._quiet import native_stderr_quiet

    with native_stderr_quiet():
        lite = Interpreter(model_path=str(path), num_threads=1)
        lite.allocate_tensors()
    traced, eager = fg.TFLiteTorchGraph(path), fg.TFLiteTorchGraph(path, trace=False)
    face = cv2.resize(astronaut[20:300, 100:380], (192, 192)).astype(np.float32)[None] / 255
    noise = np.random.default_rng(0).random((1, 192, 192, 3), dtype=np.float32)
    for x in (face, noise):
        lite.set_tensor(lite.get_input_details()[0]["index"], x)
        lite.invoke()
        a, b = traced(x), eager(x)
        assert set(a) == {d["name"] for d in lite.get_output_details()}
        for d in lite.get_output_details():
            ref = lite.get_tensor(d["index"])
            assert a[d["name"]].shape == tuple(ref.shape)
            np.testing.assert_allclose(a[d["name"]], ref, rtol=1e-5, atol=1e-4, err_msg=d["name"])
            np.testing.assert_array_equal(a[d["name"]], b[d["name"]])  # tracing changes nothing


def test_traced_and_eager_attention_graph_agree(mesh, astronaut):
    roi = mesh.roi(astronaut)
    x = fg.warp_roi(astronaut, roi)
    eager = fg.TFLiteTorchGraph(mesh.path, trace=False)(x)
    traced = mesh.net(x)
    assert list(traced) == ["output_mesh_identity", "output_lips", "output_left_eye", "output_right_eye",
                            "output_left_iris", "output_right_iris", "conv_faceflag"]
    for k in traced:
        np.testing.assert_array_equal(traced[k], eager[k], err_msg=k)
    assert traced["conv_faceflag"].item() > 2  # a clear face


def test_no_face_gives_none(mesh, real_asset):
    mountain = _rgb(real_asset("pyfeat-media", "free-mountain-vector-01.jpg"))
    assert mesh(mountain) is None
    assert mesh(np.full((200, 300, 3), 128, np.uint8)) is None
    assert mesh(np.zeros((1, 1, 3), np.uint8)) is None


def test_presence_threshold_gates_the_mesh(mesh, astronaut):
    assert mesh(astronaut) is not None
    strict = fg.FaceMeshGraph(min_presence=1.0, path=mesh.path)  # sigmoid never exceeds 1
    assert strict(astronaut) is None
    picky = fg.FaceMeshGraph(min_detection_confidence=0.9999, path=mesh.path)
    assert picky(astronaut) is None  # the detector's score stays below that


@pytest.mark.parametrize("bad", [np.zeros((64, 64, 3), np.float32), np.zeros((64, 64), np.uint8),
                                 np.zeros((64, 64, 4), np.uint8), np.zeros((0, 64, 3), np.uint8)])
def test_bad_input_says_what_was_expected_and_what_came(mesh, bad):
    with pytest.raises(ValueError, match=r"uint8 RGB image \(H, W, 3\), got " + str(bad.dtype)) as e:
        mesh(bad)
    assert str(bad.shape) in str(e.value)


def test_bad_options_and_executor_inputs_are_refused(mesh):
    with pytest.raises(ValueError, match="min_detection_confidence must be in"):
        fg.FaceMeshGraph(min_detection_confidence=1.5)
    with pytest.raises(ValueError, match=r"input input_1 must be \(1, 192, 192, 3\), got \(1, 128, 128, 3\)"):
        mesh.net(np.zeros((1, 128, 128, 3), np.float32))


def test_roi_of_a_tilted_detection_by_hand():
    """200 x 100 image, eyes at (80, 50) and (120, 60) px: the rect turns by atan(10 / 40) clockwise; the box is
    40 x 60 px, so the square side is 60 px, 1.5 times: 90 px = 0.45 of the width and 0.9 of the height."""
    box = np.array([0.3, 0.2, 0.5, 0.8])
    kps = np.array([[0.4, 0.5], [0.6, 0.6], [0.5, 0.6], [0.5, 0.7], [0.3, 0.5], [0.7, 0.5]])
    roi = fg.detection_roi(box, kps, 200, 100)
    np.testing.assert_allclose(roi, [0.4, 0.5, 0.45, 0.9, math.atan2(10, 40)])
    level = fg.detection_roi(box, np.array([[0.4, 0.5], [0.6, 0.5]]), 200, 100)
    assert level[4] == 0.0
    upside_down = fg.detection_roi(box, np.array([[0.6, 0.5], [0.4, 0.5]]), 200, 100)
    assert abs(abs(upside_down[4]) - math.pi) < 1e-12 and -math.pi <= upside_down[4] < math.pi
    assert fg.normalize_radians(3 * math.pi / 2) == pytest.approx(-math.pi / 2)


def test_warp_and_projection_are_inverse_of_each_other():
    """A dot in the image, warped through a rotated ROI, found in the 192 px crop and projected back, lands where
    it was (the crop's top-left corner is boxPoints' second point, as MediaPipe's OpenCV converter has it)."""
    img = np.zeros((300, 400, 3), np.uint8)
    dot = (250.0, 110.0)  # x, y pixels
    cv2.circle(img, (int(dot[0]), int(dot[1])), 3, (255, 255, 255), -1)
    # a 200 px square turned 35 degrees (FaceMesh's ROIs are square in pixels; MediaPipe's projection rotates in
    # normalised units, the exact inverse of the warp only for such a rect)
    roi = np.array([0.55, 0.45, 0.5, 200 / 300, math.radians(35)])
    crop = fg.warp_roi(img, roi)[0, ..., 0]
    assert crop.shape == (192, 192) and crop.max() == 1.0
    ys, xs = np.nonzero(crop > 0.5)
    found = np.array([[(xs.mean() + 0.5) / 192, (ys.mean() + 0.5) / 192, 0.0]])
    back = fg.project_landmarks(found, roi)[0] * [400, 300, 400]
    np.testing.assert_allclose(back[:2], dot, atol=1.0)


def test_refinement_moves_the_heads_points_and_averages_the_iris_depth():
    rng = np.random.default_rng(0)
    mesh_out = rng.random(1404, dtype=np.float32) * 192
    heads = {k: rng.random(n, dtype=np.float32) * 192 for k, n in (
        ("output_lips", 160), ("output_left_eye", 142), ("output_right_eye", 142), ("output_left_iris", 10),
        ("output_right_iris", 10))}
    lm = fg.refine_landmarks({"output_mesh_identity": mesh_out.reshape(1, 1, 1, 1404), **heads})
    raw = mesh_out.reshape(468, 3) / 192
    assert lm.shape == (478, 3)
    np.testing.assert_allclose(lm[61, :2], heads["output_lips"][:2] / 192)  # first lip point is the left corner
    np.testing.assert_allclose(lm[61, 2], raw[61, 2])  # z stays the mesh's
    np.testing.assert_allclose(lm[263, :2], heads["output_right_eye"][:2] / 192)
    np.testing.assert_allclose(lm[10], raw[10])  # forehead: not refined
    np.testing.assert_allclose(lm[473, :2], heads["output_right_iris"][:2] / 192)
    np.testing.assert_allclose(lm[468:473, 2], raw[list(fg.LEFT_EYE[:16]), 2].mean(), rtol=1e-6)
    np.testing.assert_allclose(lm[473:478, 2], raw[list(fg.RIGHT_EYE[:16]), 2].mean(), rtol=1e-6)
    assert len(set(fg.LIPS) | set(fg.LEFT_EYE) | set(fg.RIGHT_EYE)) == 80 + 71 + 71  # no point refined twice


def test_custom_ops_by_hand():
    import torch

    # TransformTensorBilinear: a crop that is the map itself, one pixel = one pixel, gives the map back; shifted by
    # half a pixel it averages neighbours; outside the map it is zero.
    feat = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    eye = torch.eye(4)[None]
    np.testing.assert_array_equal(fg.transform_tensor_bilinear(feat, eye, output_height=4, output_width=4), feat)
    half = eye.clone()
    half[0, 0, 3] = 0.5
    out = fg.transform_tensor_bilinear(feat, half, output_height=4, output_width=3)
    np.testing.assert_allclose(out[0, 0, 0], [0.5, 1.5, 2.5])
    far = eye.clone()
    far[0, 0, 3] = 10.0
    assert float(fg.transform_tensor_bilinear(feat, far, output_height=2, output_width=2).abs().max()) == 0.0
    # Landmarks2TransformMatrix: an axis-aligned 8 x 4 box centred on (10, 20), 1.5x, onto a 16 x 16 crop: the
    # crop's centre maps to the box centre and one crop pixel to 1.5 * 8 / 16 of the frame in x.
    pts = torch.zeros(1, 4, 3)
    pts[0, :, :2] = torch.tensor([[6.0, 18.0], [14.0, 18.0], [14.0, 22.0], [6.0, 22.0]])
    m = fg.landmarks_to_transform_matrix(pts, left_rotation_idx=0, right_rotation_idx=1, subset_idxs=[0, 1, 2, 3],
                                         output_width=16, output_height=16, scale_x=1.5, scale_y=1.5)
    np.testing.assert_allclose(m[0].numpy(), [[0.75, 0, 0, 4.0], [0, 0.375, 0, 17.0], [0, 0, 1, 0], [0, 0, 0, 1]],
                               atol=1e-6)
    # turned by 90 degrees (the "left → right" points now run down): the crop's x axis runs down the frame
    rot = pts.clone()
    rot[0, :, :2] = torch.tensor([[10.0, 16.0], [10.0, 24.0], [8.0, 24.0], [8.0, 16.0]])
    m2 = fg.landmarks_to_transform_matrix(rot, left_rotation_idx=0, right_rotation_idx=1, subset_idxs=[0, 1, 2, 3],
                                          output_width=16, output_height=16, scale_x=1.5, scale_y=1.5)
    centre = m2[0] @ torch.tensor([8.0, 8.0, 0.0, 1.0])
    np.testing.assert_allclose(centre[:2].numpy(), [9.0, 20.0], atol=1e-5)
    np.testing.assert_allclose(m2[0, :2, 0].numpy(), [0.0, 0.75], atol=1e-6)
    # TransformLandmarks: x, y through the matrix, z kept
    lm = torch.tensor([[[8.0, 8.0, 3.0]]])
    np.testing.assert_allclose(fg.transform_landmarks(lm, m)[0, 0].numpy(), [10.0, 20.0, 3.0], atol=1e-6)


def test_the_graph_file_and_identity(mesh, real_asset, monkeypatch):
    data = mesh.path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == fg.SHA256[fg.GRAPH_FILE]
    ident = mesh.identity()
    assert ident["graph"] == fg.GRAPH_FILE and ident["sha256"] == fg.SHA256[fg.GRAPH_FILE]
    assert ident["size"] == len(data) and ident["runtime"] == "torch (tflite graph)"
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n.startswith("mediapipe") else real(n, *a))
    asset = real_asset("mediapipe-facemesh", fg.GRAPH_FILE)
    assert fg.graph_file() == asset and asset.read_bytes() == data
    with pytest.raises(FileNotFoundError, match="only in an installed mediapipe"):
        fg.graph_file("face_landmark.tflite")
