"""Label readers on small files written in the datasets' real layouts."""

from __future__ import annotations

import numpy as np
import pytest

from affectfuse.data.labels import (
    load_labels,
    read_affwild2,
    read_labels_csv,
    read_muse_reaction,
    read_vgaf,
    read_viper_csv,
)
from affectfuse.errors import LabelError
from affectfuse.tasks.spec import REACTION_EMOTIONS

EMO = ",".join(REACTION_EMOTIONS)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_viper_data_info(tmp_path):
    p = write(tmp_path / "data_info.csv",
              f"File_ID,Split,{EMO},Age,Country\n"
              "[00001],Train,0.1,1.0,0.2,0,0,0.5,0.3,25,US\n"
              "[00002],Val,1.0,0.2,0.2,0,0,0.5,0.3,31,ZA\n"
              "[00010],Train,0.0,0.0,1.0,0.4,0,0,0,22,US\n")
    lab = read_viper_csv(p)
    t = lab.table
    assert list(t.columns) == ["video_id", "split", *REACTION_EMOTIONS]
    assert t["video_id"].tolist() == ["00001", "00002", "00010"]  # brackets stripped, leading zeros kept
    assert t["split"].tolist() == ["train", "dev", "train"]
    assert t.loc[1, "Adoration"] == 1.0 and t["Fear"].dtype == np.float64
    assert lab.video_ids("dev") == ["00002"] and lab.splits == ["train", "dev"]
    assert load_labels(tmp_path).table.equals(t) and load_labels(p).table.equals(t)


def test_viper_bad_rows_raise_or_drop(tmp_path):
    p = write(tmp_path / "data_info.csv",
              f"File_ID,Split,{EMO}\n"
              "[00001],Train,0.1,1.0,0.2,0,0,0.5,0.3\n"
              "[00002],Train,0.1,1.0,3.2,0,0,0.5,0.3\n"   # line 3: out of range
              ",Val,0.1,1.0,0.2,0,0,0.5,0.3\n"            # line 4: no id
              "[00003],Holdout,0.1,1.0,0.2,0,0,0.5,0.3\n"  # line 5: unknown split
              "[00004],Val,0.1,,0.2,0,0,0.5,0.3\n"        # line 6: missing target
              "[00001],Val,0.1,1.0,0.2,0,0,0.5,0.3\n")    # line 7: duplicate
    with pytest.raises(LabelError) as e:
        read_viper_csv(p)
    msg = str(e.value)
    assert str(p) in msg and "line 3" in msg and "'Anxiety' must be in [0.0, 1.0], got 3.2" in msg and "4 more" in msg
    lab = read_viper_csv(p, on_error="drop")
    assert lab.table["video_id"].tolist() == ["00001"]
    rep = "\n".join(lab.report)
    assert len(lab.report) == 5
    for needle in ("line 4: missing video id", "line 5: unknown split 'Holdout'", "line 6: target 'Amusement'",
                   "line 7: duplicate id '00001' (first at line 2)"):
        assert needle in rep


def test_muse_reaction(tmp_path):
    write(tmp_path / "labels.csv", f"File_ID,{EMO}\n[00001],0.1,1,0,0,0,0,0\n[00002],1,0,0,0,0,0,0.2\n"
                                   f"[00003],0,0,1,0,0,0,0\n")
    write(tmp_path / "partition.csv", "Id,Partition\n00001,train\n00002,devel\n00003,train\n00004,test\n")
    lab = load_labels(tmp_path)
    assert lab.task.name == "reaction"
    assert dict(zip(lab.table["video_id"], lab.table["split"])) == {"00001": "train", "00002": "dev", "00003": "train"}
    assert any("1 video(s)" in r for r in lab.report)
    write(tmp_path / "labels.csv", f"File_ID,{EMO}\n[00001],0.1,1,0,0,0,0,0\n[00009],1,0,0,0,0,0,0.2\n")
    with pytest.raises(LabelError, match=r"labels.csv, line 3: unknown split"):
        read_muse_reaction(tmp_path)


def test_affwild2_va_and_expr(tmp_path):
    va = tmp_path / "Annotations" / "VA_Estimation_Challenge"
    write(va / "Train_Set" / "vid_a.txt", "valence,arousal\n0.1,0.2\n-5,-5\n0.3,-0.4\n-5,0.5\n")
    write(va / "Validation_Set" / "12-24-1920x1080.txt", "valence,arousal\n-0.9,1.0\n")
    lab = read_affwild2(tmp_path / "Annotations", "va")
    t = lab.table
    assert list(t.columns) == ["video_id", "split", "frame", "valence", "arousal"]
    a = t[t.video_id == "vid_a"]
    assert a["frame"].tolist() == [0, 2, 3]  # frame 1 unlabelled (both -5) is skipped
    assert a["arousal"].tolist() == [0.2, -0.4, 0.5] and a["valence"].tolist()[-1] == -5.0  # partial kept
    assert lab.unlabelled == 1
    assert t[t.video_id == "12-24-1920x1080"]["split"].tolist() == ["dev"]
    assert load_labels(va).table.equals(t)  # VA guessed from the header

    ex = tmp_path / "EXPR_Classification_Challenge"
    write(ex / "Train_Set" / "v1.txt", "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n0\n-1\n4\n7\n")
    lab = read_affwild2(ex, "expr")
    assert lab.table["frame"].tolist() == [0, 2, 3] and lab.table["label"].tolist() == [0, 4, 7]
    assert lab.table["label"].dtype == np.int64 and lab.task.name == "expr"

    write(ex / "Train_Set" / "v2.txt", "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n0\n9\n")
    with pytest.raises(LabelError, match=r"v2.txt, line 3: label must be a class"):
        read_affwild2(ex, "expr")
    write(va / "Train_Set" / "vid_b.txt", "valence,arousal\n0.1,1.7\n")
    with pytest.raises(LabelError, match=r"vid_b.txt, line 2: target 'arousal' must be in \[-1.0, 1.0\] \(or -5.0"):
        read_affwild2(va, "va")
    write(va / "Train_Set" / "vid_b.txt", "arousal,valence\n0.1,0.7\n")
    with pytest.raises(LabelError, match="line 1: expected the header valence,arousal"):
        read_affwild2(va, "va")
    assert any("vid_b.txt" in r for r in read_affwild2(va, "va", on_error="drop").report)


def test_vgaf(tmp_path):
    write(tmp_path / "Train_labels.txt", "Vid_name Label\n10_1 1\n10_2 3\n11_5.mp4 2\n")
    write(tmp_path / "Val_labels.txt", "Vid_name Label\n1_1 2\n")
    lab = read_vgaf(tmp_path)
    t = lab.table.set_index("video_id")
    assert t.loc["10_1", "label"] == 0 and t.loc["10_2", "label"] == 2 and t.loc["11_5", "label"] == 1
    assert t.loc["1_1", "split"] == "dev" and lab.task.targets == ("Positive", "Neutral", "Negative")
    assert load_labels(tmp_path / "Val_labels.txt").table["video_id"].tolist() == ["1_1"]
    write(tmp_path / "Val_labels.txt", "Vid_name Label\n1_1 4\n")
    with pytest.raises(LabelError, match=r"Val_labels.txt, line 2: .*Label 4 \(expected 1, 2 or 3\)"):
        read_vgaf(tmp_path)


def test_generic_csv(tmp_path):
    p = write(tmp_path / "my.csv", "id,split,happy,calm\nv1,train,0.5,2\nv2,val,1.5,-1\n")
    lab = read_labels_csv(p)
    assert lab.task.problem == "regression" and lab.task.targets == ("happy", "calm")
    assert lab.task.resolution == "clip" and lab.table["split"].tolist() == ["train", "dev"]
    p = write(tmp_path / "cls.csv", "video_id,split,mood\nv1,train,sad\nv2,test,happy\nv3,train,sad\n")
    lab = read_labels_csv(p)
    assert lab.task.is_classification and lab.task.targets == ("happy", "sad")
    assert lab.table["label"].tolist() == [1, 0, 1]
    p = write(tmp_path / "grp.csv", "id,split,label\nv1,train,Negative\nv2,dev,0\n")
    assert read_labels_csv(p, task="group").table["label"].tolist() == [2, 0]
    p = write(tmp_path / "fr.csv", "id,split,frame,valence,arousal\nv1,train,3,0.1,0.2\nv1,train,1,-5,-5\n"
                                   "v1,train,0,0.3,0.3\n")
    lab = read_labels_csv(p, task="va")
    assert lab.table["frame"].tolist() == [0, 3] and lab.frame_level  # sorted, unlabelled frame out
    p = write(tmp_path / "dup.csv", "id,split,frame,valence,arousal\nv1,train,3,0.1,0.2\nv1,train,3,0.1,0.2\n")
    with pytest.raises(LabelError, match=r"dup.csv, line 3: duplicate frame 3 of video 'v1' \(first at line 2\)"):
        read_labels_csv(p, task="va")
    p = write(tmp_path / "nan.csv", "id,split,a\nv1,train,0.1\nv2,train,\n")
    with pytest.raises(LabelError, match=r"nan.csv, line 3: target 'a' is missing"):
        read_labels_csv(p)
    p = write(tmp_path / "nosplit.csv", "id,a\nv1,0.1\n")
    with pytest.raises(LabelError, match=r"no split column; expected one of \['split'\], found columns \['id', 'a'\]"):
        read_labels_csv(p)
