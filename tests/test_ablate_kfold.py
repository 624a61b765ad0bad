"""Modality ablation (ViPER Table 3 layout) and k-fold cross validation — on a GENERATED feature dataset."""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr

from affectfuse.data.labels import load_labels
from affectfuse.data.synthetic import make_feature_dataset
from affectfuse.tasks.spec import REACTION_EMOTIONS
from affectfuse.training import TrainConfig
from affectfuse.training.ablate import ablate, combinations
from affectfuse.training.kfold import assign_folds, kfold

DIMS = {"visual": 12, "audio": 8, "text": 6}
MODS = {m: f"generated_{m}" for m in DIMS}
QUIET = dict(progress=False, log=lambda *_: None)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("gen")
    make_feature_dataset(d / "store", d / "labels.csv", n=60, rows=8, dims=DIMS)
    return d


def _cfg(**kw):
    base = dict(task="reaction", model="early_fusion_small", modalities=MODS, epochs=1, lr=3e-3, batch_size=16)
    base.update(kw)
    return TrainConfig(**base)


def test_combinations_are_every_nonempty_subset():
    c = combinations(["a", "b", "c"])
    assert len(c) == 7 and len(set(c)) == 7
    assert c[:3] == [("a",), ("b",), ("c",)] and c[-1] == ("a", "b", "c")


def test_ablation_table_matches_runs_and_resumes(data, tmp_path):
    out = tmp_path / "abl"
    table = ablate(data / "labels.csv", data / "store", _cfg(), out, **QUIET)
    names = ["visual", "audio", "text"]
    assert len(table) == 2 ** 3 - 1
    assert list(table["modalities"]) == ["visual", "audio", "text", "visual+audio", "visual+text", "audio+text",
                                         "visual+audio+text"]
    for _, row in table.iterrows():
        used = row["modalities"].split("+")
        assert [row[m] == "✓" for m in names] == [m in used for m in names]
        assert all(row[m] == "-" for m in names if m not in used)
        metrics = json.loads((out / row["modalities"] / "metrics.json").read_text())
        assert row["dev_mean_pearson"] == metrics["dev"]["mean_pearson"]
        assert row["test_mean_pearson"] == metrics["test"]["mean_pearson"]
        feats = json.loads((out / row["modalities"] / "features.json").read_text())
        assert sorted(feats) == sorted(used)  # the run really used exactly these modalities
        for m in used:
            assert feats[m]["identity"]["name"] == MODS[m]
    csv = pd.read_csv(out / "ablation.csv")
    assert len(csv) == 7 and list(csv[names].iloc[0]) == ["✓", "-", "-"]
    np.testing.assert_allclose(csv["dev_mean_pearson"], table["dev_mean_pearson"])
    md = (out / "ablation.md").read_text().splitlines()
    assert md[0] == "| Modalities | visual | audio | text | Dev mean_pearson | Test mean_pearson |"
    best = int(np.argmax(table["dev_mean_pearson"]))
    bold = [ln for ln in md if ln.startswith("| **")]
    assert len(bold) == 1 and bold[0].startswith(f"| **{table['modalities'][best]}**")
    assert f"**{table['dev_mean_pearson'][best]:.4f}**" in bold[0]

    # a second call reuses the finished runs: no training, same table
    stamp = (out / "visual" / "model.safetensors").stat().st_mtime_ns
    logs: list[str] = []
    again = ablate(data / "labels.csv", data / "store", _cfg(), out, progress=False, log=logs.append)
    assert (out / "visual" / "model.safetensors").stat().st_mtime_ns == stamp
    assert sum("reused" in line for line in logs) == 7
    pd.testing.assert_frame_equal(again, table)


def test_ablation_with_two_seeds_reports_the_mean(data, tmp_path):
    out = tmp_path / "abl2"
    mods = {"visual": MODS["visual"], "audio": MODS["audio"]}
    table = ablate(data / "labels.csv", data / "store", _cfg(modalities=mods), out, seeds=(0, 1), **QUIET)
    assert len(table) == 3 and set(table["seeds"]) == {2}
    for _, row in table.iterrows():
        per = [json.loads((out / row["modalities"] / f"seed_{s}" / "metrics.json").read_text()) for s in (0, 1)]
        dev = [m["dev"]["mean_pearson"] for m in per]
        assert row["dev_mean_pearson"] == pytest.approx(np.mean(dev), abs=1e-12)
        assert row["dev_mean_pearson_std"] == pytest.approx(np.std(dev), abs=1e-12)
        assert dev[0] != dev[1]  # the seeds really differ
    assert "±" in (out / "ablation.md").read_text()


def test_kfold_oof_predictions_cover_every_pooled_video_once(data, tmp_path):
    out = tmp_path / "cv"
    cfg = _cfg(modalities={"visual": MODS["visual"], "audio": MODS["audio"]})
    summary = kfold(data / "labels.csv", data / "store", cfg, out, k=3, seed=7, **QUIET)
    labels = pd.read_csv(data / "labels.csv", dtype={"id": str})
    pooled = set(labels.loc[labels["split"].isin(["train", "dev"]), "id"])
    test_ids = set(labels.loc[labels["split"] == "test", "id"])

    folds = pd.read_csv(out / "folds.csv", dtype={"video_id": str})
    assert set(folds["video_id"]) == pooled and folds["video_id"].is_unique
    assert sorted(folds["fold"].value_counts()) == [16, 16, 16]
    held = {i: set(folds.loc[folds["fold"] == i, "video_id"]) for i in range(3)}
    for i in range(3):
        run = out / f"fold_{i}"
        dev = set(pd.read_csv(run / "predictions" / "dev.csv", dtype={"video_id": str})["video_id"])
        trn = set(pd.read_csv(run / "predictions" / "train.csv", dtype={"video_id": str})["video_id"])
        tst = set(pd.read_csv(run / "predictions" / "test.csv", dtype={"video_id": str})["video_id"])
        assert dev == held[i] and trn == pooled - held[i] and not (dev & trn)  # disjoint, the rest trains
        assert tst == test_ids  # the test split stays out of every fold
        for j in range(i):
            assert not (held[i] & held[j])

    oof = pd.read_csv(out / "oof_predictions.csv", dtype={"video_id": str})
    assert len(oof) == len(pooled) and set(oof["video_id"]) == pooled and oof["video_id"].is_unique
    assert all(held[f] >= {v} for v, f in zip(oof["video_id"], oof["fold"]))
    assert summary["oof_videos"] == len(pooled) and summary["missing"] == []

    for split in ("dev", "test"):
        vals = [summary["per_fold"][str(i)][split]["mean_pearson"] for i in range(3)]
        assert summary["mean"][split]["mean_pearson"] == pytest.approx(np.mean(vals), abs=1e-12)
        assert summary["std"][split]["mean_pearson"] == pytest.approx(np.std(vals), abs=1e-12)
    fold0 = json.loads((out / "fold_0" / "metrics.json").read_text())
    assert summary["per_fold"]["0"] == fold0

    lab = labels.set_index("id").loc[oof["video_id"]]
    rs = [pearsonr(oof[e], lab[e])[0] for e in REACTION_EMOTIONS]
    assert summary["oof"]["mean_pearson"] == pytest.approx(np.mean(rs), abs=1e-9)
    assert json.loads((out / "metrics.json").read_text()) == summary

    # the same call resumes; another fold assignment in the same folder is refused
    again = kfold(data / "labels.csv", data / "store", cfg, out, k=3, seed=7, **QUIET)
    assert again["oof"] == summary["oof"]
    with pytest.raises(ValueError, match="another fold assignment"):
        kfold(data / "labels.csv", data / "store", cfg, out, k=3, seed=8, **QUIET)


def test_fold_assignment_is_deterministic_and_balanced():
    vids = [f"v{i}" for i in range(23)]
    a = assign_folds(vids, 5, seed=3)
    assert a == assign_folds(list(reversed(vids)), 5, seed=3)  # order of the input does not matter
    assert a != assign_folds(vids, 5, seed=4)
    counts = np.bincount(list(a.values()))
    assert counts.max() - counts.min() <= 1 and counts.sum() == 23
    with pytest.raises(ValueError, match="at least 5 videos"):
        assign_folds(vids[:3], 5)
    with pytest.raises(ValueError, match="k >= 2"):
        assign_folds(vids, 1)


def test_kfold_on_frame_level_labels_keeps_videos_whole(data):
    from affectfuse.training.kfold import fold_labels

    lab = load_labels(data / "labels.csv", "reaction")
    # a frame-level-like table: several rows per video must all follow the video's fold
    t = pd.concat([lab.table.assign(frame=f) for f in range(3)], ignore_index=True)
    multi = dataclasses.replace(lab, table=t)
    folds = assign_folds(multi.video_ids(["train", "dev"]), 4, seed=0)
    fl = fold_labels(multi, folds, 2)
    per_video = fl.table.groupby("video_id")["split"].nunique()
    assert (per_video == 1).all()
    assert set(fl.table.loc[fl.table["split"] == "dev", "video_id"]) == {v for v, f in folds.items() if f == 2}
    assert len(fl.table) == len(t)


def test_cli_ablate_and_cv(data, tmp_path, capsys):
    from affectfuse.cli._research import ablate_cmd, cv_cmd

    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="command")
    ablate_cmd.add_parser(sub, "ablate")
    cv_cmd.add_parser(sub, "cv")
    common = ["--task", "reaction", "--labels", str(data / "labels.csv"), "--features", str(data / "store"),
              "--modalities", "generated_visual,generated_audio", "--model", "early_fusion_small", "--epochs", "1",
              "--quiet"]
    args = ap.parse_args(["ablate", *common, "--out", str(tmp_path / "a")])
    assert args.run(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("| Modalities | visual | audio |") and out.count("\n| ") >= 3
    assert sorted(p.name for p in (tmp_path / "a").iterdir() if p.is_dir()) == ["audio", "visual", "visual+audio"]
    args = ap.parse_args(["cv", *common, "--folds", "2", "--out", str(tmp_path / "cv")])
    assert args.run(args) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["k"] == 2 and res["oof_videos"] == 48 and "mean_pearson" in res["oof"]
