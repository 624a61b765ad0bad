"""Losses against straightforward re-implementations; metrics against scipy / scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import uniform_filter1d
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from affectfuse.tasks.losses import LOSSES, create_loss
from affectfuse.tasks.metrics import (
    accuracy,
    ccc,
    compute_metrics,
    macro_f1,
    pearson,
    smooth_predictions,
    uar,
)
from affectfuse.tasks.spec import TASKS, TaskSpec
from affectfuse.types import Batch, ModelOutput


def ref_ccc(x, y):
    """CCC from numpy's covariance matrix (population statistics)."""
    c = np.cov(x, y, bias=True)
    return 2 * c[0, 1] / (c[0, 0] + c[1, 1] + (np.mean(x) - np.mean(y)) ** 2)


# -- metrics --------------------------------------------------------------------------------------
def test_pearson_ccc_match_references():
    rng = np.random.default_rng(0)
    x = rng.normal(size=500)
    y = 0.6 * x + rng.normal(scale=0.8, size=500) + 0.3
    assert abs(pearson(x, y) - pearsonr(x, y)[0]) < 1e-6
    assert abs(ccc(x, y) - ref_ccc(x, y)) < 1e-6
    assert abs(ccc(x, x) - 1.0) < 1e-12
    assert ccc(x, y + 5.0) < ccc(x, y)  # a bias lowers CCC, not Pearson
    assert abs(pearson(x, y + 5.0) - pearson(x, y)) < 1e-9


def test_degenerate_inputs_give_zero():
    y = np.array([0.1, 0.5, 0.9])
    assert pearson(np.full(3, 0.1), y) == 0.0  # constant predictions (mean not exact in floats)
    assert pearson([1.0], [2.0]) == 0.0
    assert ccc(np.full(4, 0.3), np.full(4, 0.3)) == 0.0
    assert ccc(np.full(3, 0.2), y) == 0.0
    assert accuracy([], []) == 0.0 and uar([], []) == 0.0 and macro_f1([], []) == 0.0
    out = compute_metrics("reaction", np.full((5, 7), 0.5), np.random.default_rng(1).random((5, 7)))
    assert out["mean_pearson"] == 0.0 and all(np.isfinite(v) for v in out.values())


def test_classification_metrics_match_sklearn():
    rng = np.random.default_rng(2)
    t = rng.integers(0, 5, 300)
    p = np.where(rng.random(300) < 0.5, t, rng.integers(0, 5, 300))
    p[p == 4] = 3  # class 4 never predicted
    assert abs(macro_f1(t, p) - f1_score(t, p, average="macro")) < 1e-6
    labels = list(range(8))
    assert abs(macro_f1(t, p, labels=labels) - f1_score(t, p, average="macro", labels=labels, zero_division=0)) < 1e-6
    assert abs(accuracy(t, p) - accuracy_score(t, p)) < 1e-6
    assert abs(uar(t, p) - balanced_accuracy_score(t, p)) < 1e-6


def test_compute_metrics_per_task():
    rng = np.random.default_rng(3)
    # reaction: per-emotion Pearson, mean of 7
    y = rng.random((40, 7))
    p = y + rng.normal(scale=0.3, size=y.shape)
    out = compute_metrics("reaction", p, y)
    for j, e in enumerate(TASKS["reaction"].targets):
        assert abs(out[f"pearson_{e}"] - pearsonr(p[:, j], y[:, j])[0]) < 1e-6
    assert abs(out["mean_pearson"] - np.mean([pearsonr(p[:, j], y[:, j])[0] for j in range(7)])) < 1e-6

    # va, frame level (B, T, 2): frames at -5 are ignored, a mask removes more
    y = rng.uniform(-1, 1, (3, 50, 2))
    p = y + rng.normal(scale=0.4, size=y.shape)
    y[0, :10, :] = -5.0
    y[1, 5, 1] = -5.0  # arousal only
    mask = np.ones((3, 50), bool)
    mask[2, 40:] = False
    out = compute_metrics("va", p, y, mask)
    for j, n in enumerate(("valence", "arousal")):
        keep = (y[..., j] != -5) & mask
        assert abs(out[f"ccc_{n}"] - ref_ccc(p[..., j][keep], y[..., j][keep])) < 1e-6
    assert set(out) == {"mean_ccc", "ccc_valence", "ccc_arousal"}

    # expr: logits → argmax; -1 ignored
    t = rng.integers(0, 8, (2, 30))
    t[0, :5] = -1
    logits = rng.normal(size=(2, 30, 8))
    out = compute_metrics("expr", logits, t)
    keep = t != -1
    pr = logits.argmax(-1)
    assert abs(out["macro_f1"] - f1_score(t[keep], pr[keep], average="macro")) < 1e-6
    assert abs(out["accuracy"] - accuracy_score(t[keep], pr[keep])) < 1e-6

    # group: class indices
    t = rng.integers(0, 3, 60)
    pr = rng.integers(0, 3, 60)
    out = compute_metrics("group", pr, t)
    assert abs(out["uar"] - balanced_accuracy_score(t, pr)) < 1e-6 and set(out) == {"accuracy", "uar"}

    # generic regression and classification
    spec = TaskSpec(name="custom", problem="regression", resolution="clip", targets=("a", "b"), metrics=("mean_ccc",))
    y = rng.normal(size=(30, 2))
    p = y + rng.normal(size=(30, 2))
    out = compute_metrics(spec, p, y)
    assert abs(out["mse_b"] - np.mean((p[:, 1] - y[:, 1]) ** 2)) < 1e-9
    assert {"mean_pearson", "mean_ccc", "mse", "ccc_a", "pearson_b"} <= set(out)
    spec = TaskSpec(name="c", problem="multiclass", resolution="clip", targets=("x", "y"))
    assert set(compute_metrics(spec, [0, 1, 1], [0, 1, 0])) == {"accuracy", "macro_f1", "uar"}
    bad = TaskSpec(name="c", problem="multiclass", resolution="clip", targets=("x", "y"), metrics=("auc",))
    with pytest.raises(ValueError, match="auc"):
        compute_metrics(bad, [0, 1], [0, 1])


@pytest.mark.parametrize("t", [7, 37, 200])
def test_smooth_matches_uniform_filter1d(t):
    rng = np.random.default_rng(t)
    x = rng.uniform(-1.4, 1.4, (t, 2))
    ours = smooth_predictions(x, (20, 50), clip=(-1, 1))
    ref = np.stack([uniform_filter1d(np.clip(x[:, 0], -1, 1), 20), uniform_filter1d(np.clip(x[:, 1], -1, 1), 50)], 1)
    np.testing.assert_allclose(ours, ref, atol=1e-9)
    for w in (1, 2, 3, 4):
        np.testing.assert_allclose(smooth_predictions(x[:, 0], w), uniform_filter1d(x[:, 0], w), atol=1e-9)


# -- losses ---------------------------------------------------------------------------------------
def _batch(targets, target_mask=None):
    return Batch(inputs={"v": torch.zeros(len(targets), 1, 1)}, masks={"v": torch.ones(len(targets), 1, dtype=torch.bool)},
                 targets=targets, target_mask=target_mask)


def test_mse_loss_per_column_and_mask():
    torch.manual_seed(0)
    p, y = torch.randn(6, 7), torch.rand(6, 7)
    m = torch.tensor([True, True, False, True, True, True])
    loss = create_loss("mse", "reaction")(ModelOutput(preds=p), _batch(y, m))
    ref = np.mean([np.mean((p[m, j] - y[m, j]).numpy() ** 2) for j in range(7)])
    assert abs(loss.item() - ref) < 1e-6
    y2 = y.clone()
    y2[2] = 100.0  # a masked clip never contributes
    assert abs(create_loss("mse", "reaction")(ModelOutput(preds=p), _batch(y2, m)).item() - ref) < 1e-6


def test_ccc_loss_frame_level_ignores_minus5_and_padding():
    rng = np.random.default_rng(1)
    y = rng.uniform(-1, 1, (2, 30, 2)).astype(np.float32)
    p = (y + rng.normal(scale=0.5, size=y.shape)).astype(np.float32)
    y[0, :4] = -5.0
    m = np.ones((2, 30), bool)
    m[1, 25:] = False  # padding
    pt = torch.tensor(p, requires_grad=True)
    loss = create_loss(None, "va")(ModelOutput(preds=pt), _batch(torch.tensor(y), torch.tensor(m)))
    ref = np.mean([1 - ref_ccc(p[..., j][(y[..., j] != -5) & m], y[..., j][(y[..., j] != -5) & m]) for j in range(2)])
    assert abs(loss.item() - ref) < 1e-5
    loss.backward()
    assert pt.grad[1, 25:].abs().sum() == 0 and pt.grad[0, :4].abs().sum() == 0


def test_mse_ce_matches_manual_and_authors_variant():
    torch.manual_seed(2)
    p, logits = torch.randn(5, 7), torch.randn(5, 7)
    y = torch.rand(5, 7)
    y = y / y.max(1, keepdim=True).values  # max-normalised: each row has a 1
    y[3, 2] = 1.0  # a tie: two dominant emotions
    out = ModelOutput(preds=p, logits=logits)
    loss = create_loss("mse_ce", "reaction")(out, _batch(y))
    ref = F.mse_loss(torch.sigmoid(p), y) + 0.01 * F.cross_entropy(logits, y.argmax(1))
    assert abs(loss.item() - ref.item()) < 1e-6
    loss_a = create_loss("mse_ce", "reaction", ce_target="authors", ce_weight=0.5)(out, _batch(y))
    logp = F.log_softmax(logits, 1)
    ref_a = F.mse_loss(torch.sigmoid(p), y) + 0.5 * (-(logp * (y == 1).float()).sum(1)).mean()
    assert abs(loss_a.item() - ref_a.item()) < 1e-6
    with pytest.raises(ValueError, match="logits"):
        create_loss("mse_ce", "reaction")(ModelOutput(preds=p), _batch(y))


def test_cross_entropy_and_focal():
    torch.manual_seed(3)
    logits = torch.randn(2, 10, 8)
    t = torch.randint(0, 8, (2, 10))
    t[0, :3] = -1  # unlabelled frames
    m = torch.ones(2, 10, dtype=torch.bool)
    m[1, 8:] = False
    keep = (t != -1) & m
    ce = create_loss("cross_entropy", "expr", label_smoothing=0.2)(ModelOutput(preds=logits), _batch(t, m))
    ref = F.cross_entropy(logits[keep], t[keep], label_smoothing=0.2)
    assert abs(ce.item() - ref.item()) < 1e-6
    # focal with gamma 0 is cross-entropy; with gamma 2 the textbook formula
    f0 = create_loss("focal", "expr", gamma=0.0)(ModelOutput(preds=logits), _batch(t, m))
    assert abs(f0.item() - F.cross_entropy(logits[keep], t[keep]).item()) < 1e-6
    alpha = [0.5, 1, 1, 2, 1, 1, 1, 0.25]
    f2 = create_loss("focal", "expr", alpha=alpha)(ModelOutput(preds=logits), _batch(t, m))
    pt = F.softmax(logits[keep], -1).gather(1, t[keep][:, None]).squeeze(1)
    ref = (-torch.tensor(alpha)[t[keep]] * (1 - pt) ** 2 * torch.log(pt)).mean()
    assert abs(f2.item() - ref.item()) < 1e-6
    # clip-level group task
    lg, tg = torch.randn(4, 3), torch.tensor([0, 2, 1, 1])
    assert abs(create_loss(None, "group")(ModelOutput(preds=lg), _batch(tg)).item() - F.cross_entropy(lg, tg).item()) < 1e-6


def test_all_masked_gives_zero_with_graph_and_errors():
    p = torch.randn(3, 2, requires_grad=True)
    for name in ("mse", "ccc"):
        task = TaskSpec(name="r", problem="regression", resolution="clip", targets=("a", "b"))
        loss = create_loss(name, task)(ModelOutput(preds=p), _batch(torch.zeros(3, 2), torch.zeros(3, dtype=torch.bool)))
        assert loss.item() == 0.0
        loss.backward()
    lg = torch.randn(3, 8, requires_grad=True)
    loss = create_loss("focal", "expr")(ModelOutput(preds=lg), _batch(torch.full((3,), -1)))
    assert loss.item() == 0.0
    with pytest.raises(KeyError, match="available"):
        create_loss("hinge", "va")
    with pytest.raises(TypeError, match="accepted"):
        create_loss("focal", "expr", gama=2)
    with pytest.raises(ValueError, match="regression"):
        create_loss("ccc", "group")
    with pytest.raises(TypeError, match="int64"):
        create_loss("cross_entropy", "group")(ModelOutput(preds=torch.randn(2, 3)), _batch(torch.zeros(2)))
    assert set(LOSSES) == {"mse", "ccc", "mse_ce", "cross_entropy", "focal"}


# -- post-processing: what the loss says its outputs mean ----------------------------------------
def test_each_loss_declares_its_output_activation():
    from affectfuse.tasks.postprocess import ACTIVATIONS

    expected = {"mse": "none", "ccc": "none", "mse_ce": "sigmoid", "cross_entropy": "softmax", "focal": "softmax"}
    assert {name: cls.activation for name, cls in LOSSES.items()} == expected
    assert all(cls.activation in ACTIVATIONS for cls in LOSSES.values())
    assert create_loss("mse_ce", "reaction").activation == "sigmoid"
    assert create_loss(None, "expr").activation == "softmax"  # the task's default loss (focal)


def test_postprocess_for_task_smooths_frame_regression_only():
    from affectfuse._config import from_yaml, to_yaml
    from affectfuse.tasks.postprocess import PostProcess

    va = PostProcess.for_task(TASKS["va"], smoothing=(20, 50))
    assert va == PostProcess(activation="none", clip=(-1.0, 1.0), smoothing=(20, 50))
    assert from_yaml(PostProcess, to_yaml(va)) == va
    for name in ("reaction", "expr", "group"):  # clip level or classification: never smoothed or clipped
        assert PostProcess.for_task(TASKS[name], activation="softmax", smoothing=(5, 5)).smoothing is None
        assert PostProcess.for_task(TASKS[name], smoothing=(5, 5)).clip is None
    with pytest.raises(ValueError, match="activation must be one of"):
        PostProcess(activation="relu").validate()


def test_postprocess_says_which_outputs_are_bounded():
    from affectfuse.tasks.postprocess import PostProcess

    rng = np.random.default_rng(1)
    raw = rng.normal(0, 3, (200, 3)).astype(np.float32)
    for post in (PostProcess(), PostProcess(activation="sigmoid"), PostProcess(activation="softmax"),
                 PostProcess(clip=(-1.0, 1.0), smoothing=(3, 3, 3))):
        out = post.apply(raw, video_ids=["v"] * 200, frames=np.arange(200))
        rng_ = post.output_range()
        if rng_ is None:  # raw regression outputs: values outside any target range do occur
            assert post.activation == "none" and post.clip is None and (out < 0).any() and (out > 1).any()
        else:
            assert out.min() >= rng_[0] and out.max() <= rng_[1]
    assert PostProcess(activation="sigmoid").output_range() == (0.0, 1.0)
    assert PostProcess(clip=(-1.0, 1.0)).output_range() == (-1.0, 1.0)


def test_postprocess_apply_smooths_each_video_in_frame_order():
    from affectfuse.tasks.postprocess import PostProcess

    rng = np.random.default_rng(0)
    ids = np.array(["a"] * 30 + ["b"] * 20)
    frames = np.concatenate([np.arange(30), np.arange(20) * 2])
    raw = rng.uniform(-1.5, 1.5, (50, 2)).astype(np.float32)
    order = rng.permutation(50)  # rows arrive in any order
    post = PostProcess.for_task(TASKS["va"], smoothing=(5, 9))
    out = post.apply(raw[order], video_ids=list(ids[order]), frames=frames[order])
    assert out.dtype == np.float32 and out.shape == (50, 2)
    back = np.empty_like(out)
    back[order] = out
    for v in ("a", "b"):
        rows = np.nonzero(ids == v)[0]
        for k, w in enumerate((5, 9)):
            ref = uniform_filter1d(np.clip(raw[rows, k].astype(np.float64), -1, 1), size=w)
            np.testing.assert_allclose(back[rows, k], ref, atol=1e-6)
    logits = rng.normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_array_equal(PostProcess(activation="softmax").apply(logits),
                                  torch.softmax(torch.from_numpy(logits), -1).numpy())
    np.testing.assert_array_equal(PostProcess(activation="sigmoid").apply(logits),
                                  torch.sigmoid(torch.from_numpy(logits)).numpy())
    np.testing.assert_array_equal(PostProcess().apply(logits), logits)
    with pytest.raises(ValueError, match="smoothing needs the video id"):
        post.apply(raw)


def test_ccc_loss_options_are_the_authors_sum_and_unbiased_std():
    import torch

    from affectfuse.tasks.losses import create_loss
    from affectfuse.tasks.spec import get_task
    from affectfuse.types import Batch, ModelOutput

    g = torch.Generator().manual_seed(0)
    p, t = torch.randn(1, 40, 2, generator=g), torch.randn(1, 40, 2, generator=g)
    out, batch = ModelOutput(preds=p), Batch(inputs={}, masks={}, targets=t, target_mask=torch.ones(1, 40, dtype=torch.bool))

    def ccc(x, y, ddof):  # hand-computed, numpy
        x, y = x.numpy().astype(np.float64), y.numpy().astype(np.float64)
        cov = ((x - x.mean()) * (y - y.mean())).sum() / (len(x) - ddof)
        return 2 * cov / (x.var(ddof=ddof) + y.var(ddof=ddof) + (x.mean() - y.mean()) ** 2)

    va = get_task("va")
    for reduction, std, ddof in (("mean", "population", 0), ("sum", "unbiased", 1)):
        losses = [1 - ccc(p[0, :, k], t[0, :, k], ddof) for k in range(2)]
        want = sum(losses) if reduction == "sum" else np.mean(losses)
        got = float(create_loss("ccc", va, reduction=reduction, std=std)(out, batch))
        assert got == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="reduction"):
        create_loss("ccc", va, reduction="max")


def test_smoothing_in_constant_mode_is_scipys():
    from scipy.ndimage import uniform_filter1d

    from affectfuse.tasks.metrics import smooth_predictions
    from affectfuse.tasks.postprocess import PostProcess

    x = np.random.default_rng(0).uniform(-1, 1, (60, 2))
    for mode in ("reflect", "constant"):
        want = np.stack([uniform_filter1d(x[:, j], w, mode=mode) for j, w in enumerate((20, 50))], 1)
        np.testing.assert_allclose(smooth_predictions(x, (20, 50), mode=mode), want, atol=1e-12)
    pp = PostProcess(smoothing=(20, 50), clip=(-1.0, 1.0), smoothing_mode="constant")
    got = pp.apply(x, video_ids=["v"] * 60, frames=np.arange(60))
    np.testing.assert_allclose(got, np.stack([uniform_filter1d(x[:, j], w, mode="constant")
                                              for j, w in enumerate((20, 50))], 1), atol=1e-6)
