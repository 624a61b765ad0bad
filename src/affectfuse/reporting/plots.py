"""Figures of a report (matplotlib, Agg backend, written straight to PNG) and the numbers behind them.

Every plotting function takes plain arrays / tables, writes one PNG and returns its path; none of them
reads a run folder (that is :mod:`affectfuse.reporting.html`). Figures are built on a bare
``matplotlib.figure.Figure`` — no pyplot state, nothing shown, nothing left open.

The numbers drawn are computed here so that they can be checked:

* :func:`confusion_matrix` — counts, rows = true class, columns = predicted class
  (``sklearn.metrics.confusion_matrix(y_true, y_pred, labels=range(K))``);
* :func:`normalize_rows` — each row divided by its total (the recall of each class on the diagonal);
* :func:`per_class_f1` — F1 of each class from a confusion matrix (NaN for a class that is neither in
  the truth nor predicted, which sklearn scores 0 with ``zero_division=0``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from affectfuse.tasks.metrics import pearson

__all__ = [
    "confusion_matrix",
    "normalize_rows",
    "per_class_f1",
    "best_epoch",
    "plot_training_curves",
    "plot_metric_bars",
    "plot_scatter_grid",
    "plot_time_series",
    "plot_confusion",
    "plot_f1_bars",
    "plot_timeline",
    "plot_affect_timeline",
    "Curve",
    "Heatmap",
    "use_script_fonts",
]

_DPI = 110

#: fonts with other scripts (CJK, Arabic, Devanagari ...) that titles fall back to, glyph by glyph, after
#: DejaVu Sans, where they are installed (video ids and class names are free text)
SCRIPT_FONTS = ("Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans CJK KR", "Source Han Sans", "WenQuanYi Zen Hei",
                "IPAexGothic", "IPAGothic", "Hiragino Sans", "PingFang SC", "Microsoft YaHei", "Malgun Gothic",
                "Noto Sans Arabic", "Noto Sans Hebrew", "Noto Sans Devanagari", "Noto Sans Thai", "Noto Sans")


def use_script_fonts() -> list[str]:
    """Add the installed :data:`SCRIPT_FONTS` to matplotlib's sans-serif list after its first font, so that a
    title in another script is drawn instead of boxes (matplotlib falls back glyph by glyph along that list);
    returns the fonts added. Only installed fonts are named (a missing one would log a warning per figure)."""
    import matplotlib
    from matplotlib import font_manager

    have = {f.name for f in font_manager.fontManager.ttflist}
    current = list(matplotlib.rcParams["font.sans-serif"])
    add = [f for f in SCRIPT_FONTS if f in have and f not in current]
    if add:
        matplotlib.rcParams["font.sans-serif"] = current[:1] + add + current[1:]
    return add


# -- numbers --------------------------------------------------------------------------------------
def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Confusion counts of class indices.

    Args:
        y_true: true class indices ``0..K-1``.
        y_pred: predicted class indices, same length.
        n_classes: K.

    Returns:
        ``(K, K)`` int64: entry ``[i, j]`` counts samples of true class i predicted as j.

    Raises:
        ValueError: lengths differ, or an index is outside ``0..K-1``.

    Shape:
        y_true ``(N,)``, y_pred ``(N,)`` → ``(K, K)``.
    """
    t = np.asarray(y_true).ravel()
    p = np.asarray(y_pred).ravel()
    if t.shape != p.shape:
        raise ValueError(f"confusion_matrix: {t.size} true labels but {p.size} predictions")
    if n_classes < 1:
        raise ValueError(f"confusion_matrix: n_classes must be >= 1, got {n_classes}")
    if t.size:
        t = t.astype(np.int64)
        p = p.astype(np.int64)
        for name, a in (("true label", t), ("prediction", p)):
            bad = (a < 0) | (a >= n_classes)
            if bad.any():
                raise ValueError(f"confusion_matrix: {name} {int(a[bad][0])} is not a class index 0..{n_classes - 1}")
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (t.astype(np.int64), p.astype(np.int64)), 1)
    return cm


def normalize_rows(cm: np.ndarray) -> np.ndarray:
    """Each row of a confusion matrix divided by its sum; rows without samples stay 0.

    Shape:
        ``(K, K)`` → ``(K, K)`` float64.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tot = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, tot, out=np.zeros_like(cm), where=tot > 0)


def per_class_f1(cm: np.ndarray) -> np.ndarray:
    """F1 of each class, ``2 TP / (true count + predicted count)``; NaN where both counts are 0.

    Shape:
        ``(K, K)`` → ``(K,)`` float64.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    denom = cm.sum(axis=1) + cm.sum(axis=0)
    return np.divide(2.0 * tp, denom, out=np.full(tp.shape, np.nan), where=denom > 0)


def best_epoch(history, select: str | None, higher_better: bool = True) -> tuple[int | None, str | None]:
    """The epoch the training loop kept, re-derived from ``history.csv``.

    The loop keeps the first epoch with the best ``dev_<select>`` (or, without dev metrics, the lowest
    training loss). Returns ``(epoch number as written in the history, column used)``, or ``(None, None)``.
    """
    if history is None or len(history) == 0 or "epoch" not in history.columns:
        return None, None
    col = f"dev_{select}" if select else None
    if col and col in history.columns and history[col].notna().any():
        v = history[col].to_numpy(dtype=np.float64)
        v = np.where(np.isfinite(v), v, -np.inf if higher_better else np.inf)
        i = int(np.argmax(v) if higher_better else np.argmin(v))
        return int(history["epoch"].iloc[i]), col
    if "train_loss" in history.columns and history["train_loss"].notna().any():
        v = history["train_loss"].to_numpy(dtype=np.float64)
        i = int(np.nanargmin(v))
        return int(history["epoch"].iloc[i]), "train_loss"
    return None, None


# -- figure helpers -------------------------------------------------------------------------------
def _figure(w: float, h: float, layout: str | None = "constrained"):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=_DPI, layout=layout)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=_DPI, facecolor="white")
    return path


def _colors(n: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(n, max_cols)
    return int(np.ceil(n / cols)), cols


# -- training -------------------------------------------------------------------------------------
def plot_training_curves(history, path: str | Path, *, metrics: Sequence[str] = (), select: str | None = None,
                         higher_better: bool = True, title: str = "Training") -> Path:
    """Training loss, dev metrics and learning rate per epoch, with the kept (best) epoch marked.

    Args:
        history: ``history.csv`` as a DataFrame (``epoch``, ``train_loss``, ``lr``, ``dev_<metric>`` ...).
        path: PNG to write.
        metrics: dev metric names to draw (without ``dev_``); default: every ``dev_mean_*`` column, or the
            first six ``dev_`` columns when there is none.
        select: the model-selection metric (marks the best epoch); None = lowest training loss.
        higher_better: direction of ``select``.
    """
    h = history
    ep = h["epoch"].to_numpy()
    dev_cols = [c for c in h.columns if c.startswith("dev_")]
    cols = [f"dev_{m}" for m in metrics if f"dev_{m}" in h.columns]
    if not cols:
        cols = [c for c in dev_cols if c.startswith("dev_mean")] or dev_cols[:6]
    if select and f"dev_{select}" in h.columns and f"dev_{select}" not in cols:
        cols.insert(0, f"dev_{select}")
    best, best_col = best_epoch(h, select, higher_better)
    has_lr = "lr" in h.columns and h["lr"].notna().any()
    panels = 1 + bool(cols) + has_lr
    fig = _figure(4.2 * panels, 3.4)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    mk = "o" if len(ep) <= 30 else None
    ax = axes[0]
    if "train_loss" in h.columns:
        ax.plot(ep, h["train_loss"], marker=mk, ms=4, color="C0", label="train loss")
    ax.set_title("training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    i = 1
    if cols:
        ax = axes[i]
        for c, col in zip(_colors(len(cols)), cols):
            ax.plot(ep, h[col], marker=mk, ms=4, color=c, label=col[4:])
        ax.set_title("dev metrics")
        ax.set_xlabel("epoch")
        ax.set_ylabel("score")
        i += 1
    if has_lr:
        ax = axes[i]
        ax.plot(ep, h["lr"], marker=mk, ms=4, color="0.3")
        lr = h["lr"].to_numpy(dtype=np.float64)
        if np.all(lr > 0) and lr.max() / lr.min() > 20:
            ax.set_yscale("log")
        ax.set_title("learning rate")
        ax.set_xlabel("epoch")
        ax.set_ylabel("lr")
    if best is not None:
        row = h.index[h["epoch"] == best][0]
        for k, a in enumerate(axes):
            a.axvline(best, color="crimson", ls="--", lw=1, label=f"best epoch {best}" if k == 0 else None)
        target_ax = axes[0] if best_col == "train_loss" else axes[1]
        target_ax.plot([best], [h.loc[row, best_col]], marker="*", ms=14, color="crimson", zorder=5)
    for a in axes:
        a.grid(alpha=0.3)
        if len(ep) <= 12:
            a.set_xticks(ep)
    axes[0].legend(fontsize=8)
    if cols:
        axes[1].legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


# -- regression -----------------------------------------------------------------------------------
def plot_metric_bars(values: dict[str, dict[str, float]], path: str | Path, *, metric: str = "Pearson",
                     targets: Sequence[str] | None = None, title: str = "") -> Path:
    """Grouped bars: one group per target, one bar per split (ViPER's per-emotion figure).

    Args:
        values: ``{split: {target: value}}``.
        metric: y-axis label (e.g. ``"Pearson r"``, ``"CCC"``, ``"F1"``).
        targets: order of the groups (default: first split's keys).
    """
    splits = list(values)
    names = list(targets) if targets is not None else list(next(iter(values.values()), {}))
    n, s = len(names), max(len(splits), 1)
    fig = _figure(max(5.0, 0.9 * n * max(1, s / 2) + 1.5), 3.8)
    ax = fig.subplots()
    width = 0.8 / s
    x = np.arange(n)
    lo, hi = 0.0, 0.0
    for k, (split, c) in enumerate(zip(splits, _colors(s))):
        v = np.array([values[split].get(t, np.nan) for t in names], dtype=np.float64)
        mean = np.nanmean(v) if np.isfinite(v).any() else np.nan
        lab = f"{split} (mean {mean:.3f})" if np.isfinite(mean) else split
        ax.bar(x - 0.4 + width * (k + 0.5), np.nan_to_num(v), width, color=c, label=lab,
               hatch=None if np.isfinite(v).all() else "//")
        if np.isfinite(v).any():
            lo, hi = min(lo, np.nanmin(v)), max(hi, np.nanmax(v))
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, names, rotation=30 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_ylabel(metric)
    pad = 0.08 * max(hi - lo, 0.1)
    ax.set_ylim(lo - pad, hi + pad)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or f"{metric} per target")
    return _save(fig, path)


def plot_scatter_grid(y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str], path: str | Path, *,
                      value_range: tuple[float, float] | None = None, title: str = "") -> Path:
    """Predicted vs true, one small panel per target with its Pearson r in the title (ViPER figs. 2-3).

    Non-finite pairs are left out per target. The dashed line is y = x.

    Shape:
        y_true ``(N, K)``, y_pred ``(N, K)`` with K = len(names).
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape or t.ndim != 2 or t.shape[1] != len(names):
        raise ValueError(f"plot_scatter_grid: true {t.shape} and predicted {p.shape} must both be (N, {len(names)})")
    rows, cols = _grid(len(names))
    w, h = 2.8 * cols + 0.3, 2.7 * rows + 0.5
    fig = _figure(w, h, layout=None)  # fixed margins: constrained layout doubles the cost of a large grid
    fig.subplots_adjust(left=0.75 / w, right=1 - 0.1 / w, bottom=0.5 / h, top=1 - 0.6 / h, wspace=0.35, hspace=0.4)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for j, (ax, name) in enumerate(zip(axes, names)):
        ok = np.isfinite(t[:, j]) & np.isfinite(p[:, j])
        x, y = t[ok, j], p[ok, j]
        ax.scatter(x, y, s=10, alpha=0.6, color="C0", edgecolors="none")
        bounds = list(value_range or ()) + ([x.min(), x.max(), y.min(), y.max()] if x.size else [])
        lo, hi = (float(min(bounds)), float(max(bounds))) if bounds else (0.0, 1.0)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        pad = 0.03 * (hi - lo)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], ls="--", color="0.5", lw=1)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_aspect("equal")
        ax.set_title(f"{name}  r = {pearson(x, y):.3f}" if x.size else f"{name}  (no data)", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if j % cols == 0:
            ax.set_ylabel("predicted", fontsize=8)
        if j >= len(names) - cols:
            ax.set_xlabel("true", fontsize=8)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.suptitle(title or "predicted vs true")
    return _save(fig, path)


def plot_time_series(videos: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]], names: Sequence[str],
                     path: str | Path, *, xlabel: str = "time (s)", value_range: tuple[float, float] | None = None,
                     title: str = "") -> Path:
    """Frame-level prediction vs truth over time: one row per video, one column per target.

    Args:
        videos: ``[(video_id, x (T,), truth (T, K), prediction (T, K))]``; NaN truth = unlabelled frame.
        names: the K target names.
        xlabel: what ``x`` is (seconds or frame index).
    """
    rows, k = len(videos), len(names)
    fig = _figure(4.6 * k, 2.2 * rows + 0.6)
    axes = fig.subplots(rows, k, squeeze=False)
    for r, (vid, x, tru, pre) in enumerate(videos):
        for j, name in enumerate(names):
            ax = axes[r, j]
            ax.plot(x, tru[:, j], color="black", lw=1.4, label="truth")
            ax.plot(x, pre[:, j], color=f"C{j % 10}", lw=1.2, alpha=0.9, label="prediction")
            if value_range is not None:
                ax.set_ylim(value_range[0] - 0.05, value_range[1] + 0.05)
            ax.set_title(f"{vid} — {name}", fontsize=9)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
            if r == rows - 1:
                ax.set_xlabel(xlabel, fontsize=8)
            if j == 0:
                ax.set_ylabel("value", fontsize=8)
            if r == 0:
                ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(title or "prediction vs truth over time")
    return _save(fig, path)


# -- classification -------------------------------------------------------------------------------
def plot_confusion(cm: np.ndarray, classes: Sequence[str], path: str | Path, *, title: str = "") -> Path:
    """Confusion matrix as counts (left) and row-normalised (right, recall on the diagonal)."""
    cm = np.asarray(cm)
    k = len(classes)
    norm = normalize_rows(cm)
    side = max(3.6, 0.5 * k + 1.8)
    fig = _figure(2 * side + 0.8, side + 0.4)
    axes = fig.subplots(1, 2)
    small = 8 if k <= 8 else 6
    for ax, mat, what, fmt in ((axes[0], cm, "counts", "d"), (axes[1], norm, "row-normalised", ".2f")):
        im = ax.imshow(mat, cmap="Blues", vmin=0, vmax=(mat.max() if what == "counts" and mat.max() > 0 else 1))
        thr = (mat.max() if mat.max() > 0 else 1) / 2
        for i in range(k):
            for j in range(k):
                v = mat[i, j]
                ax.text(j, i, format(int(v) if fmt == "d" else float(v), fmt), ha="center", va="center",
                        fontsize=small, color="white" if v > thr else "black")
        ax.set_xticks(range(k), classes, rotation=45, ha="right", fontsize=small)
        ax.set_yticks(range(k), classes, fontsize=small)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(what, fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(title or "confusion matrix")
    return _save(fig, path)


def plot_f1_bars(f1: dict[str, np.ndarray], classes: Sequence[str], path: str | Path, *, title: str = "") -> Path:
    """Per-class F1 as grouped bars, one bar per split (``{split: (K,) F1}``, NaN = class absent)."""
    return plot_metric_bars({s: dict(zip(classes, np.asarray(v, dtype=np.float64).tolist())) for s, v in f1.items()},
                            path, metric="F1", targets=list(classes), title=title or "F1 per class")


# -- predictions on new videos --------------------------------------------------------------------
def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Start / end (inclusive) indices of the True stretches of a bool array."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    d = np.diff(m.astype(np.int8))
    return list(zip(np.nonzero(d == 1)[0], np.nonzero(d == -1)[0] - 1))


def _draw_scores(ax, t: np.ndarray, v: np.ndarray, names: Sequence[str], face: np.ndarray | None) -> None:
    """Score curves of one video on ``ax``, stretches without a face shaded grey (0..1 axis for probabilities)."""
    mk = "o" if len(t) <= 40 else None
    for j, (name, c) in enumerate(zip(names, _colors(len(names)))):
        ax.plot(t, v[:, j], color=c, lw=1.4, marker=mk, ms=3, label=name)
    if face is not None and len(t):
        f = np.asarray(face, bool)
        dt = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
        first = True
        for a, b in _runs(~f):
            ax.axvspan(t[a] - dt / 2, t[b] + dt / 2, color="0.6", alpha=0.35, lw=0,
                       label="no face" if first else None)
            first = False
    fin = v[np.isfinite(v)]
    if fin.size == 0 or (fin.min() >= 0.0 and fin.max() <= 1.0):  # probabilities / intensities: the full 0..1 axis
        ax.set_ylim(-0.03, 1.03)


def _check_timeline(times, values, names) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    if v.shape[0] != t.shape[0] or v.shape[1] != len(names):
        raise ValueError(f"plot_timeline: values {v.shape} must be ({t.shape[0]}, {len(names)})")
    return t, v


def plot_timeline(times: np.ndarray, values: np.ndarray, names: Sequence[str], path: str | Path, *,
                  face: np.ndarray | None = None, title: str = "", ylabel: str = "score") -> Path:
    """Scores of one video over time; stretches without a face shaded grey.

    Args:
        times: seconds of each row (sorted).
        values: one column per score.
        names: score names (legend).
        face: bool per row, False where no face was found (shaded); None = every row has a face.

    Shape:
        times ``(T,)``, values ``(T, K)``, face ``(T,)``.
    """
    t, v = _check_timeline(times, values, names)
    fig = _figure(9.0, 3.6)
    ax = fig.subplots()
    _draw_scores(ax, t, v, names, face)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title(title)
    return _save(fig, path)


@dataclass(frozen=True)
class Curve:
    """One dimensional-affect curve of :func:`plot_affect_timeline`.

    Attributes:
        label: legend text (the dimension, its model and licence).
        times: seconds of each value.
        values: the values; NaN = none there (the line breaks).
        side: ``"left"`` (the left axis' scale, e.g. face valence in -1..1) or ``"right"`` (e.g. voice in 0..1).
        color: a matplotlib colour (default: by order).
        style: a matplotlib line style (default: solid on the left, dashed on the right), e.g. ``"-."`` for a
            second model on the same side.

    Shape:
        times ``(T,)``, values ``(T,)``.
    """

    label: str
    times: np.ndarray
    values: np.ndarray
    side: str = "left"
    color: str | None = None
    style: str | None = None


@dataclass(frozen=True)
class Heatmap:
    """Per-row values drawn as a heat-map under :func:`plot_affect_timeline` (e.g. action-unit probabilities).

    Attributes:
        names: one per row of the map (y tick labels, top to bottom).
        values: one row per expression row of the figure (its times), one column per name; NaN = none (grey).
        label: the panel's title (what, its model and licence).
        vmin / vmax: the colour scale.

    Shape:
        values ``(T, K)`` with K = len(names).
    """

    names: Sequence[str]
    values: np.ndarray
    label: str = ""
    vmin: float = 0.0
    vmax: float = 1.0


def _edges(t: np.ndarray) -> np.ndarray:
    """Cell edges around sorted times: half-way between neighbours, half a step beyond the ends."""
    if len(t) == 0:
        return np.zeros(1)
    if len(t) == 1:
        return np.array([t[0] - 0.1, t[0] + 0.1])
    mid = 0.5 * (t[1:] + t[:-1])
    return np.concatenate([[t[0] - (mid[0] - t[0])], mid, [t[-1] + (t[-1] - mid[-1])]])


def _draw_heatmap(fig, ax, t: np.ndarray, heat: Heatmap) -> None:
    import matplotlib

    h = np.asarray(heat.values, np.float64)
    if h.shape != (len(t), len(heat.names)):
        raise ValueError(f"plot_affect_timeline: heat-map values {h.shape} must be ({len(t)}, {len(heat.names)})")
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.82")  # no value (no face): grey, as shaded above
    k = len(heat.names)
    im = ax.pcolormesh(_edges(t), np.arange(k + 1), np.ma.masked_invalid(h.T), cmap=cmap, vmin=heat.vmin,
                       vmax=heat.vmax, shading="flat")
    ax.set_ylim(k, 0)  # the first name on top
    ax.set_yticks(np.arange(k) + 0.5, [str(n) for n in heat.names], fontsize=7 if k <= 24 else 6)
    ax.tick_params(axis="y", length=0)
    ax.set_title(heat.label, fontsize=8, loc="left")
    cax = ax.inset_axes((1.012, 0.0, 0.012, 1.0))  # just right of the map, in the margin the axes above leave
    fig.colorbar(im, cax=cax).ax.tick_params(labelsize=7)


def _aligned_limits(curves: Sequence[Curve], left: tuple[float, float], right: tuple[float, float]
                    ) -> tuple[tuple[float, float], tuple[float, float]]:
    """Limits of the two axes, mapped linearly onto each other (``left`` ↔ ``right``) and widened to the data."""
    scale = (right[1] - right[0]) / (left[1] - left[0])
    to_left = lambda r: left[0] + (r - right[0]) / scale  # noqa: E731
    lo, hi = left
    for c in curves:
        v = np.asarray(c.values, np.float64)
        v = v[np.isfinite(v)]
        if v.size:
            a, b = (v.min(), v.max()) if c.side == "left" else (to_left(v.min()), to_left(v.max()))
            lo, hi = min(lo, float(a)), max(hi, float(b))
    pad = 0.04 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    return (lo, hi), (right[0] + (lo - left[0]) * scale, right[0] + (hi - left[0]) * scale)


def plot_affect_timeline(times: np.ndarray, values: np.ndarray, names: Sequence[str], curves: Sequence[Curve],
                         path: str | Path, *, face: np.ndarray | None = None, title: str = "",
                         left: tuple[str, float, float] = ("face: valence / arousal", -1.0, 1.0),
                         right: tuple[str, float, float] = ("voice: arousal / valence", 0.0, 1.0),
                         heat: Heatmap | None = None) -> Path:
    """Expression scores over time (top, as :func:`plot_timeline`) and dimensional affect on the same time axis
    below: ``left``-side curves on the left axis, ``right``-side ones on the right, the two scales aligned so that
    ``left``'s range meets ``right``'s (by default face -1..1 beside voice 0..1: 0 on the left is 0.5 on the right).
    Face stretches without a face are shaded grey in both panels. With ``heat``, a third panel on the same time
    axis below them: a heat-map of per-row values (e.g. action-unit probabilities), one row per name.

    Args:
        times: seconds of each expression row (sorted).
        values: expression scores, one column per name.
        names: expression names (legend).
        curves: the dimensional curves, each at its own times.
        face: bool per expression row, False where no face was found; None = every row has a face.
        left / right: ``(axis label, low, high)`` of each side's nominal range.
        heat: a :class:`Heatmap` at the expression rows' times, or None.

    Shape:
        times ``(T,)``, values ``(T, K)``, face ``(T,)``; each curve ``(T_c,)``; heat values ``(T, H)``.
    """
    t, v = _check_timeline(times, values, names)
    for c in curves:
        if c.side not in ("left", "right") or np.shape(c.times) != np.shape(c.values):
            raise ValueError(f"plot_affect_timeline: curve {c.label!r}: side must be 'left' or 'right' and times / "
                             f"values the same shape; got {c.side!r}, {np.shape(c.times)} / {np.shape(c.values)}")
    if heat is None:
        fig = _figure(10.0, 6.4)
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(1.0, 1.0))
    else:
        fig = _figure(10.0, 6.9 + 0.13 * len(heat.names))
        top, bottom, hax = fig.subplots(3, 1, sharex=True,
                                        height_ratios=(1.0, 1.0, max(0.5, 0.05 * len(heat.names))))
    _draw_scores(top, t, v, names, face)
    top.set_ylabel("expression")
    top.grid(alpha=0.3)
    top.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    top.set_title(title)
    twin = bottom.twinx()
    (llo, lhi), (rlo, rhi) = _aligned_limits(curves, left[1:], right[1:])
    bottom.set_ylim(llo, lhi)
    twin.set_ylim(rlo, rhi)
    bottom.axhline(0.5 * (left[1] + left[2]), color="0.5", lw=0.8, ls=":")
    if face is not None and len(t):
        dt = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
        for a, b in _runs(~np.asarray(face, bool)):
            bottom.axvspan(t[a] - dt / 2, t[b] + dt / 2, color="0.6", alpha=0.25, lw=0)
    colors = _colors(len(curves))
    handles = []
    for c, col in zip(curves, colors):
        ax = bottom if c.side == "left" else twin
        x, y = np.asarray(c.times, np.float64), np.asarray(c.values, np.float64)
        mk = "o" if len(x) <= 60 and c.style is None else None  # a curve with its own style: no dots on it
        ls = c.style or ("-" if c.side == "left" else "--")
        (h,) = ax.plot(x, y, color=c.color or col, lw=1.5, ls=ls, marker=mk, ms=3, label=c.label)
        handles.append(h)
    blank = [c.label.split(" — ")[0] for c in curves if not np.isfinite(np.asarray(c.values, np.float64)).any()]
    if not curves or blank:
        bottom.text(0.99, 0.03, f"no values: {', '.join(blank)}" if curves else "no valence / arousal model ran",
                    transform=bottom.transAxes, ha="right", va="bottom", color="0.35", fontsize=8)
    bottom.set_ylabel(f"{left[0]} ({left[1]:g}..{left[2]:g})", fontsize=8)
    twin.set_ylabel(f"{right[0]} ({right[1]:g}..{right[2]:g})", fontsize=8)
    bottom.grid(alpha=0.3)
    if heat is None:
        bottom.set_xlabel("time (s)")
    else:
        _draw_heatmap(fig, hax, t, heat)
        hax.set_xlabel("time (s)")
    if handles:
        bottom.legend(handles=handles, fontsize=7, loc="upper left",
                      bbox_to_anchor=(0.0, -0.22 if heat is None else -0.06), ncol=1, frameon=False)
    return _save(fig, path)
