"""``affectfuse store verify``: every kind of damage is found and named, ``--repair`` removes exactly the damaged
and stale entries, old entries are checked against their (GENERATED) source videos."""

from __future__ import annotations

import numpy as np
import pytest

from affectfuse.cli import main
from affectfuse.errors import StoreError
from affectfuse.features.store import FeatureStore
from affectfuse.features.verify import KINDS, verify_store
from affectfuse.io.synthetic import write_video
from affectfuse.io.video import DECODING, decoding_record, probe
from affectfuse.types import FeatureSet

CURRENT = {"decoding": dict(DECODING)}  # what today's extraction writes into meta


def _fs(vid: str, *, name: str = "toy", d: int = 8, t: int = 12, seed: int = 0, meta: dict | None = None,
        **params) -> FeatureSet:
    rng = np.random.default_rng(seed)
    valid = np.ones(t, bool)
    valid[::4] = False
    values = rng.normal(size=(t, d)).astype(np.float32)
    values[~valid] = 0
    return FeatureSet(values=values, times=np.arange(t) / 10.0, valid=valid, extractor=name,
                      params=params or {"p": 1}, video_id=vid, boxes=rng.random((t, 4)).astype(np.float32),
                      indices=np.arange(t) * 2, scores=rng.random(t).astype(np.float32),
                      meta=dict(CURRENT if meta is None else meta))


def _pairs(report, kind: str) -> set:
    return {(p.video_id, p.key) for p in report.problems if p.kind == kind}


@pytest.fixture()
def damaged(tmp_path):
    """A store with one entry per kind of damage, two healthy entries and the damaged (video, key) per kind."""
    store = FeatureStore(tmp_path / "s", create=True)
    a = _fs("v0").key
    for i in range(10):
        store.put(_fs(f"v{i}", seed=i), source=f"/data/v{i}.mp4")
    b = _fs("tmp", name="narrow", d=4).key
    store.put(_fs("tmp", name="narrow", d=4))
    d = _fs("v0", name="unreg").key
    store.put(_fs("v0", name="unreg"))
    e = _fs("v0", name="badident").key
    store.put(_fs("v0", name="badident"))
    store.put(_fs("v1", name="badident"))
    store.put_failure("v10", a, "v10.mp4: not a media file")  # a healthy failure: not damage
    c = store._conn
    c.execute("UPDATE features SET vals = substr(vals, 1, length(vals) - 4) WHERE key=? AND video_id='v1'", (a,))
    vals = np.frombuffer(c.execute("SELECT vals FROM features WHERE key=? AND video_id='v2'", (a,)).fetchone()[0],
                         np.float32).reshape(12, 8).copy()
    vals[1, 3] = np.nan  # row 1 is valid
    c.execute("UPDATE features SET vals=? WHERE key=? AND video_id='v2'", (vals.tobytes(), a))
    c.execute("DELETE FROM features WHERE key=? AND video_id='v3'", (a,))  # v3: a consistent entry of dim 4
    c.execute("UPDATE features SET key=?, video_id='v3' WHERE key=? AND video_id='tmp'", (a, b))
    c.execute("DELETE FROM manifest WHERE video_id='tmp'")
    c.execute("DELETE FROM manifest WHERE key=? AND video_id='v4'", (a,))
    c.execute("DELETE FROM features WHERE key=? AND video_id='v5'", (a,))
    c.execute("UPDATE features SET meta='{\"decoding\": ' WHERE key=? AND video_id='v6'", (a,))
    c.execute("UPDATE manifest SET status='failed', error='boom' WHERE key=? AND video_id='v7'", (a,))
    times = np.arange(12) / 10.0
    times[5] = 0.1
    c.execute("UPDATE features SET times=? WHERE key=? AND video_id='v8'", (times.tobytes(), a))
    c.execute("DELETE FROM extractors WHERE key=?", (d,))
    c.execute("UPDATE extractors SET identity='{\"name\": ' WHERE key=?", (e,))
    expect = {"arrays": {("v1", a)}, "non-finite": {("v2", a)}, "dim": {("v3", a)},
              "manifest": {("v4", a), ("v5", a), ("v7", a)}, "json": {("v6", a), (None, e)},
              "times": {("v8", a)}, "unregistered": {("v0", d)}}
    return store, {"a": a, "b": b, "d": d, "e": e}, expect


def test_every_kind_of_damage_is_reported_with_what_was_wrong(damaged):
    store, keys, expect = damaged
    rep = verify_store(store.path)
    assert {k: _pairs(rep, k) for k in rep.counts()} == expect
    assert rep.counts() == {k: len(v) for k, v in expect.items()}
    assert list(rep.counts()) == [k for k in KINDS if k in expect]  # report order
    assert not rep.ok and rep.exit_code() == 1
    msg = {(p.kind, p.video_id): p.message for p in rep.problems}
    assert msg[("arrays", "v1")] == "vals holds 380 bytes, expected 384 (12 rows x 8 x float32)"
    assert "1 valid row(s) hold NaN / Inf values (first: row 1)" == msg[("non-finite", "v2")]
    assert msg[("dim", "v3")] == "dim is 4, but the key is registered with dim 8"
    assert msg[("manifest", "v4")] == "features stored without a manifest row"
    assert msg[("manifest", "v5")] == "the manifest says ok, but no features are stored"
    assert msg[("manifest", "v7")] == "features stored, but the manifest says 'failed'"
    assert msg[("json", "v6")].startswith("meta is not readable JSON")
    assert msg[("json", None)].startswith("identity is not readable JSON")
    assert msg[("times", "v8")] == "times decrease: row 5 at 0.1 s after row 4 at 0.4 s"
    text = rep.text()
    assert str(store.path / "features.sqlite") in text.splitlines()[0]
    assert f"v1 [{keys['a']}]: vals holds 380 bytes" in text and f"key {keys['e']}: identity" in text
    assert "--repair" in text.splitlines()[-1]
    assert store.has("v1", keys["a"])  # verify alone changes nothing


def test_repair_removes_exactly_the_damaged_entries_and_a_second_verify_is_clean(damaged):
    store, keys, expect = damaged
    a = keys["a"]
    before = store.get("v0", a)
    rep = verify_store(store.path, repair=True)
    assert rep.ok and rep.exit_code() == 0 and len(rep.repaired) == len(rep.problems) == 10
    assert "deleted 9 entries and 1 key(s)" in rep.text()
    assert store.video_ids(a) == ["v0", "v9"]
    assert [(r.video_id, r.status) for r in store.manifest(a)] == [("v0", "ok"), ("v10", "failed"), ("v9", "ok")]
    assert store.video_ids(keys["d"]) == [] and store.manifest(keys["d"]) == []
    assert keys["e"] not in store.keys()  # the key with an unreadable identity is gone, to be registered again
    assert keys["b"] in store.keys()  # registered, no entries: not damage
    np.testing.assert_array_equal(store.get("v0", a).values, before.values)
    again = verify_store(store.path)
    assert again.clean and again.exit_code() == 0 and again.text().splitlines()[-1] == "clean: no problems found"


def test_other_array_damage_valid_bytes_dtype_and_optional_columns(tmp_path):
    store = FeatureStore(tmp_path / "s", create=True)
    for i in range(5):
        store.put(_fs(f"v{i}", seed=i))
    key = _fs("v0").key
    c = store._conn
    c.execute("UPDATE features SET dtype='float64' WHERE video_id='v0'")
    c.execute("UPDATE features SET valid=? WHERE video_id='v1'", (bytes([1, 2] * 6),))
    c.execute("UPDATE features SET boxes=substr(boxes, 1, 16) WHERE video_id='v2'")
    c.execute("UPDATE features SET times=? WHERE video_id='v3'", (np.full(12, np.inf).tobytes(),))
    c.execute("UPDATE features SET scores=NULL, indices=NULL, boxes=NULL WHERE video_id='v4'")  # optional: fine
    rep = verify_store(store)
    msg = {p.video_id: (p.kind, p.message) for p in rep.problems}
    assert msg == {
        "v0": ("arrays", "dtype is 'float64', expected one of ['float32', 'float16']"),
        "v1": ("arrays", "valid holds byte values other than 0 / 1 (e.g. 2)"),
        "v2": ("arrays", "boxes holds 16 bytes, expected 192 (12 rows x 4 x float32)"),
        "v3": ("times", "times hold NaN / Inf (first: row 0)"),
    }
    verify_store(store, repair=True)
    assert store.video_ids(key) == ["v4"]


def test_unsorted_times_of_an_imported_file_are_not_damage(tmp_path):
    store = FeatureStore(tmp_path / "s", create=True)
    fs = _fs("v0", meta={})
    fs.times[3] = 0.0
    store.put(fs, warnings=["times are not sorted"], identity={"name": "toy", "imported": True, "dim": 8})
    rep = verify_store(store)
    assert rep.clean and not rep.notes  # imported: not decoded by affectfuse, no staleness check either


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    write_video(d / "rotated.mp4", duration=0.3, fps=10, size=(64, 48), audio=False, rotation=90)
    write_video(d / "upright.mp4", duration=0.3, fps=10, size=(64, 48), audio=False)
    return d


def test_old_entries_are_checked_against_their_source(videos, tmp_path):
    store = FeatureStore(tmp_path / "s", create=True)
    store.put(_fs("rot", meta={"note": 1}), source=videos / "rotated.mp4")
    store.put(_fs("up", meta={"note": 2}), source=videos / "upright.mp4")
    store.put(_fs("gone", meta={}), source=tmp_path / "moved_away.mp4")
    store.put(_fs("new"), source=videos / "rotated.mp4")  # has a decoding record: current, not probed
    key = _fs("x").key
    rep = verify_store(store)
    assert _pairs(rep, "stale") == {("rot", key)} and rep.counts() == {"stale": 1}
    stale = rep.problems[0].message
    assert stale.startswith("stale: ") and str(videos / "rotated.mp4") in stale and "rotated by 90" in stale
    notes = {p.video_id: (p.kind, p.message) for p in rep.notes}
    assert notes["gone"] == ("not-checked", f"source missing, not checked: {tmp_path / 'moved_away.mp4'}")
    assert notes["up"][0] == "current" and set(notes) == {"gone", "up"}
    assert rep.exit_code() == 1

    fixed = verify_store(store, repair=True)
    assert fixed.exit_code() == 0 and fixed.stamped == [("up", key)]
    assert store.video_ids(key) == ["gone", "new", "up"]  # the stale entry is deleted, to be recomputed
    assert store.meta("up", key) == {"note": 2, "decoding": decoding_record(probe(videos / "upright.mp4"))}
    assert store.meta("gone", key) == {}  # a missing source is not damage: kept as it is
    again = verify_store(store)
    assert again.clean and [p.video_id for p in again.notes] == ["gone"]


def test_no_sources_skips_the_staleness_check(videos, tmp_path):
    store = FeatureStore(tmp_path / "s", create=True)
    store.put(_fs("rot", meta={}), source=videos / "rotated.mp4")
    rep = verify_store(store, check_sources=False, repair=True)
    assert rep.clean and not rep.stamped and store.meta("rot", _fs("x").key) == {}
    assert [(p.kind, p.message) for p in rep.notes] == [
        ("not-checked", "written by an older affectfuse; sources not checked (--no-sources)")]


def test_cli_exit_codes_and_output(damaged, videos, tmp_path, capsys):
    store, keys, _ = damaged
    assert main(["store", "verify", str(store.path)]) == 1
    out = capsys.readouterr().out
    assert "problems (10):" in out and "  arrays (1):" in out and f"    v1 [{keys['a']}]: vals holds" in out
    assert main(["store", "verify", str(store.path), "--repair", "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "repaired: all 10 problem(s)" in out and "    ... and 2 more" in out  # manifest: 3, one shown
    assert main(["store", "verify", str(store.path)]) == 0
    assert "clean: no problems found" in capsys.readouterr().out
    assert main(["store", str(store.path)]) == 0  # the summary, as before
    assert "extractor key(s)" in capsys.readouterr().out
    assert main(["store", "verify", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("affectfuse store: error: ") and "no feature store here" in err
    assert main(["store", str(store.path), "--repair"]) == 2
    assert "--repair and --no-sources go with `affectfuse store verify STORE`" in capsys.readouterr().err
    assert main(["store", "check", str(store.path)]) == 2
    assert "the one action is `verify`" in capsys.readouterr().err


def test_a_file_that_is_not_a_database_is_an_error_not_a_crash(tmp_path, capsys):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "features.sqlite").write_bytes(b"not a database at all" * 100)
    assert main(["store", "verify", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "the database file is damaged" in err and str(tmp_path / "s") in err


def test_damaged_pages_are_reported_as_database_damage_and_nothing_is_deleted(tmp_path):
    store = FeatureStore(tmp_path / "s", create=True)
    for i in range(30):
        store.put(_fs(f"v{i}", seed=i, t=200))
    store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = store._conn.execute("PRAGMA page_size").fetchone()[0]
    store.close()
    db = tmp_path / "s" / "features.sqlite"
    raw = bytearray(db.read_bytes())
    raw[page * 4: page * 4 + 64] = b"\xff" * 64  # scribble over a b-tree page header
    db.write_bytes(bytes(raw))
    try:
        rep = verify_store(tmp_path / "s", repair=True)
    except StoreError as e:  # where SQLite refuses the file outright, the error says so
        assert "the database file is damaged" in str(e)
        return
    assert rep.counts() == {"database": 1} and rep.exit_code() == 1 and not rep.repaired
    assert rep.problems[0].message.startswith(f"{db}: SQLite finds damaged pages (")
    assert "\n" not in rep.problems[0].message  # one line per problem
