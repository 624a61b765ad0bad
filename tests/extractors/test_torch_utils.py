"""The one weight-file reader: safetensors / weights_only torch files, unwrapping, prefixes, errors."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from affectfuse.extractors._torch_utils import load_state_dict


def test_unwraps_and_strips_prefixes(tmp_path):
    w = {"module.backbone.conv.weight": torch.ones(2, 3), "module.backbone.fc.bias": torch.zeros(2)}
    torch.save({"epoch": 3, "state_dict": w}, tmp_path / "ckpt.pth")
    sd = load_state_dict(tmp_path / "ckpt.pth")
    assert set(sd) == {"backbone.conv.weight", "backbone.fc.bias"}
    sd = load_state_dict(tmp_path / "ckpt.pth", strip_prefixes=("module.", "backbone."))
    assert set(sd) == {"conv.weight", "fc.bias"} and torch.equal(sd["conv.weight"], torch.ones(2, 3))
    save_file({"a.weight": torch.arange(4.0)}, tmp_path / "w.safetensors")
    assert torch.equal(load_state_dict(tmp_path / "w.safetensors")["a.weight"], torch.arange(4.0))
    # a prefix only some keys carry is kept
    torch.save({"module.a": torch.ones(1), "b": torch.ones(1)}, tmp_path / "mixed.pth")
    assert set(load_state_dict(tmp_path / "mixed.pth")) == {"module.a", "b"}


def test_errors_name_the_file_and_pickles_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_state_dict(tmp_path / "missing.pth")
    torch.save({"x": [1, 2, 3]}, tmp_path / "notensors.pth")
    with pytest.raises(ValueError, match="notensors.pth: expected a mapping of parameter names to tensors"):
        load_state_dict(tmp_path / "notensors.pth")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "pickled_module.pth")  # a whole pickled model
    with pytest.raises(ValueError, match="pickled_module.pth: cannot read .* weights_only=True"):
        load_state_dict(tmp_path / "pickled_module.pth")
