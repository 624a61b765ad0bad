"""The learning-rate range test: exponential rates, the smoothed curve, the suggestions, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from affectfuse.cli import main
from affectfuse.data.synthetic import make_feature_dataset
from affectfuse.training import TrainConfig
from affectfuse.training.lr_find import lr_find, suggest

MODS = {"visual": "generated_visual", "audio": "generated_audio"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("lrfind")
    make_feature_dataset(d / "store", d / "labels.csv", n=60, rows=8, dims={"visual": 12, "audio": 8})
    return d


def test_suggest_reads_the_steepest_descent_and_a_tenth_of_the_minimum():
    lrs = np.logspace(-6, 0, 61)  # 10 points a decade
    x = np.log10(lrs)
    smoothed = 1.0 - 0.8 / (1 + np.exp(-(x + 3) * 4)) + 0.5 * np.maximum(x + 1.5, 0) ** 2  # falls around 1e-3
    sug, steep, mdiv = suggest(lrs, smoothed)
    i_min = int(np.argmin(smoothed))
    assert mdiv == pytest.approx(lrs[i_min] / 10)
    assert steep == pytest.approx(1e-3, rel=0.3)  # the logistic's steepest point
    assert sug == min(steep, mdiv)
    with pytest.raises(ValueError, match="too few"):
        suggest(lrs[:3], np.array([np.nan, np.inf, 1.0]))


def test_range_test_rates_rise_exponentially_and_the_curve_is_the_bias_corrected_average(data, tmp_path):
    cfg = TrainConfig(task="reaction", model="early_fusion_small", modalities=MODS, batch_size=8, seed=3)
    res = lr_find(data / "labels.csv", data / "store", cfg, start_lr=1e-6, end_lr=1e2, num_steps=60,
                  out=tmp_path / "lr", log=lambda m: None)
    n = len(res.lrs)
    assert 10 < n <= 60 and res.lrs[0] == pytest.approx(1e-6)
    np.testing.assert_allclose(res.lrs[1:] / res.lrs[:-1], (1e8) ** (1 / 59), rtol=1e-9)
    avg, ref = 0.0, []
    for i, v in enumerate(res.losses):  # an independent reading of the smoothing
        avg = 0.98 * avg + 0.02 * v
        ref.append(avg / (1 - 0.98 ** (i + 1)))
    np.testing.assert_allclose(res.smoothed, ref, rtol=1e-12)
    assert res.lrs[0] <= res.suggestion <= res.lrs[-1] and res.suggestion == min(res.steepest, res.min_div10)
    if res.stopped == "diverged":  # stopped at the first point past 4x the best, or not finite
        assert not np.isfinite(res.smoothed[-1]) or res.smoothed[-1] > 4 * res.smoothed[:-1].min()
        assert n < 60
    table = pd.read_csv(tmp_path / "lr" / "lr_find.csv")
    assert list(table.columns) == ["step", "lr", "loss", "smoothed_loss"] and len(table) == n
    assert (tmp_path / "lr" / "lr_find.png").stat().st_size > 1000
    again = lr_find(data / "labels.csv", data / "store", cfg, start_lr=1e-6, end_lr=1e2, num_steps=60,
                    log=lambda m: None)
    np.testing.assert_array_equal(again.losses, res.losses)  # seeded: the same curve


def test_bad_ranges_are_refused(data):
    cfg = TrainConfig(task="reaction", model="early_fusion_small", modalities=MODS)
    with pytest.raises(ValueError, match="start_lr < end_lr"):
        lr_find(data / "labels.csv", data / "store", cfg, start_lr=1.0, end_lr=1e-3)


def test_cli_prints_the_suggestion_and_writes_the_curve(data, tmp_path, capsys):
    argv = ["lr-find", "--task", "reaction", "--labels", str(data / "labels.csv"), "--features", str(data / "store"),
            "--model", "early_fusion_small", "--steps", "30", "--out", str(tmp_path / "lr")]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "early_fusion_small" and 2 <= out["steps"] <= 30 and out["suggestion"] > 0
    assert (tmp_path / "lr" / "lr_find.csv").exists() and not (tmp_path / "lr" / "model.safetensors").exists()
    assert main(argv + ["--seeds", "1,2"]) == 2
    assert "--seeds does not apply" in capsys.readouterr().err
