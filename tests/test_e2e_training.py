"""End-to-end training on raw frames and waveforms (GENERATED videos), evaluation and prediction."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from affectfuse.data.raw import RawVideoDataset, collate_raw
from affectfuse.data.labels import load_labels
from affectfuse.data.synthetic import make_video_dataset
from affectfuse.training import TrainConfig, evaluate, train


def test_raw_dataset_decodes_frames_and_audio(tmp_path):
    labels = make_video_dataset(tmp_path / "g", n=4, seconds=1.0, fps=10)
    (tmp_path / "g" / "videos" / "broken.mp4").write_bytes(b"nope")
    lab = load_labels(labels, "reaction")
    ds = RawVideoDataset(lab, tmp_path / "g" / "videos", None, frames=4, image_size=64)
    assert len(ds) == 4
    s = ds[0]
    assert s.frames.shape == (4, 64, 64, 3) and s.frame_valid.all()
    assert abs(len(s.waveform) - 16000) < 400 and s.target.shape == (7,)
    b = collate_raw([ds[0], ds[1]])
    assert b.raw["pixels"].shape == (2, 4, 3, 64, 64) and b.masks["waveform"].shape == b.raw["waveform"].shape
    extra = lab.table.iloc[:1].copy()
    extra["video_id"] = "missing_file"
    lab.table = pd.concat([lab.table, extra])
    ds2 = RawVideoDataset(lab, tmp_path / "g" / "videos", None, frames=2, image_size=32)
    assert any("missing_file" in r for r in ds2.report) and len(ds2) == 4


def test_e2e_cross_trains_on_raw_video_and_predicts(tmp_path):
    labels = make_video_dataset(tmp_path / "g", n=10, seconds=1.0, fps=10)
    cfg = TrainConfig(task="reaction", model="e2e_cross_small", modalities={"pixels": "raw", "waveform": "raw"},
                      epochs=2, batch_size=4, lr=1e-3, raw_frames=4, raw_max_seconds=1.0)
    metrics = train(labels, None, cfg, tmp_path / "run", videos=tmp_path / "g" / "videos", progress=False,
                    log=lambda *_: None)
    assert np.isfinite(metrics["dev"]["mean_pearson"])
    feats = json.loads((tmp_path / "run" / "features.json").read_text())
    assert feats["pixels"]["identity"]["raw"] and feats["pixels"]["identity"]["frames"] == 4
    groups = json.loads((tmp_path / "run" / "model.yaml").read_text().split("backbone_lr_scale: ")[1].split("\n")[0])
    assert groups == 0.01
    assert evaluate(tmp_path / "run", split="test") == metrics["test"]
    from affectfuse.inference.predictor import predict_videos

    res, rep = predict_videos([tmp_path / "g" / "videos" / "generated_0003.mp4"], tmp_path / "run",
                              tmp_path / "p.csv", progress=False, log=lambda *_: None)
    assert res.values.shape == (1, 7) and rep.failed == []
