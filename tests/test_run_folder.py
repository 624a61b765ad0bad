"""RunFolder round trips, runs loaded by inference (old runs without postprocess.yaml too), and inference
standing on its own (no import of affectfuse.training)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from affectfuse.data.dataset import Standardizer
from affectfuse.inference.run import evaluate, load_run
from affectfuse.inference.run_folder import RunFolder
from affectfuse.inference.train_config import TrainConfig
from affectfuse.tasks.postprocess import PostProcess
from affectfuse.tasks.spec import TASKS
from affectfuse.types import Prediction

SRC = Path(__file__).resolve().parents[1] / "src" / "affectfuse"


def test_every_file_round_trips(tmp_path):
    folder = RunFolder(tmp_path / "run")
    assert not folder.is_run_folder()
    cfg = TrainConfig(task="va", model="jmt_small", modalities={"visual": "k1"}, smoothing=(3, 5), epochs=2)
    folder.write_config(cfg)
    assert folder.read_config() == cfg and "model: jmt_small" in folder.read_config_text()
    assert folder.is_run_folder()
    folder.write_model(name="jmt_small", task=TASKS["va"], input_dims={"visual": 4}, overrides={"d_model": 8},
                       config={"d_model": 8})
    meta = folder.read_model()
    assert (meta["name"], meta["input_dims"], meta["overrides"], meta["config"]) == (
        "jmt_small", {"visual": 4}, {"d_model": 8}, {"d_model": 8})
    assert folder.read_task() == TASKS["va"]
    post = PostProcess.for_task(TASKS["va"], smoothing=(3, 5))
    folder.write_postprocess(post)
    assert folder.read_postprocess() == post
    std = Standardizer().fit_array("visual", np.arange(12.0).reshape(6, 2), np.ones(6, bool))
    folder.write_standardizer(std)
    assert folder.read_standardizer().state_dict() == std.state_dict()
    feats = {"visual": {"key": "k1", "identity": {"name": "x", "params": {"p": 1}}}}
    folder.write_features(feats)
    assert folder.read_features() == feats
    folder.write_data({"labels": "l.csv", "store": None})
    assert folder.read_data() == {"labels": "l.csv", "store": None}
    folder.write_versions()
    assert "torch" in json.loads(folder.file(folder.VERSIONS).read_text())
    hist = [{"epoch": 1, "train_loss": 0.5, "lr": 0.1}, {"epoch": 2, "train_loss": 0.25, "lr": 0.05, "dev_ccc": 0.3}]
    folder.write_history(hist)
    pd.testing.assert_frame_equal(folder.read_history(), pd.DataFrame(hist))
    folder.write_metrics({"dev": {"mean_ccc": 0.5}})
    folder.merge_metrics("test", {"mean_ccc": 0.4})
    assert folder.read_metrics() == {"dev": {"mean_ccc": 0.5}, "test": {"mean_ccc": 0.4}}
    pred = Prediction(values=np.array([[0.25, -0.5]]), names=["valence", "arousal"], video_ids=["v"],
                      frames=np.array([3]), times=np.array([0.1]))
    folder.write_predictions("test", pred)
    assert folder.prediction_splits() == ["test"]
    np.testing.assert_array_equal(folder.read_predictions("test").values, pred.values)
    with pytest.raises(FileNotFoundError, match="missing model.safetensors"):
        folder.require_finished()
    net = torch.nn.Linear(3, 2)
    folder.save_weights(net)
    other = folder.load_weights(torch.nn.Linear(3, 2))
    torch.testing.assert_close(other.weight, net.weight, rtol=0, atol=0)
    folder.require_finished()
    assert folder.load_checkpoint() is None
    folder.save_checkpoint({"epoch": 1, "model": net.state_dict(), "history": hist})
    state = folder.load_checkpoint()
    assert state["epoch"] == 1 and state["history"] == hist
    assert not folder.early_stopped
    folder.mark_early_stopped(2)
    assert folder.early_stopped


@pytest.fixture(scope="module")
def va_run(tmp_path_factory):
    from affectfuse.data.synthetic import make_frame_dataset
    from affectfuse.training import train

    root = tmp_path_factory.mktemp("va")
    make_frame_dataset(root / "store", root / "labels.csv", n=8, frames=40)
    cfg = TrainConfig(task="va", model="jmt_small", modalities={"visual": "generated_visual", "audio": "generated_audio"},
                      epochs=1, batch_size=4, seq_len=20, loss="ccc", smoothing=(3, 5))
    metrics = train(root / "labels.csv", root / "store", cfg, root / "run", progress=False, log=lambda *_: None)
    return root / "run", metrics


def test_the_run_records_its_postprocessing_and_old_runs_derive_it(va_run, tmp_path):
    import shutil

    run, metrics = va_run
    loaded = load_run(run)
    assert loaded.postprocess == PostProcess(activation="none", clip=(-1.0, 1.0), smoothing=(3, 5))
    assert RunFolder(run).read_postprocess() == loaded.postprocess
    old = tmp_path / "old"
    shutil.copytree(run, old)
    (old / RunFolder.POSTPROCESS).unlink()  # a run made before post-processing was recorded
    assert load_run(old).postprocess == loaded.postprocess
    assert evaluate(old, split="test") == pytest.approx(metrics["test"], abs=1e-6)
    assert (old / "predictions" / "test.csv").read_bytes() == (run / "predictions" / "test.csv").read_bytes()


def test_inference_does_not_import_training():
    for f in sorted((SRC / "inference").glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("affectfuse.training"), f"{f.name} imports {node.module}"
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("affectfuse.training") for a in node.names), f.name
    code = ("import sys; import affectfuse.inference.run, affectfuse.inference.run_folder; "
            "bad = [m for m in sys.modules if m.startswith('affectfuse.training')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
