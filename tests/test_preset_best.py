"""``affectfuse predict --preset best``: the published face, voice and face-AU affect models where present.

The real weights cannot be fetched here, so tiny randomly initialised models of the same architecture and file
format (``tests/_tiny_published.py``) are saved into a temporary models folder (``$AFFECTFUSE_MODELS`` /
``--models``), as ``affectfuse fetch-models`` would lay them out. The module's ``models`` folder holds HSEmotion and
audEERING (py-feat's multitask model missing, as for most users); ``au_models`` adds a tiny py-feat checkpoint.
Media: OpenCV's ``Megamind.avi`` (speech and an animated face), py-feat's ``face_noface.mov`` (a face that leaves,
no speech) and a generated clip without audio.
Values are checked against the extractors run directly on independently cut crops and audio windows.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from affectfuse.assets import asset_path
from affectfuse.extractors import ExtractorInput, create_extractor
from affectfuse.inference import preset as P
from affectfuse.inference import published
from affectfuse.inference.offline import FRAME_COLUMNS, OFFLINE_CLASSES, predict_offline
from affectfuse.io.synthetic import write_video

pytest.importorskip("onnxruntime")
from _tiny_published import export_tiny, pin_catalogue, save_tiny_pyfeat, save_tiny_ser  # noqa: E402  (tests/, shared)

FACE, VOICE, PYFEAT = "hsemotion-enet_b0_8_va_mtl", "audeering-msp-dim", "pyfeat-multitask-v28"
PYFEAT_FILE = "face_multitask_v28.safetensors"
VOICE_COLS = ["voice_time", "silero_speech_fraction", "voice_arousal", "voice_dominance", "voice_valence"]
PYFEAT_COLS = [*P.PYFEAT_AU_COLUMNS, "pyfeat_valence", "pyfeat_arousal"]
_REAL_HUB_SNAPSHOT = published._hub_snapshot  # before the autouse fixture hides the machine's cache


def _models(root: Path, face: bool = True, voice: bool = True, pyfeat: bool = False) -> Path:
    if face:
        export_tiny(root / FACE / "enet_b0_8_va_mtl.onnx")
    if voice:
        save_tiny_ser(root / VOICE)
    if pyfeat:
        pytest.importorskip("timm")
        save_tiny_pyfeat(root / PYFEAT / PYFEAT_FILE)
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="module", autouse=True)
def tiny_face_pinned(tmp_path_factory):
    """The face model's catalogue entry pinned to the tiny graph every ``_models`` exports (the export is
    deterministic: the same bytes each time)."""
    a, b = (tmp_path_factory.mktemp(f"pin{i}") / "enet_b0_8_va_mtl.onnx" for i in range(2))
    export_tiny(a), export_tiny(b)
    assert a.read_bytes() == b.read_bytes()
    mp = pytest.MonkeyPatch()
    pin_catalogue(mp, FACE, a)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return _models(tmp_path_factory.mktemp("models"))


@pytest.fixture(autouse=True)
def no_hub_cache(monkeypatch):
    """The real audEERING model may sit in this machine's Hugging Face cache: the tests see only their folder."""
    monkeypatch.setattr(published, "_hub_snapshot", lambda hub: None)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    import cv2

    d = tmp_path_factory.mktemp("preset_media")
    img = cv2.cvtColor(cv2.imread(str(asset_path("pyfeat-media", "0-f15-hao-ph.jpg"))), cv2.COLOR_BGR2RGB)
    silent = d / "silent.mp4"
    write_video(silent, duration=2.0, fps=25, size=(320, 240), audio=False, face=img, face_size=160)
    return {"talk": asset_path("opencv-media", "Megamind.avi"),
            "face_noface": asset_path("pyfeat-media", "face_noface.mov"), "silent": silent}


@pytest.fixture(scope="module")
def best(media, models):
    lines: list[str] = []
    mp = pytest.MonkeyPatch()
    mp.setattr(published, "_hub_snapshot", lambda hub: None)
    try:
        res = P.predict_best([media["talk"], media["face_noface"], media["silent"]], models=models, progress=False,
                             log=lines.append)
    finally:
        mp.undo()
    return res, lines


def _video(df, vid):
    return df[df["video_id"] == vid].reset_index(drop=True)


# ------------------------------------------------------------------------------------------------ tables
def test_columns_are_named_with_their_models(best):
    res, lines = best
    assert res.failures == []
    assert list(res.frames.columns) == [*FRAME_COLUMNS[:9], *P.HSE_COLUMNS, "dominant", "hsemotion_valence",
                                        "hsemotion_arousal", *VOICE_COLS]
    assert res.expressions == list(P.HSE_COLUMNS) and res.labels[-1] == "Contempt"
    assert list(res.summary["video_id"]) == ["Megamind", "face_noface", "silent"]
    for c in ("hsemotion_valence", "voice_arousal", "voiced_windows"):
        assert c in res.summary.columns
    # each column's model, licence and weights are recorded
    assert res.columns["hsemotion_valence"]["model"] == FACE
    assert res.columns["hsemotion_valence"]["licence"].startswith("Apache-2.0")
    w = res.columns["voice_arousal"]["weights"]
    assert res.columns["voice_arousal"]["licence"].startswith("CC-BY-NC-SA-4.0")
    assert w["path"].endswith("model.safetensors") and len(w["sha256"]) == 64
    assert res.columns["silero_speech_fraction"]["licence"].startswith("MIT")
    assert res.sampling["voice"]["window_s"] == 2.0 and res.sampling["voice"]["hop_s"] == 1.0
    assert lines[0].startswith(f"face model {FACE}: found in {res.models[0].where}")
    assert "NON-COMMERCIAL" in lines[1] and lines[1].startswith(f"voice model {VOICE}: found")


def test_face_columns_are_probabilities_and_nan_without_a_face(best):
    res, _ = best
    df = _video(res.frames, "face_noface")
    face = df["face"].to_numpy(bool)
    assert face[:3].all() and not face[-3:].any()
    cols = [*P.HSE_COLUMNS, "hsemotion_valence", "hsemotion_arousal", "box_x1", "face_score"]
    assert df.loc[~face, cols].isna().all().all() and (df.loc[~face, "dominant"] == "").all()
    all_face = res.frames["face"].to_numpy(bool)
    p = res.frames.loc[all_face, list(P.HSE_COLUMNS)].to_numpy()
    assert len(p) > 40 and ((p >= 0) & (p <= 1)).all()
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    assert np.isfinite(res.frames.loc[all_face, ["hsemotion_valence", "hsemotion_arousal"]].to_numpy()).all()
    dom = np.asarray(res.labels, object)[p.argmax(1)]
    assert (res.frames.loc[all_face, "dominant"].to_numpy() == dom).all()


def test_face_values_equal_the_extractor_on_the_same_crop(best, media, models):
    from affectfuse.io.faces import create_face_detector, crop_faces, detect_faces
    from affectfuse.io.frames import read_frames

    res, _ = best
    row = _video(res.frames, "Megamind").iloc[10]
    fb = detect_faces(read_frames(media["talk"], [int(row["frame"])], max_side=1280), create_face_detector("default"))
    ex = create_extractor("hsemotion", model=str(models / FACE / "enet_b0_8_va_mtl.onnx"))
    got = dict(zip(ex.columns, ex.predict(crop_faces(fb, size=224, margin=0.1).pixels)[0]))
    want = [got[c.replace("hsemotion_", "hse_")] for c in [*P.HSE_COLUMNS, "hsemotion_valence", "hsemotion_arousal"]]
    np.testing.assert_allclose(row[[*P.HSE_COLUMNS, "hsemotion_valence", "hsemotion_arousal"]].to_numpy(float), want,
                               atol=1e-5)


def test_voice_windows_on_a_hop_grid_gated_by_silero_and_equal_to_the_models(best, media, models):
    from affectfuse.io.video import probe, read_audio

    res, _ = best
    df = _video(res.frames, "Megamind")
    t, vt = df["time"].to_numpy(), df["voice_time"].to_numpy()
    centres = np.unique(vt)
    frames = probe(media["talk"]).frame_times
    grid = frames[0] + np.arange(0.0, frames[-1] - frames[0] + 1e-9, 1.0)  # each second's nearest frame: a window
    np.testing.assert_allclose(centres, np.unique(frames[[int(np.argmin(np.abs(frames - g))) for g in grid]]))
    nearest = centres[np.argmin(np.abs(t[:, None] - centres[None, :]), axis=1)]
    np.testing.assert_allclose(vt, nearest)  # each frame row carries the nearest window
    speech = df["silero_speech_fraction"].to_numpy()
    voiced = speech >= 0.5
    assert voiced.any() and (~voiced).any(), "Megamind has speech and a pause"
    v = df[["voice_arousal", "voice_dominance", "voice_valence"]].to_numpy()
    assert np.isfinite(v[voiced]).all() and np.isnan(v[~voiced]).all()  # NaN, never zeros, where not voiced
    wave, start = read_audio(media["talk"], sample_rate=16000)
    ser = create_extractor("audeering_dim", model=str(models / VOICE))
    vad = create_extractor("silero_vad")
    for i in (int(np.argmax(voiced)), int(np.argmin(voiced))):
        lo = int(np.floor((vt[i] - 1.0 - start) * 16000 + 0.5))
        x = wave[max(lo, 0): lo + 32000]  # 2 s centred on the window's frame, cut by hand
        assert vad(ExtractorInput(audio=x[None])).values[0, 2] == pytest.approx(speech[i], abs=1e-6)
        if voiced[i]:
            np.testing.assert_allclose(v[i], ser(ExtractorInput(audio=x[None])).values[0], atol=1e-4)
    s = res.summary.set_index("video_id").loc["Megamind"]
    win = df.drop_duplicates("voice_time")
    assert s["voice_windows"] == len(centres)
    assert s["voiced_windows"] == int((win["silero_speech_fraction"] >= .5).sum())
    assert s["voice_arousal"] == pytest.approx(win.loc[win["silero_speech_fraction"] >= .5, "voice_arousal"].mean())


def test_no_speech_and_no_audio_track_give_nan_voice(best):
    res, _ = best
    for vid in ("face_noface", "silent"):
        df = _video(res.frames, vid)
        assert df[["voice_arousal", "voice_dominance", "voice_valence"]].isna().all().all()
        assert np.isfinite(df["voice_time"]).all()
        s = res.summary.set_index("video_id").loc[vid]
        assert s["voiced_windows"] == 0 and s["voice_windows"] > 0 and math.isnan(s["voice_arousal"])
    sf = _video(res.frames, "face_noface")["silero_speech_fraction"]
    assert sf.isna().any() and (sf.dropna() < 0.5).all()  # its audio starts 2.4 s in, and holds no speech
    assert _video(res.frames, "silent")["silero_speech_fraction"].isna().all()  # no audio at all
    assert _video(res.frames, "silent")["face"].all()


def test_nearest_window():
    c = np.array([0.0, 1.0, 2.0])
    assert P.nearest_window(np.array([0.0, 0.4, 0.5, 0.6, 2.9, 3.1]), c, 1.0).tolist() == [0, 0, 0, 1, 2, -1]
    assert P.nearest_window(np.array([1.0]), np.zeros(0), 1.0).tolist() == [-1]


# ------------------------------------------------------------------------------------------------ missing models
def test_missing_models_are_listed_with_their_fetch_command_and_the_default_runs(media, tmp_path):
    empty = tmp_path / "none"
    lines: list[str] = []
    res = P.predict_best([media["silent"]], models=empty, progress=False, log=lines.append)
    assert len(lines) == 4 and lines[-1].startswith("no published model is present: running the offline default")
    for line, name in zip(lines, (FACE, VOICE, PYFEAT)):
        assert f"`affectfuse fetch-models {name}`" in line and str(empty.resolve() / name) in line
    assert "face-api" in lines[0] and "no voice columns" in lines[1]
    assert lines[2].startswith(f"face AU model {PYFEAT} is missing") and PYFEAT_FILE in lines[2]
    assert "(licence CC-BY-NC-4.0 and research-only terms)" in lines[2] and "no action-unit columns" in lines[2]
    frames, _, _ = predict_offline([media["silent"]], progress=False)
    pd.testing.assert_frame_equal(res.frames, frames)  # exactly the offline default's table
    assert res.expressions == list(OFFLINE_CLASSES) and res.columns["Neutral"]["extractor"] == "faceapi_expression"
    with pytest.raises(FileNotFoundError) as e:
        P.predict_best([media["silent"]], models=empty, progress=False, require_all=True)
    msg = str(e.value)
    assert "\n" not in msg and all(f"`affectfuse fetch-models {name}`" in msg for name in (FACE, VOICE, PYFEAT))


def test_face_weights_without_onnx_runtime_are_reported_not_used(models, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    monkeypatch.setenv("AFFECTFUSE_MODELS", str(models))
    face, voice, au = P.model_status("best")
    assert not face.present and voice.present and not au.present and P.model_status("default") == []
    assert "found in" in face.line() and 'pip install "affectfuse[onnx]"' in face.line() and "face-api" in face.line()


def test_voice_only_keeps_the_default_face_columns(media, tmp_path):
    lines: list[str] = []
    res = P.predict_best([media["silent"]], models=_models(tmp_path / "m", face=False), progress=False,
                         log=lines.append, voice_hop=0.5)
    assert lines[0].startswith(f"face model {FACE} is missing") and "found" in lines[1]
    assert list(res.frames.columns) == [*FRAME_COLUMNS, *VOICE_COLS]
    assert "hsemotion_valence" not in res.summary.columns and "voice_windows" in res.summary.columns
    np.testing.assert_allclose(np.diff(np.unique(res.frames["voice_time"])), 0.5, atol=0.05)  # the hop is honoured


# ------------------------------------------------------------------------------------------------ outputs
def test_report_draws_valence_arousal_below_the_expressions_with_model_and_licence(best, tmp_path, monkeypatch):
    from affectfuse.reporting import plots

    res, _ = best
    seen = []
    real = plots.plot_affect_timeline
    monkeypatch.setattr(plots, "plot_affect_timeline", lambda *a, **k: seen.append((a, k)) or real(*a, **k))
    index = P.preset_report(res, tmp_path / "rep")
    html = index.read_text()
    assert "Models and licences" in html and "CC-BY-NC-SA-4.0" in html and "Apache-2.0" in html
    assert "NON-COMMERCIAL" in html and "valence / arousal (below) on one time axis" in html
    assert len(seen) == 3
    (t, values, names, curves, png), _ = seen[0]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f'src="{png.name}"' in html
    assert list(names) == list(P.HSE_COLUMNS)
    labels = [c.label for c in curves]
    assert labels == [f"face valence — {FACE} (Apache-2.0)", f"face arousal — {FACE} (Apache-2.0)",
                      f"voice valence — {VOICE} (CC-BY-NC-SA-4.0, non-commercial)",
                      f"voice arousal — {VOICE} (CC-BY-NC-SA-4.0, non-commercial)"]
    assert [c.side for c in curves] == ["left", "left", "right", "right"]
    assert len(curves[2].times) == len(np.unique(_video(res.frames, "Megamind")["voice_time"]))  # once per window
    np.testing.assert_allclose(curves[0].times, t)


def test_cli_best_writes_tables_with_their_models_and_a_report(media, models, tmp_path, capsys):
    from affectfuse.cli import main

    out = tmp_path / "o" / "pred.csv"
    rc = main(["predict", str(media["silent"]), "--preset", "best", "--models", str(models), "--out", str(out),
               "--json", "--report", str(tmp_path / "rep"), "--quiet"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    err = cap.err.splitlines()
    assert err[0].startswith(f"face model {FACE}: found") and "NON-COMMERCIAL use only" in err[1]
    assert "silent:" in cap.out and "face valence" in cap.out and "no voiced audio" in cap.out
    csv = pd.read_csv(out, keep_default_na=False, na_values={c: [""] for c in ("voice_arousal", "hsemotion_valence")})
    assert list(csv.columns)[-8:] == ["dominant", "hsemotion_valence", "hsemotion_arousal", *VOICE_COLS]
    assert csv["voice_arousal"].isna().all() and csv["hsemotion_valence"].notna().all()
    cols = pd.read_csv(tmp_path / "o" / "pred.columns.csv").set_index("column")
    assert cols.loc["voice_valence", "model"] == VOICE and cols.loc["voice_valence", "licence"].startswith("CC-BY-NC")
    assert cols.loc["hsemotion_arousal", "weights"].endswith("enet_b0_8_va_mtl.onnx")
    assert len(cols.loc["hsemotion_arousal", "sha256"]) == 64
    doc = json.loads((tmp_path / "o" / "pred.json").read_text())
    assert doc["preset"] == "best" and [m["present"] for m in doc["models"]] == [True, True, False]
    assert doc["columns"]["voice_arousal"]["weights"]["sha256"] and doc["sampling"]["voice"]["hop_s"] == 1.0
    assert doc["videos"][0]["frames"][0]["voice_arousal"] is None  # NaN as null
    assert (tmp_path / "rep" / "index.html").is_file() and (tmp_path / "rep" / "timeline_silent.png").is_file()


@pytest.mark.parametrize("argv, words", [
    (["--preset", "unknown"], "unknown preset 'unknown'; known: default, best"),
    (["--preset", "best", "--require-all"], "`affectfuse fetch-models hsemotion-enet_b0_8_va_mtl`"),
    (["--require-all"], "--require-all applies to --preset best"),
    (["--preset", "best", "--run", "somewhere"], "--preset"),
])
def test_cli_errors_are_one_line_and_exit_2(media, tmp_path, capsys, argv, words):
    from affectfuse.cli import main

    rc = main(["predict", str(media["silent"]), "--models", str(tmp_path / "none"), "--quiet", *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and words in err and err.count("\n") == 0, err
    assert err.startswith("affectfuse predict: error: ")


def test_public_predict_takes_the_preset(media, models, tmp_path):
    import affectfuse as af

    res = af.predict([media["silent"]], preset="best", models=models, out=tmp_path / "p.csv", progress=False)
    assert res.preset is not None and res.prediction.names == list(P.HSE_COLUMNS)
    assert "hsemotion_valence" in res.prediction.extra and res.layout is P.BEST_TABLE
    assert [p.name for p in res.written] == ["p.csv", "p.summary.csv", "p.columns.csv"]
    back = af.Prediction.read(tmp_path / "p.csv", P.BEST_TABLE, names=list(P.HSE_COLUMNS), classification=True)
    np.testing.assert_allclose(back.values, res.prediction.values, equal_nan=True)
    assert "face model" in res.text() and "silent:" in res.text()
    with pytest.raises(ValueError, match="unknown preset 'fast'"):
        af.predict([media["silent"]], preset="fast")
    with pytest.raises(ValueError, match="voice_window apply to preset='best'"):
        af.predict([media["silent"]], voice_window=1.0)
    with pytest.raises(ValueError, match="voice_hop must be a positive number of seconds"):
        af.predict([media["silent"]], preset="best", voice_hop=0, models=models)


# ------------------------------------------------------------------------------------------------ py-feat (face AU)
@pytest.fixture(scope="module")
def au_models(tmp_path_factory):
    """HSEmotion, audEERING and a tiny py-feat multitask checkpoint (20 AUs, 7 emotions; ConvNeXt-V2-atto)."""
    return _models(tmp_path_factory.mktemp("au_models"), pyfeat=True)


@pytest.fixture(scope="module")
def best_au(media, au_models):
    lines: list[str] = []
    mp = pytest.MonkeyPatch()
    mp.setattr(published, "_hub_snapshot", lambda hub: None)
    try:
        res = P.predict_best([media["face_noface"], media["silent"]], models=au_models, progress=False,
                             log=lines.append)
    finally:
        mp.undo()
    return res, lines


def test_pyfeat_au_and_va_columns_are_in_range_nan_without_a_face_and_recorded(best_au, best, au_models):
    from affectfuse.extractors._catalogue import sha256_file
    from affectfuse.extractors.face.pyfeat_multitask import PYFEAT_AUS_20

    res, lines = best_au
    assert res.failures == []
    assert list(P.PYFEAT_AU_COLUMNS) == [f"pyfeat_{a}" for a in PYFEAT_AUS_20] and len(P.PYFEAT_AU_COLUMNS) == 20
    assert P.PYFEAT_AU_COLUMNS[0] == "pyfeat_AU01" and P.PYFEAT_AU_COLUMNS[-1] == "pyfeat_AU43"
    # the existing columns as they were; py-feat's after the face block, before the voice columns
    assert list(res.frames.columns) == [*FRAME_COLUMNS[:9], *P.HSE_COLUMNS, "dominant", "hsemotion_valence",
                                        "hsemotion_arousal", *PYFEAT_COLS, *VOICE_COLS]
    assert res.aus == list(P.PYFEAT_AU_COLUMNS) and res.expressions == list(P.HSE_COLUMNS)
    before = _video(best[0].frames, "face_noface")
    after = _video(res.frames, "face_noface")
    pd.testing.assert_frame_equal(after[list(before.columns)], before)  # HSEmotion stays the expression source
    face = res.frames["face"].to_numpy(bool)
    assert face.sum() > 15 and (~face).sum() > 10
    au = res.frames.loc[face, list(P.PYFEAT_AU_COLUMNS)].to_numpy()
    va = res.frames.loc[face, ["pyfeat_valence", "pyfeat_arousal"]].to_numpy()
    assert ((au >= 0) & (au <= 1)).all() and au.std() > 0
    assert ((va >= -1) & (va <= 1)).all() and np.isfinite(va).all()
    assert res.frames.loc[~face, PYFEAT_COLS].isna().all().all()  # NaN, never zeros, where there is no face
    # each column's model, licence and weights
    file = au_models / PYFEAT / PYFEAT_FILE
    for c in ("pyfeat_AU01", "pyfeat_AU43", "pyfeat_valence", "pyfeat_arousal"):
        rec = res.columns[c]
        assert rec["model"] == PYFEAT and rec["extractor"] == "pyfeat_multitask"
        assert rec["licence"].startswith("CC-BY-NC-4.0") and "non-commercial" in rec["licence"]
        assert rec["weights"]["path"] == str(file) and rec["weights"]["sha256"] == sha256_file(file)
        assert rec["weights"]["source"] == "https://huggingface.co/py-feat/face_multitask_v2"
    assert lines[2].startswith(f"face AU model {PYFEAT}: found in {au_models / PYFEAT}")
    assert "NON-COMMERCIAL use only" in lines[2] and len(lines) == 3
    assert res.sampling["face_au"]["chip_px"] == 256 and res.sampling["face_au"]["margin"] == 0.1
    s = res.summary.set_index("video_id")
    df = _video(res.frames, "face_noface")
    assert s.loc["face_noface", "pyfeat_valence"] == pytest.approx(df.loc[df["face"], "pyfeat_valence"].mean())
    assert "py-feat valence" in P.format_preset_summary(res)


def test_pyfeat_values_equal_the_extractor_on_the_same_chip(best_au, media, au_models):
    from affectfuse.io.faces import create_face_detector, crop_faces, detect_faces
    from affectfuse.io.frames import read_frames

    res, _ = best_au
    row = _video(res.frames, "silent").iloc[4]
    fb = detect_faces(read_frames(media["silent"], [int(row["frame"])], max_side=1280),
                      create_face_detector("default"))
    ex = create_extractor("pyfeat_multitask", model=str(au_models / PYFEAT / PYFEAT_FILE), output="all")
    got = dict(zip(ex.columns, ex.predict(crop_faces(fb, size=256, margin=0.1).pixels)[0]))
    np.testing.assert_allclose(row[PYFEAT_COLS].to_numpy(float), [got[c[len("pyfeat_"):]] for c in PYFEAT_COLS],
                               atol=1e-5)


def test_report_has_the_au_panel_and_py_feat_valence_arousal_with_model_and_licence(best_au, tmp_path, monkeypatch):
    from affectfuse.reporting import plots

    res, _ = best_au
    seen = []
    real = plots.plot_affect_timeline
    monkeypatch.setattr(plots, "plot_affect_timeline", lambda *a, **k: seen.append((a, k)) or real(*a, **k))
    html = P.preset_report(res, tmp_path / "rep").read_text()
    assert len(seen) == 2
    (t, values, names, curves, png), kw = seen[0]  # face_noface
    heat = kw["heat"]
    assert list(heat.names) == [c[len("pyfeat_"):] for c in P.PYFEAT_AU_COLUMNS] and heat.values.shape == (len(t), 20)
    face = _video(res.frames, "face_noface")["face"].to_numpy(bool)
    assert np.isnan(heat.values[~face]).all() and np.isfinite(heat.values[face]).all()
    assert heat.label.startswith("action-unit probabilities") and f"{PYFEAT} (CC-BY-NC-4.0" in heat.label
    assert "non-commercial" in heat.label
    pf = [c for c in curves if PYFEAT in c.label]
    assert [c.label for c in pf] == [f"face valence — {PYFEAT} (CC-BY-NC-4.0, non-commercial)",
                                     f"face arousal — {PYFEAT} (CC-BY-NC-4.0, non-commercial)"]
    assert [c.side for c in pf] == ["left", "left"] and [c.style for c in pf] == ["-.", "-."]
    assert [c.label.split(" — ")[1].split(" ")[0] for c in curves] == [FACE, FACE, PYFEAT, PYFEAT, VOICE, VOICE]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f'src="{png.name}"' in html
    assert "action-unit probabilities (bottom)" in html and "py-feat dash-dot" in html
    assert "pyfeat_AU01 … pyfeat_AU43 (20 AUs), pyfeat_valence, pyfeat_arousal" in html  # the models table
    assert "CC-BY-NC-4.0 and research-only terms" in html


def test_pyfeat_columns_in_the_csv_json_and_columns_table(best_au, tmp_path):
    res, _ = best_au
    written = P.write_preset_outputs(res, tmp_path / "p.csv", json_out=True)
    csv = pd.read_csv(written[0])
    assert list(csv.columns)[-len(PYFEAT_COLS) - len(VOICE_COLS):] == [*PYFEAT_COLS, *VOICE_COLS]
    assert csv.loc[~csv["face"].astype(bool), "pyfeat_AU01"].isna().all()
    cols = pd.read_csv(tmp_path / "p.columns.csv").set_index("column")
    assert cols.loc["pyfeat_AU12", "model"] == PYFEAT and cols.loc["pyfeat_AU12", "licence"].startswith("CC-BY-NC")
    assert cols.loc["pyfeat_arousal", "weights"].endswith(PYFEAT_FILE)
    assert len(cols.loc["pyfeat_arousal", "sha256"]) == 64
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["models"][2] | {"where": None} == {"role": "face AU", "name": PYFEAT, "present": True, "where": None,
                                                  "licence": doc["models"][2]["licence"], "non_commercial": True,
                                                  "fetch": f"affectfuse fetch-models {PYFEAT}"}
    frames = doc["videos"][0]["frames"]
    assert frames[-1]["face"] is False and frames[-1]["pyfeat_AU01"] is None  # no face: null


def test_require_all_fails_on_a_missing_py_feat_and_a_subset_can_be_required(media, models, tmp_path, capsys):
    from affectfuse.cli import main

    with pytest.raises(FileNotFoundError) as e:
        P.predict_best([media["silent"]], models=models, progress=False, require_all=True)
    msg = str(e.value)
    assert f"`affectfuse fetch-models {PYFEAT}`" in msg and "needs every published model" in msg
    assert FACE not in msg and VOICE not in msg  # only what is missing
    lines: list[str] = []
    res = P.predict_best([media["silent"]], models=models, progress=False, log=lines.append,
                         require_all=("face", VOICE))  # roles or catalogue names
    assert "pyfeat_AU01" not in res.frames.columns and res.aus == [] and "pyfeat_valence" not in res.summary.columns
    assert f"`affectfuse fetch-models {PYFEAT}`" in lines[2]
    with pytest.raises(FileNotFoundError, match=f"needs the face AU model .*fetch-models {PYFEAT}"):
        P.predict_best([media["silent"]], models=models, progress=False, require_all=[PYFEAT])
    with pytest.raises(ValueError, match="require_all: 'au' is not a model of preset 'best'.*'face AU'"):
        P.predict_best([media["silent"]], models=models, progress=False, require_all=["au"])
    capsys.readouterr()  # what the runs above wrote (the voice model's loading bar)
    rc = main(["predict", str(media["silent"]), "--preset", "best", "--require-all", "--models", str(models),
               "--quiet", "--out", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and f"`affectfuse fetch-models {PYFEAT}`" in err and err.count("\n") == 0, err


def test_py_feat_alone_adds_its_columns_to_the_default_face_columns(media, au_models, tmp_path):
    root = tmp_path / "m"
    root.mkdir()
    (root / PYFEAT).symlink_to(au_models / PYFEAT, target_is_directory=True)
    lines: list[str] = []
    res = P.predict_best([media["silent"]], models=root, progress=False, log=lines.append)
    assert [ln.split(" model ")[0] for ln in lines] == ["face", "voice", "face AU"] and "found" in lines[2]
    assert list(res.frames.columns) == [*FRAME_COLUMNS, *PYFEAT_COLS]  # face-api's expressions, py-feat's AUs
    assert res.expressions == list(OFFLINE_CLASSES) and res.frames["face"].all()
    assert np.isfinite(res.frames[PYFEAT_COLS].to_numpy()).all()
    assert res.columns["Neutral"]["extractor"] == "faceapi_expression"
    assert res.columns["pyfeat_AU01"]["model"] == PYFEAT


def test_py_feat_presence_follows_the_hub_cache_and_needs_timm(au_models, tmp_path, monkeypatch):
    import hashlib
    import importlib.util

    import huggingface_hub.constants as hc

    monkeypatch.setattr(published, "_hub_snapshot", _REAL_HUB_SNAPSHOT)
    monkeypatch.setenv("AFFECTFUSE_MODELS", str(tmp_path / "no_models"))
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    assert not P.model_status("best")[2].present
    data = (au_models / PYFEAT / PYFEAT_FILE).read_bytes()
    sha, rev = hashlib.sha256(data).hexdigest(), "c0ffee" * 6 + "abcd"
    repo = tmp_path / "hf" / "models--py-feat--face_multitask_v2"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / sha).write_bytes(data)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    (repo / "snapshots" / rev).mkdir(parents=True)
    (repo / "snapshots" / rev / PYFEAT_FILE).symlink_to(repo / "blobs" / sha)
    au = P.model_status("best")[2]
    assert au.present and au.where.startswith("py-feat/face_multitask_v2 (Hugging Face cache, ")
    w = published.pyfeat_record()["weights"]
    assert w["sha256"] == sha and w["revision"] == rev and w["path"].endswith(PYFEAT_FILE)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "timm" else real(name, *a))
    au = P.model_status("best")[2]
    assert not au.present and 'pip install "affectfuse[timm]"' in au.line() and "no action-unit columns" in au.line()
