"""FeatureDataset / Standardizer / collate on a real FeatureStore written in tmp_path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from affectfuse.data import FeatureDataset, Standardizer, collate, read_affwild2, read_viper_csv, resolve_key
from affectfuse.features.store import FeatureStore
from affectfuse.tasks.spec import REACTION_EMOTIONS
from affectfuse.types import FeatureSet


def fset(video, extractor, values, times, valid=None, indices=None, params=None):
    values = np.asarray(values, dtype=np.float32)
    return FeatureSet(values=values, times=np.asarray(times, float),
                      valid=np.ones(len(values), bool) if valid is None else np.asarray(valid, bool),
                      extractor=extractor, params=params or {}, video_id=video,
                      indices=None if indices is None else np.asarray(indices, np.int64))


@pytest.fixture
def reaction(tmp_path):
    """Store with visual (3-d, varying length) and audio (2-d) features; 5 labelled videos."""
    rng = np.random.default_rng(0)
    store = FeatureStore(tmp_path / "store", create=True)
    vis = {"00001": 4, "00002": 6, "00003": 5}
    for v, n in vis.items():
        valid = np.ones(n, bool)
        if v == "00002":
            valid[1] = False
        vals = rng.normal(size=(n, 3)) * 2 + 1
        vals[~valid] = 0
        store.put(fset(v, "vit_cls", vals, np.arange(n) * 0.5, valid, indices=np.arange(n) * 15, params={"p": 1}))
    for v in ("00001", "00002", "00003", "00004"):
        store.put(fset(v, "wavlm", rng.normal(size=(3, 2)), [0.0, 1.0, 2.0]))
    store.put_failure("00005", resolve_key(store, "vit_cls"), "video.mp4: truncated file")
    emo = ",".join(REACTION_EMOTIONS)
    rows = [f"[0000{i}],{s}," + ",".join(f"{x:.3f}" for x in rng.random(7)) for i, s in
            zip(range(1, 6), ["Train", "Train", "Val", "Train", "Val"])]
    (tmp_path / "data_info.csv").write_text(f"File_ID,Split,{emo}\n" + "\n".join(rows) + "\n")
    return store, read_viper_csv(tmp_path / "data_info.csv")


def test_clip_dataset_missing_modalities_and_collate(reaction):
    store, labels = reaction
    ds = FeatureDataset(store, labels, "train", {"visual": "vit_cls", "audio": "wavlm"})
    assert ds.video_ids == ["00001", "00002", "00004"] and len(ds) == 3
    assert ds.input_dims == {"visual": 3, "audio": 2}
    assert ds.missing["visual"] == ["00004"] and ds.missing["audio"] == []
    s = ds[2]
    assert s.inputs["visual"].shape == (0, 3) and s.masks["visual"].shape == (0,)
    expect = labels.table.set_index("video_id").loc["00004", list(REACTION_EMOTIONS)].to_numpy(np.float32)
    np.testing.assert_array_equal(s.target, expect)
    stored = store.get("00002", ds.keys["visual"])
    np.testing.assert_array_equal(ds[1].inputs["visual"], stored.values)
    np.testing.assert_array_equal(ds[1].masks["visual"], stored.valid)

    b = collate([ds[i] for i in range(3)])
    assert b.inputs["visual"].shape == (3, 6, 3) and b.inputs["visual"].dtype == torch.float32
    assert b.masks["visual"].dtype == torch.bool and b.inputs["audio"].shape == (3, 3, 2)
    assert b.masks["visual"].sum(1).tolist() == [4, 5, 0]  # padding and an invalid row are False
    assert not b.inputs["visual"][~b.masks["visual"]].any()  # nothing but zeros where the mask is False
    assert b.targets.shape == (3, 7) and b.targets.dtype == torch.float32
    assert b.target_mask.tolist() == [True] * 3 and b.ids == ds.video_ids and b.times is None

    dev = FeatureDataset(store, labels, "dev", {"visual": "vit_cls", "audio": "wavlm"})
    assert dev.video_ids == ["00003"] and dev.dropped == ["00005"]
    rep = dev.check_available()["report"]
    assert any("00005" in r and "truncated file" in r and "dropped" in r for r in rep)


def test_resolve_key_errors(reaction):
    store, labels = reaction
    key = resolve_key(store, "vit_cls")
    assert resolve_key(store, key) == key
    with pytest.raises(KeyError, match="keys:"):
        resolve_key(store, "clip_vit")
    store.put(fset("00001", "vit_cls", np.zeros((2, 3)), [0, 1], params={"p": 2}))
    with pytest.raises(ValueError, match="vit_cls-") as e:
        FeatureDataset(store, labels, "train", {"visual": "vit_cls"})
    assert str(e.value).count("vit_cls-") == 2


def test_standardizer_train_only(reaction, tmp_path):
    store, labels = reaction
    mods = {"visual": "vit_cls", "audio": "wavlm"}
    train = FeatureDataset(store, labels, "train", mods)
    st = Standardizer().fit(train)
    rows = np.concatenate([store.get(v, train.keys["visual"]).values[store.get(v, train.keys["visual"]).valid]
                           for v in ("00001", "00002")])
    np.testing.assert_allclose(st.mean["visual"], rows.mean(0), rtol=1e-5)
    np.testing.assert_allclose(st.std["visual"], rows.std(0), rtol=1e-5)
    assert st.count["visual"] == 9  # 4 + 6 rows, one invalid
    # dev values do not change the statistics
    store.put(fset("00003", "vit_cls", np.full((5, 3), 1e4), np.arange(5) * 0.5, indices=np.arange(5), params={"p": 1}))
    st2 = Standardizer().fit(FeatureDataset(store, labels, "train", mods))
    np.testing.assert_array_equal(st.mean["visual"], st2.mean["visual"])
    with pytest.raises(ValueError, match="training split"):
        Standardizer().fit(FeatureDataset(store, labels, "dev", mods))
    # applied by the dataset; invalid rows stay zero
    train.standardizer = st
    x = train[1]
    ref = (store.get("00002", train.keys["visual"]).values - st.mean["visual"]) / st.std["visual"]
    np.testing.assert_allclose(x.inputs["visual"][x.masks["visual"]], ref[x.masks["visual"]], rtol=1e-5)
    assert not x.inputs["visual"][1].any()
    # round trips: JSON and flat arrays
    st3 = Standardizer.from_state_dict(json.loads(json.dumps(st.state_dict())))
    st4 = Standardizer.from_state_dict(st.arrays())
    for s in (st3, st4):
        np.testing.assert_array_equal(s.std["audio"], st.std["audio"])
        np.testing.assert_array_equal(s.transform("visual", ref), st.transform("visual", ref))


def test_frame_alignment_windows_and_padding(tmp_path):
    store = FeatureStore(tmp_path / "store", create=True)
    # visual at every 2nd frame (15 fps of a 30 fps video), row value = its frame index
    idx = np.arange(0, 10, 2)
    store.put(fset("vid", "face", np.stack([idx, -idx], 1), idx / 30.0, indices=idx))
    # audio without frame indices: a row every 0.1 s, value = its time
    at = np.arange(0, 0.35, 0.1)
    store.put(fset("vid", "audio", at[:, None], at))
    va = tmp_path / "VA" / "Train_Set"
    va.mkdir(parents=True)
    lines = ["0.1,0.1"] * 10
    lines[1] = "-5,-5"
    lines += ["-5,-5"] * 10 + ["0.5,0.5"]  # frame 20: far after the last visual row
    (va / "vid.txt").write_text("valence,arousal\n" + "\n".join(lines) + "\n")
    labels = read_affwild2(tmp_path / "VA", "va")
    frames = labels.table["frame"].tolist()
    assert frames == [0, 2, 3, 4, 5, 6, 7, 8, 9, 20]
    ds = FeatureDataset(store, labels, "train", {"visual": "face", "audio": "audio"}, seq_len=4)
    assert len(ds) == 3  # 10 labelled frames → 4 + 4 + 2
    s0, s1, s2 = ds[0], ds[1], ds[2]
    np.testing.assert_array_equal(s0.frames, [0, 2, 3, 4])
    np.testing.assert_array_equal(s0.inputs["visual"][:, 0], [0, 2, 2, 4])  # nearest earlier row
    np.testing.assert_allclose(s0.times, np.array([0, 2, 3, 4]) / 30.0)
    # audio by time: frame 5 (0.1667 s) → row at 0.1 s; frame 9 (0.3 s) → row at 0.3 s
    np.testing.assert_allclose(s1.inputs["audio"][:, 0], [0.1, 0.2, 0.2, 0.2])  # frames 5, 6, 7, 8
    np.testing.assert_allclose(s2.inputs["audio"][0, 0], 0.3)
    assert s2.masks["visual"].tolist() == [True, False]  # frame 20 is 12 frames after the last row
    assert s2.masks["audio"].tolist() == [True, False]
    assert s0.target.shape == (4, 2) and s0.target.dtype == np.float32

    b = collate([s0, s2])
    assert b.inputs["visual"].shape == (2, 4, 2) and b.targets.shape == (2, 4, 2)
    assert b.target_mask.tolist() == [[True] * 4, [True, True, False, False]]
    assert torch.isnan(b.times[1, 2:]).all() and not torch.isnan(b.times[0]).any()
    assert b.masks["visual"][1].tolist() == [True, False, False, False]

    whole = FeatureDataset(store, labels, None, {"visual": "face"}, seq_len=None)
    assert len(whole) == 1 and len(whole[0].frames) == 10


def test_frame_classification_targets(tmp_path):
    store = FeatureStore(tmp_path / "store", create=True)
    store.put(fset("v1", "face", np.ones((6, 2)), np.arange(6) / 25, indices=np.arange(6)))
    d = tmp_path / "EXPR" / "Validation_Set"
    d.mkdir(parents=True)
    (d / "v1.txt").write_text("Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n3\n-1\n1\n1\n0\n")
    labels = read_affwild2(tmp_path / "EXPR", "expr")
    ds = FeatureDataset(store, labels, "dev", {"visual": "face"}, seq_len=3)
    b = collate([ds[0], ds[1]])
    assert b.targets.dtype == torch.int64 and b.targets.tolist() == [[3, 1, 1], [0, -1, -1]]
    assert b.target_mask.tolist() == [[True] * 3, [True, False, False]]


def test_subclip_tokens_every_labelled_frame_once_dilated(tmp_path):
    """tokens='subclips': a sample's tokens are every d-th labelled frame of a seq_len*d window; the d offsets
    of a window are d samples, so every labelled frame is a token of exactly one sample."""
    from affectfuse.data.labels import load_labels
    from affectfuse.data.synthetic import make_frame_dataset
    from affectfuse.inference.train_config import TrainConfig

    keys = make_frame_dataset(tmp_path / "s", tmp_path / "l.csv", n=5, frames=150, unlabelled=0.0)
    labels = load_labels(tmp_path / "l.csv", "va")
    store = FeatureStore(tmp_path / "s", create=True)
    cfg = TrainConfig(task="va", tokens="subclips", seq_len=4, subclip_stride=8).validate()
    assert cfg.sequence == {"seq_len": 4, "dilation": 8}
    ds = FeatureDataset(store, labels, None, keys, **cfg.sequence)
    seen = {}
    for k in range(len(ds)):
        s = ds[k]
        fr = s.frames
        assert 1 <= len(fr) <= 4 and (np.diff(fr) == 8).all(), "tokens 8 labelled frames apart"
        assert s.inputs["visual"].shape == (len(fr), 8) and s.target.shape == (len(fr), 2)
        for f in fr:
            assert (s.video_id, int(f)) not in seen
            seen[(s.video_id, int(f))] = k
    assert len(seen) == 5 * 150, "every labelled frame once"
    # the features of a token are those of its frame (store rows = frames here)
    s = ds[3]
    fs = store.get(s.video_id, keys["visual"])
    np.testing.assert_allclose(s.inputs["visual"], fs.values[s.frames], atol=1e-6)
    frames = FeatureDataset(store, labels, None, keys, **TrainConfig(task="va", seq_len=4).sequence)
    assert all((np.diff(frames[k].frames) == 1).all() for k in range(len(frames)))
    with pytest.raises(ValueError, match="tokens must be 'frames' or 'subclips'"):
        TrainConfig(task="va", tokens="clips").validate()
