"""A full disk or a read-only store: one clear :class:`StoreError` naming the folder and what to do, the failed
write rolled back, every entry written before it intact and readable."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from affectfuse.cli import main
from affectfuse.errors import AffectfuseError, StoreError
from affectfuse.features.store import FeatureStore
from affectfuse.types import FeatureSet

INTACT = "entries already written are intact"


def _fs(vid: str, t: int = 16, d: int = 8, name: str = "toy", seed: int = 0) -> FeatureSet:
    rng = np.random.default_rng(seed)
    return FeatureSet(values=rng.normal(size=(t, d)).astype(np.float32), times=np.arange(t) / 10.0,
                      valid=np.ones(t, bool), extractor=name, params={"p": 1}, video_id=vid)


def _store_with_entries(path: Path, n: int = 3) -> tuple[FeatureStore, list[FeatureSet]]:
    store = FeatureStore(path, create=True)
    written = [_fs(f"v{i}", seed=i) for i in range(n)]
    for fs in written:
        store.put(fs, source=f"/data/{fs.video_id}.mp4")
    return store, written


def _assert_intact(store: FeatureStore, written: list[FeatureSet]) -> None:
    assert store.video_ids(written[0].key) == [fs.video_id for fs in written]
    for fs in written:
        np.testing.assert_array_equal(store.get(fs.video_id, fs.key).values, fs.values)
    assert [r.status for r in store.manifest(written[0].key)] == ["ok"] * len(written)


def _full(store: FeatureStore) -> None:
    """No page may be added to the database from now on: the next write that needs one gets SQLITE_FULL."""
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages}")


def test_a_full_disk_raises_store_error_and_keeps_earlier_entries(tmp_path):
    store, written = _store_with_entries(tmp_path / "features")
    _full(store)
    new_key = _fs("big", t=4000, d=64, name="newkind")
    with pytest.raises(StoreError) as info:
        store.put(new_key)
    err = info.value
    assert isinstance(err, AffectfuseError) and isinstance(err.__cause__, sqlite3.OperationalError)
    assert str(err) == (f"no space left on device while writing to {tmp_path / 'features'}/ (sqlite: database or "
                        f"disk is full): free space and run again; {INTACT}")
    assert err.path == tmp_path / "features" and err.reason == "no space left on device"
    assert not store._conn.in_transaction
    assert new_key.key not in store.keys()  # the extractors row of the failed put was rolled back with it
    _assert_intact(store, written)
    with pytest.raises(StoreError, match="no space left on device"):
        store.register("k2", {"name": "k2", "blob": "x" * 200_000})
    with pytest.raises(StoreError, match="no space left on device"):
        store.update_meta("v0", written[0].key, {"notes": "y" * 200_000})
    assert store.meta("v0", written[0].key) == {}
    with pytest.raises(StoreError, match="no space left on device"):
        store.put_failure("v0", written[0].key, "z" * 200_000)  # its DELETE of v0 is rolled back too
    _assert_intact(store, written)
    store._conn.execute("PRAGMA max_page_count = 1000000")  # space freed: the same store takes writes again
    written.append(_fs("v3", seed=3))
    store.put(written[-1])
    store.close()
    _assert_intact(FeatureStore(tmp_path / "features", create=True), written)  # and on disk, for a new process


def test_the_cli_says_it_in_one_line(tmp_path, monkeypatch, capsys):
    src = tmp_path / "npy"
    src.mkdir()
    for i in range(3):
        np.save(src / f"v{i}.npy", np.random.default_rng(i).random((2000, 64), dtype=np.float32))
    real = sqlite3.connect

    def small_connect(*args, **kwargs):  # a disk with room for about 40 pages
        conn = real(*args, **kwargs)
        conn.execute("PRAGMA max_page_count = 40")
        return conn

    monkeypatch.setattr(sqlite3, "connect", small_connect)
    assert main(["import-features", str(src), "--modality", "fau", "--out", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip() == (f"affectfuse import-features: error: no space left on device while writing to "
                           f"{tmp_path / 'store'}/ (sqlite: database or disk is full): free space and run again; "
                           f"{INTACT}")


def _read_only_connect(monkeypatch) -> None:
    """Every connection opened from now on is read-only (root ignores file permissions: this is how a test makes
    the database read-only for it)."""
    real = sqlite3.connect

    def connect(database, *args, **kwargs):
        return real(f"file:{database}?mode=ro", *args, uri=True, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)


def test_a_read_only_database_raises_store_error_on_every_write_and_reads_still_work(tmp_path, monkeypatch):
    store, written = _store_with_entries(tmp_path / "features")
    store.close()
    _read_only_connect(monkeypatch)
    store = FeatureStore(tmp_path / "features", create=True)  # opening an existing store for reading needs no write
    _assert_intact(store, written)
    key = written[0].key
    writes = {"put": lambda: store.put(_fs("v9")), "put_failure": lambda: store.put_failure("v9", key, "no"),
              "register": lambda: store.register("k", {"name": "k"}), "delete": lambda: store.delete("v0", key),
              "update_meta": lambda: store.update_meta("v0", key, {"a": 1}),
              "delete_key": lambda: store.delete_key(key)}
    for name, write in writes.items():
        with pytest.raises(StoreError) as info:
            write()
        assert str(info.value) == (
            f"the folder or its database is read-only while writing to {tmp_path / 'features'}/ (sqlite: attempt "
            f"to write a readonly database): make it writable or use another folder, then run again; {INTACT}"), name
    _assert_intact(store, written)


def test_a_new_store_where_nothing_can_be_written_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(StoreError) as info:
        FeatureStore(tmp_path / "a_file" / "features", create=True)
    assert str(info.value) == (f"a part of the path is a file, not a folder while opening the feature store "
                               f"{tmp_path / 'a_file' / 'features'}/ ({tmp_path / 'a_file' / 'features'}: Not a "
                               f"directory): give the path of a folder")

    def no_mkdir(self, *a, **k):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))

    with monkeypatch.context() as m:
        m.setattr(Path, "mkdir", no_mkdir)
        with pytest.raises(StoreError, match=r"^the database cannot be opened for writing \(no permission, or the "
                                             r"folder is gone\) while opening the feature store .*: check that the "
                                             r"folder exists and may be written to, then run again$"):
            FeatureStore(tmp_path / "forbidden", create=True)
    _read_only_connect(monkeypatch)  # a folder SQLite may not create its database in
    with pytest.raises(StoreError, match=rf"while opening the feature store {tmp_path / 'new'}/ \(sqlite: unable to "
                                         r"open database file\)"):
        FeatureStore(tmp_path / "new", create=True)


def test_a_bug_is_not_dressed_up_as_a_disk_error(tmp_path):
    store, written = _store_with_entries(tmp_path / "features")
    with pytest.raises(sqlite3.ProgrammingError):
        with store._tx() as c:
            c.execute("INSERT INTO meta VALUES (?, ?)", (object(), "x"))
    with pytest.raises(ValueError, match="non-finite"):
        bad = _fs("nan")
        bad.values[0, 0] = np.nan
        store.put(bad)
    assert not store._conn.in_transaction
    _assert_intact(store, written)


_RO_MOUNT = textwrap.dedent("""
    import subprocess, sys
    import numpy as np
    from affectfuse.errors import StoreError
    from affectfuse.features.store import FeatureStore
    from affectfuse.types import FeatureSet
    mnt = sys.argv[1]
    fs = FeatureSet(values=np.ones((4, 2), np.float32), times=np.arange(4.0), valid=np.ones(4, bool),
                    extractor="toy", params={}, video_id="v0")
    store = FeatureStore(mnt + "/features", create=True)
    store.put(fs)
    store.close()
    subprocess.run(["mount", "-o", "remount,ro", mnt], check=True)
    for path in (mnt + "/features", mnt + "/new"):
        try:
            FeatureStore(path, create=True).put(fs)
            print("NO ERROR")
        except StoreError as e:
            print(e)
""")


@pytest.mark.skipif(sys.platform != "linux" or shutil.which("unshare") is None, reason="needs Linux and unshare")
def test_a_read_only_file_system_for_real(tmp_path):
    # a private mount namespace: a tmpfs at tmp_path/mnt, remounted read-only, seen by this process only
    (tmp_path / "mnt").mkdir()
    (tmp_path / "run.py").write_text(_RO_MOUNT)
    mount = f"mount -t tmpfs tmpfs {tmp_path / 'mnt'}"
    can = subprocess.run(["unshare", "-m", "sh", "-c", mount], capture_output=True, text=True, timeout=30)
    if can.returncode != 0:  # not root, or no mount namespaces in this container
        pytest.skip(f"no private mount here: {can.stderr.strip()[:200]}")
    cmd = f"{mount} && exec {sys.executable} {tmp_path / 'run.py'} {tmp_path / 'mnt'}"
    res = subprocess.run(["unshare", "-m", "sh", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines == [
        f"the folder is on a read-only file system while opening the feature store {tmp_path / 'mnt'}/features/ "
        "(sqlite: unable to open database file): make it writable or use another folder, then run again",
        f"the folder is on a read-only file system while opening the feature store {tmp_path / 'mnt'}/new/ "
        f"({tmp_path / 'mnt'}/new: Read-only file system): make it writable or use another folder, then run again",
    ]
