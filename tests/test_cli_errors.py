"""The CLI speaks for the package's errors: one line ``affectfuse <command>: error: ...``, exit code 2, no traceback
(``AFFECTFUSE_DEBUG=1``: the traceback too). Data: a small GENERATED feature dataset."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from affectfuse.cli import _predict, main
from affectfuse.data.synthetic import make_feature_dataset
from affectfuse.errors import MediaError
from affectfuse.inference.run_folder import RunFolder

MODS = "visual=generated_visual,audio=generated_audio"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("gen")
    make_feature_dataset(d / "store", d / "labels.csv", n=30, rows=8, dims={"visual": 6, "audio": 4})
    lab = pd.read_csv(d / "labels.csv", dtype=str)
    lab.loc[3, "Fear"] = "nan"  # line 5 of the file (line 1 is the header)
    lab.to_csv(d / "nan_labels.csv", index=False)
    return d


def _train_args(data: Path, out: Path, labels: str = "labels.csv") -> list[str]:
    return ["train", "--task", "reaction", "--labels", str(data / labels), "--features", str(data / "store"),
            "--modalities", MODS, "--model", "early_fusion_small", "--epochs", "1", "--out", str(out), "--quiet"]


def _cli(args: list[str], **env: str) -> subprocess.CompletedProcess:
    """``python -m affectfuse ARGS`` as a user runs it (the real entry point, its real stderr)."""
    environ = {k: v for k, v in os.environ.items() if k != "AFFECTFUSE_DEBUG"} | env
    return subprocess.run([sys.executable, "-m", "affectfuse", *args], capture_output=True, text=True, env=environ,
                          timeout=120)


def _one_error_line(err: str, command: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith(f"affectfuse {command}: error: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_a_nan_label_is_one_line_naming_the_file_and_the_row(data, tmp_path):
    res = _cli(_train_args(data, tmp_path / "r", "nan_labels.csv"))
    assert res.returncode == 2, res.stderr
    line = _one_error_line(res.stderr, "train")
    assert f"{data / 'nan_labels.csv'}, line 5: target 'Fear' is missing or not a number" in line


def test_affectfuse_debug_shows_the_traceback_then_the_same_line(data, tmp_path):
    res = _cli(_train_args(data, tmp_path / "r", "nan_labels.csv"), AFFECTFUSE_DEBUG="1")
    assert res.returncode == 2
    assert "Traceback (most recent call last)" in res.stderr and "LabelError" in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("affectfuse train: error: ") and "line 5: target 'Fear'" in last


def test_a_media_error_is_one_line(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")

    def predict(videos, run, **kw):  # where a MediaError escapes a command
        raise MediaError(videos[0], "cannot be read as a media container")

    import affectfuse.inference.predictor as predictor  # the command imports it when it runs

    monkeypatch.setattr(predictor, "predict", predict)
    assert main(["predict", str(bad), "--run", str(tmp_path / "run"), "--out", str(tmp_path / "p.csv")]) == 2
    line = _one_error_line(capsys.readouterr().err, "predict")
    assert line == f"affectfuse predict: error: {bad}: cannot be read as a media container"


def test_an_unknown_config_field_is_one_line_listing_the_accepted_fields(data, tmp_path, capsys):
    (tmp_path / "cfg.yaml").write_text("epochs: 1\nlearning_rate: 0.1\n")
    rc = main(_train_args(data, tmp_path / "r") + ["--config", str(tmp_path / "cfg.yaml")])
    assert rc == 2
    line = _one_error_line(capsys.readouterr().err, "train")
    assert "unknown field(s) ['learning_rate']" in line and "accepted fields:" in line and " lr," in line


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_full_disk_names_the_file(data, tmp_path, monkeypatch, capsys):
    # history.csv goes to /dev/full: a real ENOSPC, raised by the file object without a file name
    monkeypatch.setattr(RunFolder, "HISTORY", "/dev/full")
    assert main(_train_args(data, tmp_path / "r")) == 2
    line = _one_error_line(capsys.readouterr().err, "train")
    assert line == f"affectfuse train: error: /dev/full: {os.strerror(errno.ENOSPC)}"


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_a_read_only_or_forbidden_folder_names_the_path(data, tmp_path, monkeypatch, capsys, code):
    def write_config(self, cfg):
        raise OSError(code, os.strerror(code), str(self.file(self.CONFIG)))

    monkeypatch.setattr(RunFolder, "write_config", write_config)
    assert main(_train_args(data, tmp_path / "r")) == 2
    line = _one_error_line(capsys.readouterr().err, "train")
    assert line == f"affectfuse train: error: {tmp_path / 'r' / 'config.yaml'}: {os.strerror(code)}"


def test_a_full_feature_store_database_names_the_database(tmp_path, monkeypatch, capsys):
    src = tmp_path / "npy"
    src.mkdir()
    for i in range(4):
        np.save(src / f"v{i}.npy", np.random.default_rng(i).random((2000, 64), dtype=np.float32))
    real = sqlite3.connect

    def small_connect(*args, **kwargs):  # a database that may grow to 40 pages: SQLITE_FULL on the first put
        conn = real(*args, **kwargs)
        conn.execute("PRAGMA max_page_count = 40")
        return conn

    monkeypatch.setattr(sqlite3, "connect", small_connect)
    rc = main(["import-features", str(src), "--modality", "fau", "--out", str(tmp_path / "store")])
    assert rc == 2
    line = _one_error_line(capsys.readouterr().err, "import-features")
    assert line == (f"affectfuse import-features: error: no space left on device while writing to {tmp_path / 'store'}/ "
                    "(sqlite: database or disk is full): free space and run again; entries already written are intact")


def test_recipes_by_name_from_any_folder_and_listed(tmp_path, monkeypatch, capsys):
    from affectfuse.cli import main
    from affectfuse.recipes import RECIPES_DIR, list_recipes, resolve

    monkeypatch.chdir(tmp_path)  # not the repository root
    assert resolve("viper_reaction") == RECIPES_DIR / "viper_reaction.yaml"
    assert resolve("recipes/jmt_va.yaml") == RECIPES_DIR / "jmt_va.yaml", "the old README spelling still works"
    own = tmp_path / "mine.yaml"
    own.write_text("type: TrainConfig\ntask: reaction\n")
    assert resolve(str(own)) == own
    with pytest.raises(FileNotFoundError, match="not a shipped recipe .*viper_reaction"):
        resolve("viper_reactoin")
    names = {r.name: r for r in list_recipes()}
    assert set(names) == {"viper_reaction", "jmt_va", "abaw5_eri", "abaw5_expr", "e2e_vgaf"}
    assert "0.3025" in names["viper_reaction"].reported and names["jmt_va"].model == "jmt"
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert "viper_reaction" in out and "0.717" in out
    rc = main(["train", "--task", "reaction", "--labels", "x.csv", "--features", "f", "--config", "nope", "--out", "r"])
    assert rc == 2 and "not a shipped recipe" in capsys.readouterr().err


def test_models_by_task_and_extractors_table(capsys):
    from affectfuse.cli import main

    assert main(["models", "--task", "va"]) == 0
    va = capsys.readouterr().out.split()
    assert "jmt" in va and "e2e_cross" not in va, "e2e_cross predicts per clip"
    assert main(["models", "--task", "group"]) == 0
    assert "e2e_cross" in capsys.readouterr().out.split()
    assert main(["models", "--task", "bogus"]) == 2
    assert "unknown task 'bogus'; tasks:" in capsys.readouterr().err
    assert main(["extractors", "--modality", "audio"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["resemblyzer_ge2e"][1:4] == ["audio", "256", "yes"] and rows["wavlm_xvector"][3] == "no"
    assert "mobilenetv2_imagenet" not in rows


def test_help_and_version_import_no_torch():
    """`affectfuse --help` and every command's --help stay fast: no torch, no model registry."""
    import sys

    code = ("import sys, contextlib, io\n"
            "from affectfuse.cli import main\n"
            "for argv in (['--help'], ['train', '--help'], ['extract', '--help'], ['predict', '--help'], ['--version']):\n"
            "    with contextlib.redirect_stdout(io.StringIO()):\n"
            "        try:\n"
            "            main(argv)\n"
            "        except SystemExit as e:\n"
            "            assert e.code == 0, (argv, e.code)\n"
            "print(sorted(m for m in ('torch', 'transformers', 'onnxruntime', 'mediapipe', 'matplotlib') if m in sys.modules))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
    from affectfuse import __version__

    out = subprocess.run([sys.executable, "-m", "affectfuse.cli", "--version"], capture_output=True, text=True)
    assert out.stdout.strip() == f"affectfuse {__version__}"


def test_every_option_of_every_command_says_what_it_does():
    import argparse

    from affectfuse.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    silent = [f"{name} {'/'.join(a.option_strings) or a.dest}" for name, sp in sub.choices.items()
              for a in sp._actions if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()]
    assert not silent, f"options without help text: {silent}"
    assert len(sub.choices) >= 18


# ------------------------------------------------------------------------------------------------ quiet logs
def test_redirected_logs_get_no_progress_bars_and_no_native_chatter(tmp_path):
    """A log file (stderr not a terminal) holds the summary lines only: no tqdm bar of `train`, no MediaPipe /
    TFLite C++ lines of `predict`; --verbose brings the latter back."""
    from affectfuse.assets import asset_path

    make_feature_dataset(tmp_path / "store", tmp_path / "labels.csv", n=24, rows=8)
    env = {**os.environ, "AFFECTFUSE_DEBUG": ""}
    train = subprocess.run([sys.executable, "-m", "affectfuse.cli", "train", "--task", "reaction", "--labels",
                            str(tmp_path / "labels.csv"), "--features", str(tmp_path / "store"), "--model",
                            "early_fusion_small", "--modalities", "visual=generated_visual", "--epochs", "2",
                            "--out", str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=300)
    assert train.returncode == 0, train.stderr
    assert "\r" not in train.stderr and "epoch/s" not in train.stderr and "it/s" not in train.stderr
    assert "epoch 2" in train.stderr or "epoch 2" in train.stdout  # the per-epoch lines stay
    photo = asset_path("pyfeat-media", "0-f15-hao-ph.jpg")
    cmd = [sys.executable, "-m", "affectfuse.cli", "predict", str(photo), "--out", str(tmp_path / "p.csv")]
    quiet = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert "XNNPACK" not in quiet.stderr and "W0000" not in quiet.stderr and "absl" not in quiet.stderr
    assert "scored 1 video(s)" in quiet.stderr  # our own lines are kept
    loud = subprocess.run(cmd + ["--verbose"], capture_output=True, text=True, env=env, timeout=300)
    assert loud.returncode == 0 and "XNNPACK" in loud.stderr


def test_extract_with_worker_processes_keeps_native_chatter_out(tmp_path):
    """The face detector loads in each worker process: MediaPipe's graph threads log TFLite / absl lines after its
    construction returns, which must stay out of the log as in the main process (--verbose brings them back)."""
    from affectfuse.assets import asset_path

    videos = [str(asset_path("pyfeat-media", "single_face.mp4")), str(asset_path("opencv-media", "vtest.avi"))]
    env = {**os.environ, "AFFECTFUSE_DEBUG": ""}
    cmd = [sys.executable, "-m", "affectfuse.cli", "extract", *videos, "--workers", "2", "--extractors",
           "faceapi_expression", "--frames", "4"]
    quiet = subprocess.run(cmd + ["--out", str(tmp_path / "q")], capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert "XNNPACK" not in quiet.stderr and "W0000" not in quiet.stderr and "absl" not in quiet.stderr, quiet.stderr
    assert "for 2 video(s)" in quiet.stderr + quiet.stdout  # our own summary is kept
    loud = subprocess.run(cmd + ["--out", str(tmp_path / "l"), "--verbose"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert loud.returncode == 0 and ("XNNPACK" in loud.stderr or "W0000" in loud.stderr), loud.stderr
