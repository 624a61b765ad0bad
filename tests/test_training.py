"""Training loop, run folders, resume, evaluation, seeds — on a GENERATED feature dataset."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import pearsonr

from affectfuse.data.synthetic import make_feature_dataset
from affectfuse.features.store import FeatureStore
from affectfuse.tasks.spec import REACTION_EMOTIONS
from affectfuse.training import TrainConfig, evaluate, load_run, train

MODS = {"visual": "generated_visual", "audio": "generated_audio"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("gen")
    make_feature_dataset(d / "store", d / "labels.csv", n=160, rows=16, dims={"visual": 12, "audio": 8})
    return d


def _cfg(**kw):
    base = dict(task="reaction", model="early_fusion_small", modalities=MODS, epochs=8, lr=3e-3, batch_size=16)
    base.update(kw)
    return TrainConfig(**base)


def test_train_writes_a_complete_run_and_metrics_match_scipy(data, tmp_path):
    run = tmp_path / "run"
    metrics = train(data / "labels.csv", data / "store", _cfg(), run, progress=False, log=lambda *_: None)
    for f in ("config.yaml", "model.safetensors", "model.yaml", "standardizer.json", "features.json", "data.json",
              "versions.json", "history.csv", "metrics.json", "predictions/dev.csv", "predictions/test.csv"):
        assert (run / f).exists(), f
    assert json.loads((run / "metrics.json").read_text()) == metrics
    assert metrics["dev"]["mean_pearson"] > 0.3, "the generated targets are learnable"
    # independent check of the stored metric: scipy on the written predictions and the labels
    labels = pd.read_csv(data / "labels.csv").set_index("id")
    pred = pd.read_csv(run / "predictions" / "dev.csv").set_index("video_id")
    assert len(pred) == (labels["split"] == "dev").sum()
    rs = [pearsonr(pred[e], labels.loc[pred.index, e])[0] for e in REACTION_EMOTIONS]
    assert metrics["dev"]["mean_pearson"] == pytest.approx(np.mean(rs), abs=1e-5)
    hist = pd.read_csv(run / "history.csv")
    assert list(hist["epoch"]) == list(range(1, 9)) and "dev_mean_pearson" in hist


def test_standardizer_is_fitted_on_train_only(data, tmp_path):
    run = tmp_path / "run"
    train(data / "labels.csv", data / "store", _cfg(epochs=1), run, progress=False, log=lambda *_: None)
    std = json.loads((run / "standardizer.json").read_text())["modalities"]["visual"]
    store = FeatureStore(data / "store", create=True)
    labels = pd.read_csv(data / "labels.csv")
    key = store.keys_for("generated_visual")[0]
    rows = [store.get(v, key) for v in labels.loc[labels["split"] == "train", "id"]]
    x = np.concatenate([fs.values[fs.valid] for fs in rows]).astype(np.float64)
    np.testing.assert_allclose(std["mean"], x.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std["std"], x.std(0), rtol=1e-4)


def test_interrupted_run_resumes_to_identical_weights(data, tmp_path):
    from safetensors.torch import load_file

    cfg = _cfg(epochs=4, model="viper_small")
    train(data / "labels.csv", data / "store", cfg, tmp_path / "a", progress=False, log=lambda *_: None)
    assert train(data / "labels.csv", data / "store", cfg, tmp_path / "b", progress=False, stop_after=2,
                 log=lambda *_: None) == {}
    assert not (tmp_path / "b" / "metrics.json").exists()
    train(data / "labels.csv", data / "store", cfg, tmp_path / "b", progress=False, log=lambda *_: None)
    wa, wb = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0)
    state = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)  # no pickled objects
    assert state["epoch"] == 3


def test_run_folder_refuses_another_config(data, tmp_path):
    train(data / "labels.csv", data / "store", _cfg(epochs=1), tmp_path / "r", progress=False, log=lambda *_: None)
    with pytest.raises(ValueError, match="different configuration.*lr"):
        train(data / "labels.csv", data / "store", _cfg(epochs=1, lr=1e-2), tmp_path / "r", progress=False)


def test_ema_clip_and_mse_ce_give_sigmoid_predictions(data, tmp_path):
    cfg = _cfg(model="abaw5_eri_small", loss="mse_ce", ema_decay=0.9, grad_clip=0.1, optimizer="adam", epochs=2)
    metrics = train(data / "labels.csv", data / "store", cfg, tmp_path / "r", progress=False, log=lambda *_: None)
    pred = pd.read_csv(tmp_path / "r" / "predictions" / "dev.csv")
    vals = pred[list(REACTION_EMOTIONS)].to_numpy()
    assert ((vals > 0) & (vals < 1)).all()
    assert np.isfinite(metrics["dev"]["mean_pearson"])


def test_load_run_and_evaluate_reproduce_the_metrics(data, tmp_path):
    run = tmp_path / "r"
    metrics = train(data / "labels.csv", data / "store", _cfg(epochs=2), run, progress=False, log=lambda *_: None)
    loaded = load_run(run)
    assert loaded.task.name == "reaction" and loaded.model.input_dims == {"visual": 12, "audio": 8}
    again = evaluate(run, split="test")
    assert again == pytest.approx(metrics["test"], abs=1e-6)
    with pytest.raises(ValueError, match="no split 'holdout'"):
        evaluate(run, split="holdout")


def test_several_seeds_mean_std_and_ensemble(data, tmp_path):
    from affectfuse.training.multi import train_seeds

    s = train_seeds(data / "labels.csv", data / "store", _cfg(epochs=2), tmp_path / "m", seeds=[1, 2],
                    progress=False, log=lambda *_: None)
    per = [s["per_seed"][k]["dev"]["mean_pearson"] for k in ("1", "2")]
    assert s["mean"]["dev"]["mean_pearson"] == pytest.approx(np.mean(per))
    assert s["std"]["dev"]["mean_pearson"] == pytest.approx(np.std(per))
    assert per[0] != per[1], "different seeds give different runs"
    assert "dev" in s["ensemble"] and np.isfinite(s["ensemble"]["dev"]["mean_pearson"])
    assert (tmp_path / "m" / "seed_1" / "model.safetensors").exists()


def test_videos_missing_from_the_store_are_reported_not_fatal(data, tmp_path):
    lab = pd.read_csv(data / "labels.csv")
    extra = lab.iloc[:1].copy()
    extra["id"] = "not_extracted"
    pd.concat([lab, extra]).to_csv(tmp_path / "labels.csv", index=False)
    logs = []
    train(tmp_path / "labels.csv", data / "store", _cfg(epochs=1), tmp_path / "r", progress=False, log=logs.append)
    assert any("not_extracted" in line for line in logs)


def test_cli_train_and_evaluate(data, tmp_path, capsys):
    from affectfuse.cli import main

    rc = main(["train", "--task", "reaction", "--labels", str(data / "labels.csv"), "--features", str(data / "store"),
               "--modalities", "visual=generated_visual,generated_audio", "--model", "early_fusion_small",
               "--epochs", "1", "--out", str(tmp_path / "r"), "--quiet"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert "mean_pearson" in out["dev"]
    cfg = (tmp_path / "r" / "config.yaml").read_text()
    assert "generated_audio" in cfg and "visual: generated_visual" in cfg
    assert main(["evaluate", str(tmp_path / "r"), "--split", "dev"]) == 0
    rc = main(["train", "--task", "reaction", "--labels", str(data / "labels.csv"), "--features", str(data / "store"),
               "--modalities", "nonexistent", "--out", str(tmp_path / "x")])
    assert rc == 2
    assert "nonexistent" in capsys.readouterr().err


@pytest.mark.parametrize("recipe", sorted(__import__("affectfuse.recipes").recipes.RECIPES_DIR.glob("*.yaml")))
def test_recipes_load_and_name_real_models_tasks_and_losses(recipe):
    from affectfuse._config import from_yaml
    from affectfuse.models import list_models
    from affectfuse.tasks.losses import LOSSES
    from affectfuse.tasks.spec import TASKS

    cfg = from_yaml(TrainConfig, recipe)
    assert cfg.model in list_models() and cfg.task in TASKS
    assert (cfg.loss or TASKS[cfg.task].loss) in LOSSES
    text = open(recipe).read()
    assert "Reported" in text, "each recipe quotes the paper's numbers"


def test_jmt_recipe_is_the_authors_setting():
    """JMT's code: CCC_V + CCC_A with torch.std (unbiased), no standardisation, constant-mode smoothing 20 / 50."""
    import torch
    from scipy.ndimage import uniform_filter1d

    from affectfuse._config import from_yaml
    from affectfuse.inference.run import derived_postprocess
    from affectfuse.tasks.losses import create_loss
    from affectfuse.tasks.spec import TASKS
    from affectfuse.types import Batch, ModelOutput

    from affectfuse.recipes import resolve

    cfg = from_yaml(TrainConfig, resolve("jmt_va"))
    assert cfg.standardize is False and cfg.smoothing == (20, 50) and cfg.smoothing_mode == "constant"
    post = derived_postprocess(cfg, TASKS["va"])
    assert post.smoothing_mode == "constant"
    x = np.random.default_rng(0).uniform(-1, 1, (120, 2))
    out = post.apply(x, video_ids=np.array(["v"] * 120), frames=np.arange(120))
    for k, w in enumerate((20, 50)):
        np.testing.assert_allclose(out[:, k], uniform_filter1d(np.clip(x[:, k], -1, 1), w, mode="constant"), atol=1e-6)
    loss = create_loss(cfg.loss, "va", **cfg.loss_params)
    p, t = torch.randn(40, 2), torch.randn(40, 2)

    def ccc(a, b):  # the authors' CCCLoss: rho from centred sums, torch.std (unbiased)
        va, vb = a - a.mean(), b - b.mean()
        rho = (va * vb).sum() / (va.pow(2).sum().sqrt() * vb.pow(2).sum().sqrt())
        return 2 * rho * a.std() * b.std() / (a.std() ** 2 + b.std() ** 2 + (a.mean() - b.mean()) ** 2)

    batch = Batch(inputs={}, masks={}, targets=t[None], target_mask=torch.ones(1, 40, dtype=torch.bool))
    got = float(loss(ModelOutput(preds=p[None]), batch))
    assert abs(got - float((1 - ccc(p[:, 0], t[:, 0])) + (1 - ccc(p[:, 1], t[:, 1])))) < 1e-5
    with pytest.raises(ValueError, match="smoothing_mode must be 'reflect' or 'constant'"):
        TrainConfig(task="va", smoothing_mode="nearest").validate()


def test_frame_level_va_with_ccc_and_smoothing(tmp_path):
    """JMT's path: per-frame valence / arousal, -5 ignored, CCC loss, smoothing, per-frame predictions."""
    from scipy.ndimage import uniform_filter1d

    from affectfuse.data.synthetic import make_frame_dataset

    make_frame_dataset(tmp_path / "store", tmp_path / "labels.csv", n=20, frames=90)
    cfg = TrainConfig(task="va", model="jmt_small", modalities=MODS, epochs=6, lr=3e-3, batch_size=4, seq_len=30,
                      loss="ccc", smoothing=(5, 9))
    metrics = train(tmp_path / "labels.csv", tmp_path / "store", cfg, tmp_path / "run", progress=False,
                    log=lambda *_: None)
    assert metrics["dev"]["mean_ccc"] > 0.3, "valence is in the visual stream, arousal in the audio stream"
    pred = pd.read_csv(tmp_path / "run" / "predictions" / "dev.csv")
    labels = pd.read_csv(tmp_path / "labels.csv")
    dev_labelled = labels[(labels["split"] == "dev") & (labels["valence"] != -5)]
    assert len(pred) == len(dev_labelled), "one row per labelled frame (frames labelled -5 are left out)"
    assert list(pred.columns[:3]) == ["video_id", "frame", "time"]
    assert ((pred[["valence", "arousal"]].abs() <= 1).all()).all(), "clipped to the task's range"
    one = pred[pred["video_id"] == pred["video_id"].iloc[0]].sort_values("frame")
    assert one["frame"].is_monotonic_increasing and one["frame"].is_unique
    # the written predictions are the raw per-frame outputs smoothed per video (scipy as the reference)
    from affectfuse.data.dataset import FeatureDataset
    from affectfuse.data.labels import load_labels
    from affectfuse.inference.run import predict_dataset

    run = load_run(tmp_path / "run")
    ds = FeatureDataset(FeatureStore(tmp_path / "store", create=True), load_labels(tmp_path / "labels.csv", "va"), "dev",
                        {m: f["key"] for m, f in run.features.items()}, seq_len=30, standardizer=run.standardizer)
    raw = predict_dataset(run.model, ds)
    vid = one["video_id"].iloc[0]
    rows = np.nonzero(np.asarray(raw["video_ids"]) == vid)[0]
    rows = rows[np.argsort(raw["frames"][rows])]
    for k, (col, w) in enumerate([("valence", 5), ("arousal", 9)]):
        ref = np.clip(uniform_filter1d(raw["preds"][rows, k], size=w), -1, 1)
        np.testing.assert_allclose(one[col].to_numpy(), ref, atol=2e-6)


def test_the_model_is_built_once_with_the_backbone_rate_decided_before(data, tmp_path, monkeypatch):
    import affectfuse.training.loop as loop
    from affectfuse.models import config_class, create_model, list_models

    for name in list_models():  # the config class is known without building the model
        assert config_class(name).__name__.endswith("Config")
    small = create_model("e2e_cross_small", task="reaction", input_dims={"pixels": 3, "waveform": 1})
    assert config_class("e2e_cross_small") is type(small.config)
    assert loop._model_overrides(TrainConfig(model="e2e_cross_small", backbone_lr_scale=0.1)) == {"backbone_lr_scale": 0.1}
    assert loop._model_overrides(TrainConfig(model="viper_small", model_overrides={"init_std": 0.2})) == {"init_std": 0.2}
    built = []
    monkeypatch.setattr(loop, "create_model", lambda *a, **kw: built.append(a) or create_model(*a, **kw))
    train(data / "labels.csv", data / "store", _cfg(epochs=1), tmp_path / "r", progress=False, log=lambda *_: None)
    assert len(built) == 1, "the model is built once (the final evaluation reuses it with the kept weights)"


def test_jmt_on_subclip_tokens_predicts_every_labelled_frame(tmp_path):
    from affectfuse.data.synthetic import make_frame_dataset

    make_frame_dataset(tmp_path / "store", tmp_path / "labels.csv", n=10, frames=96)
    cfg = TrainConfig(task="va", model="jmt_small", modalities=MODS, epochs=2, lr=3e-3, batch_size=4, seq_len=6,
                      tokens="subclips", subclip_stride=4, loss="ccc")
    train(tmp_path / "labels.csv", tmp_path / "store", cfg, tmp_path / "run", progress=False, log=lambda *_: None)
    pred = pd.read_csv(tmp_path / "run" / "predictions" / "dev.csv")
    labels = pd.read_csv(tmp_path / "labels.csv")
    dev = labels[(labels["split"] == "dev") & (labels["valence"] != -5)]
    assert sorted(zip(pred["video_id"], pred["frame"])) == sorted(zip(dev["id"], dev["frame"]))
    assert load_run(tmp_path / "run").config.tokens == "subclips"


def test_recipes_default_to_the_authors_settings():
    """Each recipe is the authors' setting; the departures are options (issue: faithful where it changes results)."""
    from affectfuse._config import from_yaml
    from affectfuse.models import config_class

    from affectfuse.recipes import RECIPES_DIR as root
    viper, jmt, eri, e2e = (from_yaml(TrainConfig, root / f"{n}.yaml") for n in ("viper_reaction", "jmt_va", "abaw5_eri",
                                                                                  "e2e_vgaf"))
    assert viper.standardize is False and eri.standardize is False and jmt.standardize is False
    assert (jmt.tokens, jmt.seq_len, jmt.subclip_stride) == ("subclips", 16, 32), "16 sub-clips x 32 = 512 frames"
    assert jmt.loss_params == {"reduction": "sum", "std": "unbiased"} and jmt.smoothing_mode == "constant"
    assert eri.model_overrides == {"pooling": "flatten", "steps": 30}
    assert config_class("e2e_cross")().backbone_init == "pretrained" and "backbone_init" not in e2e.model_overrides
