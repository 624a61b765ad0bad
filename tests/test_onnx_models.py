"""Fusion models on ONNX Runtime: every registered model exported with its masks as inputs equals eager PyTorch
(batch sizes, padding, missing modalities, lengths); runs export and predict on either backend from the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("onnxruntime")
import onnx  # noqa: E402  (after the skip: the optional extra)

from affectfuse.inference.onnx_model import (OnnxModel, check_exportable, export_model, is_current,  # noqa: E402
                                             onnx_file, read_meta)
from affectfuse.models import create_model, list_models  # noqa: E402
from affectfuse.models._info import takes_raw_inputs  # noqa: E402
from affectfuse.tasks.spec import get_task  # noqa: E402

from models._helpers import DIMS, behavioural_models, make_batch, perturb_invalid, select  # noqa: E402

FEATURE_MODELS = behavioural_models()  # every registered feature model (small variants; the rest share classes)
RAW_MODELS = [n for n in list_models() if takes_raw_inputs(n)]
RAW_VARIANTS = [n for n in RAW_MODELS if n.endswith("_small") or f"{n}_small" not in RAW_MODELS]  # built offline
TASKS = ("reaction", "va")  # clip level (7 regression targets) and frame level (2)
TOL = 1e-4


def _build(name: str, task: str):
    torch.manual_seed(0)
    return create_model(name, task=task, input_dims=DIMS).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    cache: dict[tuple[str, str], tuple] = {}

    def get(name: str, task: str):
        if (name, task) not in cache:
            model = _build(name, task)
            path = export_model(model, tmp_path_factory.mktemp("onnx") / f"{name}-{task}.onnx", name=name)
            cache[name, task] = model, OnnxModel(path)
        return cache[name, task]

    return get


def _assert_same(model, om, batch, *, extras: bool = True):
    with torch.no_grad():
        ref = model(batch)
    got = om(batch)
    pairs = [(ref.preds, got.preds), (ref.logits, got.logits), (ref.embedding, got.embedding)]
    if extras:
        assert set(got.extras) == set(ref.extras)
        pairs += [(v, got.extras[k]) for k, v in ref.extras.items()]
    for r, g in pairs:
        assert (r is None) == (g is None)
        if r is not None:
            assert tuple(g.shape) == tuple(r.shape) and g.dtype == torch.float32
            scale = max(1.0, float(r.abs().max()))
            assert float((g - r).abs().max()) <= TOL * scale


def test_the_registry_is_covered():
    """Every registered model is either exported here (its class, via the small variant) or refused."""
    classes = {type(_build(n, "reaction")).__name__ for n in FEATURE_MODELS}
    for name in list_models():
        if takes_raw_inputs(name):
            assert name in RAW_MODELS
            continue
        with torch.device("meta"):
            cls = type(create_model(name, task="reaction", input_dims=DIMS)).__name__
        assert cls in classes, f"{name} ({cls}) is not exported by any tested variant"


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("name", FEATURE_MODELS)
def test_onnx_equals_eager(name, task, exported):
    model, om = exported(name, task)
    frame = get_task(task).resolution == "frame"
    # batch sizes 1, 3, 5 with padded steps of several lengths and one modality fully masked for some samples
    _assert_same(model, om, make_batch(b=1, t=6, frame_level=frame, lengths=[4]))
    _assert_same(model, om, make_batch(b=3, t=9, frame_level=frame, lengths=[9, 5, 2], missing={"audio": [1]}))
    five = make_batch(b=5, t=12, frame_level=frame, lengths=[12, 7, 3, 12, 1],
                      missing={"visual": [0, 3], "audio": [2]})
    _assert_same(model, om, five)
    _assert_same(model, om, perturb_invalid(five, scale=1e3))  # huge garbage in the padding: still equal
    # a modality absent from the whole batch (extras of the absent modality's branch are not given by eager);
    # samples keep data in the other one (one with no data at all is outside the contract: late_fusion averages
    # over the modalities the batch carries, the graph over all of them)
    for only, keep in (("visual", [1, 2, 4]), ("audio", [0, 1, 3, 4])):
        _assert_same(model, om, select(five, keep, [only]), extras=False)
    # outputs are real: different inputs give different predictions
    assert not torch.allclose(om(five).preds[0], om(five).preds[3])


@pytest.mark.parametrize("name", FEATURE_MODELS)
def test_the_graph_names_masks_and_dynamic_axes(name, exported):
    model, om = exported(name, "reaction")
    graph = onnx.load(str(om.path)).graph
    inputs = {i.name: i.type.tensor_type for i in graph.input}
    assert list(inputs) == ["visual", "visual_mask", "audio", "audio_mask"]
    assert inputs["visual_mask"].elem_type == onnx.TensorProto.BOOL
    assert inputs["audio"].elem_type == onnx.TensorProto.FLOAT
    dims = [d.dim_param or d.dim_value for d in inputs["audio"].shape.dim]
    assert isinstance(dims[0], str) and dims[0] and dims[2] == DIMS["audio"]
    assert isinstance(dims[1], str) and dims[1], "the time axis is dynamic"
    outs = [o.name for o in graph.output]
    assert outs[0] == "preds" and outs == [o["name"] for o in om.meta["outputs"]]
    meta = read_meta(om.path)
    assert meta["model"] == name and meta["input_dims"] == DIMS and meta["parity"]["max_abs_diff"] <= TOL
    assert meta["torch"] == torch.__version__ and meta["onnx"] == onnx.__version__ and meta["opset"] >= 17
    assert is_current(om.path, model)


def test_fixed_step_models_cut_and_pad_as_the_model_does(tmp_path):
    torch.manual_seed(0)
    model = create_model("abaw5_eri_small", task="reaction", input_dims=DIMS, pooling="flatten", steps=6).eval()
    om = OnnxModel(export_model(model, tmp_path / "m.onnx", name="abaw5_eri_small"))
    assert om.meta["time"] == 6
    for t in (4, 6, 11):  # shorter than steps (padded), equal, longer (cut, as the model does)
        _assert_same(model, om, make_batch(b=3, t=t, lengths=[t, 2, 3], missing={"audio": [0]}))


@pytest.mark.parametrize("name", RAW_VARIANTS)
def test_raw_media_models_are_refused_naming_the_model(name):
    model = create_model(name, task="group", input_dims={"pixels": 3, "waveform": 1})
    with pytest.raises(ValueError, match=rf"model '{name}' cannot be exported to ONNX faithfully: it reads raw media"):
        check_exportable(model, name)


def test_a_wrong_batch_is_refused_like_the_torch_model(exported):
    model, om = exported("early_fusion_small", "reaction")
    bad = make_batch(dims={"visual": 12, "text": 8})
    with pytest.raises(KeyError, match="'text'"):
        om(bad)
    with pytest.raises(ValueError, match="expected width 12"):
        om(make_batch(dims={"visual": 5}))
    _, frame_om = exported("early_fusion_small", "va")
    with pytest.raises(ValueError, match="one time axis"):
        frame_om(make_batch(b=2, t=10))  # clip-style batch: the modalities have different lengths


# ------------------------------------------------------------------------------------------- runs and the CLI
@pytest.fixture(scope="module")
def video_run(tmp_path_factory):
    """A tiny run trained on features extracted from generated videos (audio log-mel stats, face-api probabilities)."""
    from affectfuse.cli import main
    from affectfuse.data.synthetic import make_video_dataset
    from affectfuse.extraction import ExtractConfig, extract
    from affectfuse.features.store import FeatureStore

    root = tmp_path_factory.mktemp("onnx_run")
    labels = make_video_dataset(root / "gen", n=6, seconds=1.2, fps=10)
    store = FeatureStore(root / "store", create=True)
    cfg = ExtractConfig(extractors=("logmel_stats", "faceapi_expression"), frames=8, workers=0)
    rep = extract([root / "gen" / "videos"], store, cfg, progress=False)
    assert rep.failed == []
    store.close()
    rc = main(["train", "--task", "reaction", "--labels", str(labels), "--features", str(root / "store"),
               "--model", "jmt_small", "--epochs", "1", "--out", str(root / "run"), "--quiet"])
    assert rc == 0
    return root


def _predict(root, backend: str, out: str, *videos: str) -> pd.DataFrame:
    from affectfuse.cli import main

    vids = [str(root / "gen" / "videos" / v) for v in (videos or ("generated_0001.mp4", "generated_0004.mp4"))]
    rc = main(["predict", *vids, "--run", str(root / "run"), "--backend", backend, "--out", str(root / out),
               "--quiet", "--workers", "0"])
    assert rc == 0
    return pd.read_csv(root / out)


def test_cli_export_then_predict_on_onnx_equals_torch(video_run, capsys):
    from affectfuse.cli import main
    from affectfuse.inference.run import load_run

    root = video_run
    assert main(["export", str(root / "run"), "--format", "onnx"]) == 0
    err = capsys.readouterr().err
    assert f"wrote {root / 'run' / 'model.onnx'}" in err and "_mask" in err
    path = onnx_file(root / "run")
    meta = json.loads((root / "run" / "model.onnx.json").read_text())
    assert meta["model"] == "jmt_small" and meta["run"] == str(root / "run") and len(meta["weights"]) == 40
    for key in ("config", "opset", "torch", "onnx", "onnxruntime", "inputs", "outputs", "parity"):
        assert key in meta
    assert [i["name"] for i in meta["inputs"]] == [n for m in meta["input_dims"] for n in (m, f"{m}_mask")]
    torch_pred = _predict(root, "torch", "torch.csv")
    onnx_pred = _predict(root, "onnx", "onnx.csv")
    assert list(onnx_pred.columns) == list(torch_pred.columns) and len(torch_pred) == 2
    assert (onnx_pred["video_id"] == torch_pred["video_id"]).all()
    values = torch_pred.columns[1:]
    np.testing.assert_allclose(onnx_pred[values].to_numpy(), torch_pred[values].to_numpy(), atol=TOL + 2e-6)
    assert torch_pred[values].to_numpy().std() > 0  # real predictions, not constants
    # the loaded run on each backend
    run = load_run(root / "run", backend="onnx")
    assert run.backend == "onnx" and isinstance(run.model, OnnxModel)
    assert load_run(root / "run", backend="auto").backend == "onnx"  # installed and exported


def test_onnx_backend_re_exports_when_the_weights_change(video_run, tmp_path):
    import shutil

    from affectfuse.inference.run import load_run
    from affectfuse.inference.run_folder import RunFolder

    src = video_run
    root = tmp_path
    shutil.copytree(src / "gen", root / "gen")
    shutil.copytree(src / "run", root / "run")
    path = onnx_file(root / "run")
    if not path.exists():
        load_run(root / "run", backend="onnx")
    before = read_meta(path)["weights"]
    assert load_run(root / "run", backend="auto").backend == "onnx"
    run = load_run(root / "run")
    with torch.no_grad():
        for p in run.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    RunFolder(root / "run").save_weights(run.model)  # retrained weights
    assert not is_current(path, load_run(root / "run").model)
    assert load_run(root / "run", backend="auto").backend == "torch"  # auto never runs a stale export
    onnx_pred = _predict(root, "onnx", "onnx.csv", "generated_0002.mp4")  # re-exported for the new weights
    assert read_meta(path)["weights"] != before
    torch_pred = _predict(root, "torch", "torch.csv", "generated_0002.mp4")
    values = torch_pred.columns[1:]
    np.testing.assert_allclose(onnx_pred[values].to_numpy(), torch_pred[values].to_numpy(), atol=TOL + 2e-6)


def _one_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"affectfuse {command}: error: ")
    return err[0]


def test_errors_are_one_line(tmp_path, capsys, video_run):
    from affectfuse.cli import main

    assert main(["export", str(tmp_path / "nope"), "--format", "onnx"]) == 2
    assert "nope: no such run folder" in _one_line(capsys, "export")
    (tmp_path / "empty").mkdir()
    assert main(["export", str(tmp_path / "empty")]) == 2
    assert "not a finished affectfuse run (missing" in _one_line(capsys, "export")
    assert main(["export", str(video_run / "run"), "--format", "tflite"]) == 2
    assert "unsupported format 'tflite'; supported: onnx" in _one_line(capsys, "export")
    video = str(video_run / "gen" / "videos" / "generated_0001.mp4")
    assert main(["predict", video, "--backend", "onnx"]) == 2
    assert "--backend applies to predicting with a trained run" in _one_line(capsys, "predict")
    assert main(["predict", video, "--run", str(video_run / "run"), "--backend", "tensorrt"]) == 2
    assert "--backend must be torch, onnx or auto; got 'tensorrt'" in _one_line(capsys, "predict")

