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
