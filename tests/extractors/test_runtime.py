"""Extractor runtimes: ONNX Runtime gives the eager PyTorch features to 1e-4, from a cache, with clear choices."""

from __future__ import annotations

import numpy as np
import pytest

from affectfuse.extractors import ExtractorInput, create_extractor
from affectfuse.extractors import _runtime as R

pytest.importorskip("onnxruntime")


def _images(n, size, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (n, size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    root = tmp_path_factory.mktemp("vit") / "tiny"
    torch.manual_seed(0)
    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
                       patch_size=8)).save_pretrained(root)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root)
    return str(root)


CASES = [
    ("mobilenetv2_imagenet", {}, lambda: ExtractorInput(images=_images(5, 224))),
    ("faceapi_expression", {"output": "both"}, lambda: ExtractorInput(images=_images(7, 112))),
    ("r2plus1d_18", {}, lambda: ExtractorInput(clips=np.stack([_images(8, 112, s) for s in range(3)]))),
    ("resemblyzer_ge2e", {}, lambda: ExtractorInput(
        audio=np.random.default_rng(1).normal(0, 0.1, (4, 20000)).astype(np.float32),
        audio_lengths=np.array([20000, 16000, 30000 // 3, 20000]))),
]


@pytest.mark.parametrize("name, kw, batch", CASES, ids=[c[0] for c in CASES])
def test_onnx_runtime_gives_the_torch_features(name, kw, batch):
    inp = batch()
    ex = create_extractor(name, backend="onnx", **kw)
    got, ok = ex(inp)
    assert ex._onnx is not None
    ex._onnx = None  # the same weights, eager
    ref, ok_ref = ex(inp)
    np.testing.assert_array_equal(ok, ok_ref)
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
    auto = create_extractor(name, **kw)
    assert auto.config.backend == "auto" and "backend" not in auto.params, "the runtime is not in the store key"
    if name != "r2plus1d_18":  # (random weights without a seed differ per instance)
        np.testing.assert_allclose(auto(inp).values, got, atol=1e-4 * max(1.0, np.abs(ref).max()))


def test_a_hub_folder_model_runs_on_onnx_too(tiny_vit):
    inp = ExtractorInput(images=_images(3, 32))
    ref = create_extractor("vit_cls", model=tiny_vit, backend="torch")(inp).values  # weights from the folder
    got = create_extractor("vit_cls", model=tiny_vit, backend="onnx")(inp).values
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


def test_the_export_is_cached_under_the_weights_it_holds(monkeypatch):
    create_extractor("mobilenetv2_imagenet", backend="onnx").load()  # exported (or already cached)
    ex = create_extractor("mobilenetv2_imagenet", backend="onnx")
    monkeypatch.setattr(R, "export_onnx", lambda *a, **k: pytest.fail("re-exported although cached"))
    v, _ = ex(ExtractorInput(images=_images(2, 224)))
    assert v.shape == (2, 1280) and ex._onnx is not None and ex._onnx.path.parent.name == "onnx"
    side = ex._onnx.path.with_name(ex._onnx.path.name + ".json")
    assert side.exists() and '"max_abs_diff"' in side.read_text()


def test_different_weights_never_share_an_export():
    import torch

    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    assert R.weights_fingerprint(a) != R.weights_fingerprint(b)
    b.load_state_dict(a.state_dict())
    assert R.weights_fingerprint(a) == R.weights_fingerprint(b)
    assert R.onnx_path("x", {"p": 1}) != R.onnx_path("x", {"p": 2}) and R.onnx_path("x", {"p": 1}) == R.onnx_path("x", {"p": 1})


def test_backend_choices_and_refusals(monkeypatch):
    assert R.resolve_backend("auto", "cpu", "float32") == "onnx"
    assert R.resolve_backend("auto", "cuda:0", "float32") == "torch"
    assert R.resolve_backend("auto", "cpu", "bfloat16") == "torch"
    with pytest.raises(ValueError, match="runs float32 on the CPU"):
        R.resolve_backend("onnx", "cpu", "bfloat16")
    with pytest.raises(ValueError, match="backend"):
        create_extractor("mobilenetv2_imagenet", backend="tensorrt")
    monkeypatch.setattr(R, "onnx_available", lambda: False)
    assert R.resolve_backend("auto", "cpu", "float32") == "torch"
    with pytest.raises(ValueError, match='pip install "affectfuse\\[onnx\\]"'):
        R.resolve_backend("onnx", "cpu", "float32")


def test_a_failed_export_falls_back_with_a_warning_or_fails_when_asked_for(monkeypatch, tmp_path):
    monkeypatch.setenv("AFFECTFUSE_CACHE", str(tmp_path))  # nothing cached

    def broken(*a, **k):
        raise RuntimeError("ONNX Runtime differs from PyTorch by 0.5 (limit 0.0001)")

    monkeypatch.setattr(R, "export_onnx", broken)
    with pytest.warns(RuntimeWarning, match="running in PyTorch"):
        ex = create_extractor("faceapi_expression").load()
    assert ex._onnx is None and ex(ExtractorInput(images=_images(2, 112))).values.shape == (2, 7)
    with pytest.raises(RuntimeError, match="the ONNX export failed.*differs"):
        create_extractor("faceapi_expression", backend="onnx").load()


def test_an_export_that_differs_is_refused(monkeypatch, tmp_path):
    import torch

    net = torch.nn.Linear(4, 3)
    real = R.OnnxNet.__call__
    monkeypatch.setattr(R.OnnxNet, "__call__", lambda self, x: real(self, x) + 0.01)
    with pytest.raises(RuntimeError, match="differs from PyTorch"):
        R.export_onnx(net, net, torch.randn(2, 4), tmp_path / "n.onnx", name="toy", dynamic={0: "b"}, spec={})
    assert not (tmp_path / "n.onnx").exists()
