"""Store keys stay valid: every extractor gives exactly the params (and so the key) the old code gave.

``tests/golden/store_keys.json`` was generated from the extractors before their configs existed: per
extractor and creation keywords, ``params`` (the old ``ex.params``) and ``params_key``
(``feature_key(name, params)``). Existing feature stores are found under these keys, so they must not
change. Also checked here: the self-description of every registered extractor.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from affectfuse.extractors import create_extractor, list_extractors
from affectfuse.types import feature_key

GOLDEN = json.loads((Path(__file__).resolve().parents[1] / "golden" / "store_keys.json").read_text())


def _create(name: str, kwargs: dict):
    """The extractor, or a skip when it cannot be created offline here (a missing optional package)."""
    try:
        return create_extractor(name, **kwargs)
    except (ImportError, OSError) as e:
        pytest.skip(f"{name}{kwargs}: cannot be created offline here ({type(e).__name__}: {e})")


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_params_and_key_equal_the_old_code(case):
    entry = GOLDEN[case]
    name = case.split("{", 1)[0]
    ex = _create(name, entry["kwargs"])
    assert ex.params == entry["params"]
    assert ex.key == entry["params_key"] == feature_key(name, ex.params)


def test_every_registered_extractor_has_a_golden_entry():
    assert {case.split("{", 1)[0] for case in GOLDEN} == set(list_extractors())


@pytest.mark.parametrize("name", list_extractors())
def test_columns_and_identity(name):
    ex = _create(name, {})
    cols = ex.columns
    assert len(cols) == ex.dim and len(set(cols)) == ex.dim and all(isinstance(c, str) and c for c in cols)
    ident = ex.identity()
    assert ident["columns"] == cols
    assert ident["params"] == ex.params and ident["key"] == ex.key and ident["dim"] == ex.dim
    assert set(ex.params) <= set(ident["config"]) | {"fingerprint", "mapping", "model", "weights", "templates_sha1"}
    json.dumps(ident)  # recorded next to the features: must be plain data
    # runtime fields are configurable but not part of the key
    if "batch_size" in ident["config"]:
        assert "batch_size" not in ex.params
        assert create_extractor(name, batch_size=3).key == ex.key


CONFIGS = {  # the extraction configurations the golden store keys were made with (old ``ExtractConfig`` fields)
    "default": {}, "frames16": {"frames": 16}, "frame_fps5": {"level": "frame", "frame_fps": 5.0},
    "frame_step2": {"level": "frame", "frame_step": 2, "audio_window": 0.5},
    "full_frame": {"no_face": "full_frame", "face_margin": 0.1, "max_side": 640},
    "mtcnn": {"face_detector": "mtcnn", "face_select": "score"},
}


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_store_keys_with_the_sampling_equal_the_old_code(case):
    """The full store key (parameters + sampling identity) of an unchanged configuration never changes, however
    many sampling options were added since (span, fragments, devices, backends: defaults are not in the key)."""
    from affectfuse.extraction import ExtractConfig
    from affectfuse.extraction.plan import sampling_identity

    entry = GOLDEN[case]
    name = case.split("{", 1)[0]
    ex = _create(name, entry["kwargs"])
    for cname, over in CONFIGS.items():
        # box crops, as the old code cut them (extractors whose backbones want aligned faces now get them by default)
        cfg = ExtractConfig(extractors=(name,), face_align="none", **over).validate()
        assert feature_key(name, {**ex.params, "sampling": sampling_identity(ex, cfg)}) == entry["store_keys"][cname]
    changed = ExtractConfig(extractors=(name,), fragments="code", span="declared").validate()
    key = feature_key(name, {**ex.params, "sampling": sampling_identity(ex, changed)})
    assert key != entry["store_keys"]["default"], "another sampling rule is another feature set"


def test_aligned_crops_are_another_feature_set_and_the_default_only_where_the_backbone_wants_them():
    from affectfuse.extraction import ExtractConfig
    from affectfuse.extraction.plan import sampling_identity

    face = create_extractor("inception_resnet_v1")
    assert face.contract.align
    auto = sampling_identity(face, ExtractConfig(extractors=("inception_resnet_v1",)))
    assert auto["faces"]["align"] == "similarity_4pt_arcface_template"
    other = create_extractor("faceapi_expression")
    assert "align" not in sampling_identity(other, ExtractConfig(extractors=("faceapi_expression",)))["faces"]
    forced = sampling_identity(other, ExtractConfig(extractors=("faceapi_expression",), face_align="similarity"))
    assert forced["faces"]["align"] == "similarity_4pt_arcface_template"
