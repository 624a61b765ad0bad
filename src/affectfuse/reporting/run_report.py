"""The HTML report of a trained run (:func:`report`).

A report is a folder with PNG figures and one ``index.html`` that references them by relative path; the
page has no scripts, no external style sheets and no network references, so the folder can be zipped,
mailed or opened from disk as it is. Numbers in tables are written with 4 decimals.

:func:`report` reads a run folder written by :func:`affectfuse.training.train` (see
:mod:`affectfuse.inference.run_folder`; read by :func:`affectfuse.reporting.run_data.read_run`) and draws what
the run has:

* training curves from ``history.csv`` (train loss, dev metrics, learning rate; the kept epoch marked);
* regression, clip level (Hume-Reaction): per-target Pearson bars per split and a predicted-vs-true scatter
  per target (ViPER's figures);
* regression, frame level (Aff-Wild2 VA): prediction vs truth over time for a few videos, CCC bars;
* classification (EXPR, VGAF): confusion matrix per split (counts and row-normalised; the counts are also
  written as ``confusion_<split>.csv``) and per-class F1 bars.

Truth comes from the labels the run was trained with (``data.json`` → ``labels``), matched to
``predictions/<split>.csv`` by video id (and frame). Whatever is missing — no history, labels moved, a split
without labels — is skipped with a note on the page, never an exception. A multi-seed folder
(``affectfuse train --seeds``) gets one report per seed and a summary page with mean ± std.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from affectfuse.inference.run_folder import RunFolder
from affectfuse.reporting import plots
from affectfuse.reporting.html import Page
from affectfuse.reporting.run_data import RunData, class_pairs, merge_truth, read_run, split_key
from affectfuse.tasks import metrics as M

__all__ = ["report"]

_MAX_SERIES_VIDEOS = 4


def _metric_table(page: Page, metrics: dict[str, dict[str, float]], first: Sequence[str] = ()) -> None:
    splits = list(metrics)
    names = list(dict.fromkeys([m for m in first if any(m in metrics[s] for s in splits)] +
                               [m for s in splits for m in metrics[s]]))
    page.table(["metric"] + splits, [[m] + [metrics[s].get(m) for s in splits] for m in names])


def _select(rd: RunData) -> tuple[str | None, bool]:
    sel = (rd.config or {}).get("select_metric") or (rd.task.metrics[0] if rd.task is not None and rd.task.metrics
                                                     else None)
    return sel, not (sel or "").startswith(("mse", "loss"))


def _per_target_prefix(task) -> str:
    m = task.metrics[0] if task.metrics else ""
    if m.startswith("mean_"):
        return m[5:]
    return "pearson" if task.resolution == "clip" else "ccc"


def _per_target_values(rd: RunData, merged: dict[str, pd.DataFrame], prefix: str) -> dict[str, dict[str, float]]:
    """``{split: {target: value}}`` from metrics.json, else computed from the predictions and labels."""
    fn = {"pearson": M.pearson, "ccc": M.ccc, "mse": M.mse}.get(prefix)
    out: dict[str, dict[str, float]] = {}
    for split in sorted(set(rd.metrics) | set(merged), key=split_key):
        m = rd.metrics.get(split, {})
        if all(f"{prefix}_{t}" in m for t in rd.task.targets):
            out[split] = {t: float(m[f"{prefix}_{t}"]) for t in rd.task.targets}
        elif split in merged and fn is not None:
            df = merged[split]
            vals = {}
            for t in rd.task.targets:
                ok = df[t].notna() & df[f"true_{t}"].notna()
                vals[t] = fn(df.loc[ok, t], df.loc[ok, f"true_{t}"])
            out[split] = vals
    return out


def _truth_tables(rd: RunData, page_notes: list[str], how: str = "inner") -> dict[str, pd.DataFrame]:
    out: dict[str, pd.DataFrame] = {}
    if rd.labels is None or rd.task is None:
        return out
    for split, pred in rd.predictions.items():
        if split not in rd.labels.splits:
            page_notes.append(f"{split}: the labels have no {split} split, so its truth-based plots are skipped")
            continue
        try:
            df = merge_truth(pred, rd.labels, split, how=how)
        except (KeyError, ValueError) as e:
            page_notes.append(f"{split}: predictions could not be matched to the labels ({e})")
            continue
        labelled = df[[c for c in df.columns if c.startswith("true_")]].notna().any(axis=1)
        if not labelled.any():
            page_notes.append(f"{split}: no prediction row matches a labelled video / frame; skipped")
            continue
        if how == "inner" and len(df) < len(pred):
            page_notes.append(f"{split}: {len(pred) - len(df)} of {len(pred)} prediction rows have no label and are "
                              f"left out of the plots")
        out[split] = df
    return out


def _regression_section(rd: RunData, out: Path, page: Page, notes: list[str], files: list[Path]) -> None:
    task = rd.task
    frame = task.resolution == "frame"
    merged = _truth_tables(rd, notes, how="left" if frame else "inner")
    missing = [s for s, df in merged.items() if not set(task.targets) <= set(df.columns)]
    for s in missing:
        notes.append(f"{s}: predictions lack target columns {sorted(set(task.targets) - set(merged[s].columns))}")
        merged.pop(s)
    prefix = _per_target_prefix(task)
    label = {"pearson": "Pearson r", "ccc": "CCC", "mse": "MSE"}.get(prefix, prefix)
    vals = _per_target_values(rd, merged, prefix)
    page.h2(f"{label} per target")
    if vals:
        f = plots.plot_metric_bars(vals, out / f"{prefix}_per_target.png", metric=label, targets=list(task.targets),
                                   title=f"{task.name}: {label} per target and split")
        files.append(f)
        page.img(f.name, f"{label} of each target per split (legend: the mean over targets).")
    else:
        page.note(f"no per-target {label} values (metrics.json lacks them and there is no truth to compute them)")
    if frame:
        page.h2("Prediction vs truth over time")
        split = next((s for s in ("test", "dev", "train") if s in merged), next(iter(merged), None))
        if split is None:
            page.note("no split with labels: the time series are skipped")
            return
        df = merged[split]
        true_cols = [f"true_{t}" for t in task.targets]
        counts = df.assign(_lab=df[true_cols].notna().any(axis=1)).groupby("video_id", sort=False)["_lab"].sum()
        vids = list(counts[counts > 0].index[:_MAX_SERIES_VIDEOS])
        use_time = "time" in df.columns and pd.to_numeric(df["time"], errors="coerce").notna().all()
        series = []
        for v in vids:
            g = df[df["video_id"] == v].sort_values("frame" if "frame" in df.columns else "time")
            x = g["time"].to_numpy(dtype=np.float64) if use_time else g["frame"].to_numpy(dtype=np.float64)
            series.append((v, x, g[true_cols].to_numpy(dtype=np.float64), g[list(task.targets)].to_numpy(np.float64)))
        f = plots.plot_time_series(series, list(task.targets), out / f"timeseries_{split}.png",
                                   xlabel="time (s)" if use_time else "frame", value_range=task.value_range,
                                   title=f"{task.name} — {split}: prediction vs truth ({len(vids)} videos)")
        files.append(f)
        page.img(f.name, f"{split}: the first {len(vids)} labelled videos; black = truth (gaps: unlabelled frames), "
                         f"colour = prediction.")
    else:
        page.h2("Predicted vs true")
        if not merged:
            page.note("no split with labels: the scatter plots are skipped")
        shown = [s for s in merged if s != "train"] or list(merged)  # as ViPER: dev / test; train only alone
        if len(shown) < len(merged):
            page.p("The training split is not drawn (its fit says little); its scores are in the tables.", "muted")
        for split in shown:
            df = merged[split]
            f = plots.plot_scatter_grid(df[[f"true_{t}" for t in task.targets]].to_numpy(np.float64),
                                        df[list(task.targets)].to_numpy(np.float64), list(task.targets),
                                        out / f"scatter_{split}.png", value_range=task.value_range,
                                        title=f"{task.name} — {split} ({len(df)} clips): predicted vs true")
            files.append(f)
            page.img(f.name, f"{split}: one point per clip; dashed line y = x; r = Pearson correlation.")


def _classification_section(rd: RunData, out: Path, page: Page, notes: list[str], files: list[Path]) -> None:
    task = rd.task
    classes = list(task.targets)
    merged = _truth_tables(rd, notes)
    page.h2("Confusion matrices")
    f1: dict[str, np.ndarray] = {}
    for split, df in merged.items():
        try:
            t, p = class_pairs(df, task)
            cm = plots.confusion_matrix(t, p, len(classes))
        except ValueError as e:
            notes.append(f"{split}: confusion matrix skipped ({e})")
            continue
        pd.DataFrame(cm, index=pd.Index(classes, name="true \\ predicted"), columns=classes).to_csv(
            out / f"confusion_{split}.csv")
        files.append(out / f"confusion_{split}.csv")
        unit = "frames" if "frame" in df.columns else "clips"
        f = plots.plot_confusion(cm, classes, out / f"confusion_{split}.png",
                                 title=f"{task.name} — {split} ({int(cm.sum())} {unit})")
        files.append(f)
        page.img(f.name, f"{split}: rows = true class, columns = predicted; right: each row divided by its total "
                         f"(recall on the diagonal). Counts also in confusion_{split}.csv.")
        page.table(["true \\ predicted"] + classes, [[c] + cm[i].tolist() for i, c in enumerate(classes)])
        f1[split] = plots.per_class_f1(cm)
    if not f1:
        page.note("no split with labels: confusion matrices and F1 are skipped")
        return
    page.h2("F1 per class")
    f = plots.plot_f1_bars(f1, classes, out / "f1_per_class.png", title=f"{task.name}: F1 per class and split")
    files.append(f)
    page.img(f.name, "F1 of each class per split; a class neither present nor predicted in a split has no bar "
                     "(legend: mean over the classes with a value).")
    page.table(["class"] + list(f1), [[c] + [f1[s][i] for s in f1] for i, c in enumerate(classes)])


def _is_seed_folder(run: Path) -> bool:
    folder = RunFolder(run)
    if not folder.has(folder.METRICS) or folder.has(folder.CONFIG):
        return False
    try:
        d = folder.read_metrics()
    except json.JSONDecodeError:
        return False
    return isinstance(d, dict) and "seeds" in d and "per_seed" in d


def _seed_report(run: Path, out: Path) -> list[Path]:
    d = RunFolder(run).read_metrics()
    page = Page(f"affectfuse multi-seed run: {run.name}")
    page.p(f"Folder: {run.resolve()}", "muted")
    files: list[Path] = []
    page.h2("Mean ± std over seeds " + ", ".join(str(s) for s in d.get("seeds", [])))
    mean, std = d.get("mean", {}), d.get("std", {})
    splits = sorted(mean, key=split_key)
    # metric order as one seed's run wrote them (the summary's own order comes from a set)
    order = [m for per in (d.get("per_seed") or {}).values() for sp in per.values() for m in sp]
    names = sorted({m for s in splits for m in mean[s]},
                   key=lambda m: (order.index(m) if m in order else len(order), not m.startswith("mean"), m))
    page.table(["metric"] + splits, [[m] + [f"{mean[s][m]:.4f} ± {std.get(s, {}).get(m, float('nan')):.4f}"
                                            if m in mean[s] else None for s in splits] for m in names])
    if d.get("ensemble"):
        page.h2("Ensemble of the seeds (predictions averaged)")
        _metric_table(page, {s: d["ensemble"][s] for s in sorted(d["ensemble"], key=split_key)})
    page.h2("Runs")
    for s in d.get("seeds", []):
        sub = run / f"seed_{s}"
        if not sub.is_dir():
            page.note(f"seed {s}: folder {sub} is missing")
            continue
        sub_files = report(sub, out / f"seed_{s}")
        files += sub_files
        page.link(f"seed_{s}/index.html", f"seed {s}")
    files.append(page.write(out / "index.html"))
    return files


def _training_section(rd: RunData, out: Path, page: Page, files: list[Path]) -> None:
    sel, higher = _select(rd)
    f = plots.plot_training_curves(rd.history, out / "training_curves.png",
                                   metrics=rd.task.metrics if rd.task is not None else (), select=sel,
                                   higher_better=higher, title=f"training of {rd.path.resolve().name}")
    files.append(f)
    best, col = plots.best_epoch(rd.history, sel, higher)
    page.img(f.name, f"Per epoch: training loss, dev metrics, learning rate. Dashed red line: the kept epoch "
                     f"{best} (best {col}).")
    page.p(f"{len(rd.history)} epochs; kept epoch {best} (by {col}).", "muted")


#: fields that are bookkeeping (where things are, how long), not settings that change the result
_BOOKKEEPING = {"type", "modalities", "train_split", "dev_split", "eval_splits", "num_workers", "device", "task", "model"}


def settings_rows(rd: RunData) -> list[list[str]]:
    """The run's settings that are not the defaults: ``[where, setting, value, default]`` per row.

    Training settings are compared with :class:`~affectfuse.inference.train_config.TrainConfig`'s defaults as
    the run's model resolves them (``lr`` None is the model's default rate, ``scheduler`` auto ``warmup_cosine``);
    model settings are the run's ``model_overrides`` of the registered model's defaults (pooling, token layout,
    backbone initialisation, ...). A recipe's departures from a paper, or a paper's from the generic defaults,
    are all here."""
    import dataclasses

    from affectfuse.inference.train_config import TrainConfig

    rows: list[list[str]] = []
    cfg = rd.config or {}
    try:  # the defaults as this run's model resolves them (lr None -> its default rate, scheduler auto -> ...)
        defaults = dataclasses.asdict(TrainConfig(model=cfg.get("model", "viper_small")).resolved())
    except KeyError:  # a model this installation does not register: the unresolved defaults
        defaults = dataclasses.asdict(TrainConfig())
    for f in dataclasses.fields(TrainConfig):
        if f.name in _BOOKKEEPING or f.name not in cfg:
            continue
        default = defaults[f.name]
        value = cfg[f.name]
        norm = (lambda v: list(v) if isinstance(v, tuple) else v)
        if norm(value) != norm(default) and not (f.name == "precision" and str(value) == str(default)):
            rows.append(["training", f.name, json.dumps(value, default=str), json.dumps(norm(default), default=str)])
    model = (rd.model or {}).get("name") or cfg.get("model")
    for k, v in ((rd.model or {}).get("overrides") or cfg.get("model_overrides") or {}).items():
        rows.append([f"model {model}", str(k), json.dumps(v, default=str), f"{model}'s default"])
    return rows


#: fewer videos than this in a split and its metrics are flagged as resting on very few samples
FEW_SAMPLES = 30


def few_samples(metrics: dict[str, Any], sizes: dict[str, int | None]) -> list[str]:
    """A warning per scored split with fewer than :data:`FEW_SAMPLES` videos, with the spread a correlation has
    there by chance: the 95 % interval of Pearson's r around 0 over n independent samples, ``tanh(1.96 /
    sqrt(n - 3))`` (Fisher's z). Frames of one video are not independent, so videos are counted."""
    out = []
    for split in metrics:
        n = sizes.get(split)
        if not isinstance(metrics.get(split), dict) or not isinstance(n, int) or n >= FEW_SAMPLES:
            continue
        spread = f"a correlation of 0 reads as anything within ±{math.tanh(1.96 / math.sqrt(n - 3)):.2f} by chance" \
            if n > 3 else "too few for any correlation to mean much"
        out.append(f"{split}: {n} video(s) — its metrics rest on very few samples ({spread})")
    return out


def _guarded(notes: list[str], what: str, fn, *args) -> None:
    """Run one section of a report; a failure on odd input becomes a note instead of losing the whole report."""
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - the report must still be written
        notes.append(f"{what} skipped: {type(e).__name__}: {e}")


def report(run_dir: str | Path, out: str | Path | None = None) -> list[Path]:
    """Write an HTML report of a run folder: figures (PNG), tables and the configuration.

    Args:
        run_dir: a folder written by :func:`affectfuse.training.train` (or ``train_seeds``).
        out: the report folder (default ``run_dir/report``); made when missing, files in it overwritten.

    Returns:
        every file written, ``index.html`` last.

    Raises:
        FileNotFoundError: ``run_dir`` is missing or is not a run folder.
    """
    run = Path(run_dir)
    out = Path(out) if out is not None else run / "report"
    if run.is_dir() and _is_seed_folder(run):
        out.mkdir(parents=True, exist_ok=True)
        return _seed_report(run, out)
    rd = read_run(run)
    out.mkdir(parents=True, exist_ok=True)
    plots.use_script_fonts()
    task = rd.task
    page = Page(f"affectfuse run: {run.resolve().name}")
    notes = list(rd.notes)
    files: list[Path] = []

    summary = [["folder", str(run.resolve())]]
    if task is not None:
        summary += [["task", f"{task.name} ({task.problem}, {task.resolution} level)"],
                    ["targets" if not task.is_classification else "classes", ", ".join(task.targets)]]
    if rd.model:
        summary.append(["model", str(rd.model.get("name", "?"))])
        if rd.model.get("input_dims"):
            summary.append(["inputs", ", ".join(f"{k} ({v})" for k, v in rd.model["input_dims"].items())])
    if rd.data:
        summary.append(["labels", str(rd.data.get("labels"))])
        summary.append(["features", str(rd.data.get("store"))])
        sizes = {"train": rd.data.get("train_videos"), **(rd.data.get("splits") or {})}
        summary.append(["videos per split", ", ".join(f"{k}: {v}" for k, v in sizes.items() if v is not None)])
    page.table(None, summary)

    page.h2("Settings that are not the defaults")
    rows = settings_rows(rd)
    if rows:
        page.table(["where", "setting", "value", "default"], rows,
                   caption="everything a result depends on is in config.yaml / model.yaml; these differ from the defaults")
    else:
        page.note("every setting is the default")

    page.h2("Metrics")
    if rd.metrics:
        _metric_table(page, rd.metrics, task.metrics if task is not None else ())
        for line in few_samples(rd.metrics, {"train": rd.data.get("train_videos"), **(rd.data.get("splits") or {})}):
            page.note(line)
    else:
        page.note("no metrics (metrics.json missing or empty)")

    page.h2("Training")
    if rd.history is not None:
        _guarded(notes, "training curves", _training_section, rd, out, page, files)
    else:
        page.note("no training history (history.csv): training curves skipped")

    if task is not None and rd.predictions:
        section = _classification_section if task.is_classification else _regression_section
        _guarded(notes, "prediction plots", section, rd, out, page, notes, files)


    if notes or rd.data.get("label_report"):
        page.h2("Notes")
        for n in notes:
            page.note(n)
        lr = rd.data.get("label_report") or []
        if lr:
            page.p(f"Label report ({len(lr)} lines, first 20):")
            page.pre("\n".join(map(str, lr[:20])))
    page.h2("Configuration")
    if rd.config_text:
        page.pre(rd.config_text)
    else:
        page.note("no config.yaml")
    files.append(page.write(out / "index.html"))
    return files
