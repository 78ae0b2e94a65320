"""Real-face scores: judge ceilings on the real photos, neutral-photo edits, Fisherfaces identity."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facegan_kit.data.base import to_float
from facegan_kit.data.synthetic import SyntheticConfig, make_dataset
from facegan_kit.eval.metrics import REAL_KEYS, check_metrics
from facegan_kit.eval.real import fisherfaces_identification, identity_ceilings, morph_rho_ceiling, roundtrip
from facegan_kit.eval.suite import evaluate

torch.set_num_threads(1)


def test_identity_ceilings_pair_only_different_expressions_of_one_person():
    vecs = np.array([[0.0, 0.0], [0.3, 0.0], [1.0, 0.0], [1.0, 0.5]])
    subject = np.array([0, 0, 1, 1])
    expression = np.array([3, 4, 3, 3])  # person 1's two photos share an expression: not a pair
    out = identity_ceilings(vecs, subject, expression)
    assert out["ceiling_identity_same_person_median"] == pytest.approx(0.3)
    assert out["ceiling_identity_same_person_rate_under_0.6"] == 1.0
    other = sorted([1.0, math.hypot(1, 0.5), 0.7, math.hypot(0.7, 0.5)])
    assert out["ceiling_identity_other_people_median"] == pytest.approx((other[1] + other[2]) / 2)


def test_roundtrip_loses_detail_only_when_sizes_differ():
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(roundtrip(x, 32), x)
    trip = roundtrip(x, 8)
    assert trip.shape == x.shape and (trip - x).abs().mean() > 0.05


class _BrightnessJudge:
    """A stand-in expression judge: 'angry' grows with brightness, 'disgust' fades with it."""

    def probs(self, x):
        b = x.mean(dim=(1, 2, 3))
        p = torch.full((len(x), 7), 0.1)
        p[:, 0], p[:, 1] = 1 + b, 1 - b
        return p / p.sum(1, keepdim=True)


def test_morph_ceiling_orders_a_fade_from_the_persons_own_neutral_photo():
    dark, bright = torch.full((3, 4, 4), -1.0), torch.full((3, 4, 4), 1.0)
    # person 0: a neutral photo, then angry and disgust photos (both bright); person 1: no neutral
    images = torch.stack([dark, bright, bright, bright])
    subject, expression = torch.tensor([0, 0, 0, 1]), torch.tensor([6, 0, 1, 0])
    notes: list[str] = []
    out = morph_rho_ceiling(images, subject, expression, _BrightnessJudge(), notes)
    assert out["ceiling_intensity_rho_morph_per_class"] == {"angry": pytest.approx(1.0), "disgust": pytest.approx(-1.0)}
    assert out["ceiling_intensity_rho_morph"] == pytest.approx(0.0)  # person 1's photo had no fade
    assert notes == []
    none = morph_rho_ceiling(images[1:], subject[1:], expression[1:], _BrightnessJudge(), notes)
    assert none["ceiling_intensity_rho_morph"] is None and "neutral" in notes[0]


@pytest.fixture(scope="module")
def faces():
    ds = make_dataset(SyntheticConfig(subjects=6, size=32, frames=4, test_subjects=1, background="plain"))
    return to_float(ds.images), ds.subject.numpy()


def test_fisherfaces_tell_people_apart_and_fail_on_wrong_names(faces):
    x, subject = faces
    rank = np.zeros(len(subject), dtype=int)
    for s in np.unique(subject):
        rank[subject == s] = np.arange((subject == s).sum())
    gal, probe = rank % 2 == 0, rank % 2 == 1
    wrong = np.roll(subject[probe], 7)
    right_rate, wrong_rate = fisherfaces_identification(
        x[torch.as_tensor(gal)], subject[gal], [x[torch.as_tensor(probe)]] * 2, [subject[probe], wrong])
    assert right_rate >= 0.9
    assert wrong_rate <= 0.5


@pytest.fixture(scope="module")
def prepared_root(tmp_path_factory):
    """A folder of prepared faces (written PNGs, so no synthetic ground truth): the path a real
    dataset takes."""
    from PIL import Image

    from facegan_kit.data.layouts import label_name
    from facegan_kit.data.prepare import prepare

    src, root = tmp_path_factory.mktemp("photos"), tmp_path_factory.mktemp("prepared")
    ds = make_dataset(SyntheticConfig(subjects=6, size=32, frames=2, test_subjects=3, include_neutral=True,
                                      neutral_frames=1))
    for i, (img, s, e) in enumerate(zip(ds.images, ds.subject.tolist(), ds.expression.tolist())):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(src / f"p{s}_{label_name(e)}_{i}.png")
    prepare(src, root, "regex", size=32, align=False, include_neutral=True, test_ratio=0.5,
            pattern=r"(?P<subject>p\d+)_(?P<expression>[a-z]+)_\d+")
    return root


@pytest.fixture(scope="module")
def real_eval(tiny_checkpoint, prepared_root):
    """The tiny model scored on the prepared faces."""
    return evaluate(tiny_checkpoint, data=prepared_root, identity_faces=3, oracles=None)


def test_prepared_faces_get_every_real_key_beside_the_edit_scores(real_eval):
    m = real_eval
    assert check_metrics(m) == []
    assert m["oracle_expression_accuracy"] is None  # no ground truth on prepared faces
    for key in ("classical_identity_rate", "classical_identity_rate_real", "classical_identity_chance"):
        assert m[key] is not None, key
    assert m["classical_identity_chance"] == pytest.approx(1 / m["subjects"])
    pytest.importorskip("dlib")
    pytest.importorskip("fer")
    for key in REAL_KEYS:
        assert m[key] is not None, key
    names = set(m["expression_accuracy_per_class"])
    for key in ("ceiling_judge_accuracy_native_per_class", "ceiling_intensity_rho_morph_per_class"):
        assert set(m[key]) <= names and m[key], key
    # two photos of one person sit nearer than photos of two people, by dlib's own measure
    assert m["ceiling_identity_same_person_median"] < m["ceiling_identity_other_people_median"]
    assert any("ceiling" in n for n in m["notes"])


def test_eval_command_prints_the_ceilings_beside_the_edit_scores(tiny_checkpoint, prepared_root, tmp_path):
    from click.testing import CliRunner

    from facegan_kit.cli import cli

    res = CliRunner().invoke(cli, ["eval", str(tiny_checkpoint), "--data", str(prepared_root), "--identity-faces",
                                   "2", "--no-oracles", "--out", str(tmp_path / "eval")])
    assert res.exit_code == 0, res.output
    printed = dict(ln.split()[:2] for ln in res.stdout.splitlines() if ln.startswith("  "))
    for key in ("classical_identity_rate", "classical_identity_rate_real"):
        assert 0 <= float(printed[key]) <= 1, key
    pytest.importorskip("fer")
    assert {"ceiling_judge_accuracy_native", "ceiling_intensity_rho_morph"} <= set(printed)
