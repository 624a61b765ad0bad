"""The offline default of ``affectfuse predict`` (no trained run): real media, real detector and net."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from affectfuse.assets import asset_path
from affectfuse.inference.offline import (
    FACEAPI_TO_ABAW,
    FRAME_COLUMNS,
    OFFLINE_CLASSES,
    SUMMARY_COLUMNS,
    predict_offline,
    summarize,
)
from affectfuse.io.synthetic import write_video

FPS = 5.0
VW, VH, FACE = 320, 240, 160  # synthetic video size and pasted face side


def _portrait(name: str) -> np.ndarray:
    import cv2

    img = cv2.imread(str(asset_path("pyfeat-media", name)))  # fails (not skips) when the asset is missing
    assert img is not None, name
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("predict_offline")
    out = {
        "face_noface": asset_path("pyfeat-media", "face_noface.mov"),
        "no_face": asset_path("pyfeat-media", "no_face.mp4"),
    }
    times = {}
    for key, img in (("happy", "0-f15-hao-ph.jpg"), ("surprise", "0-f1-su-ph.jpg")):
        p = d / f"{key}.mp4"
        times[key] = write_video(p, duration=2.0, fps=30, size=(VW, VH), audio=False, face=_portrait(img),
                                 face_size=FACE)
        out[key] = p
    bad = d / "corrupt.mp4"
    raw = out["happy"].read_bytes()
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(reversed(raw[: len(raw) // 2])))  # a header, then junk
    out["corrupt"] = bad
    return out, times


@pytest.fixture(scope="module")
def result(media):
    paths, _ = media
    order = ["face_noface", "no_face", "happy", "surprise"]
    frames, summary, failures = predict_offline([paths[k] for k in order], fps=FPS, progress=False)
    return frames, summary, failures


def _video(frames, vid):
    return frames[frames["video_id"] == vid].reset_index(drop=True)


# ------------------------------------------------------------------------------------------------ tables
def test_columns_and_mapping(result):
    from affectfuse.extractors.face.faceapi import EXPRESSIONS
    from affectfuse.tasks.spec import EXPR_CLASSES

    frames, summary, failures = result
    assert failures == []
    assert list(frames.columns) == list(FRAME_COLUMNS)
    assert list(summary.columns) == list(SUMMARY_COLUMNS)
    assert list(summary["video_id"]) == ["face_noface", "no_face", "happy", "surprise"]
    # every face-api class maps to a distinct ABAW class; ABAW "Other" has no column (never invented)
    assert sorted(FACEAPI_TO_ABAW) == sorted(EXPRESSIONS)
    assert sorted(FACEAPI_TO_ABAW.values()) == sorted(OFFLINE_CLASSES)
    assert list(OFFLINE_CLASSES) == [c for c in EXPR_CLASSES if c != "Other"]
    assert "Other" not in frames.columns


def test_face_then_no_face_has_nan_not_zeros(result):
    frames, summary, _ = result
    df = _video(frames, "face_noface")
    face = df["face"].to_numpy(bool)
    assert face[:5].all() and not face[-5:].any()
    first_gap = int(np.argmin(face))
    assert not face[first_gap:].any(), "the face leaves once and does not come back"
    score_cols = [*OFFLINE_CLASSES, "box_x1", "box_y1", "box_x2", "box_y2", "face_score"]
    assert df.loc[~face, score_cols].isna().all().all()
    assert (df.loc[~face, "dominant"] == "").all()
    assert df.loc[face, score_cols].notna().all().all()
    assert (df.loc[face, "dominant"].isin(OFFLINE_CLASSES)).all()
    s = summary.set_index("video_id").loc["face_noface"]
    assert s["face_fraction"] == pytest.approx(face.mean())
    assert s["face_frames"] == face.sum() and s["frames_scored"] == len(df)


def test_no_face_video(result):
    frames, summary, _ = result
    df = _video(frames, "no_face")
    assert len(df) > 10 and not df["face"].any()
    assert df[list(OFFLINE_CLASSES)].isna().all().all()
    s = summary.set_index("video_id").loc["no_face"]
    assert s["face_fraction"] == 0.0 and s["face_frames"] == 0
    assert s["dominant"] == "" and all(math.isnan(s[c]) for c in OFFLINE_CLASSES)


@pytest.mark.parametrize("vid, expected", [("happy", "Happiness"), ("surprise", "Surprise")])
def test_posed_portraits_dominant(result, vid, expected):
    frames, summary, _ = result
    df = _video(frames, vid)
    assert df["face"].all()
    assert (df["dominant"] == expected).mean() >= 0.8
    s = summary.set_index("video_id").loc[vid]
    assert s["dominant"] == expected
    assert s[expected] == max(s[c] for c in OFFLINE_CLASSES)


def test_probabilities_sum_to_one(result):
    frames, _, _ = result
    p = frames.loc[frames["face"], list(OFFLINE_CLASSES)].to_numpy()
    assert len(p) > 30
    assert ((p >= 0) & (p <= 1)).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    dom = np.asarray(OFFLINE_CLASSES)[p.argmax(axis=1)]
    assert (frames.loc[frames["face"], "dominant"].to_numpy() == dom).all()


def test_times_follow_sampling_rate(result, media):
    frames, summary, _ = result
    _, times = media
    for vid in ("happy", "surprise"):
        df = _video(frames, vid)
        t_all = times[vid]
        grid = np.arange(0.0, t_all[-1] + 1e-9, 1 / FPS)
        want = np.unique([int(np.argmin(np.abs(t_all - g))) for g in grid])  # nearest frame, brute force
        np.testing.assert_array_equal(df["frame"].to_numpy(), want)
        np.testing.assert_allclose(df["time"].to_numpy(), t_all[want], atol=1e-6)
    for vid in summary["video_id"]:
        t = _video(frames, vid)["time"].to_numpy()
        assert t[0] == pytest.approx(0.0, abs=0.05)
        d = np.diff(t)
        assert (d > 0).all()
        assert np.median(d) == pytest.approx(1 / FPS, abs=0.02)
        assert np.all(np.abs(d - 1 / FPS) < 0.05)


def test_boxes_cover_the_pasted_face(result, media):
    """write_video pastes the face square at a known place per frame: box centres fall inside it."""
    frames, _, _ = result
    _, times = media
    df = _video(frames, "happy")
    cy = (VH - FACE) // 2
    for r in df.itertuples():
        cx = max(int((VW - FACE) / 2 + (VW - FACE) / 3 * np.sin(2 * np.pi * r.time / 4.0)), 0)
        mx, my = (r.box_x1 + r.box_x2) / 2, (r.box_y1 + r.box_y2) / 2
        assert cx <= mx <= cx + FACE and cy <= my <= cy + FACE, (r.time, mx, my, cx)
        assert 0.2 * FACE < r.box_x2 - r.box_x1 <= 1.1 * FACE


def test_downscaled_decoding_reports_boxes_in_video_pixels(media, result):
    paths, _ = media
    frames, _, _ = result
    small, _, fail = predict_offline([paths["happy"]], fps=FPS, progress=False, max_side=160)
    full = _video(frames, "happy")
    assert fail == [] and small["face"].all() and len(small) == len(full)
    for c in ("box_x1", "box_y1", "box_x2", "box_y2"):  # same boxes to within a few source pixels
        np.testing.assert_allclose(small[c].to_numpy(), full[c].to_numpy(), atol=12)


def test_scores_match_the_extractor_on_the_same_crop(media, result):
    """Independent path: read one frame, detect, crop, run face-api directly, reorder by class name."""
    from affectfuse.extractors.base import create_extractor
    from affectfuse.extractors.face.faceapi import EXPRESSIONS
    from affectfuse.io.faces import create_face_detector, crop_faces, detect_faces
    from affectfuse.io.frames import read_frames

    paths, _ = media
    frames, _, _ = result
    row = _video(frames, "surprise").iloc[3]
    fb = detect_faces(read_frames(paths["surprise"], [int(row["frame"])]), create_face_detector("default"))
    _, p = create_extractor("faceapi_expression", output="probs").predict(crop_faces(fb, size=112, margin=0.1).pixels)
    ref = {FACEAPI_TO_ABAW[name]: p[0, i] for i, name in enumerate(EXPRESSIONS)}
    np.testing.assert_allclose([row[c] for c in OFFLINE_CLASSES], [ref[c] for c in OFFLINE_CLASSES], atol=1e-5)
    np.testing.assert_allclose([row["box_x1"], row["box_y1"]], fb.boxes[0, :2], atol=1e-3)


def test_summary_against_pandas(result):
    frames, summary, _ = result
    for vid in ("face_noface", "happy", "surprise"):
        df = _video(frames, vid)
        s = summary.set_index("video_id").loc[vid]
        means = df.loc[df["face"], list(OFFLINE_CLASSES)].mean()
        np.testing.assert_allclose([s[c] for c in OFFLINE_CLASSES], means.to_numpy(), rtol=1e-9)
        dom = means.idxmax()
        assert s["dominant"] == dom
        assert s["peak_prob"] == pytest.approx(df.loc[df["face"], dom].max())
        assert df.loc[df["time"] == s["peak_time"], dom].iloc[0] == pytest.approx(s["peak_prob"])
        assert s["peak_start"] <= s["peak_time"] <= s["peak_end"]
        span = df[(df["time"] >= s["peak_start"]) & (df["time"] <= s["peak_end"])]
        assert (span["dominant"] == dom).all() and span["face"].all()


def test_summary_peak_span_on_a_handmade_table():
    """Peak episode: the unbroken run of rows dominated by the peak's class around the peak."""
    p = np.array([[.9, 0, 0, 0, .1, 0, 0], [.2, 0, 0, 0, .8, 0, 0], [.1, 0, 0, 0, .9, 0, 0],
                  [.6, 0, 0, 0, .4, 0, 0], [np.nan] * 7, [.1, 0, 0, 0, .85, 0, 0]])
    face = ~np.isnan(p[:, 0])
    dom = np.where(face, np.asarray(OFFLINE_CLASSES, object)[np.nan_to_num(p).argmax(1)], "")
    df = pd.DataFrame({"time": np.arange(6) * 0.5, "face": face, **dict(zip(OFFLINE_CLASSES, p.T)), "dominant": dom})
    s = summarize(df, "v", duration=3.0)
    assert s["face_frames"] == 5 and s["face_fraction"] == pytest.approx(5 / 6)
    assert s["Happiness"] == pytest.approx((.1 + .8 + .9 + .4 + .85) / 5)
    assert s["dominant"] == "Happiness" and s["peak_prob"] == pytest.approx(0.9)
    assert (s["peak_time"], s["peak_start"], s["peak_end"]) == (1.0, 0.5, 1.0)


# ------------------------------------------------------------------------------------------------ failures
def test_bad_inputs_are_failures_naming_the_file(media, tmp_path):
    paths, _ = media
    missing = tmp_path / "missing.mp4"
    frames, summary, failures = predict_offline([paths["corrupt"], missing, paths["happy"]], fps=FPS, progress=False)
    assert list(summary["video_id"]) == ["happy"] and set(frames["video_id"]) == {"happy"}
    msgs = {f.video_id: f.message for f in failures}
    assert set(msgs) == {"corrupt", "missing"}
    assert str(paths["corrupt"]) in msgs["corrupt"] and str(missing) in msgs["missing"]


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_writes_csv_json_summary_and_exits_1_on_a_bad_file(media, tmp_path, capsys):
    from affectfuse.cli import main

    paths, _ = media
    out = tmp_path / "out" / "pred.csv"
    rc = main(["predict", str(paths["happy"]), str(paths["corrupt"]), str(paths["no_face"]), "--out", str(out),
               "--json", "--quiet", "--fps", "2.5"])
    cap = capsys.readouterr()
    assert rc == 1
    assert str(paths["corrupt"]) in cap.err
    assert "happy:" in cap.out and "dominant Happiness" in cap.out and "no_face:" in cap.out
    text_cols = ("video_id", "dominant")  # "" stays "" (no face), empty numbers are NaN
    csv = pd.read_csv(out, keep_default_na=False, na_values={c: [""] for c in FRAME_COLUMNS if c not in text_cols})
    assert list(csv.columns) == list(FRAME_COLUMNS)
    assert set(csv["video_id"]) == {"happy", "no_face"}
    happy = csv[csv["video_id"] == "happy"]
    assert np.median(np.diff(happy["time"])) == pytest.approx(1 / 2.5, abs=0.02)
    summ = pd.read_csv(tmp_path / "out" / "pred.summary.csv", keep_default_na=False,
                       na_values={c: [""] for c in SUMMARY_COLUMNS if c not in (*text_cols, "path")})
    assert list(summ["video_id"]) == ["happy", "no_face"]
    assert summ.set_index("video_id").loc["happy", "dominant"] == "Happiness"
    doc = json.loads((tmp_path / "out" / "pred.json").read_text())
    assert doc["classes"] == list(OFFLINE_CLASSES) and doc["fps"] == 2.5
    assert [f["video_id"] for f in doc["failures"]] == ["corrupt"]
    json_rows = [r for v in doc["videos"] for r in v["frames"]]
    assert len(json_rows) == len(csv)
    for jr, (_, cr) in zip(json_rows, csv.iterrows()):
        assert list(jr) == list(FRAME_COLUMNS)
        for c in FRAME_COLUMNS:
            a, b = jr[c], cr[c]
            if isinstance(b, float) and math.isnan(b):
                assert a is None, c
            elif isinstance(a, float):
                assert a == pytest.approx(float(b), rel=1e-12, abs=1e-15), c
            else:
                assert a == (b.item() if hasattr(b, "item") else b), c
    for v in doc["videos"]:
        s = summ.set_index("video_id").loc[v["video_id"]]
        assert v["summary"]["frames_scored"] == s["frames_scored"] == len(v["frames"])


def test_cli_report(media, tmp_path, capsys):
    from affectfuse.cli import main

    paths, _ = media
    rep = tmp_path / "report"
    rc = main(["predict", str(paths["happy"]), str(paths["no_face"]), "--out", str(tmp_path / "p.csv"), "--report",
               str(rep), "--quiet", "--fps", "2"])
    assert rc == 0
    assert str(rep / "index.html") in capsys.readouterr().err
    html = (rep / "index.html").read_text()
    assert all(c in html for c in OFFLINE_CLASSES) and "Other" not in html
    for vid in ("happy", "no_face"):
        png = rep / f"timeline_{vid}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f'src="{png.name}"' in html


def test_cli_run_option_parsing_and_offline_only_flags(tmp_path, capsys):
    from affectfuse.cli import build_parser, main

    args = build_parser().parse_args(["predict", "v.mp4", "--run", "runs/a"])
    assert args.run_dir == "runs/a" and callable(args.run)
    assert build_parser().parse_args(["predict", "v.mp4"]).run_dir is None
    rc = main(["predict", str(tmp_path / "v.mp4"), "--run", str(tmp_path), "--json"])
    assert rc == 2 and "--json" in capsys.readouterr().err


def test_worker_processes_give_the_same_tables(media, result):
    paths, _ = media
    frames, summary, _ = result
    f2, s2, fail = predict_offline([paths["happy"], paths["corrupt"], paths["no_face"]], fps=FPS, progress=False,
                                   workers=2)
    assert [f.video_id for f in fail] == ["corrupt"]
    order = ["happy", "no_face"]  # input order, whichever worker finishes first
    pd.testing.assert_frame_equal(f2, pd.concat([_video(frames, v) for v in order], ignore_index=True))
    pd.testing.assert_frame_equal(s2, summary.set_index("video_id").loc[order].reset_index())


@pytest.mark.parametrize("kw, word", [({"fps": 0}, "fps"), ({"fps": float("nan")}, "fps"), ({"window": 0}, "window"),
                                      ({"workers": 0}, "workers")])
def test_bad_parameters_are_refused_before_any_work(media, kw, word):
    paths, _ = media
    with pytest.raises(ValueError, match=word):
        predict_offline([paths["happy"]], progress=False, **kw)


def test_cli_bad_fps_exits_2(media, capsys):
    from affectfuse.cli import main

    paths, _ = media
    assert main(["predict", str(paths["happy"]), "--fps", "-1", "--quiet"]) == 2
    assert "fps must be a positive number" in capsys.readouterr().err


def test_public_predict_is_the_offline_default_and_writes_through_prediction(media, result, tmp_path):
    import affectfuse as af

    paths, _ = media
    frames, summary, _ = result
    res = af.predict([paths["happy"], tmp_path / "missing.mp4"], out=tmp_path / "p.csv", fps=FPS, progress=False)
    assert isinstance(res.prediction, af.Prediction) and res.prediction.classification
    pd.testing.assert_frame_equal(res.prediction.to_frame(af.Prediction.FRAME_TABLE)[list(FRAME_COLUMNS)],
                                  _video(frames, "happy"))
    assert [f.video_id for f in res.failures] == ["missing"]
    back = af.Prediction.read(tmp_path / "p.csv", af.Prediction.FRAME_TABLE, names=list(OFFLINE_CLASSES),
                              classification=True)
    np.testing.assert_allclose(back.values, res.prediction.values, equal_nan=True)
    assert list(back.predicted_labels()) == list(_video(frames, "happy")["dominant"])
    assert res.written[0] == tmp_path / "p.csv" and "dominant Happiness" in res.text()


def test_the_public_api_matches_the_command_line():
    import affectfuse as af

    for name in ("extract", "train", "evaluate", "predict", "load_run", "FeatureStore", "ExtractConfig", "TrainConfig"):
        assert name in af.__all__ and callable(getattr(af, name))


def test_cli_predicts_a_folder_of_photos_and_videos_and_lists_failures_in_the_report(media, tmp_path, capsys):
    """A folder's images are scored; one stem in two containers gives two ids; a bad file is in the HTML too."""
    import shutil

    from affectfuse.cli import main

    paths, _ = media
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(asset_path("pyfeat-media", "0-f15-hao-ph.jpg"), d / "happy.jpg")
    shutil.copy(asset_path("pyfeat-media", "0-f1-su-ph.jpg"), d / "surprise.png.jpg")
    shutil.copy(paths["no_face"], d / "happy.mp4")
    shutil.copy(paths["corrupt"], d / "broken.mp4")
    rc = main(["predict", str(d), "--out", str(tmp_path / "p.csv"), "--report", str(tmp_path / "rep"), "--quiet"])
    assert rc == 1  # one input failed
    summ = pd.read_csv(tmp_path / "p.summary.csv", keep_default_na=False).set_index("video_id")
    assert set(summ.index) == {"happy.jpg", "happy.mp4", "surprise.png"}
    assert summ.loc["happy.jpg", "dominant"] == "Happiness" and summ.loc["happy.jpg", "frames_scored"] == 1
    assert summ.loc["surprise.png", "dominant"] == "Surprise" and summ.loc["happy.mp4", "face_frames"] == 0
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "Inputs that failed (1)" in html and "broken" in html and str(d / "broken.mp4") in html
    assert "1 input(s) failed" in html
