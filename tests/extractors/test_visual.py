"""Visual extractors: vit_cls, timm, mobilenetv2_imagenet, r2plus1d_18, inception_resnet_v1, regnet.

Every check compares against an independent reference: the library's own model run directly on
inputs normalised here in numpy (or by the library's own preprocessor), real ImageNet classes for the
real MobileNetV2 weights, and round trips through weight files written here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from affectfuse.extractors import ExtractorInput, create_extractor, list_extractors
from affectfuse.extractors._torch_utils import images_to_tensor, load_state_dict

VISUAL = ["vit_cls", "timm", "mobilenetv2_imagenet", "r2plus1d_18", "inception_resnet_v1", "regnet"]


# ---------------------------------------------------------------------------------------------- helpers
def _rng_images(n, size, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _np_norm(images, mean, std):
    """Reference normalisation: (N, S, S, 3) uint8 -> (N, 3, S, S) float32 tensor."""
    x = images.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _randomise_buffers(module, seed):
    """Non-trivial BatchNorm statistics so a checkpoint that fails to load cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    for name, b in module.named_buffers():
        if name.endswith("running_mean"):
            b.copy_(torch.randn(b.shape, generator=g) * 0.1)
        elif name.endswith("running_var"):
            b.copy_(torch.rand(b.shape, generator=g) + 0.5)
    return module


def _rel_err(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _min_cos(a, b):
    return float(np.min(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def _batch_for(ex, n=2, seed=0):
    c = ex.contract
    if c.kind == "clip":
        clips = np.random.default_rng(seed).integers(0, 256, (n, c.clip_len, c.image_size, c.image_size, 3), dtype=np.uint8)
        return ExtractorInput(clips=clips)
    return ExtractorInput(images=_rng_images(n, c.image_size, seed))


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def vit_dirs(tmp_path_factory):
    """Tiny ViTModel and ViTForImageClassification checkpoints with a non-default preprocessor."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor, ViTModel

    root = tmp_path_factory.mktemp("vit")
    cfg = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8)
    proc = ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.4, 0.5, 0.6], image_std=[0.2, 0.25, 0.3])
    torch.manual_seed(0)
    ViTModel(cfg).save_pretrained(root / "base")
    proc.save_pretrained(root / "base")
    torch.manual_seed(1)
    ViTForImageClassification(ViTConfig(**cfg.to_dict(), num_labels=3)).save_pretrained(root / "clf")
    proc.save_pretrained(root / "clf")
    return {"base": str(root / "base"), "clf": str(root / "clf")}


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """Random (seeded) weight files in the layouts the extractors read, head included."""
    from affectfuse._compat import import_timm, import_torchvision

    timm = import_timm()
    tv = import_torchvision()
    from facenet_pytorch import InceptionResnetV1

    root = tmp_path_factory.mktemp("weights")
    out = {}
    torch.manual_seed(10)
    from safetensors.torch import save_file

    save_file(_randomise_buffers(timm.create_model("test_resnet"), 1).state_dict(), str(root / "test_resnet.safetensors"))
    out["timm"] = root / "test_resnet.safetensors"
    torch.manual_seed(11)
    torch.save(_randomise_buffers(timm.create_model("regnetx_002"), 2).state_dict(), root / "regnetx_002.pth")
    out["regnet"] = root / "regnetx_002.pth"
    torch.manual_seed(12)
    net = InceptionResnetV1(classify=True, num_classes=5)  # with a logits head, as the released files
    torch.save(_randomise_buffers(net, 3).state_dict(), root / "facenet.pt")
    out["inception_resnet_v1"] = root / "facenet.pt"
    torch.manual_seed(13)
    torch.save(_randomise_buffers(tv.models.video.r2plus1d_18(), 4).state_dict(), root / "r2plus1d.pth")
    out["r2plus1d_18"] = root / "r2plus1d.pth"
    return out


@pytest.fixture(scope="module")
def small_kwargs(vit_dirs, weight_files):
    """Small, offline-loadable configurations of every visual extractor."""
    return {
        "vit_cls": {"model": vit_dirs["base"]},
        "timm": {"model": "test_resnet", "checkpoint": str(weight_files["timm"]), "image_size": 64},
        "mobilenetv2_imagenet": {},
        "r2plus1d_18": {"weights": str(weight_files["r2plus1d_18"]), "clip_len": 2, "image_size": 16},
        "inception_resnet_v1": {"weights": str(weight_files["inception_resnet_v1"])},
        "regnet": {"model": "regnetx_002", "weights": str(weight_files["regnet"]), "image_size": 64},
    }


# ---------------------------------------------------------------------------------------------- all extractors
def test_all_registered_with_visual_modality():
    assert set(VISUAL) <= set(list_extractors())
    assert {create_extractor(n, **_no_load_kwargs(n)).modality for n in VISUAL} == {"visual"}


def _no_load_kwargs(name):
    """Arguments that describe an extractor without any file (creation must not load weights)."""
    return {
        "vit_cls": {},  # the default hub id is described from a built-in table when not cached
        "timm": {"model": "test_resnet"},
        "mobilenetv2_imagenet": {},
        "r2plus1d_18": {},
        "inception_resnet_v1": {"pretrained": None},
        "regnet": {"model": "regnetx_002", "pretrained": False},
    }[name]


@pytest.mark.parametrize("name", VISUAL)
def test_unknown_parameter_is_type_error(name):
    with pytest.raises(TypeError, match="no_such_option"):
        create_extractor(name, **_no_load_kwargs(name), no_such_option=1)


@pytest.mark.parametrize("name", VISUAL)
def test_key_follows_output_changing_params_only(name):
    kw = _no_load_kwargs(name)
    base = create_extractor(name, **kw)
    assert base.key == create_extractor(name, **kw).key
    assert base.key == create_extractor(name, **kw, batch_size=3).key  # batch size does not change output
    assert base.key != create_extractor(name, **kw, dtype="bfloat16").key
    assert base.params["dtype"] == "float32"
    with pytest.raises(ValueError, match="dtype"):
        create_extractor(name, **kw, dtype="float16")
    with pytest.raises(ValueError, match="batch_size"):
        create_extractor(name, **kw, batch_size=0)


@pytest.mark.parametrize("name", VISUAL)
def test_wrong_input_kind_or_layout_is_clear_error(name, small_kwargs):
    ex = create_extractor(name, **small_kwargs[name])
    c = ex.contract
    s = c.image_size
    if c.kind == "clip":
        wrong = [
            ExtractorInput(images=_rng_images(2, s)),
            ExtractorInput(clips=np.zeros((2, c.clip_len + 1, s, s, 3), np.uint8)),
            ExtractorInput(clips=np.zeros((2, c.clip_len, s, s, 3), np.float32)),
        ]
        field = "clips"
    else:
        wrong = [
            ExtractorInput(clips=np.zeros((2, 4, s, s, 3), np.uint8)),
            ExtractorInput(images=np.zeros((2, s, s), np.uint8)),
            ExtractorInput(images=np.zeros((2, s, s, 3), np.float32)),
            ExtractorInput(images=np.zeros((2, s, s, 4), np.uint8)),
        ]
        field = "images"
    for batch in wrong:
        with pytest.raises(ValueError, match=rf"{name}.*needs ExtractorInput\.{field}.*got"):
            ex(batch)


@pytest.mark.filterwarnings("ignore:bfloat16.*slower:RuntimeWarning")  # AVX2-only CPUs
@pytest.mark.parametrize("name", [n for n in VISUAL if n != "mobilenetv2_imagenet"])  # that one: real weights below
def test_bfloat16_close_to_float32_and_deterministic(name, small_kwargs):
    f32 = create_extractor(name, **small_kwargs[name])
    b16 = create_extractor(name, **small_kwargs[name], dtype="bfloat16")
    batch = _batch_for(f32, n=2)
    a = f32(batch).values
    assert a.shape == (2, f32.dim) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, f32(batch).values)  # same extractor, same input: bit-identical
    b = b16(batch).values
    assert b.dtype == np.float32
    assert _rel_err(b, a) < 0.05, _rel_err(b, a)
    assert _min_cos(b, a) > 0.99


@pytest.mark.parametrize("name", ["vit_cls", "timm", "regnet"])
def test_invalid_rows_are_zero_and_batching_does_not_change_output(name, small_kwargs):
    one = create_extractor(name, **small_kwargs[name], batch_size=1)
    many = create_extractor(name, **small_kwargs[name], batch_size=8)
    batch = _batch_for(one, n=4, seed=5)
    full = many(batch).values
    np.testing.assert_allclose(one(batch).values, full, rtol=1e-4, atol=1e-5)
    valid = np.array([True, False, True, False])
    masked = many(ExtractorInput(images=batch.images, valid=valid)).values
    np.testing.assert_allclose(masked[valid], full[valid], rtol=1e-4, atol=1e-5)
    assert not masked[~valid].any()
    with pytest.raises(ValueError, match="valid has 3 rows"):
        many(ExtractorInput(images=batch.images, valid=valid[:3]))


def test_images_to_tensor_matches_numpy_and_resizes():
    imgs = _rng_images(2, 20, seed=3)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.6, 0.7)
    x = images_to_tensor(imgs, 20, mean, std)
    torch.testing.assert_close(x, _np_norm(imgs, mean, std), rtol=0, atol=1e-6)
    y = images_to_tensor(imgs, 10, mean, std, dtype=torch.bfloat16)
    assert y.shape == (2, 3, 10, 10) and y.dtype == torch.bfloat16
    flat = np.full((1, 20, 20, 3), 128, np.uint8)  # resizing a constant image keeps it constant
    torch.testing.assert_close(images_to_tensor(flat, 7, mean, std), _np_norm(np.full((1, 7, 7, 3), 128, np.uint8), mean, std))


def test_load_state_dict_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_state_dict(tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"a": 1}, bad)
    with pytest.raises(ValueError, match="bad.pth"):
        load_state_dict(bad)


# ---------------------------------------------------------------------------------------------- vit_cls
def _vit_reference(model_cls, path, images):
    from transformers import ViTImageProcessor

    pv = ViTImageProcessor.from_pretrained(path)(images=list(images), do_resize=False, return_tensors="pt").pixel_values
    net = model_cls.from_pretrained(path).eval()
    with torch.no_grad():
        backbone = net.vit if hasattr(net, "vit") else net
        return backbone(pixel_values=pv).last_hidden_state[:, 0].numpy()


def test_vit_cls_equals_vitmodel_cls_token(vit_dirs):
    from transformers import ViTModel

    ex = create_extractor("vit_cls", model=vit_dirs["base"])
    assert ex.dim == 32
    assert ex.contract.kind == "face" and ex.contract.image_size == 32
    assert ex.contract.mean == (0.4, 0.5, 0.6) and ex.contract.std == (0.2, 0.25, 0.3)
    imgs = _rng_images(3, 32, seed=7)
    np.testing.assert_allclose(ex(ExtractorInput(images=imgs)).values, _vit_reference(ViTModel, vit_dirs["base"], imgs), rtol=1e-4, atol=1e-5)


def test_vit_cls_loads_backbone_of_image_classification_checkpoint(vit_dirs):
    from transformers import ViTForImageClassification

    ex = create_extractor("vit_cls", model=vit_dirs["clf"], input="frame")
    assert ex.contract.kind == "frame"
    imgs = _rng_images(2, 32, seed=8)
    ref = _vit_reference(ViTForImageClassification, vit_dirs["clf"], imgs)
    np.testing.assert_allclose(ex(ExtractorInput(images=imgs)).values, ref, rtol=1e-4, atol=1e-5)
    other = create_extractor("vit_cls", model=vit_dirs["base"], input="frame")
    assert other.key != ex.key
    assert not np.allclose(other(ExtractorInput(images=imgs)).values, ref, atol=1e-3)  # different weights, different output


def test_vit_cls_describes_hub_models_offline_and_rejects_unknown(tmp_path):
    ex = create_extractor("vit_cls", model="nateraw/vit-age-classifier")
    assert ex.dim == 768 and ex.contract.image_size == 224
    with pytest.raises(FileNotFoundError, match="nobody/no-such-vit"):
        create_extractor("vit_cls", model="nobody/no-such-vit")
    with pytest.raises(FileNotFoundError, match="config.json"):
        create_extractor("vit_cls", model=str(tmp_path))
    with pytest.raises(ValueError, match="input"):
        create_extractor("vit_cls", input="body")


# ---------------------------------------------------------------------------------------------- timm / regnet
@pytest.mark.parametrize("name", ["timm", "regnet"])
def test_timm_checkpoint_equals_timm_forward(name, small_kwargs, weight_files):
    from affectfuse._compat import import_timm

    timm = import_timm()
    kw = small_kwargs[name]
    ex = create_extractor(name, **kw)
    cfg = timm.get_pretrained_cfg(kw["model"])
    assert ex.contract.mean == tuple(cfg.mean) and ex.contract.std == tuple(cfg.std)
    assert ex.contract.image_size == 64
    ref_net = timm.create_model(kw["model"], num_classes=0).eval()
    sd = load_state_dict(weight_files[name])
    head = cfg.classifier
    ref_net.load_state_dict({k: v for k, v in sd.items() if not k.startswith(head + ".")})
    imgs = _rng_images(3, 64, seed=9)
    with torch.no_grad():
        ref = ref_net(_np_norm(imgs, cfg.mean, cfg.std)).numpy()
    assert ex.dim == ref.shape[1]
    np.testing.assert_allclose(ex(ExtractorInput(images=imgs)).values, ref, rtol=1e-4, atol=1e-5)
    random_init = create_extractor(name, **{k: v for k, v in kw.items() if k not in ("checkpoint", "weights")}, pretrained=False)
    assert not np.allclose(random_init(ExtractorInput(images=imgs)).values, ref, atol=1e-3)


def test_timm_rejects_bad_names_and_mismatched_checkpoints(weight_files, tmp_path):
    with pytest.raises(ValueError, match="unknown timm model 'no_such_net'"):
        create_extractor("timm", model="no_such_net")
    ex = create_extractor("timm", model="resnet10t", checkpoint=str(weight_files["timm"]))
    with pytest.raises(ValueError, match=r"test_resnet\.safetensors: weights do not fit ResNet: .*unexpected keys.*shape mismatch"):
        ex(ExtractorInput(images=_rng_images(1, 64)))
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        create_extractor("timm", model="test_resnet", checkpoint=str(tmp_path / "nope.pth"))
    with pytest.raises(ValueError, match="not both"):
        create_extractor("timm", model="test_resnet", pretrained=True, checkpoint=str(weight_files["timm"]))
    with pytest.raises(ValueError, match="pretrained must be True or False"):
        create_extractor("timm", model="test_resnet", pretrained="false")
    with pytest.raises(ValueError, match="RegNet"):
        create_extractor("regnet", model="resnet50")


def test_checkpoint_key_changes_when_file_content_changes(tmp_path):
    from safetensors.torch import save_file

    from affectfuse._compat import import_timm

    timm = import_timm()
    p = tmp_path / "w.safetensors"
    torch.manual_seed(0)
    save_file(timm.create_model("test_resnet").state_dict(), str(p))
    k1 = create_extractor("timm", model="test_resnet", checkpoint=str(p)).key
    torch.manual_seed(1)
    save_file(timm.create_model("test_resnet").state_dict(), str(p))
    k2 = create_extractor("timm", model="test_resnet", checkpoint=str(p)).key
    assert k1 != k2 != create_extractor("timm", model="test_resnet").key


def test_regnet_defaults_follow_the_recipe(weight_files):
    ex = create_extractor("regnet", pretrained=False)
    assert ex.timm_name == "regnety_016" and ex.dim == 888
    assert ex.contract.kind == "face" and ex.contract.image_size == 224
    assert ex.contract.mean == (0.485, 0.456, 0.406)
    w = create_extractor("regnet", model="regnetx_002", weights=str(weight_files["regnet"]))
    assert w.params["pretrained"] is False  # a local file overrides timm's download


# ---------------------------------------------------------------------------------------------- mobilenet
def _imagenet_crop(img):
    from PIL import Image

    im = Image.fromarray(img)
    s = 256 / min(im.size)
    im = im.resize((round(im.width * s), round(im.height * s)), Image.BILINEAR)
    left, top = (im.width - 224) // 2, (im.height - 224) // 2
    return np.asarray(im.crop((left, top, left + 224, top + 224)))


@pytest.mark.filterwarnings("ignore:bfloat16.*slower:RuntimeWarning")
def test_mobilenet_real_weights_give_right_imagenet_classes():
    from skimage import data

    from affectfuse._compat import import_timm
    from affectfuse.extractors.visual.mobilenet import mobilenet_v2_weights_path

    import_timm()
    from timm.data import ImageNetInfo

    ex = create_extractor("mobilenetv2_imagenet")
    assert ex.dim == 1280 and ex.contract.image_size == 224 and ex.contract.kind == "frame"
    assert ex.contract.mean == (0.485, 0.456, 0.406) and ex.contract.std == (0.229, 0.224, 0.225)
    imgs = np.stack([_imagenet_crop(data.chelsea()), _imagenet_crop(data.coffee())])
    feats = ex(ExtractorInput(images=imgs)).values  # (2, 1280)
    np.testing.assert_array_equal(feats, ex(ExtractorInput(images=imgs)).values)
    assert (feats >= 0).all()  # pooled ReLU6 activations
    sd = load_state_dict(mobilenet_v2_weights_path())
    logits = feats @ sd["classifier.1.weight"].numpy().T + sd["classifier.1.bias"].numpy()  # (2, 1000)
    info = ImageNetInfo()
    top = [info.index_to_description(int(i)) for i in logits.argmax(1)]
    # chelsea is a tabby: the model (also through torchvision's own transforms) puts ~0.99 of its mass on
    # the five domestic-cat classes 281-285 and ranks "Egyptian cat" first; coffee is an espresso cup.
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    assert 281 <= logits[0].argmax() <= 285, top
    assert prob[0, 281:286].sum() > 0.9, prob[0, 281:286]
    assert top[1] == "espresso" and prob[1].max() > 0.9, top
    b16 = create_extractor("mobilenetv2_imagenet", dtype="bfloat16")(ExtractorInput(images=imgs)).values
    assert _rel_err(b16, feats) < 0.06 and _min_cos(b16, feats) > 0.998, (_rel_err(b16, feats), _min_cos(b16, feats))  # measured 3.6%, .999
    assert (b16 @ sd["classifier.1.weight"].numpy().T).argmax(1).tolist() == logits.argmax(1).tolist()


# ---------------------------------------------------------------------------------------------- r2plus1d_18
def test_r2plus1d_contract_and_checkpoint_equals_torchvision(weight_files):
    from affectfuse._compat import import_torchvision

    tv = import_torchvision()
    default = create_extractor("r2plus1d_18")
    c = default.contract
    assert (c.kind, c.clip_len, c.clip_stride, c.image_size, default.dim) == ("clip", 8, 4, 112, 512)
    assert c.mean == (0.43216, 0.394666, 0.37645) and c.std == (0.22803, 0.22145, 0.216989)

    ex = create_extractor("r2plus1d_18", weights=str(weight_files["r2plus1d_18"]), clip_len=4, image_size=48)
    clips = np.random.default_rng(2).integers(0, 256, (2, 4, 48, 48, 3), dtype=np.uint8)
    net = tv.models.video.r2plus1d_18()
    net.load_state_dict(load_state_dict(weight_files["r2plus1d_18"]))
    net.fc = torch.nn.Identity()
    x = _np_norm(clips.reshape(8, 48, 48, 3), c.mean, c.std).view(2, 4, 3, 48, 48).permute(0, 2, 1, 3, 4)
    with torch.no_grad():
        ref = net.eval()(x).numpy()  # (2, 512)
    np.testing.assert_allclose(ex(ExtractorInput(clips=clips)).values, ref, rtol=1e-4, atol=1e-5)
    assert ex.key != create_extractor("r2plus1d_18", weights=str(weight_files["r2plus1d_18"]), clip_len=8, image_size=48).key


# ---------------------------------------------------------------------------------------------- inception_resnet_v1
def test_inception_resnet_v1_contract_and_checkpoint_equals_facenet(weight_files):
    from facenet_pytorch import InceptionResnetV1, fixed_image_standardization

    ex = create_extractor("inception_resnet_v1", weights=str(weight_files["inception_resnet_v1"]))
    c = ex.contract
    assert (c.kind, c.image_size, ex.dim) == ("face", 160, 512)
    assert ex.params["pretrained"] is None  # a local file overrides the download
    faces = _rng_images(2, 160, seed=4)
    x = fixed_image_standardization(torch.from_numpy(faces).permute(0, 3, 1, 2).float())  # facenet's own
    net = InceptionResnetV1(classify=True, num_classes=5)
    net.load_state_dict(load_state_dict(weight_files["inception_resnet_v1"]))
    net.classify = False
    with torch.no_grad():
        ref = net.eval()(x).numpy()
    out = ex(ExtractorInput(images=faces)).values
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert create_extractor("inception_resnet_v1").params["pretrained"] == "vggface2"
    assert create_extractor("inception_resnet_v1").key != create_extractor("inception_resnet_v1", pretrained="casia-webface").key
    with pytest.raises(ValueError, match="vggface2"):
        create_extractor("inception_resnet_v1", pretrained="imagenet")


def test_bfloat16_on_cpu_without_bf16_units_warns(monkeypatch):
    from affectfuse.extractors import _torch_utils as tu

    lin = torch.nn.Linear(2, 2)
    monkeypatch.setattr(tu, "fast_cpu_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="slower than float32"):
        tu.prepare_module(lin, torch.bfloat16, "cpu")
    monkeypatch.setattr(tu, "fast_cpu_bf16", lambda: True)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = tu.prepare_module(lin, torch.bfloat16, "cpu")
        tu.prepare_module(torch.nn.Linear(2, 2), torch.float32, "cpu")
    assert m.weight.dtype == torch.bfloat16 and not m.training and not m.weight.requires_grad


def test_own_mobilenet_v2_is_torchvisions_and_extraction_does_not_import_torchvision():
    import subprocess
    import sys

    from affectfuse._compat import import_torchvision
    from affectfuse.extractors._torch_utils import load_state_dict, load_weights_into
    from affectfuse.extractors.visual.mobilenet import mobilenet_v2, mobilenet_v2_weights_path

    tv = import_torchvision()
    path = mobilenet_v2_weights_path()
    ref, own = tv.models.mobilenet_v2(weights=None).eval(), mobilenet_v2().eval()
    load_weights_into(ref, load_state_dict(path), path)
    load_weights_into(own, load_state_dict(path), path)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(own(x), ref(x), rtol=0, atol=0)
    code = ("import sys, numpy as np\nfrom affectfuse.extractors import create_extractor, ExtractorInput\n"
            "ex = create_extractor('mobilenetv2_imagenet', backend='torch')\n"
            "ex(ExtractorInput(images=np.zeros((1, 224, 224, 3), np.uint8)))\n"
            "print('torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[-1] == "False"
