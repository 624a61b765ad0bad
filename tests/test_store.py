"""FeatureStore: round trips, manifest, atomicity under SIGKILL, float16, bulk loading, processes."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from affectfuse.features.store import FeatureStore
from affectfuse.types import FeatureSet, feature_key


def _fs(vid: str, t: int = 32, d: int = 8, name: str = "toy", seed: int = 0, **params) -> FeatureSet:
    rng = np.random.default_rng(seed)
    valid = rng.random(t) > 0.2
    values = rng.normal(size=(t, d)).astype(np.float32)
    values[~valid] = 0
    return FeatureSet(values=values, times=np.linspace(0, 3, t), valid=valid, extractor=name,
                      params=params or {"p": 1}, video_id=vid,
                      boxes=rng.random((t, 4)).astype(np.float32), indices=np.arange(t) * 3)


def test_round_trip_preserves_every_field(tmp_path):
    store = FeatureStore(tmp_path / "s", create=True)
    fs = _fs("v1")
    store.put(fs, source="/data/v1.mp4", warnings=["note"])
    got = store.get("v1", fs.key)
    np.testing.assert_array_equal(got.values, fs.values)
    np.testing.assert_array_equal(got.times, fs.times)
    np.testing.assert_array_equal(got.valid, fs.valid)
    np.testing.assert_array_equal(got.boxes, fs.boxes)
    np.testing.assert_array_equal(got.indices, fs.indices)
    assert got.extractor == "toy" and got.params == {"p": 1} and got.key == fs.key
    rec = store.manifest(fs.key)[0]
    assert (rec.video_id, rec.status, rec.source, rec.warnings) == ("v1", "ok", "/data/v1.mp4", ["note"])
    assert "torch" in rec.versions and "numpy" in rec.versions


def test_keys_video_ids_failures_and_clear_errors(tmp_path):
    store = FeatureStore(tmp_path / "s", create=True)
    a, b = _fs("v1"), _fs("v2", seed=1)
    other = _fs("v1", name="other", q=2)
    for fs in (a, b, other):
        store.put(fs)
    store.put_failure("v3", a.key, "v3.mp4: not a media file", source="v3.mp4")
    assert store.keys() == sorted({a.key, other.key})
    assert store.video_ids(a.key) == ["v1", "v2"]
    assert store.video_ids(other.key) == ["v1"]
    fails = store.failures()
    assert [(f.video_id, f.error) for f in fails] == [("v3", "v3.mp4: not a media file")]
    with pytest.raises(KeyError, match="extraction failed: v3.mp4: not a media file"):
        store.get("v3", a.key)
    with pytest.raises(KeyError, match="no extractor key 'nope'"):
        store.get("v1", "nope")
    with pytest.raises(KeyError, match="no features for video 'v9'"):
        store.get("v9", a.key)
    s = store.summary()
    assert s[a.key]["ok"] == 2 and s[a.key]["failed"] == 1 and s[a.key]["name"] == "toy"


def test_failure_then_success_replaces_and_success_then_failure_drops(tmp_path):
    store = FeatureStore(tmp_path / "s", create=True)
    fs = _fs("v1")
    store.put_failure("v1", fs.key, "boom")
    store.put(fs)
    assert store.status("v1", fs.key) == "ok" and store.failures() == []
    store.put_failure("v1", fs.key, "boom again")
    assert not store.has("v1", fs.key) and store.status("v1", fs.key) == "failed"


def test_key_depends_on_params(tmp_path):
    assert _fs("v", n=1).key != _fs("v", n=2).key
    assert _fs("v", n=1).key == feature_key("toy", {"n": 1})


def test_float16_storage_halves_values(tmp_path):
    s32, s16 = FeatureStore(tmp_path / "a", create=True), FeatureStore(tmp_path / "b", dtype="float16", create=True)
    fs = _fs("v1", t=64, d=128)
    s32.put(fs)
    s16.put(fs)
    g = s16.get("v1", fs.key)
    assert g.values.dtype == np.float16
    np.testing.assert_allclose(g.values.astype(np.float32), fs.values, rtol=1e-3, atol=1e-3)
    row = s16._conn.execute("SELECT length(vals) FROM features").fetchone()[0]
    assert row == 64 * 128 * 2


def test_non_finite_valid_rows_are_refused_and_nothing_is_written(tmp_path):
    store = FeatureStore(tmp_path / "s", create=True)
    fs = _fs("v1")
    fs.values[np.nonzero(fs.valid)[0][0], 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        store.put(fs)
    assert store.video_ids() == [] and store.manifest() == []


def test_bulk_load_matches_get(tmp_path):
    store = FeatureStore(tmp_path / "s", create=True)
    sets = [_fs(f"v{i:03d}", seed=i) for i in range(40)]
    for fs in sets:
        store.put(fs)
    key = sets[0].key
    allsets = store.load(key)
    assert len(allsets) == 40
    some = store.load(key, ["v005", "v017", "missing"])
    assert sorted(some) == ["v005", "v017"]
    np.testing.assert_array_equal(some["v017"].values, sets[17].values)


def test_store_pickles_and_reopens_connection_in_another_process(tmp_path):
    store = FeatureStore(tmp_path / "s", create=True)
    fs = _fs("v1")
    store.put(fs)
    clone = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(clone.get("v1", fs.key).values, fs.values)


def test_refuses_missing_store_and_file_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no feature store"):
        FeatureStore(tmp_path / "nothing", create=False)
    with pytest.raises(FileNotFoundError, match=r"typo: no feature store here .*affectfuse extract \.\.\. --out"):
        FeatureStore(tmp_path / "typo")  # reading is the default: a misspelt path is refused ...
    assert not (tmp_path / "typo").exists()  # ... and nothing is created
    made = FeatureStore(tmp_path / "new", create=True)  # creating is explicit
    assert (tmp_path / "new" / FeatureStore.FILENAME).exists() and FeatureStore(tmp_path / "new").keys() == []
    made.close()
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(NotADirectoryError):
        FeatureStore(f, create=True)
    with pytest.raises(ValueError, match="float32' or 'float16"):
        FeatureStore(tmp_path / "x", dtype="int8", create=True)


def test_sigkill_during_writes_leaves_only_complete_entries(tmp_path):
    """A writer killed at a random moment: every entry present is whole, and the manifest agrees."""
    path = tmp_path / "s"
    code = textwrap.dedent(f"""
        import numpy as np, sys
        from affectfuse.features.store import FeatureStore
        from affectfuse.types import FeatureSet
        s = FeatureStore({str(path)!r}, create=True)
        i = 0
        while True:
            v = np.full((256, 512), i, np.float32)
            s.put(FeatureSet(values=v, times=np.arange(256.0), valid=np.ones(256, bool), extractor="big",
                             params={{}}, video_id=f"v{{i:05d}}"))
            if i == 3:
                print("ready", flush=True)
            i += 1
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = FeatureStore(path, create=True)
    key = feature_key("big", {})
    ids = store.video_ids(key)
    assert len(ids) >= 4
    for vid in ids:
        fs = store.get(vid, key)
        assert fs.values.shape == (256, 512)
        assert (fs.values == int(vid[1:])).all()
        assert store.status(vid, key) == "ok"
    assert {r.video_id for r in store.manifest(key)} == set(ids)


def test_face_scores_round_trip_and_an_older_store_gains_the_column(tmp_path):
    import sqlite3

    old = tmp_path / "old"
    old.mkdir()
    con = sqlite3.connect(old / FeatureStore.FILENAME)  # the schema before face scores were stored
    con.executescript("""
        CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
        INSERT INTO meta VALUES ('format_version', '1');
        CREATE TABLE features (key TEXT NOT NULL, video_id TEXT NOT NULL, n INTEGER NOT NULL, dim INTEGER NOT NULL,
            dtype TEXT NOT NULL, vals BLOB NOT NULL, times BLOB NOT NULL, valid BLOB NOT NULL, boxes BLOB,
            indices BLOB, meta TEXT, PRIMARY KEY (key, video_id));
        INSERT INTO features VALUES ('toy-1', 'v0', 1, 1, 'float32', X'0000803F', X'0000000000000000', X'01',
            NULL, NULL, '{}');""")
    con.commit()
    con.close()
    store = FeatureStore(old, create=True)
    assert store.get("v0", "toy-1").values.tolist() == [[1.0]] and store.get("v0", "toy-1").scores is None
    fs = _fs("v1")
    fs.scores = np.linspace(0.5, 1.0, len(fs)).astype(np.float32)
    store.put(fs)
    np.testing.assert_array_equal(store.get("v1", fs.key).scores, fs.scores)
