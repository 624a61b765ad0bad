"""Published pretrained affect models (``hsemotion``, ``audeering_dim``, ``affectfuse fetch-models``).

The real checkpoints cannot be fetched here (no internet), so each extractor is run on a tiny randomly
initialised model of the same architecture and file format: an ONNX graph with EmotiEffLib's input / output
names and shapes (``input`` (B, 3, 224, 224) -> ``output`` (B, 10)), and a wav2vec 2.0 + regression head folder
written by ``save_pretrained`` (also in the hub checkpoint's legacy layout). References are computed
independently: torch's bilinear resize + numpy normalisation for the face input, ``transformers``'
``Wav2Vec2Model`` + a numpy head for the voice model. Downloads run against a local HTTP server.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import logging
import re
import threading
from pathlib import Path

import numpy as np
import pytest

from affectfuse.extractors import ExtractorInput, _catalogue as catalogue, create_extractor, list_extractors
from affectfuse.extractors._catalogue import CATALOGUE, ModelFetchError, fetch_model, model_dir, read_manifest
from affectfuse.extractors.face.hsemotion import HSE_EXPRESSIONS_8, hsemotion_preprocess

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from _tiny_published import export_tiny, pin_catalogue, save_tiny_ser, tiny_w2v2_config  # noqa: E402  (tests/, shared)

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty model cache (``$AFFECTFUSE_CACHE``) for the test."""
    d = tmp_path / "cache"
    monkeypatch.setenv("AFFECTFUSE_CACHE", str(d))
    return d


# ---------------------------------------------------------------------------------------------
# hsemotion: a tiny ONNX graph with the published graphs' names and shapes
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("hse") / "enet_b0_8_va_mtl.onnx"
    return path, export_tiny(path)


def faces(n: int, size: int = 224, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def reference_input(img: np.ndarray, size: int) -> np.ndarray:
    """Independent of cv2: torch's bilinear (half-pixel) resize, rounded to uint8 as cv2 does, then the ImageNet
    normalisation in numpy. Shape: (H, W, 3) uint8 -> (3, size, size) float64."""
    t = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None]
    r = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0]
    r = np.clip(np.round(r.numpy()), 0, 255)  # (3, S, S)
    return (r / 255.0 - MEAN[:, None, None]) / STD[:, None, None]


def test_hsemotion_preprocessing_equals_the_numpy_reference():
    imgs = faces(3)
    x = hsemotion_preprocess(imgs, 224)
    ref = np.stack([((im / 255.0 - MEAN) / STD).transpose(2, 0, 1) for im in imgs])
    assert x.dtype == np.float32 and x.shape == (3, 3, 224, 224)
    np.testing.assert_allclose(x, ref, rtol=0, atol=1e-6)  # native size: no resampling at all
    odd = np.random.default_rng(1).integers(0, 256, (150, 181, 3), dtype=np.uint8)
    got = hsemotion_preprocess([odd], 224)[0]
    want = reference_input(odd, 224)
    level = 1.0 / 255.0 / STD.min()  # one intensity level: cv2 interpolates in fixed point
    assert np.abs(got - want).max() <= level * 1.01
    assert np.mean(np.abs(got - want) < 1e-6) > 0.8  # most pixels identical, the rest one level off
    with pytest.raises(ValueError, match="uint8 RGB"):
        hsemotion_preprocess(np.zeros((1, 224, 224, 3), np.float32), 224)


def test_hsemotion_columns_probabilities_and_va_pass_through(tiny_onnx, caplog, monkeypatch):
    monkeypatch.setattr(catalogue, "_announced", set())  # the licence is logged once per process
    path, net = tiny_onnx
    ex = create_extractor("hsemotion", model=str(path))
    assert "hsemotion" in list_extractors()
    assert ex.columns == [f"hse_{c}" for c in HSE_EXPRESSIONS_8] + ["hse_valence", "hse_arousal"]
    assert ex.dim == 10 and ex.contract.kind == "face" and ex.contract.image_size == 224
    imgs = faces(5)
    valid = np.array([True, True, False, True, True])
    with caplog.at_level(logging.WARNING, logger="affectfuse.models"):
        out = ex(ExtractorInput(images=imgs, valid=valid))
    assert "licence: Apache-2.0" in caplog.text  # a local copy of a published file is known by its name
    with torch.no_grad():
        raw = net(torch.from_numpy(np.stack([reference_input(i, 224) for i in imgs]).astype(np.float32))).numpy()
    probs = np.exp(raw[:, :8] - raw[:, :8].max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    v = out.values
    assert out.valid.tolist() == valid.tolist() and not v[2].any()
    np.testing.assert_allclose(v[valid, :8].sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(v[valid, :8], probs[valid], atol=2e-5)
    np.testing.assert_allclose(v[valid, 8:], raw[valid, 8:], atol=2e-5)  # valence, arousal untouched
    assert np.abs(raw[valid, 8:]).max() > 0.05  # (the check above compares real values, not zeros)
    logits = create_extractor("hsemotion", model=str(path), output="logits").predict(imgs[:2])
    np.testing.assert_allclose(logits, raw[:2], atol=2e-5)


def test_hsemotion_identity_records_file_hash_and_licence(tiny_onnx, tmp_path):
    path, _ = tiny_onnx
    ex = create_extractor("hsemotion", model=str(path))
    w = ex.params["weights"]
    assert w["file"] == "enet_b0_8_va_mtl.onnx" and w["sha256"] is None and w["licence"].startswith("Apache-2.0")
    assert ex.identity()["licence"].startswith("Apache-2.0") and "fingerprint" in w
    json.dumps(ex.identity())
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    pinned = create_extractor("hsemotion", model=str(path), sha256=sha.upper())
    assert pinned.params["weights"]["sha256"] == sha and pinned.key != ex.key
    pinned.load()
    other = tmp_path / "my_face_model.onnx"
    other.write_bytes(path.read_bytes())
    mine = create_extractor("hsemotion", model=str(other), va=True)
    assert mine.params["weights"]["licence"].startswith("unknown") and mine.dim == 10
    assert create_extractor("hsemotion", model=str(other)).dim == 8  # EmotiEffLib's rule: no _mtl, no VA
    with pytest.raises(ValueError, match="outputs 10 values per face, expected 8"):
        create_extractor("hsemotion", model=str(other)).load()
    with pytest.raises(ModelFetchError, match="expected " + "0" * 64):
        create_extractor("hsemotion", model=str(path), sha256="0" * 64).load()
    with pytest.raises(ValueError, match="sha256 must be the SHA-256 of https://example.org/m.onnx"):
        create_extractor("hsemotion", model="https://example.org/m.onnx")
    with pytest.raises(ValueError, match="64 hex digits"):
        create_extractor("hsemotion", model=str(path), sha256="abc")
    with pytest.raises(FileNotFoundError, match="no such ONNX file"):
        create_extractor("hsemotion", model=str(tmp_path / "absent.onnx"))


def test_hsemotion_b2_size_and_input_check(tmp_path):
    p = tmp_path / "enet_b2_8.onnx"
    export_tiny(p, n_out=8, size=260)
    ex = create_extractor("hsemotion", model=str(p))
    assert ex.contract.image_size == 260 and ex.dim == 8
    out = ex(ExtractorInput(images=faces(2, 260)))
    np.testing.assert_allclose(out.values.sum(1), 1.0, atol=1e-5)
    p7 = tmp_path / "enet_b2_7.onnx"  # named as a 260-px model, exported at 224
    export_tiny(p7, n_out=7, size=224)
    with pytest.raises(ValueError, match=r"input 'input' is \[.*224, 224\], expected \(batch, 3, 260, 260\)"):
        create_extractor("hsemotion", model=str(p7)).load()


def test_hsemotion_catalogue_pins_name_their_source_and_an_immutable_url_first():
    pinned = {"enet_b0_8_va_mtl", "enet_b2_8", "enet_b0_8_best_vgaf"}
    for m in (m for m in CATALOGUE.values() if m.extractor == "hsemotion"):
        (pin,), (why,), (urls,) = m.sha256, m.pin_source, m.urls
        stem = m.files[0][:-5]
        if stem in pinned:
            assert len(pin) == 64 and set(pin) <= set("0123456789abcdef") and why
            commit = re.search(r"/(?:raw/)?([0-9a-f]{40})/", urls[0])
            assert commit and commit.group(1)[:8] in why, (urls[0], why)  # the commit the pin was computed from
            assert urls[1:] == tuple(u.format(f=m.files[0]) for u in catalogue._HSE_MIRRORS)
        else:
            assert pin is None and not why
    assert CATALOGUE["hsemotion-enet_b0_8_va_mtl"].pinned("enet_b0_8_va_mtl.onnx") == \
        "c43e056ad388d4a8dc911832b8291435b2af537f967e5870ebd731574ec7e812"
    ident = create_extractor("hsemotion").identity()
    assert ident["catalogue_weights"]["sha256"].startswith("c43e056a") and "two independent" in \
        ident["catalogue_weights"]["pin_source"]
    assert ident["params"]["weights"]["sha256"] is None, "the key names the catalogue model, not its pin"


def test_hsemotion_catalogue_model_missing_then_fetched(tiny_onnx, cache, monkeypatch):
    name = "hsemotion-enet_b0_8_va_mtl"
    ex = create_extractor("hsemotion")  # creating needs no weights: the key is the catalogue's
    assert ex.dim == 10 and ex.params["weights"]["sha256"] is None
    with pytest.raises(FileNotFoundError) as e:
        ex.load()
    msg = str(e.value)
    assert "`affectfuse fetch-models hsemotion-enet_b0_8_va_mtl`" in msg and "enet_b0_8_va_mtl.onnx" in msg
    assert "\n" not in msg
    path, _ = tiny_onnx
    d = model_dir("hsemotion-enet_b0_8_va_mtl")
    d.mkdir(parents=True)
    (d / "enet_b0_8_va_mtl.onnx").write_bytes(path.read_bytes())
    (d / "MANIFEST.json").write_text(json.dumps({"files": {"enet_b0_8_va_mtl.onnx": {
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "size": path.stat().st_size}}}))
    tiny = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ModelFetchError, match=f"has sha256 {tiny}, expected c43e056a[0-9a-f]{{56}} \\(pinned\\)"):
        create_extractor("hsemotion").load()  # not the published weights: refused at load, both hashes named
    pin_catalogue(monkeypatch, name, path)
    fresh = create_extractor("hsemotion")
    assert fresh.key == ex.key  # fetching (or pinning) does not move the store key
    assert fresh.identity()["catalogue_weights"]["sha256"] == tiny
    assert fresh(ExtractorInput(images=faces(1))).valid.all()
    monkeypatch.setitem(CATALOGUE, name, dataclasses.replace(CATALOGUE[name], sha256=(None,), pin_source=("",)))
    with open(d / "enet_b0_8_va_mtl.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelFetchError, match="changed since it was fetched"):
        create_extractor("hsemotion").load()


# ---------------------------------------------------------------------------------------------
# audeering_dim: a tiny wav2vec 2.0 + regression head folder
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ser_dir(tmp_path_factory):
    return save_tiny_ser(tmp_path_factory.mktemp("ser") / "tiny-msp-dim")


def speech(n: int, seed: int) -> np.ndarray:
    t = np.arange(n) / 16000
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(n)
            ).astype(np.float32)


def direct_reference(folder: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """transformers' own Wav2Vec2Model on the model card's normalisation, the head in numpy from the file."""
    from safetensors.numpy import load_file
    from transformers import Wav2Vec2Model

    enc = Wav2Vec2Model.from_pretrained(folder).eval()
    v = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    with torch.no_grad():
        pooled = enc(torch.from_numpy(v[None].astype(np.float32))).last_hidden_state.mean(1)[0].numpy()
    w = load_file(str(folder / "model.safetensors"))
    h = np.tanh(pooled @ w["classifier.dense.weight"].T + w["classifier.dense.bias"])
    return pooled, h @ w["classifier.out_proj.weight"].T + w["classifier.out_proj.bias"]


def test_audeering_dim_equals_transformers_plus_an_independent_head(ser_dir, caplog, monkeypatch):
    monkeypatch.setattr(catalogue, "_announced", set())
    ex = create_extractor("audeering_dim", model=str(ser_dir))
    assert "audeering_dim" in list_extractors()
    assert ex.columns == ["ser_arousal", "ser_dominance", "ser_valence"] and ex.contract.kind == "audio_fragment"
    rows = [speech(16000, 0), speech(5000, 1), speech(7000, 2)]
    audio = np.zeros((3, 16000), np.float32)
    for i, r in enumerate(rows):
        audio[i, : len(r)] = r
    with caplog.at_level(logging.WARNING, logger="affectfuse.models"):
        out = ex(ExtractorInput(audio=audio, audio_lengths=np.array([16000, 5000, 7000])))
    assert "licence: unknown" in caplog.text and out.valid.all()
    for i, r in enumerate(rows):
        _, dims = direct_reference(ser_dir, r)
        np.testing.assert_allclose(out.values[i], dims, atol=2e-5)
    assert np.abs(out.values[0] - out.values[1]).max() > 1e-4  # fragments differ, so do their outputs
    both = create_extractor("audeering_dim", model=str(ser_dir), output="both")
    assert both.dim == 35 and both.columns[:2] == ["ser_e0", "ser_e1"] and both.columns[-1] == "ser_valence"
    got = both(ExtractorInput(audio=rows[0][None])).values[0]
    pooled, dims = direct_reference(ser_dir, rows[0])
    np.testing.assert_allclose(got[:32], pooled, atol=2e-5)
    np.testing.assert_allclose(got[32:], dims, atol=2e-5)


def test_head_key_names_are_the_hub_checkpoints_and_its_legacy_layout_loads(ser_dir, tmp_path):
    from safetensors.torch import load_file
    from transformers import Wav2Vec2Model

    from affectfuse.extractors.audio.speech_emotion import dimensional_emotion_class

    cfg = tiny_w2v2_config()
    ours = set(dimensional_emotion_class()(cfg).state_dict())
    hub = {f"wav2vec2.{k}" for k in Wav2Vec2Model(cfg).state_dict()} | {
        "classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight", "classifier.out_proj.bias"}
    assert ours == hub
    # the hub checkpoint (2022) is a pytorch_model.bin with the old weight-norm names of the positional conv
    sd = load_file(str(ser_dir / "model.safetensors"))
    legacy = {k.replace("parametrizations.weight.original0", "weight_g")
               .replace("parametrizations.weight.original1", "weight_v"): v for k, v in sd.items()}
    assert any(k.endswith("pos_conv_embed.conv.weight_g") for k in legacy)
    d = tmp_path / "legacy"
    d.mkdir()
    torch.save(legacy, d / "pytorch_model.bin")
    for f in ("config.json", "preprocessor_config.json"):
        (d / f).write_bytes((ser_dir / f).read_bytes())
    x = speech(8000, 3)
    a = create_extractor("audeering_dim", model=str(d))(ExtractorInput(audio=x[None])).values
    b = create_extractor("audeering_dim", model=str(ser_dir))(ExtractorInput(audio=x[None])).values
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_audeering_dim_refuses_a_checkpoint_without_the_head(tmp_path):
    from transformers import Wav2Vec2Model

    d = tmp_path / "encoder-only"
    Wav2Vec2Model(tiny_w2v2_config()).save_pretrained(d)
    with pytest.raises(ValueError, match=r"lacks 4 weight\(s\).*classifier\.dense"):
        create_extractor("audeering_dim", model=str(d)).load()


def test_audeering_dim_catalogue_default_offline(cache):
    ex = create_extractor("audeering_dim")
    assert ex.dim == 3 and ex.columns == ["ser_arousal", "ser_dominance", "ser_valence"]
    w = ex.params["weights"]
    assert w["source"] == "audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim" and w["sha256"] is None
    assert w["licence"].startswith("CC-BY-NC-SA-4.0") and ex.identity()["licence"] == w["licence"]
    assert CATALOGUE["audeering-msp-dim"].non_commercial and not CATALOGUE["hsemotion-enet_b2_8"].non_commercial
    with pytest.raises(FileNotFoundError, match="`affectfuse fetch-models audeering-msp-dim`.*huggingface.co/audeering"):
        ex.load()
    assert create_extractor("audeering_dim", output="embedding").dim == 1024


# ---------------------------------------------------------------------------------------------
# fetch-models
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def server(tmp_path):
    """A local HTTP server over ``tmp_path/www``; yields (root folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _closed_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_fetch_models_offline_fails_with_one_line_naming_what_was_unreachable(cache, monkeypatch, capsys):
    from affectfuse.cli import main

    name = "hsemotion-enet_b0_8_va_mtl"
    url = f"http://127.0.0.1:{_closed_port()}/enet_b0_8_va_mtl.onnx"
    monkeypatch.setitem(CATALOGUE, name, dataclasses.replace(CATALOGUE[name], urls=((url,),)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True, raising=False)
    assert main(["fetch-models", name, "audeering-msp-dim"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("affectfuse fetch-models: error: ")
    assert f"cannot reach {url}" in err
    assert "cannot reach the Hugging Face hub for audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim" in err
    assert not (model_dir(name) / "enet_b0_8_va_mtl.onnx").exists()
    assert main(["fetch-models", "no-such-model"]) == 2
    assert "unknown model(s) 'no-such-model'" in capsys.readouterr().err


def test_fetch_models_downloads_verifies_and_refuses(tiny_onnx, cache, server, monkeypatch, capsys):
    from affectfuse.cli import main

    path, _ = tiny_onnx
    root, base = server
    (root / "enet_b0_8_va_mtl.onnx").write_bytes(path.read_bytes())
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    name = "hsemotion-enet_b0_8_va_mtl"
    entry = dataclasses.replace(CATALOGUE[name], urls=((f"{base}/enet_b0_8_va_mtl.onnx",),), sha256=(None,),
                                pin_source=("",))
    monkeypatch.setitem(CATALOGUE, name, entry)  # unpinned, as enet_b2_7 is
    assert main(["fetch-models", name]) == 2  # not fetched without being asked to
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no SHA-256 is pinned for enet_b0_8_va_mtl.onnx" in err
    assert f"`affectfuse fetch-models --allow-unverified {name}`" in err and not model_dir(name).exists()
    assert main(["fetch-models", "--allow-unverified", name]) == 0
    out = capsys.readouterr().out
    assert f"NOT VERIFIED — the catalogue pins no sha256 for it; what came has sha256 {sha}" in out
    man = read_manifest(name)
    assert man["verified"] is False and man["files"]["enet_b0_8_va_mtl.onnx"]["sha256"] == sha
    assert create_extractor("hsemotion")(ExtractorInput(images=faces(1))).valid.all()
    main(["fetch-models", "--list"])
    assert "fetched (NOT verified)" in capsys.readouterr().out
    # pinned: the right hash is verified, a wrong one is refused and leaves nothing behind
    monkeypatch.setitem(CATALOGUE, name, dataclasses.replace(entry, sha256=(sha,), pin_source=("test manifest",)))
    assert main(["fetch-models", "--force", name]) == 0
    assert f"sha256 {sha} matches the pinned hash (pin: test manifest)" in capsys.readouterr().out
    assert read_manifest(name)["verified"] is True
    main(["fetch-models", "--list"])
    listed = capsys.readouterr().out
    assert f"pin: enet_b0_8_va_mtl.onnx: sha256 {sha} (test manifest)" in listed
    assert "pin: enet_b2_7.onnx: NOT pinned (no published hash found)" in listed
    assert "hub revision main (NOT pinned)" in listed
    monkeypatch.setitem(CATALOGUE, name, dataclasses.replace(entry, sha256=("1" * 64,)))
    (model_dir(name) / "enet_b0_8_va_mtl.onnx").unlink()
    with pytest.raises(ModelFetchError, match=f"sha256 {sha} does not match the pinned 1111"):
        fetch_model(name, log_fn=lambda m: None)
    assert not (model_dir(name) / "enet_b0_8_va_mtl.onnx").exists()
    assert not list(model_dir(name).glob("*.part"))
    # a git-LFS pointer instead of the file is refused
    (root / "enet_b0_8_va_mtl.onnx").write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\n")
    monkeypatch.setitem(CATALOGUE, name, entry)
    with pytest.raises(ModelFetchError, match="git-LFS pointer"):
        fetch_model(name, allow_unverified=True, log_fn=lambda m: None)


def test_hsemotion_url_with_pinned_hash_is_fetched_on_first_use(tiny_onnx, cache, server, monkeypatch):
    path, _ = tiny_onnx
    root, base = server
    (root / "enet_b0_8_va_mtl.onnx").write_bytes(path.read_bytes())
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    url = f"{base}/enet_b0_8_va_mtl.onnx"
    ex = create_extractor("hsemotion", model=url, sha256=sha)
    assert ex.params["weights"]["licence"].startswith("Apache-2.0")  # the published file, by its name
    monkeypatch.setenv("AFFECTFUSE_NO_AUTOFETCH", "1")
    with pytest.raises(FileNotFoundError, match="AFFECTFUSE_NO_AUTOFETCH"):
        create_extractor("hsemotion", model=url, sha256=sha).load()
    monkeypatch.delenv("AFFECTFUSE_NO_AUTOFETCH")
    assert ex(ExtractorInput(images=faces(2))).valid.all()
    assert (cache / "models" / "url" / sha[:16] / "enet_b0_8_va_mtl.onnx").is_file()
    with pytest.raises(ModelFetchError, match="does not match the pinned"):
        create_extractor("hsemotion", model=url + "?x", sha256="2" * 64).load()
