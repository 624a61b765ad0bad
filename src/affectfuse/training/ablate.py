"""Modality ablation: train every non-empty combination of modalities and tabulate the main metric.

This reproduces the layout of ViPER's Table 3 (one row per modality combination, a check mark per modality,
the mean Pearson correlation on the dev and the test set). Each combination is an ordinary run folder::

    OUT/visual/            run of the visual modality alone (several seeds: OUT/visual/seed_<s>/)
    OUT/visual+audio/      ...
    OUT/ablation.csv       the table (check marks, dev / test of the main metric, number of seeds, std)
    OUT/ablation.md        the same as a markdown table, best dev row in bold

Finished runs (``metrics.json`` present and the same configuration) are reused, so an interrupted ablation
continues where it stopped; an unfinished run resumes from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from affectfuse._config import to_dict
from affectfuse.data.labels import Labels, load_labels
from affectfuse.inference.run_folder import RunFolder
from affectfuse.inference.train_config import TrainConfig
from affectfuse.tasks.spec import TaskSpec, get_task
from affectfuse.training.loop import train

__all__ = ["ablate", "combinations", "main_metric", "finished_metrics", "train_or_reuse", "to_markdown", "CHECK", "NO_CHECK"]

CHECK, NO_CHECK = "✓", "-"


def combinations(names: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset of ``names`` (2^M - 1), by size, then in the given order.

    Example:
        >>> combinations(["v", "a"])
        [('v',), ('a',), ('v', 'a')]
    """
    names = list(names)
    return [c for r in range(1, len(names) + 1) for c in itertools.combinations(names, r)]


def _task_of(labels: Labels | str | Path, cfg: TrainConfig) -> TaskSpec:
    if cfg.task != "generic":
        return get_task(cfg.task)
    lab = labels if isinstance(labels, Labels) else load_labels(labels, None)
    return lab.task


def main_metric(task: TaskSpec, cfg: TrainConfig) -> tuple[str, bool]:
    """The metric an ablation reports: the config's ``select_metric`` or the task's first metric, and whether
    higher is better (``mse`` / ``loss`` metrics: lower)."""
    name = cfg.select_metric or task.metrics[0]
    return name, not name.startswith(("mse", "loss"))


def finished_metrics(run: Path, cfg: TrainConfig) -> dict[str, dict[str, float]] | None:
    """The metrics of a finished run made with ``cfg`` (None when the run is missing, unfinished or differs)."""
    folder = RunFolder(run)
    if not folder.has(folder.METRICS) or not folder.has(folder.CONFIG):
        return None
    if to_dict(folder.read_config()) != to_dict(cfg.resolved()):
        return None
    return folder.read_metrics()


def train_or_reuse(labels, store, cfg: TrainConfig, run: Path, *, progress: bool, log: Callable[[str], Any]
                   ) -> dict[str, dict[str, float]]:
    """``train()``, unless ``run`` already holds a finished run of ``cfg`` (then its ``metrics.json``).

    A run folder made with another configuration is not overwritten: ``train()`` raises its error."""
    done = finished_metrics(run, cfg)
    if done is not None:
        log(f"{run}: finished run found, reused")
        return done
    return train(labels, store, cfg, run, progress=progress, log=log)


def _fmt(v: float) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def ablate(labels: Labels | str | Path, store, base: TrainConfig, out: str | Path, *,
           modalities: dict[str, str] | None = None, seeds: Sequence[int] = (0,), progress: bool = False,
           log: Callable[[str], Any] = print) -> pd.DataFrame:
    """Train every non-empty combination of the modalities and write ViPER Table 3-style results.

    Args:
        labels: a :class:`Labels` or a label file / folder.
        store: a feature store or its folder.
        base: the configuration shared by every run; its ``modalities`` are replaced per combination.
        out: the ablation folder (layout: module docstring).
        modalities: modality → extractor name / key to combine (default: ``base.modalities``); the table's
            columns follow this order.
        seeds: one run per seed and combination; the table holds the mean over seeds (and the std).
        progress: progress bars of the runs.
        log: where progress lines go.

    Returns:
        the table: ``modalities`` (``a+b``), one column per modality (``✓`` / ``-``), ``dev_<metric>``,
        ``test_<metric>`` (NaN when the split has no labels), ``seeds``, ``dev_<metric>_std``,
        ``test_<metric>_std`` — also in ``out/ablation.csv`` and ``out/ablation.md``.
    """
    mods = dict(modalities if modalities is not None else base.modalities)
    if not mods:
        raise ValueError("ablate: no modalities to combine (pass modalities= or set base.modalities)")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("ablate: seeds must name at least one seed")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    task = _task_of(labels, base)
    metric, higher = main_metric(task, base)
    names = list(mods)
    combos = combinations(names)
    rows: list[dict[str, Any]] = []
    for i, combo in enumerate(combos, 1):
        tag = "+".join(combo)
        cfg0 = dataclasses.replace(base, modalities={m: mods[m] for m in combo})
        log(f"[ablation {i}/{len(combos)}] {tag}")
        per: dict[int, dict[str, dict[str, float]]] = {}
        for s in seeds:
            run = out / tag if len(seeds) == 1 else out / tag / f"seed_{s}"
            per[s] = train_or_reuse(labels, store, dataclasses.replace(cfg0, seed=s), run, progress=progress, log=log)
        row: dict[str, Any] = {"modalities": tag}
        row.update({m: CHECK if m in combo else NO_CHECK for m in names})
        for split in ("dev", "test"):
            vals = [per[s].get(split, {}).get(metric, np.nan) for s in seeds]
            row[f"{split}_{metric}"] = float(np.mean(vals)) if vals else np.nan
            row[f"{split}_{metric}_std"] = float(np.std(vals)) if vals else np.nan
        row["seeds"] = len(seeds)
        if len(seeds) > 1:
            summary = {"seeds": seeds, "per_seed": {str(s): m for s, m in per.items()},
                       "mean": _agg(per, np.mean), "std": _agg(per, np.std)}
            RunFolder(out / tag).write_metrics(summary)
        rows.append(row)
    cols = ["modalities", *names, f"dev_{metric}", f"test_{metric}", "seeds", f"dev_{metric}_std",
            f"test_{metric}_std"]
    table = pd.DataFrame(rows, columns=cols)
    table.to_csv(out / "ablation.csv", index=False)
    (out / "ablation.md").write_text(to_markdown(table, names, metric, higher=higher))
    return table


def _agg(per: dict[int, dict[str, dict[str, float]]], fn) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for split in sorted({sp for m in per.values() for sp in m}):
        keys = sorted({k for m in per.values() for k in m.get(split, {})})
        out[split] = {k: float(fn([m[split][k] for m in per.values() if k in m.get(split, {})])) for k in keys}
    return out


def to_markdown(table: pd.DataFrame, modalities: Sequence[str], metric: str, *, higher: bool = True) -> str:
    """The ablation table as markdown (ViPER Table 3 layout); the row with the best dev value is bold."""
    dev, test = f"dev_{metric}", f"test_{metric}"
    multi = bool((table["seeds"] > 1).any()) if len(table) else False
    head = ["Modalities", *modalities, f"Dev {metric}", f"Test {metric}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join([":---"] + [":---:"] * len(modalities) + ["---:"] * 2) + "|"]
    scores = table[dev].to_numpy(dtype=float)
    best = None
    if np.isfinite(scores).any():
        best = int(np.nanargmax(scores) if higher else np.nanargmin(scores))
    for i, r in table.reset_index(drop=True).iterrows():
        cells = [str(r["modalities"]), *[str(r[m]) for m in modalities]]
        for c in (dev, test):
            v = _fmt(r[c])
            if multi and v != "-":
                v += f" ± {r[c + '_std']:.4f}"
            cells.append(v)
        if i == best:
            cells = [c if c == NO_CHECK else f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    note = f"\nMain metric: {metric} ({'higher' if higher else 'lower'} is better)"
    if multi:
        note += f"; mean ± std over {int(table['seeds'].max())} seeds"
    return "\n".join(lines) + "\n" + note + ".\n"
