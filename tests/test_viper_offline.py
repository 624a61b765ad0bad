"""The offline ViPER feature set: one extractor name, four streams, and `viper` trains on it (GENERATED data)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from affectfuse.data.synthetic import make_video_dataset
from affectfuse.features.store import FeatureStore
from affectfuse.extraction import ExtractConfig, expand_extractors, extract


def test_expand_sets_and_overrides():
    names = [n for n, _, _ in expand_extractors(["viper-offline"])]
    assert names == ["faceapi_expression", "facemesh_geometry", "caption_offline", "resemblyzer_ge2e"]
    got = dict((n, p) for n, p, _ in expand_extractors(["viper-offline"], {"faceapi_expression": {"batch_size": 8}}))
    assert got["faceapi_expression"] == {"output": "both", "batch_size": 8}
    with pytest.raises(ValueError, match="named twice"):
        expand_extractors(["viper-offline", "resemblyzer_ge2e"])


def test_viper_offline_features_train_viper(tmp_path):
    labels = make_video_dataset(tmp_path / "gen", n=10, seconds=1.2, fps=10)
    store = FeatureStore(tmp_path / "store", create=True)
    rep = extract([tmp_path / "gen" / "videos"], store, ExtractConfig(extractors=("viper-offline",), frames=8, workers=0),
                  progress=False)
    assert rep.failed == []
    mods = {store.identity(k)["modality"]: k for k in rep.keys.values()}
    assert set(mods) == {"visual", "fau", "text", "audio"}
    dims = {m: store.identity(k)["dim"] for m, k in mods.items()}
    assert dims == {"visual": 263, "fau": 24, "text": 384, "audio": 256}
    fs = store.get("generated_0000", mods["visual"])
    assert fs.valid.all(), "the portrait's face is found in every frame"
    probs = fs.values[:, 256:]
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    assert probs.mean(0).argmax() == 1, "generated_0000 shows the happy portrait: face-api says happy"

    from affectfuse.cli import main

    rc = main(["train", "--task", "reaction", "--labels", str(labels), "--features", str(store.path),
               "--modalities", "visual,fau,text,audio", "--model", "viper_small", "--epochs", "2",
               "--out", str(tmp_path / "run"), "--quiet"])
    assert rc == 0
    feats = json.loads((tmp_path / "run" / "features.json").read_text())
    assert {m: f["key"] for m, f in feats.items()} == mods
    assert feats["text"]["identity"]["create_kwargs"] == {}
    assert feats["visual"]["identity"]["create_kwargs"] == {"output": "both"}

    # predict on a new video with the run: the recorded extractors are recreated with the same keys
    from affectfuse.inference.predictor import predict_videos

    res, report = predict_videos([tmp_path / "gen" / "videos" / "generated_0001.mp4"], tmp_path / "run",
                                 tmp_path / "pred.csv", progress=False, log=lambda *_: None)
    assert report.failed == [] and res.values.shape == (1, 7)
    assert (tmp_path / "pred.csv").read_text().splitlines()[0].startswith("video_id,Adoration")
    import pandas as pd

    cols = pd.read_csv(tmp_path / "pred.columns.csv")  # the values are raw outputs: said next to the table
    assert cols["column"].tolist() == res.names and (cols["output_range"] == "unbounded").all()
    assert (cols["trained_range"] == "[0.0, 1.0]").all() and cols["note"].str.contains("not clipped").all()
    # the same through the command line, on two videos
    rc = main(["predict", str(tmp_path / "gen" / "videos" / "generated_0002.mp4"),
               str(tmp_path / "gen" / "videos" / "generated_0003.mp4"), "--run", str(tmp_path / "run"),
               "--out", str(tmp_path / "cli.csv"), "--quiet"])
    assert rc == 0
    lines = (tmp_path / "cli.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[1].startswith("generated_0002,")
