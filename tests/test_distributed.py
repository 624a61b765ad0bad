"""Data-parallel training (2 CPU processes, gloo) and mixed precision, on GENERATED feature datasets.

Two processes on the same global batches must give the one-process run (a model without dropout: within float
tolerance); a model with dropout (each rank draws its own noise) within 0.05 of it. Launchers: ``train``
spawning its own processes, ``torchrun`` (the resume test), and the SLURM / torchrun environments as dicts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from affectfuse._config import to_yaml
from affectfuse.data.dataset import FeatureDataset, collate
from affectfuse.data.labels import load_labels
from affectfuse.data.synthetic import make_feature_dataset
from affectfuse.errors import TrainingError
from affectfuse.extractors._torch_utils import fast_cpu_bf16
from affectfuse.features.store import FeatureStore
from affectfuse.models import create_model
from affectfuse.tasks.spec import get_task
from affectfuse.training import TrainConfig, train
from affectfuse.training.distributed import EpochShards, epoch_order, first_host, launch_env, wanted
from affectfuse.training.precision import Precision

MODS = {"visual": "generated_visual", "audio": "generated_audio"}
QUIET = {"progress": False, "log": lambda *_: None}
BATCH = 8


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """99 clips: 59 train = 7 full batches of 8 and a last batch of 3, split 2 + 1 (loss weights 4/3 and 2/3)."""
    d = tmp_path_factory.mktemp("gen")
    make_feature_dataset(d / "store", d / "labels.csv", n=99, rows=8, dims={"visual": 6, "audio": 4})
    return d


def _cfg(**kw) -> TrainConfig:
    base = dict(task="reaction", model="early_fusion_small", modalities=MODS, epochs=2, lr=3e-3, batch_size=BATCH,
                optimizer="adam", grad_clip=1.0)  # early_fusion_small has no dropout
    base.update(kw)
    return TrainConfig(**base)


def _close_states(a: dict, b: dict, atol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=k)


def _close_metrics(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for split in a:
        for k in a[split]:
            assert a[split][k] == pytest.approx(b[split][k], abs=atol), (split, k)


# -- the shards (pure) -----------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [57, 25, 16, 3])
def test_shards_cut_the_one_process_batches_and_weight_the_global_mean(n):
    """Global batch k of world 2 = one-process batch k (torch's own shuffled DataLoader is the reference), and the
    mean over ranks of (weight x rank-mean) is the global batch's mean, duplicates weighted 0."""
    seed, epoch, world = 7 * 100003, 3, 2
    ref = torch.utils.data.DataLoader(range(n), batch_size=BATCH, shuffle=True, collate_fn=list,
                                      generator=torch.Generator().manual_seed(seed + epoch))
    ref = [list(b) for b in ref]
    assert [i for b in ref for i in b] == epoch_order(n, BATCH, seed + epoch)
    plans = []
    for r in range(world):
        s = EpochShards(range(n), batch_size=BATCH, num_replicas=world, rank=r, seed=seed)
        s.set_epoch(epoch)
        idx = list(iter(s))
        assert len(idx) == len(s) and s.weights == [w for _, w in s.plan()]
        plans.append(s.plan())
    x = np.random.default_rng(0).normal(size=n)  # per-sample losses
    for k, batch in enumerate(ref):
        parts = [plans[r][k] for r in range(world)]
        real = [i for (idx, w) in parts if w > 0 for i in idx]
        assert sorted(real) == sorted(batch) and len(real) == len(batch), "no sample dropped or counted twice"
        assert all(len(idx) <= BATCH // world for idx, _ in parts)
        ddp = np.mean([w * x[idx].mean() for idx, w in parts])  # what DDP's gradient average sees
        assert ddp == pytest.approx(x[batch].mean(), abs=1e-12)
    with pytest.raises(ValueError, match="batch_size 9 is not divisible by the world size 2"):
        EpochShards(range(n), batch_size=9, num_replicas=2, rank=0, seed=0)


# -- launchers (pure) -----------------------------------------------------------------------------------
def test_launch_env_reads_torchrun_and_slurm():
    torchrun = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "node7", "MASTER_PORT": "29511",
                "SLURM_PROCID": "0", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "2"}  # torchrun inside an allocation wins
    e = launch_env(torchrun)
    assert (e.launcher, e.rank, e.world_size, e.local_rank, e.master_addr, e.master_port) == \
        ("torchrun", 3, 8, 1, "node7", 29511)
    srun = {"SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "16",
            "SLURM_STEP_NUM_TASKS": "8", "SLURM_STEP_NODELIST": "gpu[07-09,12]", "SLURM_JOB_NODELIST": "gpu[01-12]",
            "SLURM_JOB_ID": "4512345"}
    e = launch_env(srun)
    assert (e.launcher, e.rank, e.world_size, e.local_rank, e.master_addr) == ("slurm", 5, 8, 1, "gpu07")
    assert e.master_port == 15000 + 2345, "derived from the job id: the same on every task"
    assert launch_env({**srun, "MASTER_ADDR": "10.0.0.2", "MASTER_PORT": "4000"}).master_port == 4000
    assert launch_env({**srun, "MASTER_ADDR": "10.0.0.2"}).master_addr == "10.0.0.2"
    no_step = {k: v for k, v in srun.items() if k not in ("SLURM_STEP_NUM_TASKS", "SLURM_STEP_NODELIST")}
    assert launch_env(no_step).world_size == 16 and launch_env(no_step).master_addr == "gpu01"
    for batch_script in ({**srun, "SLURM_STEP_ID": "batch"}, {k: v for k, v in srun.items() if k != "SLURM_STEP_ID"}):
        assert launch_env(batch_script) is None, "an sbatch script is no launcher"
    assert launch_env({}) is None and launch_env({"PATH": "/bin"}) is None
    with pytest.raises(ValueError, match="RANK='x' is not an integer"):
        launch_env({"RANK": "x", "WORLD_SIZE": "2"})
    assert wanted(1, {}) is False and wanted(2, {}) is True and wanted(1, {"RANK": "0", "WORLD_SIZE": "2"}) is True


@pytest.mark.parametrize("nodes, host", [("gpu[07-09,12],cpu3", "gpu07"), ("node1,node2", "node1"), ("single", "single"),
                                         ("rack[2-3]-n[01-04]", "rack2-n01"), ("a-[1-2]-x", "a-1-x"),
                                         (" gpu[010,2] ", "gpu010")])
def test_first_host_of_a_slurm_node_list(nodes, host):
    assert first_host(nodes) == host


@pytest.mark.parametrize("bad", ["", "gpu[1-2", "gpu]1["])
def test_first_host_refuses_unreadable_lists(bad):
    with pytest.raises(ValueError, match="SLURM node list"):
        first_host(bad)


def test_launcher_world_size_must_match_devices_times_nodes(data, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match=r"torchrun started 3 processes \(WORLD_SIZE=3\), but the run asks for "
                                         r"--devices 2 x --nodes 1 = 2 processes"):
        train(data / "labels.csv", data / "store", _cfg(devices=2), tmp_path / "r", **QUIET)
    with pytest.raises(ValueError, match="devices 1 x --nodes 1 = 1 process;"):  # forgot --devices under torchrun
        train(data / "labels.csv", data / "store", _cfg(), tmp_path / "r", **QUIET)
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    with pytest.raises(ValueError, match="--nodes 2: a multi-node run needs a launcher on every node"):
        train(data / "labels.csv", data / "store", _cfg(nodes=2), tmp_path / "r", **QUIET)
    with pytest.raises(ValueError, match="batch_size 8 is the global batch and must be divisible by the 3 processes"):
        _cfg(devices=3).validate()
    assert not (tmp_path / "r").exists(), "nothing was started or written"


# -- two processes against one ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def one(data, tmp_path_factory):
    """One process: the state after epoch 1 (stop_after=1) and a whole 2-epoch run."""
    d = tmp_path_factory.mktemp("one")
    assert train(data / "labels.csv", data / "store", _cfg(), d / "half", stop_after=1, **QUIET) == {}
    metrics = train(data / "labels.csv", data / "store", _cfg(), d / "full", **QUIET)
    return d, metrics


def test_two_processes_match_one_process_and_resume_under_torchrun(data, one, tmp_path):
    ref, ref_metrics = one
    run = tmp_path / "ddp"
    lines: list[str] = []
    assert train(data / "labels.csv", data / "store", _cfg(devices=2), run, stop_after=1, progress=False,
                 log=lines.append) == {}
    assert any("stopped after epoch 1" in line for line in lines), "rank 0's log lines come back"
    # (a) one epoch on the same global batches: the same weights, optimiser state, loss and dev metrics
    a, b = (torch.load(p / "checkpoints" / "last.pt", weights_only=True) for p in (ref / "half", run))
    _close_states(a["model"], b["model"])
    for k, v in a["optimizer"]["state"].items():
        _close_states(v, b["optimizer"]["state"][k])
    (ra,), (rb,) = a["history"], b["history"]
    assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-5)
    for k in ra:
        if k.startswith("dev_"):
            assert rb[k] == pytest.approx(ra[k], abs=1e-5), k
    info = json.loads((run / "data.json").read_text())["training"]
    assert info == {"devices": 2, "nodes": 1, "precision": "32", "device": "cpu", "world_size": 2, "backend": "gloo",
                    "launcher": "spawn", "lr": 0.003, "scheduler": "warmup_cosine", "steps_per_epoch": 8,
                    "optimizer_steps": 16, "warmup_steps": 1}  # the global schedule: steps of the global batch

    # (c) resume the 2-process run under torchrun (its env:// rendezvous), through the command line
    to_yaml(_cfg(devices=2), tmp_path / "config.yaml")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "affectfuse.cli",
           "train", "--task", "reaction", "--labels", str(data / "labels.csv"), "--features", str(data / "store"),
           "--config", str(tmp_path / "config.yaml"), "--out", str(run), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "terminate called" not in proc.stderr, "every rank leaves the group at the last barrier, none aborts"
    assert "resuming" in proc.stderr and "from epoch 2" in proc.stderr
    printed = json.loads(proc.stdout)  # one JSON document: only rank 0 prints
    assert printed == json.loads((run / "metrics.json").read_text())
    _close_metrics(printed, ref_metrics, atol=1e-5)
    wa, wb = load_file(ref / "full" / "model.safetensors"), load_file(run / "model.safetensors")
    _close_states(wa, wb)
    assert list(pd.read_csv(run / "history.csv")["epoch"]) == [1, 2]
    assert json.loads((run / "data.json").read_text())["training"]["launcher"] == "torchrun"
    for split in ("dev", "test"):  # the full split, no padding duplicates
        pred, refp = (pd.read_csv(p / "predictions" / f"{split}.csv") for p in (run, ref / "full"))
        assert list(pred["video_id"]) == list(refp["video_id"])
        np.testing.assert_allclose(pred.iloc[:, 1:].to_numpy(), refp.iloc[:, 1:].to_numpy(), atol=1e-5)


def test_srun_tasks_join_through_the_slurm_environment(data, one, tmp_path):
    """Two tasks as ``srun --ntasks 2`` starts them (SLURM_* variables, rank 0 serves the tcp:// rendezvous)."""
    import os
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    to_yaml(_cfg(devices=2), tmp_path / "config.yaml")
    base = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    base.update(SLURM_STEP_ID="0", SLURM_NTASKS="2", SLURM_STEP_NUM_TASKS="2", SLURM_STEP_NODELIST="localhost",
                SLURM_JOB_ID="77", MASTER_PORT=str(port))
    cmd = [sys.executable, "-m", "affectfuse.cli", "train", "--task", "reaction", "--labels", str(data / "labels.csv"),
           "--features", str(data / "store"), "--config", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "r"),
           "--quiet"]
    procs = [subprocess.Popen(cmd, env={**base, "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r)}, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for r in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    assert outs[1][0] == "", "task 1 prints nothing"
    _close_metrics(json.loads(outs[0][0]), one[1], atol=1e-5)
    assert json.loads((tmp_path / "r" / "data.json").read_text())["training"]["launcher"] == "slurm"


@pytest.fixture(scope="module")
def bigger(tmp_path_factory):
    d = tmp_path_factory.mktemp("gen160")
    make_feature_dataset(d / "store", d / "labels.csv", n=160, rows=8, dims={"visual": 6, "audio": 4})
    return d


def test_cli_devices_2_full_run_with_dropout_is_within_0_05_of_one_process(bigger, tmp_path, capsys):
    """(b) + (f): ``affectfuse train ... --devices 2`` spawns its processes; each rank draws its own dropout."""
    from affectfuse.cli import main

    cfg = _cfg(epochs=6, model_overrides={"dropout": 0.2}, optimizer="adamw", grad_clip=None)
    to_yaml(cfg, tmp_path / "config.yaml")
    ref = train(bigger / "labels.csv", bigger / "store", cfg, tmp_path / "one", **QUIET)
    rc = main(["train", "--task", "reaction", "--labels", str(bigger / "labels.csv"), "--features",
               str(bigger / "store"), "--config", str(tmp_path / "config.yaml"), "--devices", "2",
               "--out", str(tmp_path / "two"), "--quiet"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    got = json.loads(out.out)
    assert got == json.loads((tmp_path / "two" / "metrics.json").read_text())
    for split in ("dev", "test"):
        assert got[split]["mean_pearson"] == pytest.approx(ref[split]["mean_pearson"], abs=0.05), split
    assert got["dev"]["mean_pearson"] != ref["dev"]["mean_pearson"], "dropout noise differs between ranks"
    assert "on 2 processes" in out.err
    assert "devices: 2" in (tmp_path / "two" / "config.yaml").read_text()
    assert json.loads((tmp_path / "two" / "data.json").read_text())["training"]["world_size"] == 2
    assert len(pd.read_csv(tmp_path / "two" / "predictions" / "test.csv")) == 32


def test_a_diverging_rank_stops_every_rank_with_the_training_error(data, tmp_path):
    run = tmp_path / "r"
    with pytest.raises(TrainingError, match=r"training stopped at epoch 1, step \d+: .*no epoch had finished") as e:
        train(data / "labels.csv", data / "store", _cfg(lr=1e3, optimizer="sgd", grad_clip=None, devices=2), run,
              **QUIET)
    assert e.value.epoch == 1 and e.value.run == run
    assert not (run / "model.safetensors").exists() and not (run / "checkpoints" / "last.pt").exists()


# -- precision -------------------------------------------------------------------------------------------
def test_bf16_autocast_on_cpu_trains_with_float32_outputs_and_weights(data, tmp_path, one):
    ds = FeatureDataset(FeatureStore(data / "store", create=True), load_labels(data / "labels.csv", "reaction"), "train", MODS)
    batch = collate([ds[i] for i in range(4)])
    model = create_model("early_fusion_small", task=get_task("reaction"), input_dims=ds.input_dims)
    prec = Precision.for_run("bf16", torch.device("cpu"))
    with prec.autocast():
        out = model(batch)
    assert out.preds.dtype == torch.bfloat16, "autocast is on in the forward pass"
    fl = prec.float_output(out)
    assert fl.preds.dtype == torch.float32 and fl.embedding.dtype == torch.float32
    torch.testing.assert_close(fl.preds, model(batch).preds, atol=0.05, rtol=0.05)  # = float32 up to bf16 rounding

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = train(data / "labels.csv", data / "store", _cfg(precision="bf16"), tmp_path / "bf16", **QUIET)
    slow = [w for w in caught if "bfloat16 autocast is emulated" in str(w.message)]
    assert bool(slow) == (not fast_cpu_bf16()), "the slow-CPU warning exactly where bf16 is emulated"
    assert all(t.dtype == torch.float32 for t in load_file(tmp_path / "bf16" / "model.safetensors").values())
    pred = pd.read_csv(tmp_path / "bf16" / "predictions" / "dev.csv")
    assert np.isfinite(pred.iloc[:, 1:].to_numpy()).all()
    assert metrics["dev"]["mean_pearson"] == pytest.approx(one[1]["dev"]["mean_pearson"], abs=0.1)
    assert "precision: bf16" in (tmp_path / "bf16" / "config.yaml").read_text()


def test_fp16_is_refused_on_cpu_with_a_clear_message(data, tmp_path, capsys):
    from affectfuse.cli import main

    with pytest.raises(ValueError, match=r"precision 'fp16'.*needs a CUDA device.*on CPU use --precision bf16"):
        train(data / "labels.csv", data / "store", _cfg(precision="fp16"), tmp_path / "r", **QUIET)  # device auto
    with pytest.raises(ValueError, match="precision 'fp16'.*needs a CUDA device"):
        _cfg(precision="fp16", device="cpu").validate()
    with pytest.raises(ValueError, match=r"precision must be one of \('32', 'bf16', 'fp16'\), got 'fp8'"):
        _cfg(precision="fp8").validate()
    assert _cfg(precision=32).precision == "32", "YAML's bare 32 is read as '32'"
    assert not (tmp_path / "r").exists()
    rc = main(["train", "--task", "reaction", "--labels", str(data / "labels.csv"), "--features", str(data / "store"),
               "--modalities", "visual=generated_visual", "--model", "early_fusion_small", "--precision", "fp16",
               "--device", "cpu", "--out", str(tmp_path / "c"), "--quiet"])
    assert rc == 2 and "fp16" in capsys.readouterr().err
