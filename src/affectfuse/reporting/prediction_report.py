"""The HTML report of predictions on new videos (:func:`prediction_report`): a timeline per video with no-face
stretches shaded, and per-video means; with :class:`AffectColumn` curves, dimensional affect (valence, arousal)
on the same time axis below the expression timeline, each curve labelled with its model and licence; with a
:class:`HeatmapColumns` panel, per-frame values such as action-unit probabilities as a heat-map below them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from affectfuse._paths import unique_names
from affectfuse.reporting import plots
from affectfuse.reporting.html import Page

__all__ = ["prediction_report", "AffectColumn", "HeatmapColumns"]


@dataclass(frozen=True)
class AffectColumn:
    """A dimensional-affect column drawn below the expression timeline by :func:`prediction_report`.

    Attributes:
        column: its column in ``frames``.
        label: legend text: the dimension, its model and licence (``"face valence — hsemotion-... (Apache-2.0)"``).
        side: ``"left"`` (the -1..1 scale: face valence / arousal) or ``"right"`` (0..1: voice arousal / valence).
        time_column: the column holding the time each value belongs to when it is not the row's own ``time``
            (e.g. the centre of the audio window a voice value comes from); the curve is then drawn once per
            distinct time, not as a staircase over the frames.
        color: a matplotlib colour (default: by order), e.g. one per dimension for face and voice alike.
        style: a matplotlib line style (default: solid on the left, dashed on the right), e.g. ``"-."`` for a
            second model on the same side.
    """

    column: str
    label: str
    side: str = "left"
    time_column: str | None = None
    color: str | None = None
    style: str | None = None


@dataclass(frozen=True)
class HeatmapColumns:
    """Per-frame columns drawn as one heat-map under the valence / arousal panel by :func:`prediction_report`
    (e.g. the 20 action-unit probabilities of py-feat's model).

    Attributes:
        columns: its columns in ``frames`` (one heat-map row each, top to bottom).
        names: the row labels (default: the columns).
        label: the panel's title: what, its model and licence.
        vmin / vmax: the colour scale (probabilities: 0..1).
    """

    columns: Sequence[str]
    names: Sequence[str] | None = None
    label: str = ""
    vmin: float = 0.0
    vmax: float = 1.0


def _curve(g: pd.DataFrame, t: np.ndarray, a: AffectColumn) -> plots.Curve:
    y = pd.to_numeric(g[a.column], errors="coerce").to_numpy(np.float64)
    if a.time_column is None:
        return plots.Curve(a.label, t, y, a.side, a.color, a.style)
    x = pd.to_numeric(g[a.time_column], errors="coerce").to_numpy(np.float64)
    keep = np.isfinite(x)
    x, y = x[keep], y[keep]
    x, first = np.unique(x, return_index=True)  # one point per window, in time order
    return plots.Curve(a.label, x, y[first], a.side, a.color, a.style)


def _heat(g: pd.DataFrame, h: HeatmapColumns) -> plots.Heatmap:
    v = g[list(h.columns)].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    return plots.Heatmap(list(h.names or h.columns), v, h.label, h.vmin, h.vmax)


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
                      title: str = "affectfuse predictions", value_columns: list[str] | None = None,
                      failures: Sequence[Any] = (), affect: Sequence[AffectColumn] = (),
                      provenance: Sequence[Sequence[Any]] = (), notes: Sequence[str] = (),
                      heatmap: HeatmapColumns | None = None, caption: str | None = None) -> Path:
    """An HTML report of predictions on new videos: one timeline per video and tables.

    Args:
        frames: one row per time step: ``video_id``, ``time`` (seconds), optionally ``face`` (bool, a face
            was found) and one numeric column per score (probabilities or intensities).
        out_dir: report folder (made when missing).
        summary: optional per-clip table, shown as it is.
        title: page title.
        failures: inputs that could not be scored (objects with ``video_id``, ``path``, ``message``, such as
            :class:`~affectfuse.inference.offline.Failure`), listed first so that none goes unnoticed.
        value_columns: the score columns; default every numeric column except time / frame / face / valid, face
            detection columns (``face_*``, e.g. ``face_score``) and box coordinates (``box*``, ``bbox*``, ``x0``..
            ``y1``, ``left``.. ``height``).
        affect: dimensional columns drawn on the same time axis below the expression timeline (one figure per
            video, :func:`~affectfuse.reporting.plots.plot_affect_timeline`); left out of the default
            ``value_columns``.
        provenance: rows ``(column, model, licence, weights)`` shown as a table: which model made each column.
        notes: lines shown first (e.g. which published models were missing and how to get them).
        heatmap: per-frame columns drawn as a heat-map on the same time axis below the valence / arousal panel
            (e.g. action-unit probabilities); left out of the default ``value_columns``.
        caption: the caption of each video's figure when ``affect`` or ``heatmap`` is given (the video id is put
            in front); default: which panel shows what.

    Returns:
        the path of ``index.html``; next to it ``timeline_<video>.png`` per video (no-face stretches shaded grey).

    Raises:
        ValueError: ``frames`` has no ``video_id`` column, or ``value_columns`` / ``affect`` names a missing
            column.
    """
    if not isinstance(frames, pd.DataFrame):
        raise TypeError(f"prediction_report: frames must be a pandas DataFrame, got {type(frames).__name__}")
    if "video_id" not in frames.columns:
        raise ValueError(f"prediction_report: frames needs a video_id column; got {list(frames.columns)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots.use_script_fonts()  # ids in any script: drawn where a font for it is installed
    affect = list(affect)
    dims = {a.column for a in affect} | {a.time_column for a in affect if a.time_column}
    dims |= set(heatmap.columns) if heatmap is not None else set()
    cols = (list(value_columns) if value_columns is not None
            else [c for c in _default_value_columns(frames) if c not in dims])
    missing = [c for c in cols if c not in frames.columns]
    if missing:
        raise ValueError(f"prediction_report: value_columns {missing} are not columns of frames; it has "
                         f"{list(frames.columns)}")
    missing = sorted(c for c in dims if c not in frames.columns)
    if missing:
        raise ValueError(f"prediction_report: affect / heatmap columns {missing} are not columns of frames; it has "
                         f"{list(frames.columns)}")
    page = Page(title)
    for line in notes:
        page.note(line)
    has_face = "face" in frames.columns
    has_time = "time" in frames.columns
    vids = list(pd.unique(frames["video_id"].astype(str)))
    page.p(f"{len(vids)} video(s), {len(frames)} rows, scores: {', '.join(map(str, cols)) or 'none'}"
           + (f"; {len(failures)} input(s) failed" if failures else "") + ".", "muted")
    if failures:
        page.h2(f"Inputs that failed ({len(failures)})")
        page.note("these inputs have no scores below; the message says what was wrong with each file")
        page.table(["input", "file", "what was wrong"],
                   [[f.video_id, getattr(f, "path", ""), f.message] for f in failures])
    if not has_time:
        page.note("no time column: rows are plotted in their order (x = row number)")
    if not cols:
        page.note("no numeric score column in the predictions: nothing to plot")
    if provenance:
        page.h2("Models and licences")
        page.table(["column(s)", "model", "licence", "weights"], provenance)
    if summary is not None:
        page.h2("Per clip")
        page.table(list(summary.columns), summary.itertuples(index=False, name=None))

    means: list[list[Any]] = []
    plots_html: list[tuple[str, str]] = []
    vid_col = frames["video_id"].astype(str)
    names = unique_names(vids)  # ids are free text: never a path out of the folder (see _paths)
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
        stem = f"timeline_{names[v]}"
        head = f"{v}" + (f" — no face in {int((~face).sum())} of {len(face)} frames" if has_face and (~face).any()
                         else "")
        if affect or heatmap is not None:
            extra = {"heat": _heat(g, heatmap)} if heatmap is not None else {}
            f = plots.plot_affect_timeline(t, vals, [str(c) for c in cols], [_curve(g, t, a) for a in affect],
                                           out / f"{stem}.png", face=face if has_face else None, title=head, **extra)
            cap = f"{v}: " + (caption or (
                "expressions (top) and valence / arousal (below) on one time axis; face on the left scale (solid), "
                "voice on the right scale (dashed)" + ("; per-frame values as a heat-map at the bottom"
                                                       if heatmap is not None else "")))
        else:
            f = plots.plot_timeline(t, vals, [str(c) for c in cols], out / f"{stem}.png",
                                    face=face if has_face else None, title=head)
            cap = f"{v}: scores over time"
        plots_html.append((f.name, cap + ("; grey = no face found" if has_face else "")))

    page.h2("Per video: mean over frames with a face" if has_face else "Per video: mean over frames")
    page.table(["video", "frames", "face frames"] + [str(c) for c in cols], means)
    if plots_html:
        page.h2("Timelines")
        for src, cap in plots_html:
            page.img(src, cap)
    return page.write(out / "index.html")
