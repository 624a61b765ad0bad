"""The model contract, checked on every registered feature model (``list_models()``).

Behavioural checks run on the ``*_small`` variants (and models without one); paper-sized variants are
built on the meta device and described by ``model_info``.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from affectfuse._config import field_names, from_yaml, to_dict, to_yaml
from affectfuse.models import create_model, list_models
from affectfuse.models._info import model_info
from affectfuse.tasks.spec import get_task

from ._helpers import DIMS, all_outputs, behavioural_models, feature_models, make_batch, perturb_invalid, select

MODELS_ = behavioural_models()
TASKS = ["reaction", "va", "expr"]


def build(name: str, task: str = "reaction", dims=None, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return create_model(name, task=task, input_dims=dict(DIMS if dims is None else dims), **kw).eval()


def frame(task: str) -> bool:
    return get_task(task).resolution == "frame"


def test_the_zoo_is_registered():
    names = list_models()
    for n in ("viper", "viper_small", "jmt", "jmt_small", "muse_lstm", "muse_lstm_small", "early_fusion",
              "early_fusion_small", "late_fusion", "late_fusion_small", "linear_meanpool"):
        assert n in names
    assert {"viper_small", "jmt_small", "linear_meanpool"} <= set(MODELS_)
    assert "viper" not in MODELS_


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("name", MODELS_)
def test_output_shapes(name, task):
    spec = get_task(task)
    batch = make_batch(frame_level=frame(task), b=3, t=10)
    with torch.no_grad():
        out = build(name, task)(batch)
    shape = (3, 10, spec.num_outputs) if frame(task) else (3, spec.num_outputs)
    assert tuple(out.preds.shape) == shape
    assert out.preds.dtype == torch.float32
    for x in all_outputs(out):
        assert torch.isfinite(x).all()


@pytest.mark.parametrize("task", ["reaction", "va"])
@pytest.mark.parametrize("name", MODELS_)
def test_padding_never_changes_output(name, task):
    batch = make_batch(frame_level=frame(task), lengths=[10, 6, 3, 8], missing={"audio": [2]})
    model = build(name, task)
    with torch.no_grad():
        a, b = model(batch), model(perturb_invalid(batch))
    changed = perturb_invalid(batch).inputs["visual"].sub(batch.inputs["visual"]).abs().max()
    assert changed > 10  # the perturbation is real
    for x, y in zip(all_outputs(a), all_outputs(b)):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("task", ["reaction", "va"])
@pytest.mark.parametrize("name", MODELS_)
def test_missing_modality(name, task):
    model = build(name, task)
    fl = frame(task)
    full = make_batch(frame_level=fl, b=4, lengths=[10, 9, 7, 10], missing={"audio": [1, 3]})
    with torch.no_grad():
        out = model(full).preds
        assert torch.isfinite(out).all()
        # a modality absent from the whole batch
        vis_only = model(select(full, [0, 1, 2, 3], ["visual"])).preds
        aud_only = model(select(full, [0, 1, 2, 3], ["audio"])).preds
        assert torch.isfinite(vis_only).all() and torch.isfinite(aud_only).all()
        assert vis_only.shape == out.shape == aud_only.shape
        # a sample whose audio row is all False == that sample run alone without audio
        alone = model(select(full, [1], ["visual"])).preds
    torch.testing.assert_close(out[1:2], alone, rtol=1e-4, atol=1e-5)
    # and samples with audio do use it
    assert not torch.allclose(out[0], vis_only[0], atol=1e-6)


@pytest.mark.parametrize("task", ["reaction", "va"])
@pytest.mark.parametrize("name", MODELS_)
def test_batch_composition_does_not_matter(name, task):
    model = build(name, task)
    batch = make_batch(frame_level=frame(task), b=4, lengths=[10, 6, 3, 8])
    with torch.no_grad():
        together = model(batch).preds
        one = model(select(batch, [2])).preds
    torch.testing.assert_close(together[2:3], one, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODELS_)
def test_gradients_reach_every_parameter(name):
    for task in ("reaction", "va"):
        torch.manual_seed(0)
        model = create_model(name, task=task, input_dims=DIMS).train()
        batch = make_batch(frame_level=frame(task), b=4, lengths=[10, 6, 3, 8], missing={"audio": [1], "visual": [2]})
        out = model(batch)
        loss = sum(x.float().pow(2).mean() for x in all_outputs(out) if x is not out.embedding)
        loss.backward()
        dead = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
        assert not dead, f"{name} ({task}): no gradient for {dead}"


@pytest.mark.parametrize("name", MODELS_)
def test_same_seed_same_model(name):
    batch = make_batch()
    with torch.no_grad():
        a = build(name, seed=3)(batch).preds
        b = build(name, seed=3)(batch).preds
        c = build(name, seed=4)(batch).preds
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name", feature_models())
def test_config_yaml_round_trip(name, tmp_path):
    cfg = model_info(name)["config"]
    with torch.device("meta"):
        model = create_model(name, task="reaction", input_dims=model_info(name)["input_dims"])
    config = model.config
    assert dataclasses.is_dataclass(config) and config.__dataclass_params__.frozen
    path = tmp_path / "model.yaml"
    to_yaml(config, path)
    assert from_yaml(type(config), path) == config
    assert to_dict(config) == cfg
    # the YAML's fields, passed back as overrides, rebuild the same config
    with torch.device("meta"):
        again = create_model(name, task="reaction", input_dims=model_info(name)["input_dims"], **to_dict(config))
    assert again.config == config


@pytest.mark.parametrize("name", feature_models())
def test_unknown_override_lists_fields(name):
    with pytest.raises(TypeError, match="accepted fields") as e:
        create_model(name, task="reaction", input_dims=DIMS, no_such_field=3)
    assert "no_such_field" in str(e.value)
    with torch.device("meta"):
        cfg = create_model(name, task="reaction", input_dims=DIMS).config
    for f in field_names(type(cfg)):
        assert f in str(e.value)


@pytest.mark.parametrize("name", MODELS_)
def test_wrong_inputs_are_refused(name):
    model = build(name)
    batch = make_batch()
    bad = dataclasses.replace(batch, inputs={**batch.inputs, "visual": batch.inputs["visual"][..., :5]})
    with pytest.raises(ValueError, match="visual.*12"):
        model(bad)
    stranger = dataclasses.replace(batch, inputs={**batch.inputs, "text": batch.inputs["audio"]},
                                   masks={**batch.masks, "text": batch.masks["audio"]})
    with pytest.raises(KeyError, match="text"):
        model(stranger)
    # frame-level tasks need one time axis
    fmodel = build(name, "va")
    uneven = make_batch(frame_level=False)  # visual T=10, audio T=8
    with pytest.raises(ValueError, match="time axis|length|align"):
        fmodel(uneven)


@pytest.mark.parametrize("name", feature_models())
def test_paper_sized_models_are_described(name):
    info = model_info(name)
    assert info["params"] > 0 and info["trainable_params"] <= info["params"]
    assert info["name"] == name and info["task"] == "reaction"
    small = f"{name}_small"
    if small in list_models():
        assert info["params"] > model_info(small)["params"]
