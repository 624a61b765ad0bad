"""Folders of `train --seeds` as inputs of evaluate and predict: the ensemble, or one seed by number (GENERATED
videos, real log-mel features)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr

from affectfuse.cli import main
from affectfuse.data.labels import load_labels
from affectfuse.inference.predictor import predict
from affectfuse.inference.run import evaluate, load_run
from affectfuse.inference.run_folder import RunFolder
from affectfuse.training import TrainConfig
from affectfuse.training.multi import train_seeds

QUIET = dict(progress=False, log=lambda *_: None)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    from affectfuse.data.synthetic import make_video_dataset
    from affectfuse.extraction import ExtractConfig, extract
    from affectfuse.features.store import FeatureStore

    root = tmp_path_factory.mktemp("seeds")
    labels = make_video_dataset(root / "gen", n=20, seconds=1.0, fps=10)
    store = FeatureStore(root / "store", create=True)
    rep = extract([root / "gen" / "videos"], store, ExtractConfig(extractors=("logmel_stats",), frames=8, workers=0),
                  progress=False)
    assert rep.failed == []
    store.close()
    cfg = TrainConfig(task="reaction", model="early_fusion_small", modalities={"audio": "logmel_stats"}, epochs=2,
                      batch_size=4, lr=1e-2)
    train_seeds(labels, root / "store", cfg, root / "runs", seeds=[3, 5], **QUIET)
    return root, labels


def _mean_pearson(pred, labels, split: str) -> float:
    lab = load_labels(labels, "reaction").table
    lab = lab[lab["split"] == split].set_index("video_id")
    t = lab.loc[pred.video_ids, list(pred.names)].to_numpy(float)
    return float(np.mean([pearsonr(pred.values[:, k], t[:, k])[0] for k in range(t.shape[1])]))


def test_evaluate_a_seeds_folder_scores_every_seed_and_their_ensemble(seeds):
    root, labels = seeds
    folder = root / "runs"
    m = evaluate(folder, split="dev")
    a, b = (RunFolder(folder / f"seed_{s}").read_predictions("dev") for s in (3, 5))
    assert a.video_ids == b.video_ids and not np.allclose(a.values, b.values)  # the seeds really differ
    ens = RunFolder(folder).read_predictions("dev")
    np.testing.assert_allclose(ens.values, (a.values + b.values) / 2, atol=2e-6)
    assert m["mean_pearson"] == pytest.approx(_mean_pearson(ens, labels, "dev"), abs=1e-4)  # scipy reference (the CSV keeps 6 decimals)
    summary = json.loads((folder / "metrics.json").read_text())
    assert summary["ensemble"]["dev"] == m and set(summary["per_seed"]) == {"3", "5"}
    per = [summary["per_seed"][s]["dev"]["mean_pearson"] for s in ("3", "5")]
    assert summary["mean"]["dev"]["mean_pearson"] == pytest.approx(np.mean(per))
    assert per[0] == pytest.approx(_mean_pearson(a, labels, "dev"), abs=1e-4)


def test_one_seed_by_number_and_the_errors(seeds):
    root, _ = seeds
    folder = root / "runs"
    assert evaluate(folder, split="test", seed=5) == evaluate(folder / "seed_5", split="test")
    with pytest.raises(FileNotFoundError, match=r"no run of seed 4; the folder has seeds 3, 5"):
        evaluate(folder, seed=4)
    with pytest.raises(ValueError, match="a single run, not a seeds folder"):
        evaluate(folder / "seed_3", seed=3)
    with pytest.raises(FileNotFoundError, match=r"a folder of 2 seeds \(train --seeds\), not one run"):
        load_run(folder)


def test_predict_with_a_seeds_folder_is_the_mean_of_its_seeds(seeds, tmp_path):
    root, _ = seeds
    videos = [root / "gen" / "videos" / f"generated_000{i}.mp4" for i in (1, 2)]
    ens = predict(videos, root / "runs", out=tmp_path / "ens.csv", **QUIET).prediction
    one = [predict(videos, root / "runs", seed=s, **QUIET).prediction for s in (3, 5)]
    assert ens.video_ids == one[0].video_ids == ["generated_0001", "generated_0002"]
    np.testing.assert_allclose(ens.values, (one[0].values + one[1].values) / 2, atol=2e-6)
    direct = predict(videos, root / "runs" / "seed_5", **QUIET).prediction
    np.testing.assert_allclose(one[1].values, direct.values)
    written = pd.read_csv(tmp_path / "ens.csv")
    assert list(written["video_id"]) == ens.video_ids


def test_cli_evaluate_and_predict_take_a_seeds_folder(seeds, tmp_path, capsys):
    root, _ = seeds
    assert main(["evaluate", str(root / "runs"), "--split", "dev"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["dev"]) == {"per_seed", "mean", "std", "ensemble"} and set(out["dev"]["per_seed"]) == {"3", "5"}
    video = str(root / "gen" / "videos" / "generated_0001.mp4")
    assert main(["predict", video, "--run", str(root / "runs"), "--seed", "3", "--out", str(tmp_path / "p.csv"),
                 "--quiet"]) == 0
    assert len(pd.read_csv(tmp_path / "p.csv")) == 1
    capsys.readouterr()
    assert main(["predict", video, "--run", str(root / "runs"), "--seed", "9", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no run of seed 9; the folder has seeds 3, 5" in err[0] and "Traceback" not in err[0]
    assert main(["predict", video, "--seed", "3"]) == 2
    assert "--seed chooses one run of a --run folder" in capsys.readouterr().err
