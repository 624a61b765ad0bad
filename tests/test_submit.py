"""Challenge submission files (``affectfuse submit``): exact bytes of every layout, every refusal, round trips of
real (tiny, GENERATED) runs — a clip-level regression run, a frame-level VA run, a classification seeds folder —
format.yaml, and the CLI's exit codes."""

from __future__ import annotations

import hashlib
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
import yaml

from affectfuse.cli import main
from affectfuse.data.synthetic import make_feature_dataset, make_frame_dataset
from affectfuse.features.store import FeatureStore
from affectfuse.inference.run_folder import RunFolder
from affectfuse.inference.submission import (FORMATS, SubmissionError, read_frame_list, read_id_list,
                                             write_submission)
from affectfuse.tasks.spec import EXPR_CLASSES, GROUP_CLASSES, REACTION_EMOTIONS
from affectfuse.training import TrainConfig, train
from affectfuse.training.multi import train_seeds

MODS = {"visual": "generated_visual", "audio": "generated_audio"}
QUIET = dict(progress=False, log=lambda *_: None)


# -- fixtures: tiny real runs ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("clip")
    make_feature_dataset(d / "store", d / "labels.csv", n=30, rows=8, dims={"visual": 6, "audio": 4})
    lab = pd.read_csv(d / "labels.csv")
    cls = np.asarray(GROUP_CLASSES)[np.argmax(lab[list(REACTION_EMOTIONS[:3])].to_numpy(), axis=1)]
    lab[["id", "split"]].assign(label=cls).to_csv(d / "group.csv", index=False)
    return d


@pytest.fixture(scope="module")
def reaction_run(clip_data):
    cfg = TrainConfig(task="reaction", model="early_fusion_small", modalities=MODS, epochs=1, batch_size=8)
    train(clip_data / "labels.csv", clip_data / "store", cfg, clip_data / "reaction_run", **QUIET)
    return clip_data / "reaction_run"


@pytest.fixture(scope="module")
def group_seeds(clip_data):
    cfg = TrainConfig(task="group", model="early_fusion_small", modalities=MODS, epochs=1, batch_size=8,
                      loss="cross_entropy")
    train_seeds(clip_data / "group.csv", clip_data / "store", cfg, clip_data / "group_seeds", seeds=[1, 2], **QUIET)
    return clip_data / "group_seeds"


@pytest.fixture(scope="module")
def va_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("va")
    keys = make_frame_dataset(d / "store", d / "labels.csv", n=8, frames=40)
    cfg = TrainConfig(task="va", model="jmt_small", modalities=MODS, epochs=1, batch_size=4, seq_len=20, loss="ccc")
    train(d / "labels.csv", d / "store", cfg, d / "run", **QUIET)
    st = FeatureStore(d / "store", create=True)
    for v in st.video_ids(keys["visual"]):  # as `affectfuse extract` records it: the probed frame count
        st.update_meta(v, keys["visual"], {**(st.meta(v, keys["visual"]) or {}), "video": {"n_frames": 40}})
    st.close()
    return d / "run"


def _va(values, ids, frames):
    from affectfuse.types import Prediction

    return Prediction(values=np.asarray(values, float), names=["valence", "arousal"], video_ids=ids,
                      frames=np.asarray(frames))


def _expr(labels, ids, frames, names=EXPR_CLASSES):
    from affectfuse.types import Prediction

    probs = np.zeros((len(labels), len(names)))
    for r, lab in enumerate(labels):
        if lab is None:
            probs[r] = np.nan
        else:
            probs[r, list(names).index(lab)] = 1.0
    return Prediction(values=probs, names=list(names), video_ids=ids, frames=np.asarray(frames), classification=True)


def _reaction(rows: dict[str, list[float]]):
    from affectfuse.types import Prediction

    return Prediction(values=np.asarray(list(rows.values()), float), names=list(REACTION_EMOTIONS),
                      video_ids=list(rows))


# -- exact bytes -----------------------------------------------------------------------------------------
def test_muse_reaction_file_bytes_follow_the_expected_order(tmp_path):
    p = _reaction({"00002": [0.5, 0, 0.25, 1, 0.125, 0.75, 1e-7], "00001": [0.1] * 7})
    sub = write_submission(p, "muse_reaction", tmp_path / "s", expected_ids=["00001", "[00002]"])
    assert (tmp_path / "s" / "predictions.csv").read_bytes() == (
        b"File_ID,Adoration,Amusement,Anxiety,Disgust,Empathic-Pain,Fear,Surprise\n"
        b"[00001],0.100000,0.100000,0.100000,0.100000,0.100000,0.100000,0.100000\n"
        b"[00002],0.500000,0.000000,0.250000,1.000000,0.125000,0.750000,0.000000\n")
    assert [f.name for f in sub.files] == ["predictions.csv", "format.yaml"]
    assert FORMATS["abaw_eri"].header == FORMATS["muse_reaction"].header


def test_abaw_va_per_video_and_abaw5_flat_bytes(tmp_path):
    p = _va([[0.1, -0.2], [0.3, 0.4], [-1.0, 1.0], [0.5, -0.0000001], [0.0, 0.25]], ["a", "a", "a", "b", "b"],
            [0, 1, 2, 1, 0])
    write_submission(p, "abaw_va", tmp_path / "old", frame_counts={"a": 3, "b": 2})
    assert (tmp_path / "old" / "a.txt").read_bytes() == b"valence,arousal\n0.100000,-0.200000\n0.300000,0.400000\n" \
                                                        b"-1.000000,1.000000\n"
    assert (tmp_path / "old" / "b.txt").read_bytes() == b"valence,arousal\n0.000000,0.250000\n0.500000,0.000000\n"
    write_submission(p, "abaw5_va", tmp_path / "new", frame_counts={"a": 3, "b": 2})
    assert (tmp_path / "new" / "predictions.txt").read_bytes() == (
        b"image_location,valence,arousal\na/00001.jpg,0.100000,-0.200000\na/00002.jpg,0.300000,0.400000\n"
        b"a/00003.jpg,-1.000000,1.000000\nb/00001.jpg,0.000000,0.250000\nb/00002.jpg,0.500000,0.000000\n")


def test_abaw5_follows_the_organisers_sample_file(tmp_path):
    sample = tmp_path / "CVPR_6th_ABAW_VA_test_set_sample.txt"
    sample.write_text("image_location,valence,arousal\nb/00002.jpg,\nb/00001.jpg,\na/00001.jpg,\n")
    p = _va([[0.1, 0.1], [0.2, 0.2], [0.3, 0.3], [0.4, 0.4]], ["a", "a", "b", "b"], [0, 1, 0, 1])
    sub = write_submission(p, "abaw5_va", tmp_path / "s", frame_counts=sample)
    assert (tmp_path / "s" / "predictions.txt").read_text().splitlines() == [
        "image_location,valence,arousal", "b/00002.jpg,0.400000,0.400000", "b/00001.jpg,0.300000,0.300000",
        "a/00001.jpg,0.100000,0.100000"]
    assert sub.record["counts"]["unused_rows"] == 1  # a frame 1 (00002.jpg) is not asked for
    assert sub.record["frames_source"] == f"the frame list {sample}"
    assert list(read_frame_list(sample)) == ["b", "a"]


def test_expression_classes_by_name_in_the_organisers_order(tmp_path):
    shuffled = list(reversed(EXPR_CLASSES))  # the run's classes in another order: mapped by name
    p = _expr(["Happiness", "Other", "Neutral", "Anger"], ["v1", "v1", "v1", "v2"], [0, 1, 2, 0], names=shuffled)
    write_submission(p, "abaw_expr", tmp_path / "old", frame_counts={"v1": 3, "v2": 1})
    assert (tmp_path / "old" / "v1.txt").read_bytes() == (
        b"Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n4\n7\n0\n")
    write_submission(p, "abaw5_expr", tmp_path / "new", frame_counts={"v1": 3, "v2": 1})
    assert (tmp_path / "new" / "predictions.txt").read_bytes() == (
        b"image_location,Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n"
        b"v1/00001.jpg,4\nv1/00002.jpg,7\nv1/00003.jpg,0\nv2/00001.jpg,1\n")


# -- refusals (nothing written) --------------------------------------------------------------------------
def _refused(tmp_path, *args, match, **kw):
    out = tmp_path / "refused"
    with pytest.raises(SubmissionError, match=match):
        write_submission(*args, out=out, **kw)
    assert not out.exists(), "a refusal writes nothing"


def test_missing_and_duplicate_ids_are_refused_with_the_first_ids_and_the_count(tmp_path):
    p = _reaction({f"{i:05d}": [0.5] * 7 for i in range(3)})
    want = [f"{i:05d}" for i in range(10)]
    _refused(tmp_path, p, "muse_reaction", expected_ids=want,
             match=r"7 of 10 expected id\(s\) have no prediction: 00003, 00004, 00005, 00006, 00007 \(\+2 more\)")
    dup = _reaction({"a": [0.5] * 7})
    dup.video_ids.append("a")
    dup.values = np.vstack([dup.values, dup.values])
    _refused(tmp_path, dup, "muse_reaction", match=r"1 id\(s\) predicted more than once: a")
    ids = tmp_path / "ids.txt"
    ids.write_text("00001\n00002\n00001\n")
    _refused(tmp_path, p, "muse_reaction", expected_ids=ids, match=r"ids.txt: 1 id\(s\) listed more than once: 00001")
    nan = _reaction({"x": [np.nan] * 7, "y": [0.5] * 7})
    _refused(tmp_path, nan, "muse_reaction", match=r"1 id\(s\) predicted without a value \(NaN / no class\): x")


def test_ids_outside_the_list_are_left_out_and_counted(tmp_path):
    p = _reaction({"keep": [0.5] * 7, "other": [0.5] * 7})
    sub = write_submission(p, "muse_reaction", tmp_path / "s", expected_ids=["keep"])
    assert (tmp_path / "s" / "predictions.csv").read_text().splitlines()[1:] == ["[keep]," + ",".join(["0.500000"] * 7)]
    assert sub.record["counts"]["unused_ids"] == 1 and sub.record["unused_ids_first"] == ["other"]


def test_out_of_range_is_refused_unless_clipped_and_recorded(tmp_path):
    p = _reaction({"a": [0.5, 0.5, 0.5, 0.5, 0.5, 1.25, 0.5], "b": [-0.5] + [0.5] * 6})
    _refused(tmp_path, p, "muse_reaction", match=r"2 value\(s\) outside \[0, 1\]: a Fear=1\.25, b Adoration=-0\.5; "
                                                 r"clip=True \(--clip\)")
    sub = write_submission(p, "muse_reaction", tmp_path / "s", clip=True)
    df = pd.read_csv(tmp_path / "s" / "predictions.csv")
    assert df.loc[0, "Fear"] == 1.0 and df.loc[1, "Adoration"] == 0.0
    assert sub.record["counts"]["clipped_values"] == 2 and sub.record["options"]["clip"] is True
    va = _va([[1.5, 0.0]], ["v"], [0])
    _refused(tmp_path, va, "abaw_va", frame_counts={"v": 1}, match=r"outside \[-1, 1\]: v frame 0 valence=1\.5")


def test_missing_frames_extra_frames_and_bad_classes_are_refused(tmp_path):
    p = _va([[0.1, 0.1]] * 3, ["a", "a", "b"], [0, 3, 0])
    _refused(tmp_path, p, "abaw_va", frame_counts={"a": 5, "b": 1},
             match=r"3 frame\(s\) of 1 video\(s\) have no prediction: a \(3 of 5: frames 1, 2, 4\); fill='nearest'")
    _refused(tmp_path, p, "abaw_va", frame_counts={"a": 3, "b": 1}, match=r"predicted past their last frame .*a "
                                                                           r"\(frame 3 of 3 frames\)")
    _refused(tmp_path, p, "abaw_va", expected_ids=["a", "b"], frame_counts={"a": 4},
             match=r"1 expected video\(s\) missing from the frame counts given: b")
    _refused(tmp_path, p, "abaw_va", expected_ids=["a", "b", "c"], frame_counts={"a": 4, "b": 1, "c": 2},
             match=r"1 of 3 expected video\(s\) have no prediction: c")
    e = _expr(["Neutral", None], ["v", "v"], [0, 1])
    _refused(tmp_path, e, "abaw_expr", frame_counts={"v": 2}, match=r"1 frame\(s\) of 1 video\(s\) have no prediction")
    csv = tmp_path / "pred.csv"
    e.write(csv)
    csv.write_text(csv.read_text().replace("Neutral,1.0", "Joy,1.0", 1))
    _refused(tmp_path, csv, "abaw_expr", frame_counts={"v": 2},
             match=r"1 row\(s\) with a class outside \['Neutral', .*'Other'\]: v frame 0: 'Joy'")


def test_predictions_of_another_kind_are_refused(tmp_path, reaction_run):
    _refused(tmp_path, reaction_run, "abaw_va", match="abaw_va is frame level .* the predictions are clip level")
    _refused(tmp_path, reaction_run, "emotiw_vgaf", match="emotiw_vgaf writes a class per row")
    _refused(tmp_path, _va([[0, 0]], ["v"], [0]), "muse_reaction", match="clip level .* predictions are frame level")
    _refused(tmp_path, reaction_run, "muse_reaction", frame_counts={"v": 3}, match=r"frame_counts \(--frames\) applies")
    _refused(tmp_path, _expr(["Neutral"], ["v"], [0], names=("Neutral", "Calm")), "abaw_expr",
             match=r"the run's class\(es\) \['Calm'\] are not among them")
    with pytest.raises(KeyError, match="unknown submission format 'nope'; formats: muse_reaction"):
        write_submission(reaction_run, "nope", tmp_path / "x")
    with pytest.raises(SubmissionError, match="no predictions/holdout.csv; the run has predictions for"):
        write_submission(reaction_run, "muse_reaction", tmp_path / "x", split="holdout")


# -- real runs: round trips, format.yaml -----------------------------------------------------------------
def test_a_reaction_run_round_trips_and_format_yaml_records_it(tmp_path, reaction_run, clip_data):
    pred = RunFolder(reaction_run).read_predictions("test")
    outside = int(((pred.values < 0) | (pred.values > 1)).sum())
    assert outside, "an MSE run without a sigmoid predicts out of [0, 1]: the check must see it"
    with pytest.raises(SubmissionError, match=rf"{outside} value\(s\) outside \[0, 1\]"):
        write_submission(reaction_run, "muse_reaction", tmp_path / "refused")
    sub = write_submission(reaction_run, "muse_reaction", tmp_path / "s", clip=True)
    got = pd.read_csv(tmp_path / "s" / "predictions.csv", dtype={"File_ID": str})
    lab = pd.read_csv(clip_data / "labels.csv")
    test_ids = list(lab.loc[lab["split"] == "test", "id"])
    assert list(got.columns) == ["File_ID", *REACTION_EMOTIONS]
    assert list(got["File_ID"]) == [f"[{v}]" for v in test_ids]
    order = [pred.video_ids.index(v) for v in test_ids]
    np.testing.assert_allclose(got[list(REACTION_EMOTIONS)].to_numpy(), np.clip(pred.values[order], 0, 1),
                               atol=5e-7, rtol=0)
    rec = yaml.safe_load((tmp_path / "s" / "format.yaml").read_text())
    assert rec == sub.record
    assert (rec["format"], rec["run_kind"], rec["split"], rec["run"]) == ("muse_reaction", "run", "test",
                                                                          str(reaction_run.resolve()))
    assert rec["config_sha256"] == hashlib.sha256((reaction_run / "config.yaml").read_bytes()).hexdigest()
    assert rec["predictions_sha256"] == hashlib.sha256((reaction_run / "predictions" / "test.csv").read_bytes()
                                                       ).hexdigest()
    assert rec["ids_source"].startswith("the test split of the run's labels")
    assert rec["counts"] == {"ids": len(test_ids), "unused_ids": 0, "clipped_values": outside, "rows": len(test_ids),
                             "files": 1}
    assert rec["files"] == ["predictions.csv"] and rec["sources"] and rec["notes"]
    assert datetime.fromisoformat(rec["written_at"]).tzinfo is not None


def test_a_run_whose_test_video_was_not_scored_is_refused(tmp_path, reaction_run, clip_data):
    rows = pd.read_csv(reaction_run / "predictions" / "test.csv", dtype={"video_id": str})
    rows.iloc[1:].to_csv(tmp_path / "partial.csv", index=False)  # as if one video had failed extraction
    lost = rows["video_id"].iloc[0]
    ids = tmp_path / "partition.csv"
    lab = pd.read_csv(clip_data / "labels.csv")
    lab.assign(File_ID="[" + lab["id"] + "]", Split=lab["split"].str.capitalize())[["File_ID", "Split"]].to_csv(
        ids, index=False)
    assert read_id_list(ids, split="test") == list(lab.loc[lab["split"] == "test", "id"])
    _refused(tmp_path, tmp_path / "partial.csv", "muse_reaction", expected_ids=ids,
             match=rf"1 of {len(rows)} expected id\(s\) have no prediction: {lost}")


def test_va_run_frames_from_the_store_refused_then_filled(tmp_path, va_run):
    pred = RunFolder(va_run).read_predictions("test")
    videos = list(dict.fromkeys(pred.video_ids))
    missing = 40 * len(videos) - len(pred)
    assert missing > 0, "the generated labels leave some frames unlabelled, so unpredicted"
    _refused(tmp_path, va_run, "abaw_va", match=rf"{missing} frame\(s\) of .* have no prediction")
    sub = write_submission(va_run, "abaw_va", tmp_path / "s", fill="nearest")
    assert sub.record["frames_source"].startswith("frame counts recorded in the feature store")
    assert sub.record["counts"]["filled_frames"] == missing and sub.record["options"]["fill"] == "nearest"
    for v in videos:
        got = pd.read_csv(tmp_path / "s" / f"{v}.txt")
        assert list(got.columns) == ["valence", "arousal"] and len(got) == 40
        mine = np.asarray(pred.video_ids) == v
        np.testing.assert_allclose(got.to_numpy()[pred.frames[mine]], pred.values[mine], atol=5e-7, rtol=0)
        frames = np.sort(pred.frames[mine])
        for f in sorted(set(range(40)) - set(frames.tolist())):  # filled: the nearest predicted frame, ties earlier
            near = frames[np.argmin(np.abs(frames - f))]
            np.testing.assert_allclose(got.to_numpy()[f], got.to_numpy()[near], atol=0, rtol=0)


def test_seeds_folder_classification_ensemble_to_vgaf(tmp_path, group_seeds, clip_data):
    assert (group_seeds / "predictions" / "test.csv").exists()  # train_seeds writes the ensemble (mean probabilities)
    sub = write_submission(group_seeds, "emotiw_vgaf", tmp_path / "s")
    lines = (tmp_path / "s" / "predictions.txt").read_text().splitlines()
    assert lines[0] == "Vid_name Label"
    got = dict(line.split(" ") for line in lines[1:])
    seeds = [pd.read_csv(group_seeds / s / "predictions" / "test.csv", dtype={"video_id": str}).set_index("video_id")
             for s in ("seed_1", "seed_2")]
    cols = [f"p_{c}" for c in GROUP_CLASSES]
    mean = (seeds[0][cols] + seeds[1].loc[seeds[0].index, cols]) / 2
    want = {v: str(int(np.argmax(r)) + 1) for v, r in zip(mean.index, mean.to_numpy())}
    assert got == want
    ens = pd.read_csv(group_seeds / "predictions" / "test.csv", dtype={"video_id": str}).set_index("video_id")
    np.testing.assert_allclose(ens.loc[mean.index, cols].to_numpy(), mean.to_numpy(), atol=2e-6)
    rec = sub.record
    assert rec["run_kind"] == "seeds" and rec["ensemble"] == "written by train_seeds"
    assert set(rec["config_sha256"]) == {"seed_1", "seed_2"} and len(rec["predictions_sha256"]) == 64
    (group_seeds / "predictions" / "test.csv").unlink()  # a folder without the ensemble (older, or evaluated apart)
    rec = write_submission(group_seeds, "emotiw_vgaf", tmp_path / "t").record
    got = dict(line.split(" ") for line in (tmp_path / "t" / "predictions.txt").read_text().splitlines()[1:])
    assert got == want and rec["ensemble"].startswith("mean of 2 seeds")
    assert set(rec["predictions_sha256"]) == {"seed_1", "seed_2"}
    assert "UNCONFIRMED" in rec["notes"][0]


def test_overwrite_replaces_a_previous_submission_only(tmp_path):
    out = tmp_path / "s"
    write_submission(_va([[0, 0], [0, 0]], ["a", "b"], [0, 0]), "abaw_va", out, frame_counts={"a": 1, "b": 1})
    _refused_again = pytest.raises(SubmissionError, match="the folder is not empty")
    with _refused_again:
        write_submission(_va([[0, 0]], ["c"], [0]), "abaw_va", out, frame_counts={"c": 1})
    write_submission(_va([[0, 0]], ["c"], [0]), "abaw_va", out, frame_counts={"c": 1}, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["c.txt", "format.yaml"]  # a.txt, b.txt of the old one gone
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(SubmissionError, match="without format.yaml"):
        write_submission(_va([[0, 0]], ["c"], [0]), "abaw_va", other, frame_counts={"c": 1}, overwrite=True)
    assert (other / "keep.txt").exists()


def test_id_and_frame_list_files(tmp_path):
    one = tmp_path / "names.txt"
    one.write_text("video1\n[video2]\n\nvideo3.mp4\n")
    assert read_id_list(one) == ["video1", "video2", "video3.mp4"]
    assert read_id_list(one, strip_ext=True)[-1] == "video3"
    vg = tmp_path / "Test_labels.txt"
    vg.write_text("Vid_name Label\n1_2.mp4 1\n3_4 2\n")
    assert read_id_list(vg, strip_ext=True) == ["1_2", "3_4"]
    counts = tmp_path / "counts.csv"
    counts.write_text("video_id,n_frames\na,3\nb,x\n")
    with pytest.raises(SubmissionError, match=r"counts.csv line 3: frame count of 'b' must be an integer"):
        read_frame_list(counts)
    bad = tmp_path / "sample.txt"
    bad.write_text("image_location,valence,arousal\na/00000.jpg,\n")
    with pytest.raises(SubmissionError, match=r"sample.txt line 2: image_location must be VIDEO/NNNNN.jpg"):
        read_frame_list(bad)
    with pytest.raises(SubmissionError, match="expected the organisers' sample file"):
        read_frame_list(one)


# -- CLI ---------------------------------------------------------------------------------------------------
def test_cli_submit_list_ok_and_refusals(tmp_path, reaction_run, capsys):
    assert main(["submit", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in FORMATS) and "source: https://github.com/EIHW/MuSe2022" in listed
    assert main(["submit", str(reaction_run), "--format", "muse_reaction", "--out", str(tmp_path / "s"), "--clip"]) == 0
    err = capsys.readouterr().err
    assert "wrote muse_reaction to" in err and "clipped values" in err and (tmp_path / "s" / "predictions.csv").exists()
    ids = tmp_path / "ids.txt"
    ids.write_text("ghost\n")
    code = main(["submit", str(reaction_run), "--format", "muse_reaction", "--out", str(tmp_path / "t"),
                 "--ids", str(ids), "--clip"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("affectfuse submit: error: cannot write muse_reaction from ")
    assert "1 of 1 expected id(s) have no prediction: ghost" in err
    assert main(["submit", str(reaction_run), "--format", "nope", "--out", str(tmp_path / "u")]) == 2
    assert "unknown submission format 'nope'" in capsys.readouterr().err
    assert main(["submit", "--format", "abaw_va"]) == 2
    assert "needs RUN, --out" in capsys.readouterr().err
