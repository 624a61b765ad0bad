"""A seed-style extraction pipeline, as ViPER's scripts do it, with affectfuse's backbones (the baseline of
``benchmarks/extract.py --compare``; not a test).

Stage by stage, each a separate pass over files on disk, as ``get_frame.py`` / ``crop_images.py`` /
``extract_*_features.py`` do:

1. frames: OpenCV reads each video sequentially and writes the ViPER frames as JPEG;
2. faces: the JPEGs are read back, faces detected (the same MediaPipe detector), crops written as JPEG;
3. one pass per extractor, in batches of 16, eager PyTorch (``backend="torch"``): MobileNetV2 on the frames,
   face-api on the crops;
4. audio: the track written to a 16 kHz WAV (PyAV), read back, cut into ViPER's fragments, GE2E in eager PyTorch.

Run as a child process by ``extract.py``: ``python seed_style.py FOLDER OUT.json [every]``; prints nothing, writes
the wall time and the seconds per stage. ``every``: every frame of each video (frame level, Aff-Wild2 style) and a
1 s audio window centred on each frame, instead of ViPER's 32 rows.
"""

from __future__ import annotations

import json
import sys
import time
import wave
from pathlib import Path

import numpy as np

_BATCH = 16


def main(folder: Path, out_json: Path, every: bool = False) -> None:
    import av
    import cv2
    import torch

    from affectfuse.extractors import ExtractorInput, create_extractor
    from affectfuse.io.faces import create_face_detector, crop_faces, detect_faces, letterbox
    from affectfuse.io.inputs import list_inputs
    from affectfuse.io.sampling import audio_fragments, centred_windows, clip_indices
    from affectfuse.types import FrameBatch

    torch.set_num_threads(2)
    t_start = time.perf_counter()
    sec: dict[str, float] = {}

    def timed(stage, fn, *a):
        t = time.perf_counter()
        r = fn(*a)
        sec[stage] = sec.get(stage, 0.0) + time.perf_counter() - t
        return r

    work = out_json.parent / "seed_work"
    videos = list_inputs([folder])
    det = create_face_detector("default")
    mobilenet = create_extractor("mobilenetv2_imagenet", backend="torch", batch_size=_BATCH).load()
    faceapi = create_extractor("faceapi_expression", backend="torch", batch_size=_BATCH).load()
    ge2e = create_extractor("resemblyzer_ge2e", backend="torch", batch_size=_BATCH).load()
    sec["load"] = time.perf_counter() - t_start

    def get_frames(vid, path):  # get_frame.py: sequential OpenCV read, keep the sampled indices, JPEG out
        cap = cv2.VideoCapture(str(path))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        keep = set(range(n)) if every else set(clip_indices(n, 32)[0].tolist())
        d = work / "frames" / vid
        d.mkdir(parents=True, exist_ok=True)
        i = 0
        while True:
            ok, img = cap.read()
            if not ok:
                break
            if i in keep:
                cv2.imwrite(str(d / f"frame_{i}.jpg"), img)
            i += 1
        cap.release()

    def read_jpegs(d):
        files = sorted(d.glob("*.jpg"), key=lambda p: int(p.stem.split("_")[1]))
        return files, [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files]

    def crop(vid):  # crop_images.py: read the frames back, detect, write the crops
        files, imgs = read_jpegs(work / "frames" / vid)
        d = work / "crops" / vid
        d.mkdir(parents=True, exist_ok=True)
        for s in range(0, len(imgs), 64):
            chunk = np.stack(imgs[s : s + 64])
            fb = detect_faces(FrameBatch(chunk, np.zeros(len(chunk)), np.arange(len(chunk)), np.ones(len(chunk), bool)), det)
            crops = crop_faces(fb, size=112, margin=0.25)
            for f, img, ok in zip(files[s : s + 64], crops.pixels, crops.valid):
                if ok:
                    cv2.imwrite(str(d / f.name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))

    def features(ex, folder_name, vid, size, box):  # extract_*_features.py: one extractor, batches of 16
        files, imgs = read_jpegs(work / folder_name / vid)
        if not imgs:
            return np.zeros((0, ex.dim), np.float32)
        arr = np.stack([letterbox(i, size) if box else cv2.resize(i, (size, size)) for i in imgs])
        return np.concatenate([ex(ExtractorInput(images=arr[s : s + _BATCH])).values for s in range(0, len(arr), _BATCH)])

    def audio(vid, path):  # the track through a WAV file, read back, fragments, GE2E
        d = work / "wav"
        d.mkdir(parents=True, exist_ok=True)
        wav = d / f"{vid}.wav"
        with av.open(str(path)) as c:
            if not c.streams.audio:
                return None
            res = av.AudioResampler(format="s16", layout="mono", rate=16000)
            chunks = [f.to_ndarray().reshape(-1) for fr in c.decode(audio=0) for f in res.resample(fr)]
        with wave.open(str(wav), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(np.concatenate(chunks).astype(np.int16).tobytes())
        with wave.open(str(wav), "rb") as w:
            x = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768.0
        cap = cv2.VideoCapture(str(path))
        n, fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS)
        cap.release()
        if every:
            frag = centred_windows(x, 16000, np.arange(n) / fps, length=1.0)
        else:
            frag = audio_fragments(x, 16000, clip_indices(n, 32)[0] / fps)
        return ge2e(ExtractorInput(audio=frag.samples, audio_lengths=frag.lengths, valid=frag.valid)).values

    for vid, path in videos:
        timed("decode", get_frames, vid, path)
    for vid, _ in videos:
        timed("faces", crop, vid)
    for vid, _ in videos:
        timed("mobilenetv2_imagenet", features, mobilenet, "frames", vid, 224, True)
    for vid, _ in videos:
        timed("faceapi_expression", features, faceapi, "crops", vid, 112, False)
    for vid, path in videos:
        timed("resemblyzer_ge2e", audio, vid, path)
    json.dump({"wall": time.perf_counter() - t_start, "seconds": sec, "videos": len(videos)}, open(out_json, "w"))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), every=len(sys.argv) > 3 and sys.argv[3] == "every")
