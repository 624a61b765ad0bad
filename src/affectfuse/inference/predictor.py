"""Predictions on new videos: ``predict(videos, run=None)``, the public entry of ``affectfuse predict``.

Without a run it is the offline default (:mod:`affectfuse.inference.offline`: face-api expression
probabilities per sampled frame and a summary per video) or, with ``preset="best"``, the published face and
voice affect models where their weights are present (:mod:`affectfuse.inference.preset`); with a run,
:func:`predict_videos`: decode → extract (as in training) → model → the run's recorded post-processing. Either
way the result is one :class:`~affectfuse.types.Prediction` plus the inputs that could not be scored.

The run records, per modality, the store key it was trained on and the identity of the extractor that made
it: the extractor's name, the keyword arguments it was created with and the sampling of its input (frames,
level, face detector, margin, no-face policy, fragment rule). :func:`predict_videos` recreates exactly those
extractors and that sampling, so the new features get the *same* store keys as the training features — a
mismatch (another extractor version, other parameters) is an error, never silently different features.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from affectfuse.extraction import ExtractConfig, ExtractReport, extract
from affectfuse.features.store import FeatureStore
from affectfuse.inference.offline import OFFLINE_CLASSES, Failure, format_summary, predict_offline, write_outputs
from affectfuse.inference.preset import (
    BEST_TABLE,
    PresetResult,
    check_preset,
    format_preset_summary,
    predict_best,
    write_preset_outputs,
)
from affectfuse.inference.run import Run, load_run, score_dataset, use_backend
from affectfuse.inference.seeds import select_runs
from affectfuse.io.inputs import list_inputs
from affectfuse.types import Prediction

__all__ = ["predict", "PredictResult", "predict_videos", "extraction_plan"]

#: keywords of ``predict`` that only ``preset="best"`` takes
_BEST_ONLY = {"voice_window", "voice_hop", "min_speech", "require_all", "models"}


def extraction_plan(run: Run) -> list[tuple[ExtractConfig, dict[str, str]]]:
    """The extraction configs that reproduce a run's features: [(config, {modality: expected key})].

    Modalities whose extractors used the same sampling share one config.

    Raises:
        ValueError: a modality's features were not made by ``affectfuse extract`` (imported features), so
            they cannot be recomputed from video.
    """
    groups: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, str]]] = {}
    for modality, feat in run.features.items():
        ident = feat.get("identity") or {}
        sampling = ident.get("sampling")
        if not ident.get("name") or sampling is None:
            raise ValueError(f"{run.path}: modality {modality!r} (key {feat.get('key')}) was not extracted from video by "
                             f"affectfuse (e.g. imported features); predict from a feature store instead (--features)")
        skey = repr(sorted(_flat(sampling).items()))
        g = groups.setdefault(skey, (sampling, {}, {}))
        g[1][ident["name"]] = ident.get("create_kwargs", {})
        g[2][modality] = feat["key"]
    plans = []
    for sampling, params, keys in groups.values():
        faces = sampling.get("faces", {})
        over: dict[str, Any] = {"extractors": tuple(params), "extractor_params": {k: v for k, v in params.items() if v},
                                "level": sampling.get("level", "clip")}
        if "frames" in sampling:
            over["frames"] = int(sampling["frames"])
        if "frame_step" in sampling:
            over["frame_step"] = int(sampling["frame_step"])
        if "frame_fps" in sampling:
            over["frame_fps"] = float(sampling["frame_fps"])
        if isinstance(sampling.get("audio"), dict):
            over["audio_window"] = float(sampling["audio"]["centred_window_s"])
        for src, dst in (("detector", "face_detector"), ("select", "face_select"), ("margin", "face_margin"),
                         ("no_face", "no_face"), ("max_side", "max_side")):
            if src in faces:
                over[dst] = faces[src]
        if "max_side" in sampling:
            over["max_side"] = sampling["max_side"]
        plans.append((ExtractConfig(**over).validate(), keys))
    return plans


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def predict_videos(videos: Iterable[str | Path], run: str | Path | Run, out_csv: str | Path | None = None, *,
                   features: str | Path | None = None, workers: int = 1, progress: bool = True,
                   log=print, backend: str = "torch") -> tuple[Prediction, ExtractReport]:
    """Predict with a trained run on media files; writes a CSV (per clip, or per frame for frame tasks).

    Args:
        videos: files, folders or lists (as ``affectfuse extract``).
        run: a run folder or a loaded :class:`Run`.
        out_csv: the predictions file (None: not written).
        features: a feature store to extract into and reuse (default: a temporary one).
        workers: decoding processes.
        log: where progress lines go.
        backend: what runs the model: ``"torch"``, ``"onnx"`` (ONNX Runtime, ``RUN/model.onnx``, exported when
            missing or made from other weights) or ``"auto"`` (ONNX where installed and exported, else torch).

    Returns:
        (the :class:`~affectfuse.types.Prediction`, post-processed as the run records, also written to
        ``out_csv`` in the :attr:`Prediction.RUN` layout; the extraction report). Videos that could not be read
        are listed in the report and have no rows.
    """
    run = use_backend(run, backend) if isinstance(run, Run) else load_run(run, backend=backend)
    pairs = list_inputs(list(videos), images=True)
    if run.is_raw:  # end-to-end model: frames and audio decoded per clip, no feature extraction
        ds = run.dataset(None, None, videos=dict(pairs), video_ids=[v for v, _ in pairs])
        report = ExtractReport()
        for line in ds.report:
            vid = line.split(":", 1)[0]
            report.failed.append((vid, "raw", line))
        return _write(run, ds, out_csv, log), report
    tmp = None
    if features is None:
        tmp = tempfile.TemporaryDirectory(prefix="affectfuse-predict-")
        features = tmp.name
    store = FeatureStore(features, create=True)
    report = ExtractReport()
    try:
        for cfg, keys in extraction_plan(run):
            rep = extract(pairs, store, cfg, workers=workers, progress=progress)
            report.done += rep.done
            report.skipped += rep.skipped
            report.failed += rep.failed
            report.warnings += rep.warnings
            report.keys.update(rep.keys)
            report.seconds += rep.seconds
            report.interrupted |= rep.interrupted
            for modality, key in keys.items():
                name = run.features[modality]["identity"]["name"]
                if rep.keys.get(name) != key:
                    raise ValueError(
                        f"modality {modality!r}: the run was trained on features {key}, but extracting with the recorded "
                        f"settings now gives {rep.keys.get(name)} (different extractor parameters or version)")
        keys = {m: f["key"] for m, f in run.features.items()}
        ok = [v for v, _ in pairs if any(store.has(v, k) for k in keys.values())]
        if not ok:
            raise ValueError("no video could be processed:\n" + report.text())
        return _write(run, run.dataset(None, None, store=store, video_ids=ok), out_csv, log), report
    finally:
        if tmp is not None:
            store.close()
            tmp.cleanup()


def value_columns(run: Run, pred: Prediction) -> "pd.DataFrame":
    """What each value column of a run's predictions holds: ``column, task, trained_range, output_range, note``.

    ``output_range`` is what the values are guaranteed to lie in (an activation or the recorded clipping), or
    ``unbounded``: raw regression outputs are not clipped to the targets' range (ViPER's intensities can come
    out below 0); ``trained_range`` is the range of the targets the run learnt.
    """
    out_rng, task = run.postprocess.output_range(), run.task
    trained = task.value_range if not task.is_classification else (0.0, 1.0)
    rows = []
    for name in pred.names:
        col = f"p_{name}" if pred.classification else name
        if out_rng is None:
            note = (f"raw regression output, not clipped: may fall outside {list(trained)} (clip it yourself, or "
                    f"train with a bounded loss such as mse_ce)") if trained else "raw regression output, not clipped"
        elif pred.classification:
            note = "class probability (softmax); `prediction` holds the argmax class"
        else:
            note = f"bounded by the run's post-processing ({run.postprocess.activation}, clip {run.postprocess.clip})"
        rows.append({"column": col, "task": task.name, "trained_range": "" if trained is None else list(trained),
                     "output_range": "unbounded" if out_rng is None else list(out_rng), "note": note})
    return pd.DataFrame(rows, columns=["column", "task", "trained_range", "output_range", "note"])


def _write_columns(run: Run, pred: Prediction, out_csv: str | Path) -> Path:
    out = Path(out_csv)
    path = out.with_name(out.stem + ".columns.csv")
    value_columns(run, pred).to_csv(path, index=False)
    return path


def _write(run: Run, ds, out_csv: str | Path, log) -> Prediction:
    pred, _ = score_dataset(run.model, ds, run.postprocess)
    if out_csv is not None:
        pred.write(out_csv, Prediction.RUN)
        cols = _write_columns(run, pred, out_csv)
        log(f"wrote {len(pred)} prediction rows for {len(ds.video_ids)} video(s) to {out_csv} (what each column "
            f"holds and its range: {cols})")
    return pred


def _predict_ensemble(videos: list, runs: list[Path], out_csv, *, features, log, **kw) -> tuple[Prediction, ExtractReport]:
    """The mean of several seeds' predictions (:meth:`Prediction.mean`); their features are extracted once into
    one store (the seeds of one configuration share the extractors)."""
    tmp = tempfile.TemporaryDirectory(prefix="affectfuse-predict-") if features is None else None
    try:
        preds, report = [], None
        for r in runs:
            p, rep = predict_videos(videos, r, None, features=features or tmp.name, log=log, **kw)
            preds.append(p)
            report = report or rep  # (the later seeds find the features stored: the same failures)
        pred = Prediction.mean(preds)
        if out_csv is not None:
            pred.write(out_csv, Prediction.RUN)
            _write_columns(load_run(runs[0]), pred, out_csv)
            log(f"wrote {len(pred)} prediction rows for {len(set(pred.video_ids))} video(s) to {out_csv} (the mean "
                f"of {len(runs)} seeds)")
        return pred, report
    finally:
        if tmp is not None:
            tmp.cleanup()


@dataclass
class PredictResult:
    """What :func:`predict` gives.

    Attributes:
        prediction: the offline default's per-frame expression table (:attr:`Prediction.FRAME_TABLE`; with
            ``preset="best"`` :data:`~affectfuse.inference.preset.BEST_TABLE`), or the run's predictions (one row
            per clip, or per frame for frame-level tasks; :attr:`Prediction.RUN`).
        failures: inputs that could not be scored, each with a message naming the file.
        summary: offline default: one row per video (``offline.SUMMARY_COLUMNS``); None with a run.
        written: the files written (``out=`` given).
        preset: with ``preset="best"``: the :class:`~affectfuse.inference.preset.PresetResult` (models found or
            missing, each column's model / licence / weights, sampling); None otherwise.
    """

    prediction: Prediction
    failures: list[Failure] = field(default_factory=list)
    summary: pd.DataFrame | None = None
    written: list[Path] = field(default_factory=list)
    preset: PresetResult | None = None

    @property
    def layout(self) -> Prediction.Layout:
        """The table layout of :attr:`prediction` (what :meth:`Prediction.to_frame` / ``write`` should use)."""
        if self.preset is not None:
            return BEST_TABLE
        return Prediction.FRAME_TABLE if self.summary is not None else Prediction.RUN

    def summary_text(self) -> str:
        """One line per video (offline default / preset); "" with a run."""
        if self.summary is None or not len(self.summary):
            return ""
        if self.preset is not None:
            return format_preset_summary(self.preset)
        return format_summary(self.summary)

    def text(self) -> str:
        """A few human-readable lines: the models found or missing (preset), one per video (offline default) or
        a count, then the failures."""
        lines = [s.line() for s in self.preset.models] if self.preset is not None else []
        lines += [self.summary_text()] if self.summary is not None and len(self.summary) else []
        if self.summary is None:
            lines.append(f"{len(self.prediction)} prediction rows for {len(set(self.prediction.video_ids))} video(s)")
        lines += [f"FAILED {f.video_id}: {f.message}" for f in self.failures]
        return "\n".join(lines)


def predict(videos: Iterable[str | Path] | str | Path, run: str | Path | Run | None = None, *,
            out: str | Path | None = None, json: bool = False, features: str | Path | None = None, workers: int = 1,
            fps: float = 5.0, progress: bool = True, log: Callable[[str], Any] = lambda *_: None,
            backend: str = "torch", seed: int | None = None, preset: str = "default", **offline: Any) -> PredictResult:
    """Score media files with a trained run, or without one with a preset: the offline default, or ``"best"``.

    Args:
        videos: files, folders (searched recursively) or CSV / .txt lists.
        run: a run folder (``affectfuse train --out``) or a loaded :class:`~affectfuse.inference.run.Run`.
        out: write the predictions to this CSV (offline default: also ``<stem>.summary.csv``).
        json: offline default: also write ``<stem>.json`` (per video: summary and frames).
        features: a feature store to extract into and keep (default: a temporary one).
        workers: processes that decode and detect faces (offline default: 1 = this process).
        fps: offline default: sampled frames per second.
        progress: progress bars on a terminal.
        log: where progress lines go.
        backend: with a run: ``"torch"``, ``"onnx"`` or ``"auto"`` (see :func:`predict_videos`).
        seed: ``run`` is a folder of ``train --seeds``: this seed's run only (default: the ensemble of every
            seed, the mean of their predictions).
        preset: without a run: ``"default"`` (the offline default) or ``"best"`` (published face and voice affect
            models where their weights are present, the offline default elsewhere; see
            :mod:`affectfuse.inference.preset`).
        **offline: without a run: ``window``, ``detector``, ``margin``, ``max_side`` (see
            :func:`~affectfuse.inference.offline.predict_offline`); with ``preset="best"`` also ``voice_window``,
            ``voice_hop``, ``min_speech``, ``require_all``, ``models`` (see
            :func:`~affectfuse.inference.preset.predict_best`).

    Returns:
        a :class:`PredictResult`.

    Raises:
        ValueError: bad parameters or an unknown preset, or (with a run) no video could be processed.
        FileNotFoundError: ``preset="best"`` with ``require_all=True`` and a published model is missing.
    """
    check_preset(preset)
    if run is None:
        if seed is not None:
            raise ValueError(f"seed={seed} chooses one run of a folder of `train --seeds` (predict with a run)")
        if backend != "torch":
            raise ValueError(f"backend={backend!r} chooses what runs a trained run's model (predict with a run); the "
                             "offline default's extractors pick their own (ONNX Runtime where installed)")
        if preset == "best":
            res = predict_best(videos, fps=fps, workers=workers, progress=progress, features=features, log=log,
                               **offline)
            written = write_preset_outputs(res, out, json_out=json) if out is not None else []
            return PredictResult(res.prediction(), res.failures, res.summary, written, preset=res)
        only_best = sorted(set(offline) & _BEST_ONLY)
        if only_best:
            raise ValueError(f"{', '.join(only_best)} apply to preset='best'")
        frames, summary, failures = predict_offline(videos, fps=fps, workers=workers, progress=progress,
                                                    features=features, **offline)
        pred = Prediction.from_frame(frames, Prediction.FRAME_TABLE, names=list(OFFLINE_CLASSES), classification=True)
        written = write_outputs(frames, summary, failures, out, json_out=json, fps=fps) if out is not None else []
        return PredictResult(pred, failures, summary, written)
    if offline or json or preset != "default":
        given = sorted(offline) + (["json"] if json else []) + ([f"preset={preset!r}"] if preset != "default" else [])
        raise ValueError(f"{', '.join(given)} apply to predicting without a run (the offline default / a preset)")
    videos = [videos] if isinstance(videos, (str, Path)) else list(videos)
    paths = dict(list_inputs(videos, images=True))
    runs = [run] if isinstance(run, Run) else select_runs(run, seed)
    if len(runs) == 1:
        pred, report = predict_videos(videos, runs[0], out, features=features, workers=workers, progress=progress,
                                      log=log, backend=backend)
    else:
        pred, report = _predict_ensemble(videos, runs, out, features=features, workers=workers, progress=progress,
                                         log=log, backend=backend)
    failures, seen = [], set()
    for vid, _, msg in report.failed:
        if vid not in seen:
            seen.add(vid)
            failures.append(Failure(vid, str(paths.get(vid, "")), msg))
    return PredictResult(pred, failures, None, [Path(out)] if out is not None else [])
