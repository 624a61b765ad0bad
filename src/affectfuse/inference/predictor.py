"""Predictions on new videos with a trained run: decode → extract (as in training) → model → CSV.

The run records, per modality, the store key it was trained on and the identity of the extractor that made
it: the extractor's name, the keyword arguments it was created with and the sampling of its input (frames,
level, face detector, margin, no-face policy, fragment rule). :func:`predict_videos` recreates exactly those
extractors and that sampling, so the new features get the *same* store keys as the training features — a
mismatch (another extractor version, other parameters) is an error, never silently different features.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from affectfuse.data.dataset import FeatureDataset
from affectfuse.features.store import FeatureStore
from affectfuse.pipeline import ExtractConfig, ExtractReport, extract, list_inputs
from affectfuse.training.loop import Run, _smooth, _write_predictions, load_run, predict_dataset

__all__ = ["predict_videos", "extraction_plan"]


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


def predict_videos(videos: Iterable[str | Path], run: str | Path | Run, out_csv: str | Path, *,
                   features: str | Path | None = None, workers: int = 1, progress: bool = True,
                   log=print) -> tuple[dict[str, Any], ExtractReport]:
    """Predict with a trained run on media files; writes a CSV (per clip, or per frame for frame tasks).

    Args:
        videos: files, folders or lists (as ``affectfuse extract``).
        run: a run folder or a loaded :class:`Run`.
        out_csv: the predictions file.
        features: a feature store to extract into and reuse (default: a temporary one).
        workers: decoding processes.

    Returns:
        (the prediction arrays, the extraction report). Videos that could not be read are listed in the
        report and have no rows.
    """
    run = run if isinstance(run, Run) else load_run(run)
    pairs = list_inputs(list(videos))
    if run.is_raw:  # end-to-end model: frames and audio decoded per clip, no feature extraction
        from affectfuse.training.loop import _raw_dataset

        ds = _raw_dataset(run.config, None, dict(pairs), run.model, None, task=run.task,
                          video_ids=[v for v, _ in pairs])
        report = ExtractReport()
        for line in ds.report:
            vid = line.split(":", 1)[0]
            report.failed.append((vid, "raw", line))
        res = predict_dataset(run.model, ds, act=run.activation)
        _write_predictions(Path(out_csv), run.task, res)
        log(f"wrote {len(res['preds'])} prediction rows for {len(ds)} video(s) to {out_csv}")
        return res, report
    tmp = None
    if features is None:
        tmp = tempfile.TemporaryDirectory(prefix="affectfuse-predict-")
        features = tmp.name
    store = FeatureStore(features)
    report = ExtractReport()
    try:
        for cfg, keys in extraction_plan(run):
            rep = extract(pairs, store, cfg, workers=workers, progress=progress)
            report.done += rep.done
            report.failed += rep.failed
            report.warnings += rep.warnings
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
        ds = FeatureDataset(store, None, None, keys, video_ids=ok, task=run.task, seq_len=run.config.seq_len,
                            standardizer=run.standardizer)
        res = predict_dataset(run.model, ds, act=run.activation)
        _smooth(res, run.config.smoothing, run.task)
        _write_predictions(Path(out_csv), run.task, res)
        log(f"wrote {len(res['preds'])} prediction rows for {len(ok)} video(s) to {out_csv}")
        return res, report
    finally:
        if tmp is not None:
            store.close()
            tmp.cleanup()


