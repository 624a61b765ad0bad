"""Evaluation metrics (numpy) and the challenges' post-processing.

Each metric equals its usual reference (tested against scipy / scikit-learn to 1e-6):

* :func:`pearson` — ``scipy.stats.pearsonr`` (ViPER / MuSe-Reaction: mean over the 7 emotions);
* :func:`ccc` — concordance correlation with population (biased) statistics (Aff-Wild2 VA, JMT);
* :func:`macro_f1` — ``sklearn.metrics.f1_score(average="macro")``; without ``labels`` the classes are those
  present in the true or predicted labels (sklearn's default, what ABAW evaluation code calls);
* :func:`accuracy` — fraction correct;
* :func:`uar` — unweighted average recall over the classes present in the truth
  (``sklearn.metrics.balanced_accuracy_score``).

Degenerate input (fewer than two values, a constant series) gives 0.0, never NaN or an exception: a model
that predicts a constant has no correlation with the truth, which is how a score table should read it.

:func:`compute_metrics` gives every metric of a task by name; :func:`smooth_predictions` is JMT's valence /
arousal post-processing (``scipy.ndimage.uniform_filter1d``, windows 20 / 50, after clipping to [-1, 1]),
implemented here in numpy so that scipy stays a test-only dependency.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from affectfuse.tasks.spec import TASKS, TaskSpec, get_task

__all__ = ["pearson", "ccc", "mse", "macro_f1", "accuracy", "uar", "compute_metrics", "smooth_predictions"]


def _pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"metric: predictions and targets differ in length: {x.shape[0]} vs {y.shape[0]}")
    return x, y


def pearson(x, y) -> float:
    """Pearson correlation of two 1-D series; 0.0 when either is constant or shorter than 2."""
    x, y = _pair(x, y)
    if x.size < 2:
        return 0.0
    dx, dy = x - x.mean(), y - y.mean()
    sx, sy = np.sqrt((dx * dx).sum()), np.sqrt((dy * dy).sum())
    # constant series (allowing for rounding in the mean): no correlation is defined -> 0.0
    if not (np.isfinite(sx) and np.isfinite(sy)) or sx <= _flat(x) or sy <= _flat(y):
        return 0.0
    return float(np.clip((dx * dy).sum() / (sx * sy), -1.0, 1.0))


def _flat(x: np.ndarray) -> float:
    """Spread below which a series counts as constant (rounding noise of its mean)."""
    return 1e-12 * np.sqrt(x.size) * max(float(np.abs(x).max()), 1e-300)


def ccc(x, y) -> float:
    """Concordance correlation coefficient ``2 cov / (var_x + var_y + (mean_x - mean_y)^2)``.

    Population statistics (divide by N). 0.0 when the denominator vanishes (both series constant and equal).
    """
    x, y = _pair(x, y)
    if x.size == 0:
        return 0.0
    mx, my = x.mean(), y.mean()
    vx, vy = x.var(), y.var()
    cov = ((x - mx) * (y - my)).mean()
    den = vx + vy + (mx - my) ** 2
    if not np.isfinite(den) or den <= 0.0:
        return 0.0
    return float(2.0 * cov / den)


def mse(x, y) -> float:
    """Mean squared error (0.0 for empty input)."""
    x, y = _pair(x, y)
    return float(((x - y) ** 2).mean()) if x.size else 0.0


def _labels_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true).ravel()
    p = np.asarray(y_pred).ravel()
    if t.shape != p.shape:
        raise ValueError(f"metric: predictions and targets differ in length: {p.shape[0]} vs {t.shape[0]}")
    return t, p


def accuracy(y_true, y_pred) -> float:
    """Fraction of equal labels (0.0 for empty input)."""
    t, p = _labels_pair(y_true, y_pred)
    return float((t == p).mean()) if t.size else 0.0


def macro_f1(y_true, y_pred, labels: Sequence | None = None) -> float:
    """Unweighted mean of per-class F1.

    Args:
        labels: classes to average over; None = classes present in ``y_true`` or ``y_pred``. A class with
            no true and no predicted sample scores 0 (sklearn's ``zero_division=0``).
    """
    t, p = _labels_pair(y_true, y_pred)
    classes = np.unique(np.concatenate([t, p])) if labels is None else np.asarray(list(labels))
    if classes.size == 0:
        return 0.0
    f1 = []
    for c in classes:
        tp = np.sum((t == c) & (p == c))
        denom = np.sum(t == c) + np.sum(p == c)
        f1.append(0.0 if denom == 0 else 2.0 * tp / denom)
    return float(np.mean(f1))


def uar(y_true, y_pred) -> float:
    """Unweighted average recall: mean over the classes present in ``y_true`` of their recall."""
    t, p = _labels_pair(y_true, y_pred)
    classes = np.unique(t)
    if classes.size == 0:
        return 0.0
    return float(np.mean([np.mean(p[t == c] == c) for c in classes]))


# -- by task -----------------------------------------------------------------------------------------
def _regression_arrays(task: TaskSpec, preds, targets, mask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k = task.num_outputs
    p = np.asarray(preds, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    if p.shape != t.shape or p.shape[-1] != k:
        raise ValueError(f"compute_metrics({task.name!r}): predictions {p.shape} and targets {t.shape} must both "
                         f"be (..., {k}) for targets {list(task.targets)}")
    valid = np.isfinite(t) & np.isfinite(p)
    if task.ignore_value is not None:
        valid &= t != task.ignore_value
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape == t.shape[:-1]:
            m = m[..., None]
        elif m.shape != t.shape:
            raise ValueError(f"compute_metrics({task.name!r}): mask {m.shape} must be {t.shape[:-1]} or {t.shape}")
        valid &= m
    return p.reshape(-1, k), t.reshape(-1, k), valid.reshape(-1, k)


def _classification_arrays(task: TaskSpec, preds, targets, mask) -> tuple[np.ndarray, np.ndarray]:
    k = task.num_outputs
    p = np.asarray(preds)
    t = np.asarray(targets)
    if p.shape == t.shape + (k,):
        p = p.argmax(-1)  # logits / scores → class indices
    elif p.shape != t.shape:
        raise ValueError(f"compute_metrics({task.name!r}): predictions {p.shape} must be class indices shaped like "
                         f"the targets {t.shape} or scores {t.shape + (k,)}")
    p, t = p.reshape(-1).astype(np.int64), t.reshape(-1).astype(np.int64)
    valid = (t >= 0) & (t < k)
    if task.ignore_value is not None:
        valid &= t != int(task.ignore_value)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool).reshape(-1)
    return p[valid], t[valid]


def _per_target(fn, p: np.ndarray, t: np.ndarray, v: np.ndarray) -> list[float]:
    return [fn(p[v[:, j], j], t[v[:, j], j]) for j in range(p.shape[1])]


def compute_metrics(task: "str | TaskSpec", preds, targets, mask=None) -> dict[str, float]:
    """Every metric of a task, by name.

    Args:
        task: a built-in task name or a :class:`TaskSpec`.
        preds: regression ``(N, K)`` / ``(B, T, K)`` values; classification class indices shaped like the
            targets, or scores / logits with an extra K axis (argmax is taken).
        targets: regression ``(N, K)`` / ``(B, T, K)`` float; classification int class indices.
        mask: optional bool, True where a row (or, for regression, an entry) counts. Entries equal to the
            task's ``ignore_value`` (Aff-Wild2: -5 for VA, -1 for EXPR) and non-finite targets never count.

    Returns:
        reaction → ``mean_pearson`` and ``pearson_<Emotion>``; va → ``mean_ccc``, ``ccc_valence``,
        ``ccc_arousal``; expr → ``macro_f1``, ``accuracy``; group → ``accuracy``, ``uar``; other regression
        tasks → ``mean_pearson``, ``mean_ccc``, ``mse`` and ``pearson_/ccc_/mse_<target>``; other
        classification tasks → ``accuracy``, ``macro_f1``, ``uar``. Every name in ``task.metrics`` is present.
    """
    task = get_task(task)
    builtin = TASKS.get(task.name) == task
    out: dict[str, float] = {}
    if task.problem == "regression":
        p, t, v = _regression_arrays(task, preds, targets, mask)
        if builtin and task.name == "reaction":
            r = _per_target(pearson, p, t, v)
            out["mean_pearson"] = float(np.mean(r))
            out.update({f"pearson_{n}": x for n, x in zip(task.targets, r)})
        elif builtin and task.name == "va":
            c = _per_target(ccc, p, t, v)
            out["mean_ccc"] = float(np.mean(c))
            out.update({f"ccc_{n}": x for n, x in zip(task.targets, c)})
        else:
            r, c, e = (_per_target(f, p, t, v) for f in (pearson, ccc, mse))
            out.update(mean_pearson=float(np.mean(r)), mean_ccc=float(np.mean(c)), mse=float(np.mean(e)))
            for n, a, b, d in zip(task.targets, r, c, e):
                out.update({f"pearson_{n}": a, f"ccc_{n}": b, f"mse_{n}": d})
    else:
        p, t = _classification_arrays(task, preds, targets, mask)
        if builtin and task.name == "expr":
            out.update(macro_f1=macro_f1(t, p), accuracy=accuracy(t, p))
        elif builtin and task.name == "group":
            out.update(accuracy=accuracy(t, p), uar=uar(t, p))
        else:
            out.update(accuracy=accuracy(t, p), macro_f1=macro_f1(t, p), uar=uar(t, p))
    missing = [m for m in task.metrics if m not in out]
    if missing:
        raise ValueError(f"task {task.name!r} asks for metric(s) {missing}; a {task.problem} task provides "
                         f"{sorted(out)}")
    return out


# -- post-processing ---------------------------------------------------------------------------------
def smooth_predictions(values, windows: int | Sequence[int], clip: tuple[float, float] | None = None,
                       mode: str = "reflect") -> np.ndarray:
    """Moving average along time, per column, with ``scipy.ndimage.uniform_filter1d`` semantics.

    ``mode`` ``"reflect"`` (``d c b a | a b c d | d c b a``, default) or ``"constant"`` (zeros outside the
    video, what JMT's ``val.py`` uses: the first and last frames are pulled towards 0), origin 0: for window
    ``w`` row ``i`` averages rows ``i - w // 2`` .. ``i + (w - 1) - w // 2``. JMT smooths one video's valence with 20 and arousal with 50
    after clipping to [-1, 1]: ``smooth_predictions(va, (20, 50), clip=(-1, 1))``. Smooth each video
    separately.

    Args:
        values: ``(T, K)`` (or ``(T,)``) predictions of one video in time order.
        windows: one window for every column, or one per column (1 = unchanged).
        clip: optional (low, high) applied before smoothing.

    Shape:
        values ``(T, K)`` → ``(T, K)`` float64.
    """
    x = np.asarray(values, dtype=np.float64)
    squeeze = x.ndim == 1
    if squeeze:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"smooth_predictions: values must be (T, K), got {x.shape}")
    if mode not in ("reflect", "constant"):
        raise ValueError(f"smooth_predictions: mode must be 'reflect' or 'constant', got {mode!r}")
    if clip is not None:
        x = np.clip(x, clip[0], clip[1])
    k = x.shape[1]
    ws = [int(windows)] * k if np.isscalar(windows) else [int(w) for w in windows]
    if len(ws) != k or min(ws, default=1) < 1:
        raise ValueError(f"smooth_predictions: need one window >= 1 per column ({k}), got {windows}")
    out = np.empty_like(x)
    for j, w in enumerate(ws):
        if w == 1 or x.shape[0] == 0:
            out[:, j] = x[:, j]
            continue
        left = w // 2
        right = w - 1 - left
        padded = np.pad(x[:, j], (left, right), mode="symmetric" if mode == "reflect" else "constant")  # (T+w-1,)
        c = np.concatenate([[0.0], np.cumsum(padded)])
        out[:, j] = (c[w:] - c[:-w]) / w
    return out[:, 0] if squeeze else out
