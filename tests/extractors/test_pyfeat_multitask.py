"""py-feat's multitask AU / emotion / valence-arousal model (``pyfeat_multitask``, ``affectfuse fetch-models``).

The real checkpoint (``py-feat/face_multitask_v2`` / ``face_multitask_v28.safetensors``) cannot be fetched here (no
hub access), so the extractor runs on tiny randomly initialised models of the same architecture and file format:
py-feat's own ``MEGraphAUv2`` with a ConvNeXt-V2-atto backbone and narrow heads, saved as safetensors with the
``ModelV2Config`` JSON under the metadata key ``config`` — once with the default (v2.3-style) heads, once with the v3
heads and the flags of the shipped 20-AU / 7-emotion model (plus the v2.6 gaze flags). The reference is py-feat's
code run independently of the extractor: its files imported by Python's own import system from a folder laid out as
the wheel, loaded and preprocessed as ``feat/multitask/inference.py``'s ``MultitaskModel`` does (torchvision's
``resize(antialias=True)``). Hub downloads run against a stand-in of ``huggingface_hub``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from affectfuse.extractors import ExtractorInput, _catalogue as catalogue, create_extractor, list_extractors
from affectfuse.extractors._catalogue import CATALOGUE, model_dir, read_manifest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from affectfuse.extractors.face import pyfeat_multitask as pfm  # noqa: E402

NAME = "pyfeat-multitask-v28"
FILE = "face_multitask_v28.safetensors"
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
TINY = dict(backbone="convnextv2_atto", afg_channels=64, mefl_channels=64, unified_lmk_dim=32, drop_path_rate=0.0)
#: the v3 heads with the flags of the shipped model (20 AUs, 7 emotions, blendshapes, normalised mesh) and v2.6 gaze
V3 = dict(use_head_v3=True, drop_mefl=True, emotion_use_au_prob=True, n_au=20, n_emotion=7, n_blendshape=52,
          mesh_normalized=True, gaze_eye_roi=True, gaze_pose_6d=True)


@pytest.fixture(autouse=True, scope="module")
def _no_onednn():
    """oneDNN takes seconds per call for the tiny heads' 1x1 convolutions on this 2-core CPU (the plain CPU kernels:
    ~0.3 s); it is off for the extractor and the reference alike."""
    old = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    yield
    torch.backends.mkldnn.enabled = old


def _feat_keys() -> list[str]:
    return [k for k in sys.modules if k == "feat" or k.startswith("feat.")]


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    """py-feat's ``feat.multitask`` imported by Python's import system from ``feat/multitask/*.py`` (the asset's files
    copied into the wheel's layout, with an empty ``feat/__init__.py``): independent of the extractor's loader."""
    from affectfuse._compat import import_timm
    from affectfuse.assets import ASSETS, asset_path

    import_timm()
    root = tmp_path_factory.mktemp("pyfeat")
    pkg = root / "feat" / "multitask"
    pkg.mkdir(parents=True)
    (root / "feat" / "__init__.py").write_text("")
    for m in ASSETS["pyfeat-multitask"].members:
        shutil.copy(asset_path("pyfeat-multitask", Path(m).name), pkg / Path(m).name)
    saved = {k: sys.modules.pop(k) for k in _feat_keys()}
    sys.path.insert(0, str(root))
    try:
        import feat.multitask as fm
        import feat.multitask.heads_v26  # noqa: F401  (model_v2 imports the heads lazily)
        import feat.multitask.heads_v3  # noqa: F401
        import feat.multitask.model_v2 as mv2

        yield SimpleNamespace(multitask=fm, model_v2=mv2)
    finally:
        sys.path.remove(str(root))
        for k in _feat_keys():
            del sys.modules[k]
        sys.modules.update(saved)


def save_tiny(ref, path: Path, seed: int = 0, **flags) -> Path:
    """A tiny randomly initialised MEGraphAUv2 saved as py-feat distributes its weights (config in the metadata)."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    cfg = ref.model_v2.ModelV2Config(**TINY, pretrained=False, **flags)
    model = ref.model_v2.MEGraphAUv2(cfg).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**dataclasses.asdict(cfg), "pretrained": True, "lr": 1e-4}  # as trained; lr: not a config field
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"config": json.dumps(meta)})
    return path


@pytest.fixture(scope="module")
def tiny(ref, tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    return {"v23": save_tiny(ref, d / "v23" / "tiny_v23.safetensors"), "v28": save_tiny(ref, d / "v28" / FILE, **V3)}


def reference(ref, path: Path, chips: np.ndarray) -> dict[str, np.ndarray]:
    """py-feat's MultitaskModel: load (config filtered to ModelV2Config, pretrained=False), preprocess, run, decode."""
    import torch.nn.functional as F
    import torchvision.transforms.v2.functional as TF
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt", device="cpu") as f:
        saved = json.loads(f.metadata()["config"])
    mv2 = ref.model_v2
    valid = set(mv2.ModelV2Config.__dataclass_fields__)
    cfg = mv2.ModelV2Config(**{k: v for k, v in saved.items() if k in valid and k not in ("pretrained", "use_head_v2")},
                            pretrained=False, use_head_v2=saved.get("use_head_v2", False))
    model = mv2.MEGraphAUv2(cfg)
    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    assert not missing and not unexpected
    model.eval()
    x = torch.from_numpy(chips).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-1] != 256:
        x = F.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False)
    x = (TF.resize(x, [224, 224], antialias=True) - MEAN) / STD
    with torch.inference_mode():
        out = model(x)
    fm = ref.multitask
    return {"au": out["p_au"].numpy(), "emotion": F.softmax(out["emotion_logits"], dim=-1).numpy(),
            "va": out["va"].numpy(), "au_names": fm.AU_NAMES_V24 if cfg.n_au == 20 else mv2.AU_NAMES,
            "emotion_names": fm.EMOTION_NAMES_V24 if cfg.n_emotion == 7 else fm.EMOTION_NAMES}


def chips(n: int, size: int = 256, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty model folder (``$AFFECTFUSE_MODELS``) and Hugging Face cache for the test; assets stay where they are."""
    import huggingface_hub.constants as hc

    d = tmp_path / "models"
    monkeypatch.setenv("AFFECTFUSE_MODELS", str(d))
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    return d


# ---------------------------------------------------------------------------------------------
def test_asset_is_py_feats_pinned_files_and_a_changed_file_is_refused(tmp_path, monkeypatch):
    from affectfuse.assets import ASSETS, asset_path

    a = ASSETS["pyfeat-multitask"]
    assert a.registry == "pypi" and a.package == "py-feat==2.1.5"
    pins = dict(a.sha256)
    assert sorted(pins) == sorted(Path(m).name for m in a.members) == ["__init__.py", "heads_v26.py", "heads_v3.py",
                                                                        "model_v2.py"]
    for f, sha in pins.items():
        assert hashlib.sha256(asset_path(a.name, f).read_bytes()).hexdigest() == sha
    # a cached file that differs from the pin is never executed
    bad = tmp_path / "cache" / a.name
    bad.mkdir(parents=True)
    for f in pins:
        shutil.copy(asset_path(a.name, f), bad / f)
    (bad / "heads_v3.py").write_text((bad / "heads_v3.py").read_text() + "\nraise SystemExit('ran')\n")
    monkeypatch.setenv("AFFECTFUSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(pfm, "_MODULES", {})
    with pytest.raises(RuntimeError, match=r"heads_v3\.py has SHA-256 .* expected c4ccb621"):
        pfm.pyfeat_modules()


@pytest.mark.parametrize("which", ["v28", "v23"])
def test_outputs_equal_py_feats_own_model(ref, tiny, which):
    path = tiny[which]
    ex = create_extractor("pyfeat_multitask", model=str(path.parent))  # the folder (its only .safetensors file)
    assert "pyfeat_multitask" in list_extractors() and ex.modality == "fau" and ex.contract.image_size == 256
    imgs = chips(3)
    before = {k: sys.modules[k] for k in _feat_keys()}
    got = ex.predict(imgs)
    assert {k: sys.modules[k] for k in _feat_keys()} == before, "the reference's feat modules are put back"
    want = reference(ref, path, imgs)
    n_au, n_emo = (20, 7) if which == "v28" else (24, 8)
    assert ex.dim == n_au + n_emo == got.shape[1] and got.shape == (3, ex.dim)
    assert ex.columns == list(want["au_names"]) + list(want["emotion_names"])
    assert ex.columns[:3] == ["AU01", "AU02", "AU04"] and ex.columns[n_au:n_au + 2] == ["Neutral", "Happy"]
    np.testing.assert_allclose(got[:, :n_au], want["au"], atol=2e-6)
    np.testing.assert_allclose(got[:, n_au:], want["emotion"], atol=2e-6)
    assert (got[:, :n_au] >= 0).all() and (got[:, :n_au] <= 1).all() and got[:, :n_au].std() > 0
    np.testing.assert_allclose(got[:, n_au:].sum(axis=1), 1.0, atol=1e-5)
    # every output, from the file itself; crops of another size are resized as py-feat does
    full = create_extractor("pyfeat_multitask", model=str(path), output="all")
    assert full.columns == ex.columns + ["valence", "arousal"]
    allv = full.predict(imgs)
    np.testing.assert_allclose(allv[:, -2:], want["va"], atol=2e-6)
    assert (np.abs(allv[:, -2:]) <= 1).all()
    np.testing.assert_allclose(create_extractor("pyfeat_multitask", model=str(path), output="va").predict(imgs),
                               want["va"], atol=2e-6)
    np.testing.assert_allclose(create_extractor("pyfeat_multitask", model=str(path), output="au").predict(imgs),
                               want["au"], atol=2e-6)
    odd = chips(2, size=200, seed=1)
    np.testing.assert_allclose(full.predict(odd)[:, :n_au], reference(ref, path, odd)["au"], atol=2e-6)


def test_rows_without_a_face_are_invalid_not_zeros_as_data(tiny):
    ex = create_extractor("pyfeat_multitask", model=str(tiny["v28"]), batch_size=2)
    imgs = chips(3, seed=2)
    feats = ex(ExtractorInput(images=imgs, valid=np.array([True, False, True])))
    assert feats.values.shape == (3, 27) and feats.valid.tolist() == [True, False, True]
    assert (feats.values[1] == 0).all()
    np.testing.assert_allclose(feats.values[[0, 2]], ex.predict(imgs[[0, 2]]), atol=1e-6)
    with pytest.raises(ValueError, match=r"uint8 RGB \(N, 256, 256, 3\)"):
        ex(ExtractorInput(images=imgs.astype(np.float32)))


def test_pad_to_32_is_vipers_fau_token_layout(tiny):
    """ViPER §3.4: the 20 AU + 7 emotion values zero-padded to 32 (tokens 768 + 512 + 768 + 32 = 2080 wide)."""
    path = str(tiny["v28"])
    plain, padded = create_extractor("pyfeat_multitask", model=path), create_extractor("pyfeat_multitask", model=path,
                                                                                        pad_to=32)
    assert padded.dim == 32 and padded.columns == plain.columns + ["pad_1", "pad_2", "pad_3", "pad_4", "pad_5"]
    assert padded.key != plain.key  # a different layout is a different feature set
    imgs = chips(2, seed=3)
    got = padded.predict(imgs)
    np.testing.assert_array_equal(got[:, :27], plain.predict(imgs))
    assert (got[:, 27:] == 0).all()
    assert create_extractor("pyfeat_multitask", model=path, pad_to=27).dim == 27
    with pytest.raises(ValueError, match="pad_to.*>= the 27 columns"):
        create_extractor("pyfeat_multitask", model=path, pad_to=20)
    with pytest.raises(ValueError, match="pad_to"):
        create_extractor("pyfeat_multitask", model=path, output="va", pad_to=1)


def test_checkpoints_that_are_not_the_format_fail_naming_the_file(ref, tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    state = load_file(str(tiny["v28"]))
    meta = json.dumps({**dataclasses.asdict(ref.model_v2.ModelV2Config(**TINY, **V3))})
    bare = tmp_path / "no_config.safetensors"
    save_file(state, str(bare))
    with pytest.raises(ValueError, match=r"no_config\.safetensors: the safetensors metadata has no 'config'"):
        create_extractor("pyfeat_multitask", model=str(bare))
    fewer = tmp_path / "fewer.safetensors"
    save_file({k: v for k, v in state.items() if not k.startswith("emotion.")}, str(fewer), metadata={"config": meta})
    with pytest.raises(ValueError, match=r"fewer\.safetensors: the checkpoint lacks 4 weight\(s\) \(e\.g\. emotion\."):
        create_extractor("pyfeat_multitask", model=str(fewer)).load()
    more = tmp_path / "more.safetensors"
    save_file({**state, "extra.weight": torch.zeros(2)}, str(more), metadata={"config": meta})
    with pytest.raises(ValueError, match=r"more\.safetensors: the checkpoint has 1 unknown tensor\(s\) \(e\.g\. extra"):
        create_extractor("pyfeat_multitask", model=str(more)).load()
    other = tmp_path / "other_arch.safetensors"  # the v2.3 heads' config over the v2.8 weights
    v23 = json.dumps(dataclasses.asdict(ref.model_v2.ModelV2Config(**TINY)))
    save_file(state, str(other), metadata={"config": v23})
    with pytest.raises(ValueError, match=r"other_arch\.safetensors: the weights do not fit the architecture of its "
                                         r"config: .* size mismatch for log_var_au"):
        create_extractor("pyfeat_multitask", model=str(other)).load()
    pickle = tmp_path / "face_multitask_v2.pt"
    torch.save({"config": {}, "model": {}}, pickle)
    with pytest.raises(ValueError, match=r"face_multitask_v2\.pt: a \.pt file is a pickle, which is never loaded"):
        create_extractor("pyfeat_multitask", model=str(pickle))
    with pytest.raises(ValueError, match="a pickle"):
        pfm.load_pyfeat_model(pickle)
    with pytest.raises(FileNotFoundError, match="absent.safetensors: no such file or folder"):
        create_extractor("pyfeat_multitask", model=str(tmp_path / "absent.safetensors"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=f"holds no {FILE} and no other"):
        create_extractor("pyfeat_multitask", model=str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="output must be one of 'au_emotion', 'au', 'va' or 'all'"):
        create_extractor("pyfeat_multitask", model=str(tiny["v28"]), output="logits")


def test_identity_records_licence_and_file(tiny, tmp_path):
    ex = create_extractor("pyfeat_multitask", model=str(tiny["v28"]))
    w = ex.params["weights"]
    assert w["file"] == FILE and "fingerprint" in w and w["sha256"] is None
    assert w["licence"].startswith("CC-BY-NC-4.0") and ex.identity()["licence"] == w["licence"]  # the published name
    assert w["source"] == str(tiny["v28"])
    mine = tmp_path / "mine.safetensors"
    shutil.copy(tiny["v28"], mine)
    other = create_extractor("pyfeat_multitask", model=str(mine))
    assert other.params["weights"]["licence"].startswith("unknown") and other.key != ex.key
    assert create_extractor("pyfeat_multitask", model=str(tiny["v28"]), batch_size=3).key == ex.key
    assert create_extractor("pyfeat_multitask", model=str(tiny["v28"]), output="va").key != ex.key


def test_catalogue_default_missing_then_fetched_from_the_hub(ref, tiny, cache, monkeypatch, capsys, caplog):
    """``fetch-models pyfeat-multitask-v28`` against a stand-in hub; the default extractor then loads the file and logs
    its licence. Before that: one error naming the command; a hub id not in the cache names it too."""
    import huggingface_hub

    from affectfuse.cli import main

    m = CATALOGUE[NAME]
    assert m.kind == "hub" and m.source == "py-feat/face_multitask_v2" and m.weights_choice == (FILE,)
    assert m.non_commercial and m.extractor == "pyfeat_multitask"
    ex = create_extractor("pyfeat_multitask")  # creating needs no weights: the published model's 20 + 7 columns
    assert ex.dim == 27 and ex.columns[-7:] == list(pfm.PYFEAT_EMOTIONS_7)
    assert ex.identity()["licence"] == m.licence and ex.params["weights"]["source"] == m.source
    with pytest.raises(FileNotFoundError, match=f"`affectfuse fetch-models {NAME}`.*huggingface.co/py-feat"):
        ex.load()
    import huggingface_hub.constants as hc

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(FileNotFoundError, match=f"{FILE} of the hub repository py-feat/face_multitask_v2 .*"
                                                f"`affectfuse fetch-models {NAME}`"):
        create_extractor("pyfeat_multitask", model="py-feat/face_multitask_v2").load()

    data = tiny["v28"].read_bytes()
    sha = hashlib.sha256(data).hexdigest()

    class Api:
        def list_repo_files(self, repo, revision=None):
            assert repo == "py-feat/face_multitask_v2"
            return [FILE, "face_multitask_v2.safetensors", "README.md"]

        def get_paths_info(self, repo, paths, revision=None):
            return [SimpleNamespace(path=p, lfs=SimpleNamespace(sha256=sha)) for p in paths]

    def download(repo, filename, revision=None, local_dir=None, **kw):
        out = Path(local_dir or tiny["v28"].parent) / filename
        if out != tiny["v28"]:
            out.write_bytes(data)
        return str(out)

    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    assert main(["fetch-models", NAME]) == 0
    out = capsys.readouterr().out
    assert f"{FILE}: NOT VERIFIED" in out and "(matches the hub's record of it)" in out and "NON-COMMERCIAL" in out
    man = read_manifest(NAME)
    assert man["files"][FILE]["sha256"] == sha and man["files"][FILE]["hub_record_matches"] is True
    assert (model_dir(NAME) / FILE).read_bytes() == data
    main(["fetch-models", "--list"])
    assert "pyfeat-multitask-v28" in capsys.readouterr().out

    monkeypatch.setattr(catalogue, "_announced", set())
    caplog.set_level(logging.WARNING, logger="affectfuse.models")
    fetched = create_extractor("pyfeat_multitask")
    assert fetched.key == ex.key  # the key is the catalogue's, fetched or not
    feats = fetched(ExtractorInput(images=chips(2)))
    assert feats.valid.all() and feats.values.shape == (2, 27)
    assert any("licence: CC-BY-NC-4.0" in r.getMessage() for r in caplog.records)
    np.testing.assert_allclose(feats.values[:, :20], reference(ref, tiny["v28"], chips(2))["au"], atol=2e-6)
    # a hub id is read from (or downloaded into) the Hugging Face cache
    hub = create_extractor("pyfeat_multitask", model="py-feat/face_multitask_v2", output="va")
    np.testing.assert_allclose(hub.predict(chips(2)), reference(ref, tiny["v28"], chips(2))["va"], atol=2e-6)
    assert hub.path == tiny["v28"] and hub.params["weights"]["licence"] == m.licence
    # a file changed after it was fetched is noticed
    (model_dir(NAME) / FILE).write_bytes(data[:-8] + b"\0" * 8)
    with pytest.raises(catalogue.ModelFetchError, match="changed since it was fetched"):
        create_extractor("pyfeat_multitask").load()


def test_without_timm_one_line_names_the_extra(monkeypatch):
    import affectfuse._compat as compat

    def no_timm():
        raise ImportError("No module named 'timm'")

    monkeypatch.setattr(pfm, "_MODULES", {})
    monkeypatch.setattr(compat, "import_timm", no_timm)
    with pytest.raises(ImportError) as e:
        pfm.pyfeat_modules()
    assert "pip install 'affectfuse[timm]'" in str(e.value) and "\n" not in str(e.value)
