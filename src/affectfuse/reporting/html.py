"""HTML reports: a trained run (:func:`report`) and predictions on new videos (:func:`prediction_report`).

A report is a folder with PNG figures and one ``index.html`` that references them by relative path; the
page has no scripts, no external style sheets and no network references, so the folder can be zipped,
mailed or opened from disk as it is. Numbers in tables are written with 4 decimals.

:func:`report` reads a run folder written by :func:`affectfuse.training.train` (see
:mod:`affectfuse.training.loop`) and draws what the run has:

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

import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from affectfuse.reporting import plots

__all__ = ["report", "prediction_report", "read_run", "RunData", "merge_truth", "class_pairs", "split_confusion"]

_SPLIT_ORDER = ("train", "dev", "test")
_MAX_SERIES_VIDEOS = 4

_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:24px auto;max-width:1200px;
     padding:0 16px;color:#222;line-height:1.45}
h1{font-size:1.6em;border-bottom:2px solid #ddd;padding-bottom:6px}
h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #eee;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0 16px 0;font-size:0.92em}
th,td{border:1px solid #ccc;padding:3px 9px;text-align:right}
th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
figure{margin:12px 0 22px 0}
figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:0.9em;color:#555}
pre{background:#f7f7f7;border:1px solid #e3e3e3;padding:8px;overflow-x:auto;font-size:0.85em}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:6px 10px;margin:6px 0}
.muted{color:#777;font-size:0.9em}
"""


# -- the page -------------------------------------------------------------------------------------
class _Page:
    """A small HTML page builder (everything escaped)."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.parts: list[str] = []
        self.images: list[str] = []

    def h2(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def p(self, text: str, cls: str | None = None) -> None:
        c = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{c}>{html.escape(text)}</p>")

    def note(self, text: str) -> None:
        self.parts.append(f'<div class="note">{html.escape(text)}</div>')

    def pre(self, text: str) -> None:
        self.parts.append(f"<pre>{html.escape(text)}</pre>")

    def link(self, href: str, text: str) -> None:
        self.parts.append(f'<p><a href="{html.escape(href)}">{html.escape(text)}</a></p>')

    def table(self, header: Sequence[Any] | None, rows: Sequence[Sequence[Any]], caption: str | None = None) -> None:
        out = ["<table>"]
        if caption:
            out.append(f"<caption>{html.escape(caption)}</caption>")
        if header is not None:
            out.append("<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>")
        for r in rows:
            out.append("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>")
        out.append("</table>")
        self.parts.append("".join(out))

    def img(self, src: str, caption: str) -> None:
        self.images.append(src)
        self.parts.append(f'<figure><img src="{html.escape(src)}" alt="{html.escape(caption)}">'
                          f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def render(self) -> str:
        return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                f"<title>{html.escape(self.title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
                f"<h1>{html.escape(self.title)}</h1>\n" + "\n".join(self.parts) + "\n</body>\n</html>\n")

    def write(self, path: Path) -> Path:
        path.write_text(self.render(), encoding="utf-8")
        return path


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return "–" if not np.isfinite(v) else f"{float(v):.4f}"
    return str(v)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._")[:80] or "x"


# -- reading a run --------------------------------------------------------------------------------
@dataclass
class RunData:
    """What :func:`read_run` found in a run folder (None / empty where a piece is missing).

    Attributes:
        path: the run folder.
        task: the task (from ``model.yaml``, else the built-in named in ``config.yaml``).
        config: ``config.yaml`` parsed; config_text: as written.
        model: ``model.yaml`` parsed.
        metrics: ``metrics.json`` — ``{split: {metric: value}}``.
        history: ``history.csv``.
        predictions: ``{split: predictions/<split>.csv}`` in train / dev / test order.
        labels: the labels named in ``data.json``, loaded for the run's task.
        data: ``data.json``.
        notes: what was missing or could not be read.
    """

    path: Path
    task: Any = None
    config: dict[str, Any] | None = None
    config_text: str | None = None
    model: dict[str, Any] | None = None
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    history: pd.DataFrame | None = None
    predictions: dict[str, pd.DataFrame] = field(default_factory=dict)
    labels: Any = None
    data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _split_key(s: str) -> tuple[int, str]:
    return (_SPLIT_ORDER.index(s) if s in _SPLIT_ORDER else len(_SPLIT_ORDER), s)


def _read_predictions(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, dtype={"video_id": str, "prediction": str})
    if "video_id" not in df.columns:
        raise ValueError(f"{path}: no video_id column; found {list(df.columns)}")
    return df


def read_run(run_dir: str | Path) -> RunData:
    """Read the parts of a run folder that a report needs.

    Raises:
        FileNotFoundError: ``run_dir`` does not exist, or holds none of ``config.yaml``, ``metrics.json``,
            ``history.csv``, ``predictions/`` (it is not a run folder).
    """
    import yaml

    from affectfuse._config import make_config
    from affectfuse.tasks.spec import TaskSpec, get_task

    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"{run}: no such run folder (expected the --out folder of `affectfuse train`)")
    markers = ("config.yaml", "metrics.json", "history.csv", "predictions")
    if not any((run / m).exists() for m in markers):
        found = sorted(p.name for p in run.iterdir())[:12]
        raise FileNotFoundError(f"{run}: not an affectfuse run folder — it has none of {', '.join(markers)}; "
                                f"found {found or 'nothing'}. Pass the --out folder of `affectfuse train`.")
    rd = RunData(path=run)
    if (run / "config.yaml").exists():
        rd.config_text = (run / "config.yaml").read_text()
        try:
            rd.config = yaml.safe_load(rd.config_text) or {}
        except yaml.YAMLError as e:
            rd.notes.append(f"config.yaml could not be parsed: {e}")
    else:
        rd.notes.append("no config.yaml: the configuration is not shown")
    if (run / "model.yaml").exists():
        try:
            rd.model = yaml.safe_load((run / "model.yaml").read_text()) or {}
            if isinstance(rd.model.get("task"), dict):
                rd.task = make_config(TaskSpec, rd.model["task"]).validate()
        except Exception as e:  # noqa: BLE001 - a broken file becomes a note
            rd.notes.append(f"model.yaml could not be read ({type(e).__name__}: {e})")
    if rd.task is None and rd.config and rd.config.get("task") not in (None, "generic"):
        try:
            rd.task = get_task(str(rd.config["task"]))
        except KeyError:
            pass
    if rd.task is None:
        rd.notes.append("the task is unknown (no model.yaml): only metrics and training curves are shown")
    if (run / "metrics.json").exists():
        try:
            m = json.loads((run / "metrics.json").read_text())
            rd.metrics = {s: v for s, v in sorted(m.items(), key=lambda kv: _split_key(kv[0]))
                          if isinstance(v, dict) and all(isinstance(x, (int, float)) for x in v.values())}
        except json.JSONDecodeError as e:
            rd.notes.append(f"metrics.json could not be parsed: {e}")
    else:
        rd.notes.append("no metrics.json: the run has not finished its final evaluation")
    if (run / "history.csv").exists():
        try:
            h = pd.read_csv(run / "history.csv")
            rd.history = h if len(h) and "epoch" in h.columns else None
        except (pd.errors.EmptyDataError, pd.errors.ParserError) as e:
            rd.notes.append(f"history.csv could not be read: {e}")
    if rd.history is None:
        rd.notes.append("no training history (history.csv missing or empty): no training curves")
    pdir = run / "predictions"
    if pdir.is_dir():
        for f in sorted(pdir.glob("*.csv"), key=lambda p: _split_key(p.stem)):
            try:
                rd.predictions[f.stem] = _read_predictions(f)
            except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
                rd.notes.append(f"predictions/{f.name} skipped: {e}")
    if not rd.predictions:
        rd.notes.append("no predictions/<split>.csv: no prediction plots")
    if (run / "data.json").exists():
        try:
            rd.data = json.loads((run / "data.json").read_text())
        except json.JSONDecodeError as e:
            rd.notes.append(f"data.json could not be parsed: {e}")
    rd.labels = _load_run_labels(rd)
    return rd


def _load_run_labels(rd: RunData):
    from affectfuse.data.labels import load_labels
    from affectfuse.tasks.spec import TASKS

    src = rd.data.get("labels")
    if rd.task is None or not rd.predictions:
        return None
    if not src:
        rd.notes.append("data.json does not name the labels: plots that need the truth are skipped")
        return None
    if not Path(src).exists():
        rd.notes.append(f"the labels {src} are no longer there: plots that need the truth are skipped")
        return None
    builtin = rd.task.name if TASKS.get(rd.task.name) == rd.task else None
    try:
        lab = load_labels(src, builtin)
    except Exception as e:  # noqa: BLE001 - unreadable labels become a note
        rd.notes.append(f"the labels {src} could not be read ({type(e).__name__}: {e}): plots that need the truth "
                        f"are skipped")
        return None
    if list(lab.task.targets) != list(rd.task.targets) or lab.task.problem != rd.task.problem:
        rd.notes.append(f"the labels {src} are for targets {list(lab.task.targets)}, the run predicts "
                        f"{list(rd.task.targets)}: plots that need the truth are skipped")
        return None
    return lab


def merge_truth(pred: pd.DataFrame, labels, split: str, *, how: str = "inner") -> pd.DataFrame:
    """Predictions of one split with the true values next to them.

    The label columns are added as ``true_<target>`` (regression) or ``true_label`` (classification, class
    index), matched on ``video_id`` (and ``frame`` for frame-level predictions). ``how="inner"`` keeps
    labelled rows only; ``"left"`` keeps every prediction (NaN truth where unlabelled). Regression truth equal
    to the task's ignore value becomes NaN.
    """
    table = labels.table[labels.table["split"] == split].drop(columns=["split"])
    keys = ["video_id"] + (["frame"] if "frame" in pred.columns and "frame" in table.columns else [])
    truth = table.rename(columns={c: f"true_{c}" for c in labels.target_columns})
    left = pred.copy()
    left["video_id"] = left["video_id"].astype(str)
    if "frame" in keys:
        left = left[pd.to_numeric(left["frame"], errors="coerce").notna()]
        left["frame"] = left["frame"].astype(np.int64)
    merged = left.merge(truth, on=keys, how=how)
    ign = labels.task.ignore_value
    if not labels.task.is_classification and ign is not None:
        for t in labels.task.targets:
            merged.loc[merged[f"true_{t}"] == ign, f"true_{t}"] = np.nan
    return merged


def class_pairs(merged: pd.DataFrame, task) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, y_pred)`` class indices from a :func:`merge_truth` table of a classification run.

    The predicted class is the ``prediction`` column (a class name, or an index); without it, the argmax
    of the ``p_<class>`` columns. Rows whose truth is not a class ``0..K-1`` are left out.

    Raises:
        ValueError: a predicted class name is not one of the task's classes.
    """
    k = task.num_outputs
    t = pd.to_numeric(merged["true_label"], errors="coerce").to_numpy(dtype=np.float64)
    if "prediction" in merged.columns:
        idx = {c: i for i, c in enumerate(task.targets)}
        idx.update({c.lower(): i for i, c in enumerate(task.targets)})
        pred = []
        for v in merged["prediction"].astype(str):
            if v in idx or v.lower() in idx:
                pred.append(idx.get(v, idx.get(v.lower())))
            elif re.fullmatch(r"-?\d+(\.0+)?", v.strip()):
                pred.append(int(float(v)))
            else:
                raise ValueError(f"predicted class {v!r} is not one of {list(task.targets)}")
        p = np.asarray(pred, dtype=np.int64)
    else:
        cols = [f"p_{c}" for c in task.targets]
        missing = [c for c in cols if c not in merged.columns]
        if missing:
            raise ValueError(f"classification predictions need a 'prediction' column or {cols}; missing {missing}")
        p = merged[cols].to_numpy(dtype=np.float64).argmax(1)
    ok = np.isfinite(t) & (t >= 0) & (t < k)
    return t[ok].astype(np.int64), p[ok]


def split_confusion(run_dir: str | Path, split: str) -> np.ndarray:
    """The confusion matrix (rows = true, columns = predicted) a report draws for one split of a run.

    Raises:
        ValueError: the run is not a classification run, or the split has no predictions / labels.
    """
    rd = read_run(run_dir)
    if rd.task is None or not rd.task.is_classification:
        raise ValueError(f"{run_dir}: not a classification run")
    if split not in rd.predictions or rd.labels is None or split not in rd.labels.splits:
        raise ValueError(f"{run_dir}: split {split!r} has no predictions or no labels ({'; '.join(rd.notes)})")
    t, p = class_pairs(merge_truth(rd.predictions[split], rd.labels, split), rd.task)
    return plots.confusion_matrix(t, p, rd.task.num_outputs)


# -- run report -----------------------------------------------------------------------------------
def _metric_table(page: _Page, metrics: dict[str, dict[str, float]], first: Sequence[str] = ()) -> None:
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
    from affectfuse.tasks import metrics as M

    fn = {"pearson": M.pearson, "ccc": M.ccc, "mse": M.mse}.get(prefix)
    out: dict[str, dict[str, float]] = {}
    for split in sorted(set(rd.metrics) | set(merged), key=_split_key):
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


def _regression_section(rd: RunData, out: Path, page: _Page, notes: list[str], files: list[Path]) -> None:
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


def _classification_section(rd: RunData, out: Path, page: _Page, notes: list[str], files: list[Path]) -> None:
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
    m = run / "metrics.json"
    if not m.exists() or (run / "config.yaml").exists():
        return False
    try:
        d = json.loads(m.read_text())
    except json.JSONDecodeError:
        return False
    return isinstance(d, dict) and "seeds" in d and "per_seed" in d


def _seed_report(run: Path, out: Path) -> list[Path]:
    d = json.loads((run / "metrics.json").read_text())
    page = _Page(f"affectfuse multi-seed run: {run.name}")
    page.p(f"Folder: {run.resolve()}", "muted")
    files: list[Path] = []
    page.h2("Mean ± std over seeds " + ", ".join(str(s) for s in d.get("seeds", [])))
    mean, std = d.get("mean", {}), d.get("std", {})
    splits = sorted(mean, key=_split_key)
    # metric order as one seed's run wrote them (the summary's own order comes from a set)
    order = [m for per in (d.get("per_seed") or {}).values() for sp in per.values() for m in sp]
    names = sorted({m for s in splits for m in mean[s]},
                   key=lambda m: (order.index(m) if m in order else len(order), not m.startswith("mean"), m))
    page.table(["metric"] + splits, [[m] + [f"{mean[s][m]:.4f} ± {std.get(s, {}).get(m, float('nan')):.4f}"
                                            if m in mean[s] else None for s in splits] for m in names])
    if d.get("ensemble"):
        page.h2("Ensemble of the seeds (predictions averaged)")
        _metric_table(page, {s: d["ensemble"][s] for s in sorted(d["ensemble"], key=_split_key)})
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


def _training_section(rd: RunData, out: Path, page: _Page, files: list[Path]) -> None:
    sel, higher = _select(rd)
    f = plots.plot_training_curves(rd.history, out / "training_curves.png",
                                   metrics=rd.task.metrics if rd.task is not None else (), select=sel,
                                   higher_better=higher, title=f"training of {rd.path.resolve().name}")
    files.append(f)
    best, col = plots.best_epoch(rd.history, sel, higher)
    page.img(f.name, f"Per epoch: training loss, dev metrics, learning rate. Dashed red line: the kept epoch "
                     f"{best} (best {col}).")
    page.p(f"{len(rd.history)} epochs; kept epoch {best} (by {col}).", "muted")


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
    task = rd.task
    page = _Page(f"affectfuse run: {run.resolve().name}")
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

    page.h2("Metrics")
    if rd.metrics:
        _metric_table(page, rd.metrics, task.metrics if task is not None else ())
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


# -- predictions on new videos --------------------------------------------------------------------
_NOT_SCORES = {"time", "frame", "frames", "index", "face", "valid", "row", "x", "y", "w", "h", "x0", "y0", "x1", "y1",
               "left", "top", "right", "bottom", "width", "height", "fps", "duration"}


def _default_value_columns(frames: pd.DataFrame) -> list[str]:
    cols = []
    for c in frames.columns:
        name = str(c).lower()
        if name in _NOT_SCORES or name.startswith(("box", "bbox", "face_")) or name == "video_id":
            continue
        s = frames[c]
        if pd.api.types.is_bool_dtype(s) or not pd.api.types.is_numeric_dtype(s):
            continue
        cols.append(c)
    return cols


def _as_bool(col: pd.Series) -> np.ndarray:
    """A face column as bool: booleans, 0 / 1, or text such as "True" / "false" (from a CSV); missing = False."""
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return col.fillna(0).astype(bool).to_numpy()
    return col.astype(str).str.strip().str.lower().isin(("true", "1", "1.0", "yes", "y", "t")).to_numpy()


def prediction_report(frames: pd.DataFrame, out_dir, *, summary: pd.DataFrame | None = None,
                      title: str = "affectfuse predictions", value_columns: list[str] | None = None) -> Path:
    """An HTML report of predictions on new videos: one timeline per video and tables.

    Args:
        frames: one row per time step: ``video_id``, ``time`` (seconds), optionally ``face`` (bool, a face
            was found) and one numeric column per score (probabilities or intensities).
        out_dir: report folder (made when missing).
        summary: optional per-clip table, shown as it is.
        title: page title.
        value_columns: the score columns; default every numeric column except time / frame / face / valid, face
            detection columns (``face_*``, e.g. ``face_score``) and box coordinates (``box*``, ``bbox*``, ``x0``..
            ``y1``, ``left``.. ``height``).

    Returns:
        the path of ``index.html``; next to it ``timeline_<video>.png`` per video (no-face stretches shaded grey).

    Raises:
        ValueError: ``frames`` has no ``video_id`` column, or ``value_columns`` names a missing column.
    """
    if not isinstance(frames, pd.DataFrame):
        raise TypeError(f"prediction_report: frames must be a pandas DataFrame, got {type(frames).__name__}")
    if "video_id" not in frames.columns:
        raise ValueError(f"prediction_report: frames needs a video_id column; got {list(frames.columns)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols = list(value_columns) if value_columns is not None else _default_value_columns(frames)
    missing = [c for c in cols if c not in frames.columns]
    if missing:
        raise ValueError(f"prediction_report: value_columns {missing} are not columns of frames; it has "
                         f"{list(frames.columns)}")
    page = _Page(title)
    has_face = "face" in frames.columns
    has_time = "time" in frames.columns
    vids = list(pd.unique(frames["video_id"].astype(str)))
    page.p(f"{len(vids)} video(s), {len(frames)} rows, scores: {', '.join(map(str, cols)) or 'none'}.", "muted")
    if not has_time:
        page.note("no time column: rows are plotted in their order (x = row number)")
    if not cols:
        page.note("no numeric score column in the predictions: nothing to plot")
    if summary is not None:
        page.h2("Per clip")
        page.table(list(summary.columns), summary.itertuples(index=False, name=None))

    means: list[list[Any]] = []
    used: set[str] = set()
    plots_html: list[tuple[str, str]] = []
    vid_col = frames["video_id"].astype(str)
    for v in vids:
        g = frames[vid_col == v]
        if has_time:
            g = g.assign(_t=pd.to_numeric(g["time"], errors="coerce")).sort_values("_t", kind="stable")
            t = g["_t"].to_numpy(np.float64)
        else:
            t = np.arange(len(g), dtype=np.float64)
        face = _as_bool(g["face"]) if has_face else np.ones(len(g), bool)
        vals = g[cols].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64) if cols else np.zeros((len(g), 0))
        with np.errstate(all="ignore"):
            m = np.nanmean(vals[face], axis=0) if face.any() and cols else np.full(len(cols), np.nan)
        means.append([v, len(g), int(face.sum())] + m.tolist())
        if not cols:
            continue
        name = _safe_name(v)
        stem, k = f"timeline_{name}", 1
        while stem in used:
            k += 1
            stem = f"timeline_{name}_{k}"
        used.add(stem)
        f = plots.plot_timeline(t, vals, [str(c) for c in cols], out / f"{stem}.png", face=face if has_face else None,
                                title=f"{v}" + (f" — no face in {int((~face).sum())} of {len(face)} frames"
                                                if has_face and (~face).any() else ""))
        plots_html.append((f.name, f"{v}: scores over time" + ("; grey = no face found" if has_face else "")))

    page.h2("Per video: mean over frames with a face" if has_face else "Per video: mean over frames")
    page.table(["video", "frames", "face frames"] + [str(c) for c in cols], means)
    if plots_html:
        page.h2("Timelines")
        for src, cap in plots_html:
            page.img(src, cap)
    return page.write(out / "index.html")
