"""One decode → sample hop: extraction, the offline predictor and end-to-end training agree on the same file.

The time grid of a file without video, the frames taken and the scale of face boxes (source-frame pixels,
whatever size the frames were decoded at) come from :func:`affectfuse.io.sampling.sample` for all three.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from affectfuse.data.raw import RawVideoDataset
from affectfuse.extraction import ExtractConfig, extract
from affectfuse.features.store import FeatureStore
from affectfuse.inference.offline import predict_offline
from affectfuse.io.faces import letterbox
from affectfuse.io.sampling import clip_indices, sample_clip
from affectfuse.io.synthetic import read_frame_code, write_video
from affectfuse.io.video import probe

SRC = Path(__file__).resolve().parents[1] / "src" / "affectfuse"


def test_only_io_samples_and_decodes_frames():
    """No second sampler or streamer: frame indices are chosen and frames decoded only inside ``io/``."""
    pattern = re.compile(r"\b(clip_indices|frame_level_indices|iter_frame_windows|read_frames|centred_windows|"
                         r"audio_fragments)\(")
    offenders = [f"{p.relative_to(SRC)}:{i}" for p in SRC.rglob("*.py") if p.parent.name != "io"
                 for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []


@pytest.fixture(scope="module")
def face_video(tmp_path_factory, ):
    from skimage import data

    d = tmp_path_factory.mktemp("hop")
    path = d / "face.mp4"
    times = write_video(path, duration=2.0, fps=10, size=(640, 480), face=data.astronaut()[30:250, 140:340],
                        face_size=300)
    return path, times


def test_face_boxes_are_source_pixels_in_extract_and_predict(face_video, tmp_path):
    path, _ = face_video
    cfg = dict(extractors=("faceapi_expression",), extractor_params={"faceapi_expression": {"output": "probs"}},
               level="frame", frame_fps=5.0, face_margin=0.1, workers=0)
    small = extract([path], tmp_path / "small", ExtractConfig(**cfg, max_side=320), progress=False)
    full = extract([path], tmp_path / "full", ExtractConfig(**cfg), progress=False)
    key_s, key_f = small.keys["faceapi_expression"], full.keys["faceapi_expression"]
    fs_small = FeatureStore(tmp_path / "small", create=True).get("face", key_s)
    fs_full = FeatureStore(tmp_path / "full", create=True).get("face", key_f)
    assert fs_small.valid.all() and fs_full.valid.all()
    # decoded at half size, boxes still in the 640x480 frame: within a few source pixels of full-size decoding
    np.testing.assert_allclose(fs_small.boxes, fs_full.boxes, atol=12)
    assert fs_full.boxes[:, 2].max() > 320, "boxes are not in the downscaled 320-px frame"
    frames, _, fail = predict_offline([path], fps=5.0, max_side=320, progress=False)
    assert fail == []
    boxes = frames[["box_x1", "box_y1", "box_x2", "box_y2"]].to_numpy()
    np.testing.assert_array_equal(frames["frame"].to_numpy(), fs_small.indices)
    np.testing.assert_allclose(boxes, fs_small.boxes, atol=1e-4)  # predict IS frame-level extraction
    np.testing.assert_allclose(frames["face_score"].to_numpy(), fs_small.scores, atol=1e-6)


def test_audio_only_grid_is_the_same_everywhere(tmp_path):
    path = tmp_path / "voice.m4a"
    write_video(path, duration=1.5, video=False)
    info = probe(path)
    rep = extract([path], tmp_path / "s", ExtractConfig(extractors=("logmel_stats",), frames=8, workers=0),
                  progress=False)
    fs = FeatureStore(tmp_path / "s", create=True).get("voice", rep.keys["logmel_stats"])
    clip = sample_clip(path, frames=8, sample_rates=(16000,))
    np.testing.assert_array_equal(fs.times, clip.times)
    np.testing.assert_allclose(clip.times, np.linspace(0.0, info.duration, 8))
    assert fs.valid.all() and (fs.indices == -1).all()


def test_end_to_end_frames_are_the_extraction_frames(tmp_path):
    path = tmp_path / "v.mp4"
    write_video(path, duration=2.0, fps=15, size=(320, 240))
    info = probe(path)
    ds = RawVideoDataset(None, {"v": path}, None, frames=6, image_size=64, task="group", video_ids=["v"])
    s = ds[0]
    clip = sample_clip(path, frames=6, max_side=640)
    idx, _ = clip_indices(info.n_frames, 6)
    assert [read_frame_code(p) for p in clip.frames.pixels] == idx.tolist()
    np.testing.assert_array_equal(s.frames, np.stack([letterbox(p, 64) for p in clip.frames.pixels]))
    rep = extract([path], tmp_path / "s", ExtractConfig(extractors=("logmel_stats",), frames=6, workers=0),
                  progress=False)
    np.testing.assert_array_equal(FeatureStore(tmp_path / "s", create=True).get("v", rep.keys["logmel_stats"]).indices, idx)
