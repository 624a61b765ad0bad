"""Every fusion model learns a target that needs a short event in each of two modalities.

Data: visual and audio noise sequences; in each, a 2-step event at a random time: a marker (+3 in one
channel) and a random amplitude ``3 a_v`` / ``3 a_a`` in another, ``a ~ U(-1, 1)``. The marker keeps the
amplitude recoverable after per-frame L2 normalisation (JMT) and tells attention models where to look. Target ``y = a_v² + a_a²``: even in each
amplitude, so a linear map of mean-pooled features cannot predict it (R² ≈ 0), and each modality explains
only half of its variance, so a model must fuse both to go beyond R² ≈ 0.5.

Each model (small variant) must beat the mean-pooled linear baseline and beat its own best
single-modality version (the same model trained and tested with batches carrying only that modality).
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow
import torch

from affectfuse.models import create_model
from affectfuse.types import Batch

from ._helpers import REGRESSION_1, behavioural_models

T, DV, DA, EVENT = 12, 6, 4, 2
DIMS = {"visual": DV, "audio": DA}
STEPS, BATCH = 250, 64
# Adam learning rates; the Perceiver (N(0, 0.02) init, 3 attention stages) diverges to a constant at 3e-3
LR = {"viper_small": 1e-3}
DEFAULT_LR = 3e-3


def make_data(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    xv = 0.3 * torch.randn(n, T, DV, generator=g)
    xa = 0.3 * torch.randn(n, T, DA, generator=g)
    av = 2 * torch.rand(n, generator=g) - 1
    aa = 2 * torch.rand(n, generator=g) - 1
    tv = torch.randint(0, T - EVENT + 1, (n,), generator=g)
    ta = torch.randint(0, T - EVENT + 1, (n,), generator=g)
    for i in range(n):
        xv[i, tv[i]:tv[i] + EVENT, 0] += 3 * av[i]
        xv[i, tv[i]:tv[i] + EVENT, 1] += 3.0  # marker: where the event is
        xa[i, ta[i]:ta[i] + EVENT, 1] += 3 * aa[i]
        xa[i, ta[i]:ta[i] + EVENT, 0] += 3.0
    y = (av**2 + aa**2).unsqueeze(1)
    y = y - 2 / 3  # centre: E[a²] = 1/3 for a ~ U(-1, 1)
    masks = {m: torch.ones(n, T, dtype=torch.bool) for m in DIMS}
    return {"visual": xv, "audio": xa}, masks, y


def batch_of(inputs, masks, idx, mods):
    return Batch(inputs={m: inputs[m][idx] for m in mods}, masks={m: masks[m][idx] for m in mods})


def r2(name: str, mods: tuple[str, ...], seed: int = 0) -> float:
    """Train ``name`` on the given modalities; held-out R²."""
    tr_x, tr_m, tr_y = make_data(1024, seed=100 + seed)
    te_x, te_m, te_y = make_data(512, seed=200 + seed)
    torch.manual_seed(seed)
    model = create_model(name, task=REGRESSION_1, input_dims=DIMS)
    opt = torch.optim.Adam(model.parameters(), lr=LR.get(name, DEFAULT_LR))
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(STEPS):
        idx = torch.randint(0, len(tr_y), (BATCH,), generator=g)
        loss = torch.nn.functional.mse_loss(model(batch_of(tr_x, tr_m, idx, mods)).preds, tr_y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(batch_of(te_x, te_m, torch.arange(len(te_y)), mods)).preds
    return float(1 - ((pred - te_y) ** 2).mean() / te_y.var())


@pytest.fixture(scope="module")
def linear_r2() -> float:
    return r2("linear_meanpool", ("visual", "audio"))


def test_the_linear_baseline_cannot_solve_it(linear_r2):
    assert linear_r2 < 0.1


@pytest.mark.parametrize("name", [n for n in behavioural_models() if n != "linear_meanpool"])
def test_model_fuses_and_beats_the_linear_baseline(name, linear_r2):
    fused = r2(name, ("visual", "audio"))
    single = max(r2(name, ("visual",)), r2(name, ("audio",)))
    assert single < 0.6, f"{name}: one modality alone explains too much (R² {single:.2f}); the data is wrong"
    assert fused > linear_r2 + 0.3, f"{name}: fused R² {fused:.2f} vs linear {linear_r2:.2f}"
    assert fused > single + 0.15, f"{name}: fused R² {fused:.2f} vs best single modality {single:.2f}"
