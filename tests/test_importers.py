"""Feature importers: per-video .npy / MuSe-style .csv folders → one store key (files written in tmp_path)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from affectfuse.features.importers import import_features
from affectfuse.features.store import FeatureStore
from affectfuse.types import feature_key


def _npy_folder(root):
    d = root / "npyfeats"
    d.mkdir()
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 4)).astype(np.float32)
    a[2, 1] = np.nan  # one NaN cell: that row becomes invalid
    b = rng.normal(size=(3, 4)).astype(np.float64)
    c = rng.normal(size=(3, 5)).astype(np.float32)  # wrong width
    np.save(d / "vid_a.npy", a)
    np.save(d / "vid_b.npy", b)
    np.save(d / "vid_c.npy", c)
    (d / "vid_d.npy").write_bytes(b"\x93NUMPY garbage, not an array")
    (d / "notes.txt").write_text("not a feature file")
    return d, a, b


def test_npy_round_trip_failures_and_rerun(tmp_path):
    d, a, b = _npy_folder(tmp_path)
    store = FeatureStore(tmp_path / "store", create=True)
    rep = import_features(d, modality="fau", store=store, rate=2.0)
    assert rep.dim == 4
    assert rep.key == feature_key("imported_fau", {"source": "npyfeats", "dim": 4, "meta_columns": None,
                                                   "time_column": "auto", "time_unit": "auto", "rate": 2.0})
    assert sorted(rep.imported) == ["vid_a", "vid_b"] and rep.ignored == ["notes.txt"]
    assert sorted(rep.failed) == ["vid_c", "vid_d"]

    fa = store.get("vid_a", rep.key)
    assert fa.values.shape == (5, 4) and fa.values.dtype == np.float32
    np.testing.assert_array_equal(fa.valid, [True, True, False, True, True])
    np.testing.assert_array_equal(fa.values[2], np.zeros(4))  # invalid row holds zeros, not NaN
    np.testing.assert_array_equal(fa.values[fa.valid], a[[0, 1, 3, 4]])
    np.testing.assert_allclose(fa.times, np.arange(5) / 2.0)  # no time column: row / rate seconds
    fb = store.get("vid_b", rep.key)
    np.testing.assert_allclose(fb.values, b.astype(np.float32))
    assert fb.valid.all()
    assert "1 of 5 rows" in rep.warnings["vid_a"][0]
    assert store.manifest(rep.key)[0].warnings  # the warning is in the store too

    ident = store.identity(rep.key)
    assert ident["imported"] is True and ident["modality"] == "fau" and ident["dim"] == 4
    assert ident["name"] == "imported_fau" and ident["source"] == str(d.resolve())
    assert store.keys_for("imported_fau") == [rep.key]

    fails = {r.video_id: r.error for r in store.failures(rep.key)}
    assert set(fails) == {"vid_c", "vid_d"}
    assert "vid_c.npy" in fails["vid_c"] and "5 feature columns, expected 4" in fails["vid_c"]
    assert "vid_d.npy" in fails["vid_d"] and "cannot be read" in fails["vid_d"]

    # re-run: done videos are skipped, failures retried (and still fail)
    rep2 = import_features(d, modality="fau", store=store, rate=2.0)
    assert rep2.key == rep.key and rep2.imported == [] and sorted(rep2.skipped) == ["vid_a", "vid_b"]
    assert sorted(rep2.failed) == ["vid_c", "vid_d"]
    rep3 = import_features(d, modality="fau", store=store, rate=2.0, overwrite=True)
    assert sorted(rep3.imported) == ["vid_a", "vid_b"] and rep3.skipped == []
    with pytest.raises(ValueError, match="vid_c.npy"):
        import_features(d, modality="fau", store=FeatureStore(tmp_path / "s2", create=True), rate=2.0, on_error="raise")


def _muse_csv(path, times_ms, feats, segment=1):
    lines = ["timestamp,segment_id," + ",".join(f"f{j}" for j in range(feats.shape[1]))]
    for t, row in zip(times_ms, feats):
        cells = ["" if np.isnan(v) else f"{v:.6f}" for v in row]
        lines.append(f"{t},{segment}," + ",".join(cells))
    path.write_text("\n".join(lines) + "\n")


def test_muse_csv_meta_columns_times_in_seconds_and_bad_files(tmp_path):
    d = tmp_path / "FAU"
    d.mkdir()
    rng = np.random.default_rng(1)
    x1 = np.round(rng.uniform(0, 1, (4, 3)), 6)
    x1[1, :] = np.nan  # an empty row (no face): invalid
    x2 = np.round(rng.uniform(0, 1, (3, 3)), 6)
    _muse_csv(d / "00001.csv", [0, 500, 1000, 1500], x1)
    _muse_csv(d / "00002.csv", [0, 500, 1000], x2)
    _muse_csv(d / "00003.csv", [0, 500], np.ones((2, 4)))  # 4 features: width mismatch
    (d / "00004.csv").write_text("timestamp,segment_id,f0,f1,f2\n0,1,0.1,abc,0.3\n500,1,0.1,0.2,0.3\n")
    (d / "00005.csv").write_text("timestamp,segment_id,f0,f1,f2\n0,1,0.1\n500,1,0.1,0.2,0.3,0.4,0.5\n")
    store = FeatureStore(tmp_path / "store", create=True)
    rep = import_features(d, modality="fau", store=store, meta_columns=2)
    assert rep.dim == 3 and rep.time_unit == "ms"
    assert sorted(rep.imported) == ["00001", "00002"]
    f1 = store.get("00001", rep.key)
    np.testing.assert_allclose(f1.times, [0.0, 0.5, 1.0, 1.5])  # milliseconds → seconds
    np.testing.assert_array_equal(f1.valid, [True, False, True, True])
    np.testing.assert_allclose(f1.values[f1.valid], x1[[0, 2, 3]], atol=1e-6)  # meta columns excluded
    np.testing.assert_array_equal(f1.values[1], 0.0)
    np.testing.assert_allclose(store.get("00002", rep.key).values, x2, atol=1e-6)
    fails = {r.video_id: r.error for r in store.failures(rep.key)}
    assert "00003.csv" in fails["00003"] and "4 feature columns, expected 3" in fails["00003"]
    assert "00004.csv" in fails["00004"] and "'f1'" in fails["00004"] and "line 2" in fails["00004"]
    assert "abc" in fails["00004"]
    assert "00005.csv" in fails["00005"]

    # auto-detected meta columns (timestamp, segment_id by name) give the same values; explicit unit wins
    rep_auto = import_features(d, modality="fau", store=store, name="fau_auto")
    assert rep_auto.key != rep.key and rep_auto.dim == 3
    np.testing.assert_array_equal(store.get("00001", rep_auto.key).values, f1.values)
    rep_s = import_features(d, modality="fau", store=store, name="fau_s", time_unit="s", meta_columns=2)
    np.testing.assert_allclose(store.get("00002", rep_s.key).times, [0.0, 500.0, 1000.0])


def test_time_units_from_name_and_steps_and_headerless_csv(tmp_path):
    d = tmp_path / "feats"
    d.mkdir()
    (d / "v1.csv").write_text("time,a,b\n0.0,1,2\n0.04,3,4\n0.08,5,6\n")  # seconds (small steps)
    (d / "v2.csv").write_text("time,a,b\n0.0,1,2\n0.04,3,4\n")
    store = FeatureStore(tmp_path / "store", create=True)
    rep = import_features(d, modality="visual", store=store)
    assert rep.time_unit == "s"
    np.testing.assert_allclose(store.get("v1", rep.key).times, [0.0, 0.04, 0.08])
    np.testing.assert_array_equal(store.get("v1", rep.key).values, [[1, 2], [3, 4], [5, 6]])

    e = tmp_path / "ms_named"
    e.mkdir()
    (e / "v1.csv").write_text("frame,time_ms,a\n0,0.0,1\n1,0.9,2\n")  # name says ms, steps tiny
    rep = import_features(e, modality="visual", store=store)
    assert rep.time_unit == "ms" and rep.dim == 1
    np.testing.assert_allclose(store.get("v1", rep.key).times, [0.0, 0.0009])

    h = tmp_path / "headerless"
    h.mkdir()
    (h / "v1.csv").write_text("0.5,1.5\n2.5,3.5\n")
    rep = import_features(h, modality="visual", store=store)
    assert rep.dim == 2 and rep.time_unit == "index"
    np.testing.assert_array_equal(store.get("v1", rep.key).values, [[0.5, 1.5], [2.5, 3.5]])
    np.testing.assert_array_equal(store.get("v1", rep.key).times, [0.0, 1.0])

    with pytest.raises(FileNotFoundError, match="no .npy or .csv"):
        import_features(tmp_path / "headerless" / "..", modality="x", store=store)  # tmp_path: only folders
    with pytest.raises(FileNotFoundError, match="not a folder"):
        import_features(tmp_path / "nope", modality="x", store=store)


def test_cli_import_features_exit_codes(tmp_path, capsys):
    from affectfuse.cli._research import import_cmd

    d, _, _ = _npy_folder(tmp_path)
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="command")
    import_cmd.add_parser(sub, "import-features")
    args = ap.parse_args(["import-features", str(d), "--modality", "fau", "--out", str(tmp_path / "store")])
    assert args.run(args) == 1  # two files failed
    out = capsys.readouterr().out
    assert "2 imported" in out and "2 failed" in out and "vid_c.npy" in out

    ok = tmp_path / "good"
    ok.mkdir()
    np.save(ok / "x.npy", np.ones((2, 3), np.float32))
    args = ap.parse_args(["import-features", str(ok), "--modality", "audio", "--name", "egemaps",
                          "--out", str(tmp_path / "store")])
    assert args.run(args) == 0
    assert FeatureStore(tmp_path / "store", create=True).keys_for("imported_egemaps")
