"""ABAW5-ERI, ABAW5-Expr and the end-to-end cross-modal model: shapes, masks, missing modalities,
gradients, determinism, configs, parameter groups, checkpoint loading and small learning checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from affectfuse._config import from_yaml, to_yaml
from affectfuse.models import create_model, list_models
from affectfuse.models.abaw5_eri import ERIConfig, TemporalConvNet
from affectfuse.models.abaw5_expr import ExprConfig
from affectfuse.models.base import masked_mean
from affectfuse.tasks.spec import TaskSpec
from affectfuse.types import Batch

torch.set_num_threads(1)

ERI_DIMS = {"audio": 6, "visual": 5}
EXPR_DIMS = {"irv1_vggface2": 6, "irv1_casia": 6, "regnet": 4}
E2E_DIMS = {"pixels": 3, "waveform": 1}
NO_DROPOUT = {
    "abaw5_eri_small": dict(tcn_dropout=0.0, pe_dropout=0.0, modal_dropout=0.0, inter_dropout=0.0),
    "abaw5_expr_small": dict(dropout=0.0),
}
FOUR_CLASSES = TaskSpec(name="colour_tone", problem="multiclass", resolution="clip",
                        targets=("red-low", "red-high", "blue-low", "blue-high"))


def feature_batch(dims: dict[str, int], b: int = 3, t: int = 7, seed: int = 0, lengths=None) -> Batch:
    """Random features; sample i has ``lengths[i]`` valid steps (prefix), the rest is padding."""
    g = torch.Generator().manual_seed(seed)
    lengths = lengths or [t - i % 3 for i in range(b)]
    inputs = {m: torch.randn(b, t, d, generator=g) for m, d in dims.items()}
    valid = torch.arange(t)[None] < torch.tensor(lengths)[:, None]  # (B, T)
    return Batch(inputs=inputs, masks={m: valid.clone() for m in dims})


def fill_padding(batch: Batch, value: float) -> Batch:
    """Same batch with every invalid row overwritten by ``value``."""
    inputs = {m: torch.where(batch.masks[m][..., None], x, torch.full_like(x, value)) for m, x in batch.inputs.items()}
    return Batch(inputs=inputs, masks=dict(batch.masks))


def select(batch: Batch, i: int) -> Batch:
    return Batch(inputs={m: x[i:i + 1] for m, x in batch.inputs.items()},
                 masks={m: x[i:i + 1] for m, x in batch.masks.items()},
                 raw={m: x[i:i + 1] for m, x in batch.raw.items()})


def make(name: str, task, dims, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return create_model(name, task=task, input_dims=dims, **kw)


# ------------------------------------------------------------------------------------------------ registry
def test_variants_registered():
    names = set(list_models())
    assert {"abaw5_eri", "abaw5_eri_small", "abaw5_expr", "abaw5_expr_small", "e2e_cross", "e2e_cross_small"} <= names


# -------------------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("task,k", [("reaction", 7), ("group", 3)])
def test_eri_clip_shapes_and_both_heads(task, k):
    m = make("abaw5_eri_small", task, ERI_DIMS).eval()
    out = m(feature_batch(ERI_DIMS))
    assert out.preds.shape == (3, k)  # intensity regression
    assert out.logits.shape == (3, k)  # dominant-emotion classifier
    assert out.embedding.shape == (3, m.fused_dim)
    assert not torch.allclose(out.preds, out.logits)  # two separate heads
    # heads are plain linear maps of the fused embedding (no activation applied by the model)
    torch.testing.assert_close(out.preds, m.intensity_head(out.embedding))
    torch.testing.assert_close(out.logits, m.class_head(out.embedding))


def test_eri_frame_level_shapes():
    m = make("abaw5_eri_small", "va", ERI_DIMS).eval()
    out = m(feature_batch(ERI_DIMS, b=2, t=9))
    assert out.preds.shape == (2, 9, 2) and out.logits.shape == (2, 9, 2)


def test_eri_without_interaction_branch():
    m = make("abaw5_eri_small", "reaction", ERI_DIMS, interaction=False).eval()
    assert not hasattr(m, "interaction")
    assert m(feature_batch(ERI_DIMS)).preds.shape == (3, 7)


@pytest.mark.parametrize("task,shape", [("expr", (2, 9, 8)), ("reaction", (2, 7))])
def test_expr_shapes(task, shape):
    m = make("abaw5_expr_small", task, EXPR_DIMS).eval()
    out = m(feature_batch(EXPR_DIMS, b=2, t=9))
    assert out.preds.shape == shape


@pytest.mark.parametrize("name,dims", [("abaw5_eri_small", ERI_DIMS), ("abaw5_expr_small", EXPR_DIMS)])
def test_any_sequence_length_and_unequal_lengths(name, dims):
    m = make(name, "reaction", dims).eval()
    for t in (1, 3, 40):
        assert m(feature_batch(dims, b=2, t=t, lengths=[t, 1])).preds.shape == (2, 7)
    # clip level: modalities of different lengths are padded to the longest
    b = feature_batch(dims, b=2, t=8)
    first = next(iter(dims))
    b.inputs[first], b.masks[first] = b.inputs[first][:, :5], b.masks[first][:, :5]
    assert torch.isfinite(m(b).preds).all()


@pytest.mark.parametrize("name,dims,task", [("abaw5_eri_small", ERI_DIMS, "va"), ("abaw5_expr_small", EXPR_DIMS, "expr")])
def test_frame_level_needs_one_time_axis(name, dims, task):
    m = make(name, task, dims).eval()
    b = feature_batch(dims, b=2, t=8)
    first = next(iter(dims))
    b.inputs[first], b.masks[first] = b.inputs[first][:, :5], b.masks[first][:, :5]
    with pytest.raises(ValueError, match="one time axis"):
        m(b)


def test_wrong_width_and_unknown_modality_raise():
    m = make("abaw5_eri_small", "reaction", ERI_DIMS)
    b = feature_batch({"audio": 6, "visual": 4})
    with pytest.raises(ValueError, match="expected width 5"):
        m(b)
    with pytest.raises(KeyError, match="text"):
        m(feature_batch({"audio": 6, "text": 3}))


# ------------------------------------------------------------------------------------------------- masking
@pytest.mark.parametrize("name,dims,task", [
    ("abaw5_eri_small", ERI_DIMS, "reaction"), ("abaw5_eri_small", ERI_DIMS, "va"),
    ("abaw5_expr_small", EXPR_DIMS, "expr"), ("abaw5_expr_small", EXPR_DIMS, "reaction"),
])
def test_padding_values_never_matter(name, dims, task):
    m = make(name, task, dims).eval()
    b = feature_batch(dims, b=4, t=8)
    ref = m(b)
    for value in (0.0, 1e4, float("nan"), float("inf")):
        out = m(fill_padding(b, value))
        assert torch.equal(out.preds, ref.preds), value
        if ref.logits is not None:
            assert torch.equal(out.logits, ref.logits)


@pytest.mark.parametrize("name,dims", [("abaw5_eri_small", ERI_DIMS), ("abaw5_expr_small", EXPR_DIMS)])
def test_padding_length_and_batch_mates_never_matter(name, dims):
    m = make(name, "reaction", dims).eval()
    b = feature_batch(dims, b=3, t=8, lengths=[8, 5, 2])
    ref = m(b).preds
    for i, n in enumerate([8, 5, 2]):
        alone = Batch(inputs={k: x[i:i + 1, :n] for k, x in b.inputs.items()},
                      masks={k: x[i:i + 1, :n] for k, x in b.masks.items()})
        torch.testing.assert_close(m(alone).preds, ref[i:i + 1], atol=1e-5, rtol=1e-5)
        longer = Batch(inputs={k: F.pad(x[i:i + 1], (0, 0, 0, 6)) for k, x in b.inputs.items()},
                       masks={k: F.pad(x[i:i + 1], (0, 6)) for k, x in b.masks.items()})
        torch.testing.assert_close(m(longer).preds, ref[i:i + 1], atol=1e-5, rtol=1e-5)


def test_frame_level_valid_steps_do_not_see_invalid_ones():
    """A gap (invalid steps) in the middle: changing the data there changes nothing anywhere."""
    m = make("abaw5_expr_small", "expr", EXPR_DIMS).eval()
    b = feature_batch(EXPR_DIMS, b=2, t=10, lengths=[10, 10])
    for k in b.masks:
        b.masks[k][:, 3:6] = False
    ref = m(b).preds
    assert torch.equal(m(fill_padding(b, 7.0)).preds, ref)


# ------------------------------------------------------------------------------------------------- TCN
def _reference_tcn(net: TemporalConvNet, x: torch.Tensor) -> torch.Tensor:
    """The locuslab TCN: Conv1d(padding=(k-1)d) then chomp the last (k-1)d steps (causal)."""
    h = x.transpose(1, 2)
    for blk in net.blocks:
        def conv_chomp(z, conv):
            p = blk.total_pad
            out = F.conv1d(z, conv.weight, conv.bias, padding=p, dilation=conv.dilation)
            return out[..., :-p] if p else out
        o = F.relu(conv_chomp(h, blk.conv1))
        o = F.relu(conv_chomp(o, blk.conv2))
        res = h if blk.downsample is None else blk.downsample(h)
        h = F.relu(o + res)
    return h.transpose(1, 2)


def test_tcn_matches_locuslab_reference_and_is_causal():
    torch.manual_seed(0)
    net = TemporalConvNet(4, [8, 8, 8], kernel=3, dropout=0.0, causal=True).eval()
    x = torch.randn(2, 20, 4)
    full = torch.ones(2, 20, dtype=torch.bool)
    out = net(x, full)
    torch.testing.assert_close(out, _reference_tcn(net, x))
    assert [b.conv1.dilation[0] for b in net.blocks] == [1, 2, 4]
    x2 = x.clone()
    x2[:, 12:] = torch.randn(2, 8, 4)
    assert torch.equal(net(x2, full)[:, :12], out[:, :12])  # causal: the future is not read
    centred = TemporalConvNet(4, [8, 8], kernel=3, dropout=0.0, causal=False).eval()
    assert not torch.equal(centred(x2, full)[:, :12], centred(x, full)[:, :12])


def test_tcn_invalid_steps_act_as_zeros():
    torch.manual_seed(0)
    net = TemporalConvNet(3, [6, 6], kernel=3, dropout=0.0, causal=False).eval()
    x = torch.randn(1, 10, 3)
    mask = torch.ones(1, 10, dtype=torch.bool)
    mask[0, 4:6] = False
    zeroed = x.clone()
    zeroed[0, 4:6] = 0.0
    x[0, 4:6] = 1e6
    # a masked TCN equals the plain TCN run on a sequence whose invalid steps hold zeros, re-zeroed per layer
    keep = mask[:, None, :].float()
    h = zeroed.transpose(1, 2)
    for blk in net.blocks:
        h = blk(h, keep)
    torch.testing.assert_close(net(x, mask), h.transpose(1, 2))


# ------------------------------------------------------------------------------------------------ missing
@pytest.mark.parametrize("name,dims,task", [
    ("abaw5_eri_small", ERI_DIMS, "reaction"), ("abaw5_eri_small", ERI_DIMS, "va"),
    ("abaw5_expr_small", EXPR_DIMS, "expr"),
])
def test_missing_modality_absent_equals_all_false(name, dims, task):
    m = make(name, task, dims).eval()
    b = feature_batch(dims, b=3, t=6)
    gone = next(iter(dims))
    absent = Batch(inputs={k: v for k, v in b.inputs.items() if k != gone},
                   masks={k: v for k, v in b.masks.items() if k != gone})
    empty = Batch(inputs=dict(b.inputs), masks={**b.masks, gone: torch.zeros_like(b.masks[gone])})
    out_absent, out_empty = m(absent).preds, m(empty).preds
    assert torch.isfinite(out_absent).all()
    torch.testing.assert_close(out_absent, out_empty)
    assert not torch.allclose(out_absent, m(b).preds)  # the modality did matter


def test_eri_per_sample_missing_modality():
    m = make("abaw5_eri_small", "reaction", ERI_DIMS).eval()
    b = feature_batch(ERI_DIMS, b=3, t=6)
    b.masks["visual"][1] = False  # sample 1 has no visual
    out = m(b).preds
    alone = Batch(inputs={"audio": b.inputs["audio"][1:2]}, masks={"audio": b.masks["audio"][1:2]})
    torch.testing.assert_close(out[1:2], m(alone).preds, atol=1e-5, rtol=1e-5)
    # a sample with no valid step at all still gives finite numbers
    b.masks["audio"][2] = False
    b.masks["visual"][2] = False
    assert torch.isfinite(m(b).preds).all()


# ------------------------------------------------------------------------------------------ grads / seeds
@pytest.mark.parametrize("name,dims,task", [
    ("abaw5_eri_small", ERI_DIMS, "reaction"), ("abaw5_expr_small", EXPR_DIMS, "expr"),
])
def test_gradients_reach_every_parameter(name, dims, task):
    m = make(name, task, dims).train()
    b = feature_batch(dims, b=4, t=6)
    for i, k in enumerate(dims):  # each modality misses steps where the others are valid: "missing" vectors
        b.masks[k][i % 4, :2] = False
    out = m(b)
    loss = out.preds.pow(2).mean() + (out.logits.pow(2).mean() if out.logits is not None else 0)
    loss.backward()
    no_grad = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad


@pytest.mark.parametrize("name,dims", [("abaw5_eri_small", ERI_DIMS), ("abaw5_expr_small", EXPR_DIMS)])
def test_same_seed_same_output(name, dims):
    b = feature_batch(dims)
    a = make(name, "reaction", dims, seed=3).eval()(b).preds
    c = make(name, "reaction", dims, seed=3).eval()(b).preds
    d = make(name, "reaction", dims, seed=4).eval()(b).preds
    assert torch.equal(a, c) and not torch.equal(a, d)


# -------------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("name,dims", [("abaw5_eri_small", ERI_DIMS), ("abaw5_expr_small", EXPR_DIMS)])
def test_config_yaml_round_trip(name, dims, tmp_path):
    m = make(name, "reaction", dims)
    path = tmp_path / "cfg.yaml"
    to_yaml(m.config, path)
    back = from_yaml(type(m.config), path)
    assert back == m.config
    rebuilt = create_model(name.removesuffix("_small"), task="reaction", input_dims=dims,
                           **{k: getattr(back, k) for k in back.__dataclass_fields__})
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in m.parameters())


def test_paper_defaults():
    eri, expr = ERIConfig(), ExprConfig()
    assert (eri.d_model, eri.tcn_levels, eri.tcn_kernel, eri.modal_heads, eri.inter_heads) == (256, 5, 3, 2, 8)
    assert (eri.modal_dropout, eri.inter_dropout, eri.pe_base) == (0.5, 0.1, 1000.0)
    assert expr.d_model == 512


@pytest.mark.parametrize("name", ["abaw5_eri_small", "abaw5_expr_small", "e2e_cross_small"])
def test_unknown_override_is_a_type_error(name):
    dims = {"abaw5_eri_small": ERI_DIMS, "abaw5_expr_small": EXPR_DIMS, "e2e_cross_small": E2E_DIMS}[name]
    with pytest.raises(TypeError, match=r"unknown field\(s\) \['d_modle'\].*accepted fields"):
        create_model(name, task="reaction" if "e2e" not in name else "group", input_dims=dims, d_modle=8)


def test_invalid_values_raise():
    with pytest.raises(ValueError, match="ERIConfig.modal_dropout"):
        create_model("abaw5_eri_small", task="reaction", input_dims=ERI_DIMS, modal_dropout=1.5)
    with pytest.raises(ValueError, match="ExprConfig.d_model"):
        create_model("abaw5_expr_small", task="expr", input_dims=EXPR_DIMS, d_model=30, heads=4)
    with pytest.raises(ValueError, match="frame_pooling"):
        create_model("e2e_cross_small", task="group", input_dims=E2E_DIMS, frame_pooling="max")


# ---------------------------------------------------------------------------------------------------- e2e
SR = 16000


@pytest.fixture(scope="module")
def e2e():
    torch.manual_seed(0)
    return create_model("e2e_cross_small", task="group", input_dims=E2E_DIMS, image_size=32).eval()


def raw_batch(model, b: int = 3, n: int = 4, s: int = 4800, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (b, n, 24, 30, 3), generator=g, dtype=torch.uint8)
    pixels = model.prepare_pixels(frames)
    pm = torch.ones(b, n, dtype=torch.bool)
    wave = 0.3 * torch.randn(b, s, generator=g)
    wm = torch.ones(b, s, dtype=torch.bool)
    if b == 3:  # sample 1: 2 of n frames and 3000 samples; sample 2: 4000 samples
        pm[1, 2:] = False
        wm[1, 3000:] = False
        wm[2, 4000:] = False
    return Batch(inputs={}, masks={"pixels": pm, "waveform": wm}, raw={"pixels": pixels, "waveform": wave})


def test_e2e_shapes_and_head(e2e):
    out = e2e(raw_batch(e2e))
    assert out.preds.shape == (3, 3) and out.embedding.shape == (3, 3 * 32)
    assert torch.isfinite(out.preds).all()
    assert e2e.raw_inputs == ("pixels", "waveform")


def test_e2e_prepare_pixels_against_reference(e2e):
    frames = np.zeros((1, 2, 10, 14, 3), np.uint8)
    frames[..., 0], frames[..., 1], frames[..., 2] = 255, 51, 0  # a flat colour survives any resize
    px = e2e.prepare_pixels(frames)
    assert px.shape == (1, 2, 3, 32, 32) and px.dtype == torch.float32
    expect = (np.array([1.0, 0.2, 0.0]) - np.array(e2e.image_mean)) / np.array(e2e.image_std)
    np.testing.assert_allclose(px[0, 0, :, 5, 7].numpy(), expect, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"expected uint8 frames \(B, N, H, W, 3\)"):
        e2e.prepare_pixels(np.zeros((2, 10, 14, 3), np.uint8))


def test_e2e_padding_never_matters(e2e):
    b = raw_batch(e2e)
    ref = e2e(b).preds
    px = b.raw["pixels"].clone()
    px[~b.masks["pixels"]] = 1e4  # padded frames
    wv = b.raw["waveform"].clone()
    wv[~b.masks["waveform"]] = float("nan")  # padded samples
    out = e2e(Batch(inputs={}, masks=b.masks, raw={"pixels": px, "waveform": wv})).preds
    assert torch.equal(out, ref)
    # each sample on its own, trimmed to its valid frames / samples, gives the same output
    for i, (nf, ns) in enumerate([(4, 4800), (2, 3000), (4, 4000)]):
        alone = Batch(inputs={}, masks={"pixels": b.masks["pixels"][i:i + 1, :nf], "waveform": b.masks["waveform"][i:i + 1, :ns]},
                      raw={"pixels": b.raw["pixels"][i:i + 1, :nf], "waveform": b.raw["waveform"][i:i + 1, :ns]})
        torch.testing.assert_close(e2e(alone).preds, ref[i:i + 1], atol=1e-5, rtol=1e-4)


def test_e2e_frames_are_mean_pooled_before_the_backbone(e2e):
    """frame_pooling="pixels" (the equation's symbols): two frames give what their pixel mean gives as one frame;
    the default "features" (ClipBERT: the backbone on every frame, features pooled) does not."""
    torch.manual_seed(0)
    pix = create_model("e2e_cross_small", task="group", input_dims=E2E_DIMS, image_size=32,
                       frame_pooling="pixels").eval()
    b = raw_batch(pix, b=1, n=2)
    b.masks["pixels"][:] = True
    mean_frame = b.raw["pixels"].mean(1, keepdim=True)
    one = Batch(inputs={}, masks={"pixels": torch.ones(1, 1, dtype=torch.bool), "waveform": b.masks["waveform"]},
                raw={"pixels": mean_frame, "waveform": b.raw["waveform"]})
    torch.testing.assert_close(pix(b).preds, pix(one).preds, atol=1e-5, rtol=1e-4)
    feats = e2e
    assert feats.config.frame_pooling == "features"
    assert feats(b).preds.shape == (1, 3)
    assert not torch.allclose(feats(b).preds, feats(one).preds, atol=1e-4)


def test_e2e_starts_from_pretrained_backbones_and_refuses_a_random_one_unless_named(tmp_path):
    from safetensors.torch import save_file

    from affectfuse._compat import import_timm

    with pytest.raises(OSError, match="backbone_init='random'"):  # no hub here: the paper model cannot be faked
        create_model("e2e_cross", task="group", input_dims={"pixels": 3})
    timm = import_timm()
    torch.manual_seed(3)
    ref = timm.create_model("test_resnet", pretrained=False, num_classes=0, global_pool="")
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "imagenet.safetensors"))
    m = create_model("e2e_cross", task="group", input_dims={"pixels": 3}, backbone="test_resnet", d_model=32, heads=2,
                     backbone_checkpoint=str(tmp_path / "imagenet.safetensors"))
    assert m.config.backbone_init == "pretrained"
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(m.visual.state_dict()[k], v)
    rnd = create_model("e2e_cross", task="group", input_dims={"pixels": 3}, backbone="test_resnet", d_model=32,
                       heads=2, backbone_init="random")
    first = next(k for k, v in ref.state_dict().items() if v.dim() == 4)  # the stem's convolution
    assert not torch.equal(rnd.visual.state_dict()[first], ref.state_dict()[first])
    with pytest.raises(ValueError, match="backbone_init"):
        create_model("e2e_cross_small", task="group", input_dims=E2E_DIMS, backbone_init="imagenet")


def test_e2e_missing_modalities(e2e):
    b = raw_batch(e2e)
    for gone in ("pixels", "waveform"):
        absent = Batch(inputs={}, masks={k: v for k, v in b.masks.items() if k != gone},
                       raw={k: v for k, v in b.raw.items() if k != gone})
        empty = Batch(inputs={}, masks={**b.masks, gone: torch.zeros_like(b.masks[gone])}, raw=dict(b.raw))
        out = e2e(absent).preds
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, e2e(empty).preds, atol=1e-5, rtol=1e-4)
    # per sample: sample 0 without frames equals itself computed audio-only
    pm = b.masks["pixels"].clone()
    pm[0] = False
    out = e2e(Batch(inputs={}, masks={**b.masks, "pixels": pm}, raw=dict(b.raw))).preds
    alone = Batch(inputs={}, masks={"waveform": b.masks["waveform"][:1]}, raw={"waveform": b.raw["waveform"][:1]})
    torch.testing.assert_close(out[:1], e2e(alone).preds, atol=1e-5, rtol=1e-4)
    # audio shorter than HuBERT's receptive field (400 samples) counts as missing
    wm = b.masks["waveform"].clone()
    wm[0, 300:] = False
    short = e2e(Batch(inputs={}, masks={**b.masks, "waveform": wm}, raw=dict(b.raw))).preds
    no_audio = Batch(inputs={}, masks={"pixels": b.masks["pixels"][:1]}, raw={"pixels": b.raw["pixels"][:1]})
    torch.testing.assert_close(short[:1], e2e(no_audio).preds, atol=1e-5, rtol=1e-4)


def test_e2e_bad_inputs_raise(e2e):
    b = raw_batch(e2e)
    with pytest.raises(ValueError, match=r"raw\['pixels'\] expected \(B, N, 3, H, W\)"):
        e2e(Batch(inputs={}, masks=b.masks, raw={**b.raw, "pixels": b.raw["pixels"][:, 0]}))
    with pytest.raises(ValueError, match=r"masks\['waveform'\] expected"):
        e2e(Batch(inputs={}, masks={"pixels": b.masks["pixels"]}, raw=dict(b.raw)))
    with pytest.raises(ValueError, match="batch.raw carries none"):
        e2e(Batch(inputs={}, masks={}, raw={}))
    with pytest.raises(ValueError, match="raw modalities"):
        create_model("e2e_cross_small", task="group", input_dims={"visual": 512})
    with pytest.raises(ValueError, match="one output per clip"):
        create_model("e2e_cross_small", task="va", input_dims=E2E_DIMS)


def test_e2e_unimodal_models():
    torch.manual_seed(0)
    v = create_model("e2e_cross_small", task="group", input_dims={"pixels": 3}, image_size=32).eval()
    assert v.audio is None and not hasattr(v, "cross_va")
    b = raw_batch(v)
    assert v(Batch(inputs={}, masks={"pixels": b.masks["pixels"]}, raw={"pixels": b.raw["pixels"]})).preds.shape == (3, 3)
    a = create_model("e2e_cross_small", task="group", input_dims={"waveform": 1}).eval()
    assert a.visual is None
    assert a(Batch(inputs={}, masks={"waveform": b.masks["waveform"]}, raw={"waveform": b.raw["waveform"]})).preds.shape == (3, 3)


def test_e2e_gradients_reach_every_parameter():
    torch.manual_seed(0)
    # 64 px -> a 2x2 map: 4 visual tokens (with a single key, softmax is constant and q/k get no gradient)
    m = create_model("e2e_cross_small", task="group", input_dims=E2E_DIMS, image_size=64).train()
    b = raw_batch(m, s=6400)  # > 10 HuBERT frames: SpecAugment's time mask (masked_spec_embed) is used
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    for _ in range(2):  # timm zero-inits each block's last BN gamma: its branch gets gradients after one step
        opt.zero_grad()
        F.cross_entropy(m(b).preds, torch.tensor([0, 1, 2])).backward()
        opt.step()
    no_grad = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad


def test_e2e_same_seed_same_output():
    outs = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        m = create_model("e2e_cross_small", task="group", input_dims=E2E_DIMS, image_size=32).eval()
        outs.append(m(raw_batch(m)).preds)
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])


def test_e2e_param_groups(e2e):
    lr = 1e-3
    groups = e2e.param_groups(lr)
    enc, rest = groups
    assert enc["lr"] == pytest.approx(lr * 0.01) and rest["lr"] == lr
    enc_ids = {id(p) for p in enc["params"]}
    assert enc_ids == {id(p) for p in e2e.visual.parameters()} | {id(p) for p in e2e.audio.parameters()}
    seen = [id(p) for g in groups for p in g["params"]]
    assert len(seen) == len(set(seen))  # no parameter twice
    assert set(seen) == {id(p) for p in e2e.parameters()}  # every parameter once
    torch.optim.Adam(groups)  # a valid optimiser spec
    torch.manual_seed(0)
    scaled = create_model("e2e_cross_small", task="group", input_dims=E2E_DIMS, backbone_lr_scale=0.1)
    assert scaled.param_groups(1.0)[0]["lr"] == pytest.approx(0.1)


def test_e2e_config_yaml_round_trip(e2e, tmp_path):
    path = tmp_path / "e2e.yaml"
    to_yaml(e2e.config, path)
    back = from_yaml(type(e2e.config), path)
    assert back == e2e.config
    assert back.audio_config["conv_dim"] == [32] * 7
    torch.manual_seed(0)
    rebuilt = create_model("e2e_cross", task="group", input_dims=E2E_DIMS,
                           **{k: getattr(back, k) for k in back.__dataclass_fields__})
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in e2e.parameters())


def test_e2e_loads_local_hubert_and_backbone_checkpoint(e2e, tmp_path):
    from safetensors.torch import save_file
    from transformers import HubertConfig, HubertModel

    from affectfuse.models.e2e_cross import TINY_HUBERT

    torch.manual_seed(11)
    hub = HubertModel(HubertConfig(**TINY_HUBERT))
    hub.save_pretrained(tmp_path / "hubert")
    state = {k: v.clone() + 0.5 for k, v in e2e.visual.state_dict().items() if v.is_floating_point()}
    state["fc.weight"] = torch.zeros(3, 3)  # a classifier key: ignored
    save_file(state, str(tmp_path / "backbone.safetensors"))
    torch.save({"state_dict": state}, tmp_path / "backbone.pth")
    for ckpt in ("backbone.safetensors", "backbone.pth"):
        m = create_model("e2e_cross_small", task="group", input_dims=E2E_DIMS, audio_config=None,
                         audio_model=str(tmp_path / "hubert"), backbone_checkpoint=str(tmp_path / ckpt))
        for k, v in hub.state_dict().items():
            torch.testing.assert_close(m.audio.state_dict()[k], v)
        for k, v in m.visual.state_dict().items():
            if k in state:
                torch.testing.assert_close(v, state[k])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_model("e2e_cross_small", task="group", input_dims=E2E_DIMS, backbone_checkpoint=str(tmp_path / "nope.pth"))
    save_file({"conv1.weight": torch.zeros(2, 2)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="does not match backbone"):
        create_model("e2e_cross_small", task="group", input_dims=E2E_DIMS,
                     backbone_checkpoint=str(tmp_path / "bad.safetensors"))
    with pytest.raises(OSError, match="cannot load the HuBERT weights"):
        create_model("e2e_cross_small", task="group", input_dims=E2E_DIMS, audio_config=None,
                     audio_model=str(tmp_path / "missing_dir"))


# -------------------------------------------------------------------------------------------- learning
def _fit(model, batches, loss_fn, steps, lr, seed=0):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.param_groups(lr))
    model.train()
    for _ in range(steps):
        b, target = batches(g)
        loss = loss_fn(model(b), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_eri_learns_a_cross_modal_product():
    """Targets = mixtures of |audio latent| and |visual latent|: a mean-pooled linear model cannot fit them
    (|s| is uncorrelated with s), the model has to use both modalities."""
    def data(n, g, t=10):
        sa, sv = torch.randn(n, generator=g), torch.randn(n, generator=g)
        a = 0.3 * torch.randn(n, t, 6, generator=g)
        v = 0.3 * torch.randn(n, t, 5, generator=g)
        a[..., 0] += sa[:, None]
        v[..., 1] += sv[:, None]
        ma = torch.arange(t)[None] < torch.randint(4, t + 1, (n,), generator=g)[:, None]
        mv = torch.arange(t)[None] < torch.randint(4, t + 1, (n,), generator=g)[:, None]
        a, v = torch.where(ma[..., None], a, 5.0), torch.where(mv[..., None], v, -5.0)  # loud padding
        c = torch.linspace(0.0, 1.0, 7)[None]
        y = c * sa.abs()[:, None] + (1 - c) * sv.abs()[:, None]
        return Batch(inputs={"audio": a, "visual": v}, masks={"audio": ma, "visual": mv}), y

    g = torch.Generator().manual_seed(1)
    train, y = data(512, g)
    test, yt = data(256, g)

    def pooled(b):
        return torch.cat([masked_mean(b.inputs["audio"], b.masks["audio"]),
                          masked_mean(b.inputs["visual"], b.masks["visual"]), torch.ones(b.batch_size, 1)], 1)

    w = torch.linalg.lstsq(pooled(train), y).solution
    base_mse = ((pooled(test) @ w - yt) ** 2).mean().item()

    def batches(gen):
        idx = torch.randint(0, 512, (32,), generator=gen)
        return Batch(inputs={k: x[idx] for k, x in train.inputs.items()},
                     masks={k: x[idx] for k, x in train.masks.items()}), y[idx]

    m = make("abaw5_eri_small", "reaction", ERI_DIMS, **NO_DROPOUT["abaw5_eri_small"])
    _fit(m, batches, lambda out, t: F.mse_loss(out.preds, t), steps=60, lr=5e-3)
    with torch.no_grad():
        mse = F.mse_loss(m(test).preds, yt).item()
    assert base_mse > 0.9 * yt.var().item()  # the baseline explains nothing
    assert mse < 0.4 * base_mse, (mse, base_mse)


def test_expr_learns_a_per_frame_xor():
    """Frame label = 3 bits, one of them an XOR across two backbones: per-frame linear reaches ~50 %."""
    from sklearn.linear_model import LogisticRegression

    def data(n, g, t=12):
        x = {m: torch.randn(n, t, d, generator=g) for m, d in EXPR_DIMS.items()}
        b1 = (x["irv1_vggface2"][..., 0] > 0) ^ (x["irv1_casia"][..., 0] > 0)
        y = 4 * b1.long() + 2 * (x["irv1_casia"][..., 1] > 0).long() + (x["regnet"][..., 0] > 0).long()
        return Batch(inputs=x, masks={m: torch.ones(n, t, dtype=torch.bool) for m in x}), y

    g = torch.Generator().manual_seed(0)
    train, y = data(256, g)
    test, yt = data(128, g)

    def frames(b):
        return torch.cat([b.inputs[m] for m in EXPR_DIMS], -1).reshape(-1, sum(EXPR_DIMS.values())).numpy()

    clf = LogisticRegression(max_iter=2000).fit(frames(train), y.reshape(-1).numpy())
    base_acc = (clf.predict(frames(test)) == yt.reshape(-1).numpy()).mean()

    def batches(gen):
        idx = torch.randint(0, 256, (32,), generator=gen)
        return Batch(inputs={k: x[idx] for k, x in train.inputs.items()},
                     masks={k: x[idx] for k, x in train.masks.items()}), y[idx]

    m = make("abaw5_expr_small", "expr", EXPR_DIMS, **NO_DROPOUT["abaw5_expr_small"])
    _fit(m, batches, lambda out, t: F.cross_entropy(out.preds.reshape(-1, 8), t.reshape(-1)), steps=180, lr=5e-3)
    with torch.no_grad():
        acc = (m(test).preds.argmax(-1) == yt).float().mean().item()
    assert base_acc < 0.6
    assert acc > base_acc + 0.2, (acc, base_acc)


def test_e2e_learns_colour_and_tone():
    """Class = (image colour, audio tone) from raw pixels and waveform; a linear model on mean-pooled raw
    inputs sees the colour but not the tone (~50 %); the model must use both modalities."""
    from sklearn.linear_model import LogisticRegression

    n_frames, side, samples = 2, 32, 3200

    def data(n, g):
        colour, tone = torch.randint(0, 2, (n,), generator=g), torch.randint(0, 2, (n,), generator=g)
        rgb = torch.where(colour[:, None] == 0, torch.tensor([0.9, 0.1, 0.1]), torch.tensor([0.1, 0.1, 0.9]))
        px = (rgb[:, None, :, None, None] + 0.2 * torch.randn(n, n_frames, 3, side, side, generator=g) - 0.5) / 0.5
        freq = torch.where(tone == 0, 300.0, 2000.0) * (1 + 0.1 * torch.rand(n, generator=g))
        phase = 2 * math.pi * torch.rand(n, 1, generator=g)
        t = torch.arange(samples) / SR
        wave = 0.5 * torch.sin(2 * math.pi * freq[:, None] * t + phase) + 0.05 * torch.randn(n, samples, generator=g)
        masks = {"pixels": torch.ones(n, n_frames, dtype=torch.bool), "waveform": torch.ones(n, samples, dtype=torch.bool)}
        return Batch(inputs={}, masks=masks, raw={"pixels": px, "waveform": wave}), 2 * colour + tone

    g = torch.Generator().manual_seed(0)
    train, y = data(256, g)
    test, yt = data(128, g)

    def pooled(b):
        w = b.raw["waveform"]
        return torch.cat([b.raw["pixels"].mean((1, 3, 4)), w.mean(1, keepdim=True), w.abs().mean(1, keepdim=True)], 1).numpy()

    clf = LogisticRegression(max_iter=1000).fit(pooled(train), y.numpy())
    base_acc = (clf.predict(pooled(test)) == yt.numpy()).mean()

    def batches(gen):
        idx = torch.randint(0, 256, (32,), generator=gen)
        return Batch(inputs={}, masks={k: x[idx] for k, x in train.masks.items()},
                     raw={k: x[idx] for k, x in train.raw.items()}), y[idx]

    torch.manual_seed(0)
    m = create_model("e2e_cross_small", task=FOUR_CLASSES, input_dims=E2E_DIMS, image_size=side, dropout=0.0,
                     backbone_lr_scale=1.0)
    _fit(m, batches, lambda out, t: F.cross_entropy(out.preds, t), steps=20, lr=3e-3)
    with torch.no_grad():
        acc = (m(test).preds.argmax(1) == yt).float().mean().item()
    assert base_acc < 0.65
    assert acc >= 0.9 and acc > base_acc + 0.25, (acc, base_acc)


def test_eri_flatten_is_the_authors_30_step_projection():
    """pooling="flatten": the paper-size parameter count of the authors' code, position-specific weights, sequences
    cut to 30 steps, invalid steps as zeros; masked_mean is the length-free option."""
    dims = {"audio": 1024, "visual": 1536}
    flat = create_model("abaw5_eri", task="reaction", input_dims=dims, pooling="flatten")
    mean = create_model("abaw5_eri", task="reaction", input_dims=dims, pooling="masked_mean")
    # Linear(3 d M * 30 -> d M / 2) twice instead of Linear(3 d M -> d M / 2): d = 256, M = 2
    extra = 2 * (3 * 256 * 2 * 30 - 3 * 256 * 2) * (256 * 2 // 2)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(flat) - n(mean) == extra and round(n(flat) / 1e6, 1) == 33.5 and round(n(mean) / 1e6, 1) == 10.6
    m = make("abaw5_eri_small", "reaction", ERI_DIMS, pooling="flatten", **NO_DROPOUT["abaw5_eri_small"]).eval()
    g = torch.Generator().manual_seed(0)
    x = {k: torch.randn(2, 34, d, generator=g) for k, d in ERI_DIMS.items()}
    ones = {k: torch.ones(2, 34, dtype=torch.bool) for k in ERI_DIMS}
    full = m(Batch(inputs=x, masks=ones)).preds
    cut = m(Batch(inputs={k: v[:, :30] for k, v in x.items()}, masks={k: v[:, :30] for k, v in ones.items()})).preds
    torch.testing.assert_close(full, cut)  # steps past 30 are never read
    short = {k: v[:, :12] for k, v in x.items()}
    mask12 = {k: v[:, :12] for k, v in ones.items()}
    padded = {k: torch.cat([v, 9.0 * torch.ones(2, 18, v.shape[-1])], 1) for k, v in short.items()}
    mask_p = {k: torch.cat([v, torch.zeros(2, 18, dtype=torch.bool)], 1) for k, v in mask12.items()}
    torch.testing.assert_close(m(Batch(inputs=short, masks=mask12)).preds, m(Batch(inputs=padded, masks=mask_p)).preds)
    rev = {k: v.flip(1) for k, v in short.items()}
    mm = make("abaw5_eri_small", "reaction", ERI_DIMS, pooling="masked_mean").eval()
    assert not torch.allclose(m(Batch(inputs=rev, masks=mask12)).preds, m(Batch(inputs=short, masks=mask12)).preds)
    assert mm.config.pooling == "masked_mean" and create_model("abaw5_eri_small", task="reaction",
                                                               input_dims=ERI_DIMS).config.pooling == "masked_mean"
