"""Training faults: a NaN / Inf loss or gradient stops the run cleanly; a killed run resumes to the same metrics.

Everything runs on a small GENERATED feature dataset (:func:`affectfuse.data.synthetic.make_feature_dataset`).
"""

from __future__ import annotations

import io
import itertools
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from affectfuse._config import to_yaml
from affectfuse.data.synthetic import make_feature_dataset
from affectfuse.errors import TrainingError
from affectfuse.inference.run_folder import RunFolder
from affectfuse.training import TrainConfig, loop, train

MODS = {"visual": "generated_visual", "audio": "generated_audio"}
N_TRAIN, BATCH = 24, 8  # n=40 with the default 0.6 / 0.2 / 0.2 splits; 3 steps per epoch
STEPS = math.ceil(N_TRAIN / BATCH)
QUIET = {"progress": False, "log": lambda *_: None}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("gen")
    make_feature_dataset(d / "store", d / "labels.csv", n=40, rows=8, dims={"visual": 6, "audio": 4})
    return d


def _cfg(**kw) -> TrainConfig:
    base = dict(task="reaction", model="early_fusion_small", modalities=MODS, epochs=4, lr=3e-3, batch_size=BATCH)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def full_run(data, tmp_path_factory):
    """An uninterrupted run of :func:`_cfg` (the reference for resumed runs)."""
    out = tmp_path_factory.mktemp("full") / "run"
    metrics = train(data / "labels.csv", data / "store", _cfg(), out, **QUIET)
    return out, metrics


class _NanGrad(torch.autograd.Function):
    """Identity forward, NaN gradients backward: a finite loss whose gradients are not."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def _faulty_loss(monkeypatch, at_call: int, kind: str = "loss") -> None:
    """Make the ``at_call``-th (0-based) training loss NaN (``kind="loss"``) or its gradients NaN (``"grad"``)."""
    real = loop.create_loss

    def create(*args, **kwargs):
        fn = real(*args, **kwargs)
        calls = itertools.count()

        class Faulty:
            def __getattr__(self, name):  # .activation and the rest, as the real loss has them
                return getattr(fn, name)

            def __call__(self, out, batch):
                loss = fn(out, batch)
                if next(calls) != at_call:
                    return loss
                return loss * float("nan") if kind == "loss" else _NanGrad.apply(loss)

        return Faulty()

    monkeypatch.setattr(loop, "create_loss", create)


def _keep_model(monkeypatch) -> list[torch.nn.Module]:
    """The models ``train`` builds, kept for inspection after it raised."""
    made: list[torch.nn.Module] = []
    real = loop.create_model

    def create(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(loop, "create_model", create)
    return made


def _same_state(a, b) -> None:
    """Two checkpoint states are equal (tensors exactly; history up to the wall-clock seconds)."""
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            torch.testing.assert_close(a[part][k], b[part][k], rtol=0, atol=0)
    for k, v in a["optimizer"]["state"].items():
        for name, t in v.items():
            torch.testing.assert_close(t, b["optimizer"]["state"][k][name], rtol=0, atol=0)
    assert (a["epoch"], a["best"], a["best_epoch"]) == (b["epoch"], b["best"], b["best_epoch"])
    strip = [[{k: v for k, v in row.items() if k != "seconds"} for row in s["history"]] for s in (a, b)]
    assert strip[0] == strip[1]


def test_nan_loss_names_epoch_and_step_and_keeps_the_last_good_epoch(data, tmp_path, monkeypatch, full_run):
    ref, bad = tmp_path / "ref", tmp_path / "bad"
    train(data / "labels.csv", data / "store", _cfg(), ref, stop_after=2, **QUIET)  # the state after epoch 2

    _faulty_loss(monkeypatch, at_call=2 * STEPS + 1)  # epoch 3, step 2
    with pytest.raises(TrainingError) as info:
        train(data / "labels.csv", data / "store", _cfg(), bad, **QUIET)
    msg = str(info.value)
    assert f"{bad}: training stopped at epoch 3, step 2: the loss is nan (learning rate 0.003)" in msg
    assert f"the last good checkpoint (epoch 2) is kept in {bad / 'checkpoints' / 'last.pt'}" in msg
    assert (info.value.epoch, info.value.step, info.value.run) == (3, 2, bad)

    # nothing of epoch 3 was written: last.pt, the best weights and the history are those after epoch 2
    _same_state(RunFolder(bad).load_checkpoint(), RunFolder(ref).load_checkpoint())
    wa, wb = load_file(ref / "model.safetensors"), load_file(bad / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.isfinite(wb[k]).all(), k
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0)
    hist = pd.read_csv(bad / "history.csv")
    assert list(hist["epoch"]) == [1, 2]
    ref_hist = pd.read_csv(ref / "history.csv")
    pd.testing.assert_frame_equal(hist.drop(columns="seconds"), ref_hist.drop(columns="seconds"))
    assert not (bad / "metrics.json").exists()

    # the data is fixed (the patch is gone): the same folder resumes from epoch 3 to the uninterrupted result
    monkeypatch.undo()
    metrics = train(data / "labels.csv", data / "store", _cfg(), bad, **QUIET)
    _assert_same_metrics(metrics, full_run[1])


def test_nan_gradients_stop_before_the_optimiser_step(data, tmp_path, monkeypatch):
    models = _keep_model(monkeypatch)
    _faulty_loss(monkeypatch, at_call=STEPS, kind="grad")  # epoch 2, step 1
    with pytest.raises(TrainingError, match=r"epoch 2, step 1: the gradient norm is nan"):
        train(data / "labels.csv", data / "store", _cfg(), tmp_path / "r", **QUIET)
    (model,) = models
    for name, p in model.named_parameters():
        assert torch.isfinite(p).all(), f"{name} took a NaN step"
    state = RunFolder(tmp_path / "r").load_checkpoint()
    assert state["epoch"] == 0  # the epoch-1 state
    for name, p in model.named_parameters():  # and no step of epoch 2 was taken before the fault
        torch.testing.assert_close(p.detach(), state["model"][name], rtol=0, atol=0)


def test_weights_overflowed_by_the_last_step_of_an_epoch_are_not_kept(data, tmp_path, monkeypatch):
    real = loop._optimiser

    def optimiser(cfg, model, steps):  # the epoch's last step leaves an inf weight (finite loss and gradients before)
        opt, sched = real(cfg, model, steps)
        step, calls = opt.step, itertools.count()

        def overflowing_step(*args, **kwargs):
            out = step(*args, **kwargs)
            if next(calls) == STEPS - 1:
                with torch.no_grad():
                    next(model.parameters()).view(-1)[0] = float("inf")
            return out

        opt.step = overflowing_step
        return opt, sched

    monkeypatch.setattr(loop, "_optimiser", optimiser)
    with pytest.raises(TrainingError, match=rf"epoch 1, step {STEPS}: the weights became non-finite"):
        train(data / "labels.csv", data / "store", _cfg(), tmp_path / "r", **QUIET)
    assert not (tmp_path / "r" / "checkpoints" / "last.pt").exists()
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_a_diverging_learning_rate_stops_in_the_first_epoch_without_writing_weights(data, tmp_path):
    run = tmp_path / "r"
    with pytest.raises(TrainingError, match=r"training stopped at epoch 1, step \d+: .*\(learning rate 1000\); "
                                            r"no epoch had finished"):
        train(data / "labels.csv", data / "store", _cfg(lr=1e3, optimizer="sgd", momentum=0.9), run, **QUIET)
    for f in ("checkpoints/last.pt", "model.safetensors", "history.csv", "metrics.json"):
        assert not (run / f).exists(), f


def test_an_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    folder = RunFolder(tmp_path / "r")
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    first = {"model": {"w": torch.ones(3)}, "epoch": 0}
    path = folder.save_checkpoint(first)
    assert events[:2] == ["fsync", "replace"], "the new file is on disk before it replaces the old one"
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]

    real_save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, f, *a, **kw: _half(real_save, obj, f))  # dies mid-write
    with pytest.raises(KeyboardInterrupt):
        folder.save_checkpoint({"model": {"w": torch.zeros(3)}, "epoch": 1})
    leftovers = [p for p in path.parent.iterdir() if p.name != "last.pt"]
    assert leftovers, "the partial write went to a temporary file"
    with pytest.raises(Exception):
        torch.load(leftovers[0], weights_only=True)  # truncated
    state = folder.load_checkpoint()
    assert state["epoch"] == 0 and torch.equal(state["model"]["w"], torch.ones(3))

    monkeypatch.setattr(torch, "save", real_save)
    folder.save_checkpoint({"model": {"w": torch.zeros(3)}, "epoch": 1})  # the next save replaces the leftover
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]
    assert folder.load_checkpoint()["epoch"] == 1


def _half(real_save, obj, f) -> None:
    """``torch.save`` that writes half of the bytes and then dies (as a SIGKILL would)."""
    buf = io.BytesIO()
    real_save(obj, buf)
    data = buf.getvalue()
    if hasattr(f, "write"):
        f.write(data[: len(data) // 2])
    else:
        with open(f, "wb") as fh:
            fh.write(data[: len(data) // 2])
    raise KeyboardInterrupt


_CHILD = textwrap.dedent("""
    import io, sys, time
    from pathlib import Path
    import torch
    from affectfuse._config import from_yaml
    from affectfuse.training import TrainConfig, train

    labels, store, config, out = sys.argv[1:5]
    real_save, saves = torch.save, [0]

    def slow_save(obj, f, *a, **kw):  # checkpoint writes take a while: the kill lands inside one
        buf = io.BytesIO()
        real_save(obj, buf)
        data = buf.getvalue()
        fh = f if hasattr(f, "write") else open(f, "wb")
        fh.write(data[: len(data) // 2])
        fh.flush()
        saves[0] += 1
        Path(out, f"saving_{saves[0]}").touch()
        time.sleep(0.5)
        fh.write(data[len(data) // 2:])
        if fh is not f:
            fh.close()

    torch.save = slow_save
    train(labels, store, from_yaml(TrainConfig, Path(config)), out, progress=False, log=lambda *_: None)
""")


def _finished_epochs(run) -> int:
    try:
        return len(pd.read_csv(run / "history.csv"))
    except (OSError, pd.errors.EmptyDataError, pd.errors.ParserError):
        return 0


def _assert_same_metrics(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for split in a:
        assert a[split].keys() == b[split].keys()
        for k in a[split]:
            assert a[split][k] == pytest.approx(b[split][k], abs=1e-6), (split, k)


def test_a_run_killed_while_writing_a_checkpoint_resumes_to_the_same_metrics(data, tmp_path, full_run):
    run = tmp_path / "killed"
    run.mkdir()
    config = tmp_path / "config.yaml"
    to_yaml(_cfg(), config)
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(data / "labels.csv"), str(data / "store"), str(config),
                             str(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        # the first checkpoint and epoch are on disk, and the second checkpoint is half written
        while not ((run / "checkpoints" / "last.pt").exists() and _finished_epochs(run) >= 1
                   and (run / "saving_2").exists()):
            if proc.poll() is not None or time.time() > deadline:
                out, err = proc.communicate()
                pytest.fail(f"the training process ended or hung before the kill (rc {proc.returncode}): "
                            f"{err.decode()}")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "metrics.json").exists()
    assert RunFolder(run).load_checkpoint()["epoch"] == 0, "last.pt is still the intact epoch-1 checkpoint"
    assert any(p.name != "last.pt" for p in (run / "checkpoints").iterdir()), "a partial temporary file is left"

    metrics = train(data / "labels.csv", data / "store", _cfg(), run, **QUIET)
    _assert_same_metrics(metrics, full_run[1])
    assert RunFolder(run).read_metrics() == metrics
    assert list(pd.read_csv(run / "history.csv")["epoch"]) == [1, 2, 3, 4]
