"""The expression classifier: architecture, training, save/load, label resolution."""
from __future__ import annotations

import pytest
import torch

from facegan_kit.apps.classifier import (
    build_classifier, evaluate, fit, load_classifier, predict, resolve_labels, save_classifier,
)
from facegan_kit.errors import CheckpointError, InputError

SPEC = {"type": "conv-encoder", "image_size": 16, "z_dim": 8, "channels": [4, 8]}


def _toy(n=96, seed=0):
    """Six classes told apart by which of six image regions is bright (uint8 images)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 6
    x = torch.randint(0, 60, (n, 3, 16, 16), generator=g, dtype=torch.uint8)
    for i, k in enumerate(y.tolist()):
        r, c = divmod(k, 3)
        x[i, :, r * 8:(r + 1) * 8, c * 5:(c + 1) * 5] = 250
    return x, y


def test_architecture_is_the_encoder_plus_one_fc():
    torch.set_num_threads(1)
    clf = build_classifier(SPEC, seed=0)
    assert type(clf.encoder).__name__ == "ConvEncoder"
    assert isinstance(clf.fc, torch.nn.Linear) and clf.fc.in_features == 8 and clf.fc.out_features == 6
    assert clf(torch.zeros(2, 3, 16, 16)).shape == (2, 6)


def test_fit_learns_and_round_trips(tmp_path):
    torch.set_num_threads(1)
    x, y = _toy()
    clf = build_classifier(SPEC, seed=0)
    hist = fit(clf, x, y, epochs=25, batch_size=16, lr=3e-3, seed=0)
    assert hist[-1] < hist[0]
    acc = evaluate(clf, *_toy(48, seed=1))
    assert acc > 0.6
    path = save_classifier(clf, tmp_path / "c" / "clf.safetensors", info={"accuracy": acc})
    assert path.with_suffix(".json").is_file()
    again = load_classifier(path)
    assert again.info["accuracy"] == acc
    assert torch.equal(predict(again, x), predict(clf, x))
    # bigger inputs are resized to the encoder's size
    big = torch.nn.functional.interpolate(x.float(), size=32).to(torch.uint8)
    assert predict(clf, big).shape == (len(x),)


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_classifier(tmp_path / "none.safetensors")
    clf = build_classifier(SPEC)
    path = save_classifier(clf, tmp_path / "c.safetensors")
    path.with_suffix(".json").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_classifier(path)
    with pytest.raises(InputError):
        save_classifier(clf, tmp_path / "c.pt")


def test_resolve_labels():
    x = torch.zeros(3, 3, 16, 16)
    assert resolve_labels(x, "Happy").tolist() == [3, 3, 3]
    with pytest.raises(InputError, match="--classifier"):
        resolve_labels(x)
    with pytest.raises(InputError, match="six"):
        resolve_labels(x, "neutral")
    clf = build_classifier(SPEC, seed=0)
    assert resolve_labels(x, classifier=clf).shape == (3,)
