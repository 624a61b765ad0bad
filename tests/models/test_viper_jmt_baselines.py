"""ViPER, JMT, the baselines and the shared layers against independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from affectfuse.models import create_model
from affectfuse.models.layers import (AttentionPool, MultiHeadAttention, TransformerEncoderLayer, align_modalities,
                                      pad_and_stack, sinusoidal_positions)
from affectfuse.models.viper import convert_hf_perceiver_state_dict
from affectfuse.types import Batch

from ._helpers import DIMS, make_batch, select


def full_mask(x: torch.Tensor) -> torch.Tensor:
    return torch.ones(x.shape[:2], dtype=torch.bool)


# ================================================================================================ layers
def test_sinusoidal_positions_match_the_formula():
    pe = sinusoidal_positions(7, 6).numpy()
    t = np.arange(7)[:, None]
    i = np.arange(3)[None, :]
    ang = t / 10000 ** (2 * i / 6)
    np.testing.assert_allclose(pe[:, 0::2], np.sin(ang), atol=1e-6)
    np.testing.assert_allclose(pe[:, 1::2], np.cos(ang), atol=1e-6)
    assert sinusoidal_positions(4, 5).shape == (4, 5)


def test_pad_and_stack():
    x, m = pad_and_stack([torch.ones(3, 2), 2 * torch.ones(1, 2)], value=-1)
    assert x.shape == (2, 3, 2) and m.tolist() == [[True, True, True], [True, False, False]]
    assert x[1, 1:].eq(-1).all() and x[1, 0].eq(2).all()
    with pytest.raises(ValueError, match="shorter"):
        pad_and_stack([torch.ones(3, 2)], length=2)


def test_align_modalities_pads_clip_level_and_refuses_uneven_frame_level():
    batch = make_batch()  # visual T=10, audio T=8
    inputs, masks, t = align_modalities(batch, ["visual", "audio"], frame_level=False, owner="x")
    assert t == 10 and inputs["audio"].shape == (4, 10, 8) and not masks["audio"][:, 8:].any()
    with pytest.raises(ValueError, match="one time axis"):
        align_modalities(batch, ["visual", "audio"], frame_level=True, owner="x")


def test_multi_head_attention_matches_torch():
    torch.manual_seed(0)
    ours = MultiHeadAttention(16, num_heads=4).eval()
    ref = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q.weight, ours.k.weight, ours.v.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.q.bias, ours.k.bias, ours.v.bias]))
        ref.out_proj.weight.copy_(ours.out.weight)
        ref.out_proj.bias.copy_(ours.out.bias)
    q, c = torch.randn(3, 5, 16), torch.randn(3, 7, 16)
    mask = torch.tensor([[1] * 7, [1] * 3 + [0] * 4, [0] * 7], dtype=torch.bool)
    with torch.no_grad():
        a = ours(q, c, mask)
        b = ref(q[:2], c[:2], c[:2], key_padding_mask=~mask[:2])[0]
    torch.testing.assert_close(a[:2], b[:2], rtol=1e-5, atol=1e-5)
    # no valid key: zero context, so the output is the output bias
    torch.testing.assert_close(a[2], ours.out.bias.detach().expand(5, 16))


def test_encoder_layer_matches_torch_post_ln():
    torch.manual_seed(0)
    ours = TransformerEncoderLayer(16, 2, 32, dropout=0.0, activation="relu").eval()
    ref = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True).train()  # train: no fast path
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(torch.cat([ours.attn.q.weight, ours.attn.k.weight, ours.attn.v.weight]))
        ref.self_attn.in_proj_bias.copy_(torch.cat([ours.attn.q.bias, ours.attn.k.bias, ours.attn.v.bias]))
        ref.self_attn.out_proj.load_state_dict(ours.attn.out.state_dict())
        ref.linear1.load_state_dict(ours.ff[0].state_dict())
        ref.linear2.load_state_dict(ours.ff[3].state_dict())
        ref.norm1.load_state_dict(ours.norm1.state_dict())
        ref.norm2.load_state_dict(ours.norm2.state_dict())
    x = torch.randn(2, 6, 16)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2], dtype=torch.bool)
    with torch.no_grad():
        a, b = ours(x, mask), ref(x, src_key_padding_mask=~mask)
    torch.testing.assert_close(a[mask], b[mask], rtol=1e-5, atol=1e-5)


def test_attention_pool_is_a_masked_convex_combination():
    torch.manual_seed(0)
    pool = AttentionPool(4, hidden=8)
    x = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [0] * 5], dtype=torch.bool)
    out = pool(x, mask)
    torch.testing.assert_close(out[1], x[1, 0])  # one valid step: that step
    assert out[2].eq(0).all()  # none valid: zeros
    lo, hi = x[0, :2].min(0).values, x[0, :2].max(0).values
    assert ((out[0] >= lo - 1e-6) & (out[0] <= hi + 1e-6)).all()


# ================================================================================================ ViPER
def _hf_perceiver(d_model: int, **kw):
    from transformers import PerceiverConfig, PerceiverModel
    from transformers.models.perceiver.modeling_perceiver import PerceiverClassificationDecoder

    cfg = PerceiverConfig(d_model=d_model, **kw)
    dec = PerceiverClassificationDecoder(cfg, num_channels=cfg.d_latents, use_query_residual=True,
                                         trainable_position_encoding_kwargs=dict(num_channels=cfg.d_latents, index_dims=1))
    return PerceiverModel(cfg, decoder=dec)


def test_viper_equals_hf_perceiver_of_the_authors_code():
    """Same weights → same logits as ``transformers.PerceiverModel`` + classification decoder (train_perceiver.py)."""
    torch.manual_seed(0)
    hf = _hf_perceiver(24, num_latents=8, d_latents=32, num_self_attends_per_block=2, num_self_attention_heads=4,
                       num_cross_attention_heads=4, num_labels=7).eval()
    with torch.no_grad():  # make weights large enough that a wrong wiring shows
        for p in hf.parameters():
            p.normal_(0, 0.3)
    model = create_model("viper", task="reaction", input_dims={"visual": 16, "audio": 8}, num_latents=8, d_latents=32,
                         num_self_attends=2, num_self_attention_heads=4, num_cross_attention_heads=4).eval()
    assert sum(p.numel() for p in hf.parameters()) == sum(p.numel() for n, p in model.named_parameters()
                                                         if not n.startswith("missing."))
    res = model.load_state_dict(convert_hf_perceiver_state_dict(hf.state_dict()), strict=False)
    assert sorted(res.missing_keys) == ["missing.audio", "missing.visual"] and not res.unexpected_keys
    x = torch.randn(3, 5, 24)
    mask = torch.tensor([[1] * 5, [1] * 3 + [0] * 2, [1] * 5], dtype=torch.bool)
    with torch.no_grad():
        ref = hf(inputs=x, attention_mask=mask.long()).logits
        ours = model(Batch(inputs={"visual": x[..., :16], "audio": x[..., 16:]},
                           masks={"visual": mask, "audio": mask})).preds
    assert ref.abs().max() > 0.1
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


def test_viper_paper_size_is_the_hf_default():
    from transformers import PerceiverConfig

    d = PerceiverConfig()
    with torch.device("meta"):
        ours = create_model("viper", task="reaction", input_dims={"visual": 768, "audio": 512, "text": 768, "fau": 32})
        hf = _hf_perceiver(2080, num_labels=7)
    c = ours.config
    assert (c.num_latents, c.d_latents, c.num_self_attends, c.num_self_attention_heads, c.num_cross_attention_heads) == (
        d.num_latents, d.d_latents, d.num_self_attends_per_block, d.num_self_attention_heads, d.num_cross_attention_heads)
    assert (c.attention_dropout, c.cross_attention_shape) == (d.attention_probs_dropout_prob, d.cross_attention_shape_for_attention)
    n_ours = sum(p.numel() for n, p in ours.named_parameters() if not n.startswith("missing."))
    assert n_ours == sum(p.numel() for p in hf.parameters())
    assert 280e6 < n_ours < 290e6


def test_viper_is_order_invariant_unless_temporal_pe():
    batch = make_batch(b=2, t=6, lengths=[6, 4], frame_level=True)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    shuffled = Batch(inputs={m: x[:, perm] for m, x in batch.inputs.items()}, masks={m: x[:, perm] for m, x in batch.masks.items()})
    for pe in (False, True):
        torch.manual_seed(0)
        model = create_model("viper_small", task="reaction", input_dims=DIMS, temporal_pe=pe).eval()
        with torch.no_grad():
            a, b = model(batch).preds, model(shuffled).preds
        assert torch.allclose(a, b, atol=1e-5) is (not pe)


def test_viper_missing_vector_starts_as_the_authors_zero_fill():
    """At initialisation a missing modality equals the authors' behaviour: a zero block fed as data."""
    torch.manual_seed(0)
    model = create_model("viper_small", task="reaction", input_dims=DIMS).eval()
    batch = make_batch(b=2, t=8, lengths=[8, 8], missing={"audio": [0, 1]})
    zeros = Batch(inputs={"visual": batch.inputs["visual"], "audio": torch.zeros(2, 6, 8)},
                  masks={"visual": batch.masks["visual"], "audio": torch.ones(2, 6, dtype=torch.bool)})
    with torch.no_grad():
        torch.testing.assert_close(model(batch).preds, model(zeros).preds)
        model.missing["audio"].fill_(1.0)
        assert not torch.allclose(model(batch).preds, model(zeros).preds)


def test_viper_cross_attention_width():
    kw = dict(task="reaction", num_latents=4, d_latents=16, num_self_attends=0, num_cross_attention_heads=4,
              num_self_attention_heads=4, decoder_heads=1)
    kv = create_model("viper", input_dims={"visual": 10, "audio": 3}, cross_attention_shape="kv", **kw)
    q = create_model("viper", input_dims={"visual": 10, "audio": 3}, cross_attention_shape="q", **kw)
    assert kv.cross.attn.q.out_features == 16  # 13 rounded up to a multiple of 4 heads
    assert q.cross.attn.q.out_features == 16 and q.cross.attn.k.in_features == 13
    wide = create_model("viper", input_dims={"visual": 40}, cross_attention_shape="kv", **kw)
    assert wide.cross.attn.k.out_features == 40


def test_viper_bad_config_names_the_field():
    with pytest.raises(ValueError, match="cross_attention_shape"):
        create_model("viper_small", task="reaction", input_dims=DIMS, cross_attention_shape="x")
    with pytest.raises(ValueError, match="num_self_attention_heads"):
        create_model("viper_small", task="reaction", input_dims=DIMS, num_self_attention_heads=5)


# ================================================================================================ JMT
class _AuthorsJMT(nn.Module):
    """Straight re-statement of ``MultimodalTransformer_w_JR`` ('FC') + ``Two_transformers`` regressors."""

    def __init__(self, d: int, heads: int, ff: int, k: int, fc: int, hd: int) -> None:
        super().__init__()

        def layer():
            return nn.ModuleDict(dict(att=nn.MultiheadAttention(d, heads), ff=nn.Sequential(nn.Linear(d, ff), nn.ReLU(), nn.Linear(ff, d)),
                                      ln1=nn.LayerNorm(d), ln2=nn.LayerNorm(d)))

        self.enc = nn.ModuleDict({r: layer() for r in "vaj"})
        self.cross = nn.ModuleDict({r: nn.MultiheadAttention(d, heads) for r in "vaj"})
        self.joint = nn.Linear(2 * d, d)
        self.out = nn.Linear(6 * d, fc)
        self.reg = nn.ModuleList(nn.Sequential(nn.Linear(fc, hd), nn.ReLU(), nn.Linear(hd, 1)) for _ in range(k))

    @staticmethod
    def _enc(l, x):
        x = l["ln1"](x + l["att"](x, x, x)[0])
        return l["ln2"](x + l["ff"](x))

    def forward(self, video, audio):
        video, audio = F.normalize(video, dim=-1), F.normalize(audio, dim=-1)
        j = self.joint(torch.cat([video, audio], 2))
        v, a, j = (t.permute(1, 0, 2) for t in (video, audio, j))  # (T, B, d): nn.MultiheadAttention seq-first
        v, a, j = self._enc(self.enc["v"], v), self._enc(self.enc["a"], a), self._enc(self.enc["j"], j)
        cv, ca, cj = self.cross["v"], self.cross["a"], self.cross["j"]
        outs = [cv(v, a, a)[0], ca(a, v, v)[0], cj(j, v, v)[0], cv(v, j, j)[0], cj(j, a, a)[0], ca(a, j, j)[0]]
        h = self.out(torch.cat(outs, 2)).permute(1, 0, 2)  # (B, T, fc)
        return torch.cat([r(h) for r in self.reg], -1)


def _copy_mha(dst: nn.MultiheadAttention, src: MultiHeadAttention) -> None:
    dst.in_proj_weight.copy_(torch.cat([src.q.weight, src.k.weight, src.v.weight]))
    dst.in_proj_bias.copy_(torch.cat([src.q.bias, src.k.bias, src.v.bias]))
    dst.out_proj.load_state_dict(src.out.state_dict())


def test_jmt_matches_the_authors_architecture():
    torch.manual_seed(0)
    d = 16
    model = create_model("jmt", task="va", input_dims={"visual": d, "audio": d}, d_model=d, num_heads=2, ff_dim=24,
                         fc_dim=20, head_dim=12).eval()
    ref = _AuthorsJMT(d, 2, 24, 2, 20, 12).eval()
    with torch.no_grad():
        for r in "vaj":
            lay = model.encoders[r].layers[0]
            _copy_mha(ref.enc[r]["att"], lay.attn)
            ref.enc[r]["ff"][0].load_state_dict(lay.ff[0].state_dict())
            ref.enc[r]["ff"][2].load_state_dict(lay.ff[3].state_dict())
            ref.enc[r]["ln1"].load_state_dict(lay.norm1.state_dict())
            ref.enc[r]["ln2"].load_state_dict(lay.norm2.state_dict())
            _copy_mha(ref.cross[r], model.cross[r])
        ref.joint.load_state_dict(model.joint.state_dict())
        ref.out.load_state_dict(model.fc.state_dict())
        for i in range(2):
            ref.reg[i][0].load_state_dict(model.heads[i][0].state_dict())
            ref.reg[i][2].load_state_dict(model.heads[i][3].state_dict())
    xv, xa = torch.randn(3, 7, d), torch.randn(3, 7, d)
    m = torch.ones(3, 7, dtype=torch.bool)
    with torch.no_grad():
        ours = model(Batch(inputs={"visual": xv, "audio": xa}, masks={"visual": m, "audio": m})).preds
        theirs = ref(xv, xa)
    assert ours.shape == (3, 7, 2)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_jmt_weight_sharing_and_two_modalities():
    kw = dict(task="va", input_dims={"visual": 32, "audio": 32})
    shared = create_model("jmt_small", **kw)
    separate = create_model("jmt_small", share_cross_weights=False, **kw)
    one = sum(p.numel() for p in shared.cross["v"].parameters())
    assert len(shared.cross) == 3 and len(separate.cross) == 6
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(separate) - n(shared) == 3 * one
    assert isinstance(shared.proj["v"], nn.Identity)  # width already d_model: no projection, as the code
    with pytest.raises(ValueError, match="one or two modalities"):
        create_model("jmt_small", task="va", input_dims={"visual": 4, "audio": 4, "text": 4})
    roles = create_model("jmt_small", task="va", input_dims={"audio": 4, "visual": 6}).roles
    assert roles == {"v": "visual", "a": "audio"}


def test_jmt_l2_normalises_frames():
    torch.manual_seed(0)
    model = create_model("jmt_small", task="va", input_dims=DIMS).eval()
    batch = make_batch(frame_level=True)
    scaled = Batch(inputs={m: x * torch.rand(x.shape[0], x.shape[1], 1) * 10 + 0 for m, x in batch.inputs.items()},
                   masks=batch.masks)
    with torch.no_grad():
        torch.testing.assert_close(model(batch).preds, model(scaled).preds, rtol=1e-4, atol=1e-5)


# ================================================================================================ baselines
def test_muse_lstm_packing_equals_running_each_sequence_alone():
    torch.manual_seed(0)
    for task in ("reaction", "va"):
        model = create_model("muse_lstm", task=task, input_dims={"audio": 5}, rnn_bi=True).eval()
        lengths = [7, 4, 1]
        x = torch.randn(3, 7, 5)
        mask = torch.arange(7)[None] < torch.tensor(lengths)[:, None]
        with torch.no_grad():
            out = model(Batch(inputs={"audio": x}, masks={"audio": mask})).preds
            for i, n in enumerate(lengths):
                seq, (h_n, _) = model.rnn(model.inp(x[i:i + 1, :n]))  # no packing, no padding
                if task == "reaction":
                    h = torch.cat([h_n[-2], h_n[-1]], dim=-1)  # last layer: forward end, backward start
                    torch.testing.assert_close(out[i], model.out(h)[0], rtol=1e-5, atol=1e-6)
                else:
                    torch.testing.assert_close(out[i, :n], model.out(seq)[0], rtol=1e-5, atol=1e-6)
    cfg = create_model("muse_lstm", task="reaction", input_dims={"audio": 88}).config
    assert (cfg.d_rnn, cfg.rnn_n_layers, cfg.rnn_bi, cfg.d_fc_out, cfg.rnn_dropout, cfg.linear_dropout) == (64, 3, False, 64, 0.2, 0.5)
    assert create_model("muse_lstm", task="reaction", input_dims={"audio": 88}).inp.bias is None


def test_muse_lstm_forget_bias_sets_the_forget_gate_only():
    d = 8
    torch.manual_seed(0)
    paper = create_model("muse_lstm", task="reaction", input_dims={"audio": 5}, d_rnn=d)
    assert paper.config.forget_bias is None
    small = create_model("muse_lstm_small", task="reaction", input_dims={"audio": 5}, d_rnn=d)
    assert small.config.forget_bias == 3.0
    for layer in ("_l0", "_l0_reverse"):
        b_ih, b_hh = (getattr(small.rnn, f"bias_{k}{layer}").detach() for k in ("ih", "hh"))
        torch.testing.assert_close((b_ih + b_hh)[d:2 * d], torch.full((d,), 3.0))
        for gate in (0, 2, 3):  # input, cell, output: PyTorch's uniform(-1/sqrt(d), 1/sqrt(d)), not 3
            assert b_ih[gate * d:(gate + 1) * d].abs().max() <= d ** -0.5
    for name, p in paper.rnn.named_parameters():  # None keeps PyTorch's init (uniform in +-1/sqrt(d))
        assert p.abs().max() <= d ** -0.5, name
    with pytest.raises(ValueError, match="forget_bias must be a finite number or None, got nan"):
        create_model("muse_lstm_small", task="reaction", input_dims={"audio": 5}, forget_bias=float("nan"))


def test_linear_meanpool_is_a_linear_map_of_masked_means():
    torch.manual_seed(0)
    model = create_model("linear_meanpool", task="reaction", input_dims=DIMS).eval()
    batch = make_batch(lengths=[10, 6, 3, 8], missing={"audio": [1]})
    with torch.no_grad():
        out = model(batch).preds.numpy()
    w, b = model.linear.weight.detach().numpy(), model.linear.bias.detach().numpy()
    for i in range(4):
        feats = []
        for m in DIMS:
            x, mk = batch.inputs[m][i].numpy(), batch.masks[m][i].numpy()
            feats.append(x[mk].mean(0) if mk.any() else np.zeros(DIMS[m]))  # missing vector starts at 0
        np.testing.assert_allclose(out[i], w @ np.concatenate(feats) + b, rtol=1e-5, atol=1e-6)


def test_early_fusion_pooling_variants():
    torch.manual_seed(0)
    batch = make_batch(lengths=[10, 6, 3, 8])
    mean = create_model("early_fusion_small", task="reaction", input_dims=DIMS).eval()
    with torch.no_grad():
        emb = mean(batch).embedding
    exp = torch.stack([batch.inputs["visual"][1, :6].mean(0)]).squeeze(0)
    torch.testing.assert_close(emb[1, :12], exp)
    att = create_model("early_fusion_small", task="reaction", input_dims=DIMS, pooling="attention").eval()
    assert att.pools is not None and att(batch).preds.shape == (4, 7)


def test_late_fusion_averages_present_modalities():
    torch.manual_seed(0)
    for task in ("reaction", "va"):
        fl = task == "va"
        model = create_model("late_fusion_small", task=task, input_dims=DIMS).eval()
        batch = make_batch(frame_level=fl, lengths=[10, 6, 3, 8], missing={"audio": [1]})
        with torch.no_grad():
            out = model(batch)
        pv, pa = out.extras["preds_visual"], out.extras["preds_audio"]
        if not fl:
            torch.testing.assert_close(out.preds[[0, 2, 3]], (pv[[0, 2, 3]] + pa[[0, 2, 3]]) / 2)
            torch.testing.assert_close(out.preds[1], pv[1])
        else:
            torch.testing.assert_close(out.preds[0], (pv[0] + pa[0]) / 2)  # both valid at every step
            torch.testing.assert_close(out.preds[1], pv[1])  # no audio
            with torch.no_grad():
                alone = model(select(batch, [1], ["visual"])).preds
            torch.testing.assert_close(out.preds[1:2], alone)


def test_frame_level_needs_a_common_time_axis():
    model = create_model("viper_small", task="va", input_dims=DIMS)
    with pytest.raises(ValueError, match="one time axis"):
        model(make_batch(frame_level=False))
    assert math.isfinite(float(model(make_batch(frame_level=True)).preds.detach().sum()))


def test_jmt_accepts_a_single_modality_and_keeps_the_papers_six_cross_attentions_for_two():
    from affectfuse.models import create_model

    both = create_model("jmt", task="va", input_dims={"audio": 512, "visual": 512})
    assert both.pairs == (("v", "a"), ("a", "v"), ("j", "v"), ("v", "j"), ("j", "a"), ("a", "j"))
    assert both.fc.in_features == 6 * 512 and both.joint.in_features == 1024
    assert round(sum(p.numel() for p in both.parameters()) / 1e6, 2) == 11.82  # the authors' 11.82 M (d 512 inputs)
    one = create_model("jmt_small", task="va", input_dims={"visual": 24})
    assert one.pairs == (("j", "v"), ("v", "j")) and one.joint.in_features == 32 and set(one.encoders) == {"v", "j"}
    b = Batch(inputs={"visual": torch.randn(2, 5, 24)}, masks={"visual": torch.ones(2, 5, dtype=torch.bool)})
    out = one.eval()(b)
    assert out.preds.shape == (2, 5, 2) and torch.isfinite(out.preds).all()
    with pytest.raises(ValueError, match="one or two modalities"):
        create_model("jmt_small", task="va", input_dims={"a": 4, "b": 4, "c": 4})
