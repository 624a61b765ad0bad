"""Reports: a real trained run, hand-written classification / frame-level runs, and prediction timelines."""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from affectfuse.inference.run_folder import RunFolder
from affectfuse.inference.train_config import TrainConfig
from affectfuse.reporting import (
    confusion_matrix,
    normalize_rows,
    per_class_f1,
    prediction_report,
    report,
    split_confusion,
)
from affectfuse.tasks.spec import TASKS
from affectfuse.types import Prediction


# -- helpers --------------------------------------------------------------------------------------
def _check_png(path: Path) -> np.ndarray:
    """A real, non-blank PNG: decodes, has a sensible size, and is not one flat colour."""
    from matplotlib.image import imread

    assert path.exists() and path.suffix == ".png", path
    assert path.stat().st_size > 8_000, f"{path} is only {path.stat().st_size} bytes"
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] >= 250 and img.shape[1] >= 400 and img.shape[2] in (3, 4), img.shape
    rgb = img[..., :3]
    assert rgb.std() > 0.05, f"{path} looks blank"
    assert (rgb.min(axis=2) < 0.9).mean() > 0.01, f"{path} is almost all white"
    return img


def _html_images(index: Path) -> set[str]:
    return set(re.findall(r'<img src="([^"]+)"', index.read_text()))


def _check_report(files: list[Path], out: Path) -> str:
    assert files[-1] == out / "index.html"
    assert all(f.exists() for f in files)
    pngs = [f for f in files if f.suffix == ".png"]
    for f in pngs:
        _check_png(f)
    assert _html_images(out / "index.html") == {f.name for f in pngs}
    text = (out / "index.html").read_text()
    assert not re.search(r"skipped: \w+(Error|Exception)", text), "a report section failed"
    return text


def _metric_values_in(html_text: str, metrics: dict) -> None:
    for split, m in metrics.items():
        for name, v in m.items():
            assert f"<td>{name}</td>" in html_text
            assert f"{v:.4f}" in html_text, (split, name, v)


def _write_run(run: Path, task: str, labels_csv: Path, preds: dict[str, pd.DataFrame], metrics: dict,
               history: pd.DataFrame | None) -> Path:
    """A hand-made run folder, written through RunFolder (the predictions through Prediction)."""
    folder = RunFolder(run)
    folder.write_config(TrainConfig(task=task, model="handmade", epochs=3))
    folder.write_model(name="handmade", task=TASKS[task], input_dims={"visual": 8}, overrides={}, config={})
    folder.write_data({"labels": str(labels_csv), "store": "nowhere", "task": task})
    folder.write_metrics(metrics)
    for split, df in preds.items():
        folder.write_predictions(split, Prediction.from_frame(df))
    if history is not None:
        folder.write_history(history.to_dict("records"))
    return run


# -- matrix numbers -------------------------------------------------------------------------------
def test_confusion_and_f1_match_sklearn():
    from sklearn.metrics import confusion_matrix as sk_cm
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(3)
    t = rng.integers(0, 5, 300)
    p = np.where(rng.random(300) < 0.6, t, rng.integers(0, 5, 300))
    p[p == 4] = 3  # class 4 is never predicted
    cm = confusion_matrix(t, p, 6)  # class 5 is neither true nor predicted
    np.testing.assert_array_equal(cm, sk_cm(t, p, labels=range(6)))
    f1 = per_class_f1(cm)
    ref = f1_score(t, p, labels=range(6), average=None, zero_division=0)
    np.testing.assert_allclose(f1[:5], ref[:5], atol=1e-12)
    assert f1[4] == 0.0 and np.isnan(f1[5])
    norm = normalize_rows(cm)
    np.testing.assert_allclose(norm[:5].sum(1), 1.0)
    np.testing.assert_array_equal(norm[5], 0.0)
    np.testing.assert_allclose(np.diag(norm)[:5], [np.mean(p[t == c] == c) for c in range(5)])
    with pytest.raises(ValueError, match="not a class index 0..5"):
        confusion_matrix([0, 6], [0, 1], 6)
    with pytest.raises(ValueError, match="3 true labels but 2 predictions"):
        confusion_matrix([0, 1, 2], [0, 1], 6)


# -- a real trained run ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reaction_run(tmp_path_factory):
    from affectfuse.data.synthetic import make_feature_dataset
    from affectfuse.training import TrainConfig, train

    root = tmp_path_factory.mktemp("reaction")
    make_feature_dataset(root / "store", root / "labels.csv", n=50, rows=16)
    cfg = TrainConfig(task="reaction", model="early_fusion_small",
                      modalities={"visual": "generated_visual", "audio": "generated_audio"}, epochs=2)
    train(root / "labels.csv", root / "store", cfg, root / "run", progress=False, log=lambda *_: None)
    return root / "run"


def test_report_of_a_trained_reaction_run(reaction_run):
    files = report(reaction_run)
    out = reaction_run / "report"
    text = _check_report(files, out)
    names = {f.name for f in files}
    assert {"training_curves.png", "pearson_per_target.png", "scatter_dev.png", "scatter_test.png"} <= names
    metrics = json.loads((reaction_run / "metrics.json").read_text())
    assert set(metrics) == {"train", "dev", "test"}
    _metric_values_in(text, metrics)
    history = pd.read_csv(reaction_run / "history.csv")
    best = int(history["epoch"].iloc[int(np.argmax(history["dev_mean_pearson"]))])
    assert f"kept epoch {best} (by dev_mean_pearson)" in text
    from affectfuse.inference.train_config import model_default_lr

    lr = model_default_lr("early_fusion_small")  # the run gave no lr: the model's default, recorded as a number
    assert "early_fusion_small" in text and f"lr: {lr}" in text  # the model and the configuration
    assert "Notes" not in text  # nothing was missing


def test_cli_report_command(reaction_run, tmp_path, capsys):
    from affectfuse.cli._report import report_cmd

    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="command")
    report_cmd.add_parser(sub, "report")
    args = ap.parse_args(["report", str(reaction_run), "--out", str(tmp_path / "rep")])
    assert args.run_dir == str(reaction_run)
    assert args.run(args) == 0
    printed = capsys.readouterr().out
    assert str((tmp_path / "rep" / "index.html").resolve()) in printed
    assert len(list((tmp_path / "rep").glob("*.png"))) == 4


# -- classification (frame level, hand-written run) -----------------------------------------------
def _expr_run(root: Path, *, history: bool = True) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    classes = TASKS["expr"].targets
    lab_rows, preds = [], {"dev": [], "test": []}
    for split in ("train", "dev", "test"):
        for v in range(3):
            vid = f"{split}_vid{v}"
            for f in range(40):
                true = int(rng.integers(0, 8)) if f % 10 else int(rng.integers(0, 3))
                if f % 13 != 5:  # some frames are not labelled
                    lab_rows.append({"video_id": vid, "split": split, "frame": f,
                                     "label": classes[true] if f % 2 else true})  # names and indices both
                if split == "train":
                    continue
                logits = rng.normal(0, 1, 8)
                logits[true] += 1.5
                prob = np.exp(logits) / np.exp(logits).sum()
                preds[split].append({"video_id": vid, "frame": f, "time": f / 25, "prediction": classes[prob.argmax()],
                                     **{f"p_{c}": x for c, x in zip(classes, prob)}})
    labels_csv = root / "expr_labels.csv"
    pd.DataFrame(lab_rows).to_csv(labels_csv, index=False)
    hist = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.9, 1.2, 1.0], "lr": [1e-3, 1e-3, 5e-4],
                         "dev_macro_f1": [0.20, 0.35, 0.31], "dev_accuracy": [0.3, 0.4, 0.42]})
    metrics = {"dev": {"macro_f1": 0.3512, "accuracy": 0.4012}, "test": {"macro_f1": 0.3321, "accuracy": 0.3977}}
    run = _write_run(root / "expr_run", "expr", labels_csv, {s: pd.DataFrame(r) for s, r in preds.items()}, metrics,
                     hist if history else None)
    return run, labels_csv


def _reference_confusion(run: Path, labels_csv: Path, split: str) -> np.ndarray:
    """sklearn on the CSVs, joined here without the package's code."""
    from sklearn.metrics import confusion_matrix as sk_cm

    classes = list(TASKS["expr"].targets)
    pred = pd.read_csv(run / "predictions" / f"{split}.csv")
    lab = pd.read_csv(labels_csv, dtype={"label": str})
    lab = lab[lab["split"] == split]
    lab["y"] = [int(x) if x.isdigit() else classes.index(x) for x in lab["label"]]
    m = pred.merge(lab, on=["video_id", "frame"])
    return sk_cm(m["y"], [classes.index(c) for c in m["prediction"]], labels=range(len(classes)))


def test_classification_report_confusion_equals_sklearn(tmp_path):
    from sklearn.metrics import f1_score

    run, labels_csv = _expr_run(tmp_path)
    out = tmp_path / "out"
    files = report(run, out)
    text = _check_report(files, out)
    names = {f.name for f in files}
    assert {"training_curves.png", "confusion_dev.png", "confusion_test.png", "f1_per_class.png",
            "confusion_dev.csv", "confusion_test.csv"} <= names
    for split in ("dev", "test"):
        ref = _reference_confusion(run, labels_csv, split)
        np.testing.assert_array_equal(split_confusion(run, split), ref)
        written = pd.read_csv(out / f"confusion_{split}.csv", index_col=0)
        assert list(written.columns) == list(TASKS["expr"].targets)
        np.testing.assert_array_equal(written.to_numpy(), ref)
        t = np.repeat(np.arange(8), ref.sum(1))  # per-class F1 from the reference matrix, through sklearn
        p = np.concatenate([np.repeat(np.arange(8), ref[i]) for i in range(8)])
        for v in f1_score(t, p, labels=range(8), average=None, zero_division=0):
            assert f"<td>{v:.4f}</td>" in text
    _metric_values_in(text, json.loads((run / "metrics.json").read_text()))
    assert "kept epoch 2 (by dev_macro_f1)" in text
    assert "prediction rows have no label" in text  # the unlabelled frames are reported, not silently dropped


def test_clip_level_group_confusion(tmp_path):
    from sklearn.metrics import confusion_matrix as sk_cm

    classes = TASKS["group"].targets
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 30)
    pr = np.where(rng.random(30) < 0.5, y, rng.integers(0, 3, 30))
    ids = [f"{i:05d}" for i in range(30)]  # leading zeros must survive the CSV round trip
    labels_csv = tmp_path / "group.csv"
    pd.DataFrame({"video_id": ids, "split": "test", "label": [classes[i] for i in y]}).to_csv(labels_csv, index=False)
    pred = pd.DataFrame({"video_id": ids, "prediction": [classes[i] for i in pr]})
    run = _write_run(tmp_path / "run", "group", labels_csv, {"test": pred}, {"test": {"accuracy": 0.5, "uar": 0.5}},
                     None)
    np.testing.assert_array_equal(split_confusion(run, "test"), sk_cm(y, pr, labels=range(3)))


# -- frame-level regression, no history -----------------------------------------------------------
def _va_run(root: Path) -> Path:
    rng = np.random.default_rng(2)
    lab, preds = [], {"dev": [], "test": []}
    for split in ("train", "dev", "test"):
        for v in range(2):
            vid = f"{split}_{v}"
            phase = rng.uniform(0, 6)
            for f in range(120):
                val, aro = np.sin(f / 15 + phase) * 0.7, np.cos(f / 20 + phase) * 0.5
                if 40 <= f < 50:
                    continue  # an unlabelled stretch: a gap in the truth line
                lab.append({"video_id": vid, "split": split, "frame": f, "valence": round(val, 4),
                            "arousal": -5 if f < 5 else round(aro, 4)})  # -5 = arousal not labelled
            if split != "train":
                for f in range(120):
                    val, aro = np.sin(f / 15 + phase) * 0.7, np.cos(f / 20 + phase) * 0.5
                    preds[split].append({"video_id": vid, "frame": f, "time": f / 30,
                                         "valence": val * 0.8 + rng.normal(0, 0.1),
                                         "arousal": aro * 0.6 + rng.normal(0, 0.1)})
    labels_csv = root / "va.csv"
    pd.DataFrame(lab).to_csv(labels_csv, index=False)
    metrics = {s: {"mean_ccc": 0.61 + i / 100, "ccc_valence": 0.7 + i / 100, "ccc_arousal": 0.52 + i / 100}
               for i, s in enumerate(("dev", "test"))}
    return _write_run(root / "va_run", "va", labels_csv, {s: pd.DataFrame(r) for s, r in preds.items()}, metrics, None)


def test_frame_level_report_without_history_gives_a_note(tmp_path):
    run = _va_run(tmp_path)
    out = tmp_path / "out"
    files = report(run, out)
    text = _check_report(files, out)
    names = {f.name for f in files}
    assert names == {"ccc_per_target.png", "timeseries_test.png", "index.html"}
    assert "no training history" in text and "training_curves.png" not in text
    _metric_values_in(text, json.loads((run / "metrics.json").read_text()))
    img = _check_png(out / "timeseries_test.png")
    assert img.shape[0] > img.shape[1] * 0.5  # 2 videos x 2 targets: a grid, not a strip


def test_missing_labels_and_task_are_notes_not_errors(tmp_path):
    run = _va_run(tmp_path)
    (tmp_path / "va.csv").unlink()
    files = report(run, tmp_path / "a")
    text = (tmp_path / "a" / "index.html").read_text()
    assert "are no longer there" in text
    assert {f.name for f in files} == {"ccc_per_target.png", "index.html"}  # bars come from metrics.json
    (run / "model.yaml").unlink()
    (run / "config.yaml").write_text("task: generic\n")
    files = report(run, tmp_path / "b")
    text = (tmp_path / "b" / "index.html").read_text()
    assert "the task is unknown" in text and "0.6100" in text
    assert [f.name for f in files] == ["index.html"]
    (run / "history.csv").write_text("epoch,train_loss\n1,abc\n2,def\n")  # garbled: a note, not a crash
    files = report(run, tmp_path / "c")
    text = (tmp_path / "c" / "index.html").read_text()
    assert "training curves skipped: ValueError" in text and "0.6100" in text


def test_seed_folder_gets_a_summary_and_a_report_per_seed(tmp_path):
    run = _va_run(tmp_path)
    multi = tmp_path / "multi"
    for s in (0, 1):
        shutil.copytree(run, multi / f"seed_{s}")
    summary = {"seeds": [0, 1], "per_seed": {}, "mean": {"test": {"mean_ccc": 0.625}},
               "std": {"test": {"mean_ccc": 0.0125}}, "ensemble": {"test": {"mean_ccc": 0.6431}}}
    RunFolder(multi).write_metrics(summary)
    files = report(multi)
    top = (multi / "report" / "index.html").read_text()
    assert "0.6250 ± 0.0125" in top and "0.6431" in top
    assert 'href="seed_0/index.html"' in top and 'href="seed_1/index.html"' in top
    assert (multi / "report" / "seed_1" / "timeseries_test.png").exists()
    assert files[-1] == multi / "report" / "index.html"


def test_not_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        report(tmp_path / "nothing")
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"not an affectfuse run folder .*notes\.txt"):
        report(tmp_path / "stuff")


# -- predictions on new videos --------------------------------------------------------------------
def _grey_pixels(img: np.ndarray) -> int:
    """Pixels of the no-face shading: grey 0.6 at alpha 0.35 over white ≈ 0.86, equal channels."""
    rgb = img[..., :3]
    return int((np.all(np.abs(rgb - 0.86) < 0.02, axis=2)).sum())


def test_prediction_report_timelines_and_means(tmp_path):
    t = np.arange(60) / 10.0
    face = np.ones(60, bool)
    face[20:32] = False
    rows = []
    for vid, off in (("clip one", 0.0), ("clip/two", 0.2)):
        happy = np.clip(0.5 + 0.4 * np.sin(t + off), 0, 1)
        sad = 1 - happy
        f = face if vid == "clip one" else np.ones(60, bool)
        rows.append(pd.DataFrame({"video_id": vid, "time": t, "face": f, "box_x0": 10.0, "face_score": 0.9,
                                  "frame": np.arange(60),
                                  "happy": np.where(f, happy, np.nan), "sad": np.where(f, sad, np.nan)}))
    frames = pd.concat(rows, ignore_index=True)
    summary = pd.DataFrame({"video_id": ["clip one", "clip/two"], "top": ["happy", "sad"]})
    index = prediction_report(frames, tmp_path / "pred", summary=summary, title="my videos")
    assert index == tmp_path / "pred" / "index.html"
    text = index.read_text()
    imgs = _html_images(index)
    assert imgs == {"timeline_clip_one.png", "timeline_clip_two.png"}
    shaded = _check_png(tmp_path / "pred" / "timeline_clip_one.png")
    plain = _check_png(tmp_path / "pred" / "timeline_clip_two.png")
    assert _grey_pixels(shaded) > 20 * max(_grey_pixels(plain), 50)  # the no-face stretch is shaded
    assert "scores: happy, sad." in text  # box / frame / face columns are not scores
    g = frames[frames["video_id"] == "clip one"]
    assert f"<td>{g.loc[g.face, 'happy'].mean():.4f}</td>" in text
    assert "<td>48</td>" in text  # face frames of clip one
    assert "<title>my videos</title>" in text and "<td>clip/two</td>" in text
    with pytest.raises(ValueError, match=r"value_columns \['angry'\] are not columns"):
        prediction_report(frames, tmp_path / "x", value_columns=["angry"])


def test_report_lists_the_settings_that_are_not_the_defaults(tmp_path):
    """The options a recipe or a user chose (token layout, smoothing mode, pooling ...) are shown, defaults not."""
    from affectfuse.data.synthetic import make_frame_dataset
    from affectfuse.reporting.run_data import read_run
    from affectfuse.reporting.run_report import settings_rows
    from affectfuse.training import TrainConfig, train

    make_frame_dataset(tmp_path / "store", tmp_path / "labels.csv", n=8, frames=60)
    cfg = TrainConfig(task="va", model="jmt_small", modalities={"visual": "generated_visual", "audio": "generated_audio"},
                      epochs=1, seq_len=5, tokens="subclips", subclip_stride=4, smoothing=(3, 5),
                      smoothing_mode="constant", standardize=False, model_overrides={"dropout": 0.1})
    train(tmp_path / "labels.csv", tmp_path / "store", cfg, tmp_path / "run", progress=False, log=lambda *_: None)
    rows = {(w, k): (v, d) for w, k, v, d in settings_rows(read_run(tmp_path / "run"))}
    assert rows[("training", "tokens")] == ('"subclips"', '"frames"')
    assert rows[("training", "smoothing_mode")] == ('"constant"', '"reflect"')
    assert rows[("training", "standardize")] == ("false", "true")
    assert rows[("training", "seq_len")] == ("5", "64") and ("training", "lr") not in rows
    assert rows[("model jmt_small", "dropout")][0] == "0.1"
    text = (Path(report(tmp_path / "run")[-1])).read_text()
    assert "Settings that are not the defaults" in text and "subclips" in text and "smoothing_mode" in text


def test_metrics_of_tiny_splits_are_flagged_with_their_chance_spread():
    from affectfuse.reporting.run_report import few_samples

    metrics = {"dev": {"mean_pearson": 0.4}, "test": {"mean_pearson": 0.3}, "train": {"mean_pearson": 0.9}}
    lines = few_samples(metrics, {"train": 400, "dev": 12, "test": 3})
    assert len(lines) == 2 and lines[0].startswith("dev: 12 video(s)") and lines[1].startswith("test: 3 video(s)")
    assert "within ±0.57 by chance" in lines[0]  # tanh(1.96 / sqrt(12 - 3)) = 0.574
    assert "too few for any correlation" in lines[1]
    assert few_samples(metrics, {"dev": 30, "test": None}) == []


def test_wide_tables_scroll_inside_the_page_and_long_text_wraps():
    from affectfuse.reporting.html import Page

    page = Page("t")
    page.table(["a", "b"], [["x" * 80, 1.5]])
    html = page.render()
    assert '<div class="scroll"><table>' in html and "</table></div>" in html
    assert '<td class="text">' + "x" * 80 + "</td>" in html and "<td>1.5000</td>" in html
    assert ".scroll{max-width:100%;overflow-x:auto}" in html and "Noto Sans CJK" in html
