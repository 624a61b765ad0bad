"""Prediction: the one writer and reader of prediction tables — round trips for every layout, the exact bytes of
run CSVs, the ensemble mean, and seeds / k-fold / report reading through it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from affectfuse.types import Prediction

# the bytes the run-folder writer produced before Prediction existed (training.loop._write_predictions)
OLD_VA = (b'video_id,frame,time,valence,arousal\r\na,3,0.1000,0.500000,-0.250000\r\na,1,0.0333,0.333333,2.000000\r\n'
          b'"b,c",0,nan,-0.000000,0.123457\r\n')
OLD_GROUP = (b'video_id,prediction,p_Positive,p_Neutral,p_Negative\r\n00001,Neutral,0.200000,0.500000,0.300000\r\n'
             b'x,Positive,0.700000,0.100000,0.200000\r\n')
# the offline predictor's per-frame table (inference/offline.py FRAME_COLUMNS)
CLASSES = ["Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise"]
FRAME_COLUMNS = ["video_id", "frame", "time", "face", "box_x1", "box_y1", "box_x2", "box_y2", "face_score", *CLASSES,
                 "dominant"]


def _same(a: Prediction, b: Prediction, layout=None, atol=0.0) -> None:
    fa, fb = a.to_frame(layout), b.to_frame(layout)
    assert list(fa.columns) == list(fb.columns)
    pd.testing.assert_frame_equal(fa, fb, check_dtype=False, atol=atol, rtol=0)


def test_run_layout_is_byte_identical_to_the_old_writer(tmp_path):
    va = Prediction(values=np.array([[0.5, -0.25], [1 / 3, 2.0], [-1e-7, 0.1234565]], np.float32),
                    names=["valence", "arousal"], video_ids=["a", "a", "b,c"], frames=np.array([3, 1, 0]),
                    times=np.array([0.1, 1 / 30, np.nan]))
    assert va.write(tmp_path / "va.csv").read_bytes() == OLD_VA
    group = Prediction(values=np.array([[0.2, 0.5, 0.3], [0.7, 0.1, 0.2]], np.float32),
                       names=["Positive", "Neutral", "Negative"], video_ids=["00001", "x"], classification=True)
    assert group.write(tmp_path / "g.csv").read_bytes() == OLD_GROUP


@pytest.mark.parametrize("kind", ["clip_regression", "frame_regression", "classification", "labels_only"])
def test_run_layout_round_trip(tmp_path, kind):
    rng = np.random.default_rng(0)
    ids = ["007", "v 1", "a,b", "007"]
    if kind == "clip_regression":
        p = Prediction(values=rng.random((4, 3)), names=["x", "y", "z"], video_ids=ids)
    elif kind == "frame_regression":
        p = Prediction(values=rng.normal(size=(4, 2)), names=["valence", "arousal"], video_ids=ids,
                       frames=np.array([0, 5, 2, 1]), times=np.array([0.0, 0.2, 0.08, 0.04]))
    elif kind == "classification":
        v = rng.random((4, 3))
        p = Prediction(values=v / v.sum(1, keepdims=True), names=["A", "B", "C"], video_ids=ids, classification=True)
    else:
        p = Prediction(values=np.zeros((4, 0)), names=[], video_ids=ids, classification=True,
                       labels=np.array(["A", "C", "B", "A"], dtype=object))
    back = Prediction.read(p.write(tmp_path / "p.csv"))
    _same(p, back, atol=5e-7)
    assert back.video_ids == ids and back.classification == p.classification
    assert list(back.predicted_labels()) == list(p.predicted_labels())
    if kind == "classification":
        assert list(pd.read_csv(tmp_path / "p.csv").columns) == ["video_id", "prediction", "p_A", "p_B", "p_C"]
        assert list(back.labels) == [["A", "B", "C"][i] for i in p.values.argmax(1)]


def test_oof_layout_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(1)
    p = Prediction(values=rng.random((5, 2)), names=["a", "b"], video_ids=list("vwxyz"),
                   extra={"fold": np.array([0, 1, 0, 2, 1])})
    p.write(tmp_path / "oof.csv", Prediction.OOF)
    assert list(pd.read_csv(tmp_path / "oof.csv").columns) == ["video_id", "fold", "a", "b"]
    back = Prediction.read(tmp_path / "oof.csv", Prediction.OOF)
    _same(p, back, Prediction.OOF)  # full precision: exactly equal
    np.testing.assert_array_equal(back.extra["fold"], p.extra["fold"])


def _offline_frame() -> pd.DataFrame:
    """A per-frame table as the offline predictor builds it (pandas, no-face rows NaN, dominant '')."""
    rng = np.random.default_rng(2)
    n = 6
    face = np.array([True, True, False, True, False, True])
    probs = rng.random((n, 7))
    probs /= probs.sum(1, keepdims=True)
    probs[~face] = np.nan
    boxes = rng.uniform(0, 300, (n, 4))
    boxes[~face] = np.nan
    dom = np.full(n, "", dtype=object)
    dom[face] = np.asarray(CLASSES, dtype=object)[np.argmax(probs[face], axis=1)]
    return pd.DataFrame({"video_id": ["clip"] * 4 + ["other"] * 2, "frame": np.arange(n) * 3,
                         "time": np.arange(n) * 0.2, "face": face,
                         **{f"box_{k}": boxes[:, i] for i, k in enumerate(("x1", "y1", "x2", "y2"))},
                         "face_score": np.where(face, rng.random(n), np.nan),
                         **{c: probs[:, j] for j, c in enumerate(CLASSES)}, "dominant": dom})


def test_frame_table_layout_fits_the_offline_table(tmp_path):
    df = _offline_frame()
    p = Prediction.from_frame(df, Prediction.FRAME_TABLE)
    assert p.classification and p.names == CLASSES and p.values.shape == (6, 7)
    assert list(p.extra) == ["box_x1", "box_y1", "box_x2", "box_y2", "face_score"]
    np.testing.assert_array_equal(p.valid, df["face"].to_numpy())
    assert list(p.predicted_labels()) == list(df["dominant"])  # '' where no face
    assert list(p.to_frame(Prediction.FRAME_TABLE).columns) == FRAME_COLUMNS
    # writing gives the very bytes pandas writes for the offline table today
    p.write(tmp_path / "frames.csv", Prediction.FRAME_TABLE)
    assert (tmp_path / "frames.csv").read_text() == df.to_csv(index=False)
    back = Prediction.read(tmp_path / "frames.csv", Prediction.FRAME_TABLE)
    _same(p, back, Prediction.FRAME_TABLE)
    # the same data built directly (as the offline predictor would), labels derived
    direct = Prediction(values=df[CLASSES].to_numpy(), names=CLASSES, video_ids=list(df["video_id"]),
                        frames=df["frame"].to_numpy(), times=df["time"].to_numpy(), valid=df["face"].to_numpy(),
                        classification=True, extra={c: df[c].to_numpy() for c in p.extra})
    _same(direct, back, Prediction.FRAME_TABLE)


def test_mean_matches_a_pandas_reference_and_rederives_labels():
    rng = np.random.default_rng(3)
    a = Prediction(values=rng.random((4, 2)), names=["P", "N"], video_ids=["v", "v", "w", "x"],
                   frames=np.array([0, 1, 0, 0]), times=np.array([0.0, 0.1, 0.0, 0.0]), classification=True)
    b = Prediction(values=rng.random((3, 2)), names=["P", "N"], video_ids=["w", "v", "v"],
                   frames=np.array([0, 1, 0]), times=np.array([0.0, 0.1, 0.0]), classification=True)
    m = Prediction.mean([a, b])
    ref = pd.concat([a.to_frame(), b.to_frame()]).groupby(["video_id", "frame"], sort=False)[["p_P", "p_N"]].mean()
    assert list(zip(m.video_ids, m.frames)) == list(ref.index)
    np.testing.assert_allclose(m.values, ref.to_numpy())
    np.testing.assert_allclose(m.values[3], a.values[3])  # x is in the first prediction only
    assert list(m.predicted_labels()) == [["P", "N"][i] for i in ref.to_numpy().argmax(1)]
    np.testing.assert_array_equal(m.times, [0.0, 0.1, 0.0, 0.0])


def test_concat_and_errors(tmp_path):
    p = Prediction(values=np.ones((2, 1)), names=["t"], video_ids=["a", "b"], extra={"fold": np.array([0, 0])})
    q = dataclasses.replace(p, extra={"fold": np.array([1, 1])})
    c = Prediction.concat([p, q])
    assert c.video_ids == ["a", "b", "a", "b"] and list(c.extra["fold"]) == [0, 0, 1, 1]
    with pytest.raises(ValueError, match=r"values must be \(R, K\) = \(2, 2\)"):
        Prediction(values=np.ones((2, 1)), names=["t", "u"], video_ids=["a", "b"])
    with pytest.raises(ValueError, match="no place in the layout"):
        p.write(tmp_path / "x.csv", Prediction.Layout(columns=("video_id", "{scores}")))
    pd.DataFrame({"id": ["a"], "t": [1.0]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="without a video_id column"):
        Prediction.read(tmp_path / "bad.csv")


# -- the readers read through Prediction ------------------------------------------------------------------
@pytest.fixture
def spy(monkeypatch):
    """Every Prediction.read call, by path."""
    calls: list[Path] = []
    orig = Prediction.read.__func__

    def read(cls, path, layout=None, **kw):
        calls.append(Path(path))
        return orig(cls, path, layout, **kw)

    monkeypatch.setattr(Prediction, "read", classmethod(read))
    return calls


def _seed_runs(root: Path) -> list[Path]:
    from affectfuse.inference.run_folder import RunFolder

    runs = []
    for s, shift in ((0, 0.0), (1, 0.5)):
        folder = RunFolder(root / f"seed_{s}")
        folder.write_predictions("dev", Prediction(values=np.array([[0.1 + shift], [0.3 + shift]]), names=["t"],
                                                   video_ids=["a", "b"]))
        runs.append(folder.path)
    return runs


def test_seed_ensemble_reads_through_prediction(tmp_path, spy):
    from affectfuse.training.multi import ensemble_predictions

    runs = _seed_runs(tmp_path)
    ens = ensemble_predictions(runs, "dev")
    assert spy == [r / "predictions" / "dev.csv" for r in runs]
    np.testing.assert_allclose(ens.values[:, 0], [0.35, 0.55])


def test_report_reads_through_prediction(tmp_path, spy):
    from affectfuse.reporting import read_run

    runs = _seed_runs(tmp_path)
    rd = read_run(runs[0])
    assert spy == [runs[0] / "predictions" / "dev.csv"]
    assert list(rd.predictions["dev"].columns) == ["video_id", "t"]


def test_kfold_reads_the_folds_through_prediction(tmp_path, spy):
    from affectfuse.data.synthetic import make_feature_dataset
    from affectfuse.training import TrainConfig
    from affectfuse.training.kfold import kfold

    make_feature_dataset(tmp_path / "store", tmp_path / "labels.csv", n=20, rows=4, dims={"visual": 4, "audio": 3})
    cfg = TrainConfig(task="reaction", model="linear_meanpool", epochs=1,
                      modalities={"visual": "generated_visual", "audio": "generated_audio"})
    kfold(tmp_path / "labels.csv", tmp_path / "store", cfg, tmp_path / "cv", k=2, progress=False, log=lambda *_: None)
    assert spy == [tmp_path / "cv" / f"fold_{i}" / "predictions" / "dev.csv" for i in range(2)]
    oof = Prediction.read(tmp_path / "cv" / "oof_predictions.csv", Prediction.OOF)
    folds = [Prediction.read(tmp_path / "cv" / f"fold_{i}" / "predictions" / "dev.csv") for i in range(2)]
    np.testing.assert_array_equal(oof.values, np.concatenate([f.values for f in folds]))
    assert list(oof.extra["fold"]) == [0] * len(folds[0]) + [1] * len(folds[1])
