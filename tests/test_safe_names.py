"""Ids from users' files never become paths out of their folder (``affectfuse._paths``), and round-trip through
the feature store unchanged (there they are values, not paths)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from affectfuse._paths import MAX_LEN, safe_name, unique_names
from affectfuse.features.store import FeatureStore
from affectfuse.reporting.prediction_report import prediction_report
from affectfuse.types import FeatureSet

NASTY = ["../../etc/x", "/abs/path", "a/b", "a\\b", "..", ".", "", "x" * 300, "Émotion", "日本語", "a\x00b",
         ".hidden", "con", "NUL.txt", "a b", "a_b", "trailing.", "sub/clip", "C:\\Windows\\x", "-", "~user/x"]


def _inside(folder, name: str) -> bool:
    path = (folder / name).resolve()
    return path.parent == folder.resolve() and path.name == name


@pytest.mark.parametrize("vid", NASTY, ids=lambda v: repr(v)[:20])
def test_a_nasty_id_becomes_one_plain_file_name_inside_the_folder(vid, tmp_path):
    name = safe_name(vid)
    assert re.fullmatch(r"[A-Za-z0-9._-]+", name) and not name.startswith(".") and not name.endswith(".")
    assert name not in (".", "..") and len(name) <= MAX_LEN
    assert name.split(".")[0].lower() not in ("con", "nul")
    assert _inside(tmp_path, name)
    (tmp_path / f"timeline_{name}.png").write_bytes(b"x")  # a file name the OS takes
    assert [p.name for p in tmp_path.iterdir()] == [f"timeline_{name}.png"]


def test_distinct_ids_give_distinct_names_and_plain_ids_keep_theirs(tmp_path):
    ids = NASTY + ["a_b-" + safe_name("a/b").rsplit("-", 1)[1], "clip_01", "Clip_01", "x" * 121, "x" * 120,
                   "e\u0301motion", "Emotion"]
    names = [safe_name(i) for i in ids]
    assert len(set(names)) == len(ids)
    assert safe_name("clip_01") == "clip_01" and safe_name("a_b") == "a_b" and safe_name("x" * 120) == "x" * 120
    assert safe_name("../../etc/x").startswith("etc_x-") and safe_name("Émotion").startswith("Emotion-")
    assert safe_name("a/b") == safe_name("a/b")  # stable: the same id, the same file on every run
    for n in names:
        (tmp_path / n).write_text(n)
    assert len(list(tmp_path.iterdir())) == len(ids)


def test_unique_names_are_readable_and_distinct_even_ignoring_case():
    names = unique_names(["clip one", "clip/two", "Clip One", "../x", "x", "", "..", "con", "clip one"])
    assert names == {"clip one": "clip_one", "clip/two": "clip_two", "Clip One": "Clip_One_2", "../x": "x",
                     "x": "x_2", "": "id", "..": "id_2", "con": "_con"}
    long = unique_names(["y" * 300, "y" * 301], limit=120)
    assert [len(n) for n in long.values()] == [120, 120] and len(set(long.values())) == 2


def test_prediction_report_files_stay_inside_its_folder(tmp_path):
    ids = ["../../escape", "/abs/path", "a/b", "a_b", "..", "", "z" * 300]
    rows = [pd.DataFrame({"video_id": v, "time": np.arange(4) / 2, "happy": np.linspace(0, 1, 4) + i / 100})
            for i, v in enumerate(ids)]
    out = tmp_path / "deep" / "report"
    index = prediction_report(pd.concat(rows, ignore_index=True), out)
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert all(p.parent == out for p in written), written
    pngs = [p for p in written if p.suffix == ".png"]
    assert len(pngs) == len(ids)  # one per video: none overwrote another
    html = index.read_text()
    assert all(f'src="{p.name}"' in html for p in pngs)
    assert not (tmp_path / "escape.png").exists() and not (tmp_path / "deep" / "timeline_.._.._escape.png").exists()


def test_nasty_ids_round_trip_through_the_store_unchanged(tmp_path):
    store = FeatureStore(tmp_path / "s", create=True)
    ids = NASTY + ["'; DROP TABLE features; --", "a%b_c"]
    for i, vid in enumerate(ids):
        fs = FeatureSet(values=np.full((3, 2), i, np.float32), times=np.arange(3.0), valid=np.ones(3, bool),
                        extractor="toy", params={"p": 1}, video_id=vid)
        store.put(fs, source=f"/data/{i}.mp4")
    key = fs.key
    assert sorted(store.video_ids(key)) == sorted(ids)
    for i, vid in enumerate(ids):
        got = store.get(vid, key)
        assert got.video_id == vid and float(got.values[0, 0]) == i
    assert set(store.load(key)) == set(ids)
    assert {r.video_id for r in store.manifest(key)} == set(ids)
    assert [p.name for p in (tmp_path / "s").iterdir() if not p.name.startswith("features.sqlite")] == []
