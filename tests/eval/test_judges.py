"""Tests for the independent evaluation judges (facegan_kit.eval.judges)."""
from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import facegan_kit
from facegan_kit.eval import judges
from facegan_kit.eval.fer_net import FER_CLASSES
from facegan_kit.eval.judges import (JUDGE_CLASSES, REALISM_METRIC_KEY, ExpressionJudge, IdentityJudge,
                                     l1, psnr, realism_score, spearman_rho, spearman_rows, ssim)

has = lambda mod: importlib.util.find_spec(mod) is not None  # noqa: E731


pytestmark = pytest.mark.usefixtures("single_thread")


def _to_pm1(u8_hwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(u8_hwc)).permute(2, 0, 1)[None].float() / 127.5 - 1


def _rand_images(n, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


# ----------------------------------------------------------------- expression judge
def test_class_order_mapping():
    assert JUDGE_CLASSES == tuple(facegan_kit.EXPRESSIONS) + (facegan_kit.NEUTRAL,)
    assert JUDGE_CLASSES == FER_CLASSES
    assert judges._FER_TO_JUDGE == list(range(7))
    assert JUDGE_CLASSES.index("happy") == facegan_kit.EXPRESSIONS.index("happy") == 3
    assert JUDGE_CLASSES[6] == "neutral"


@pytest.mark.skipif(not has("fer"), reason="fer weights not installed")
def test_expression_judge_probs_and_predict():
    judge = ExpressionJudge(batch_size=3)  # exercise chunking
    x = _rand_images(5, size=96)
    p = judge.probs(x)
    assert p.shape == (5, 7)
    assert torch.all(p >= 0)
    np.testing.assert_allclose(p.sum(1).numpy(), 1.0, atol=1e-5)
    pred = judge.predict(x)
    assert pred.dtype == torch.int64 and pred.shape == (5,)
    assert torch.equal(pred, p.argmax(1))
    assert judge.features(x).shape == (5, 128)
    # numpy input accepted too
    np.testing.assert_allclose(judge.probs(x.numpy()).numpy(), p.numpy(), atol=1e-6)


@pytest.mark.skipif(not (has("fer") and has("skimage")), reason="needs fer + scikit-image")
def test_expression_judge_on_smiling_face(astronaut_chip):
    # the astronaut smiles broadly: the FER net should say "happy"
    judge = ExpressionJudge()
    p = judge.probs(_to_pm1(astronaut_chip))
    assert JUDGE_CLASSES[int(p.argmax())] == "happy"


# ----------------------------------------------------------------- identity judge
@pytest.fixture(scope="module")
def astronaut_chip():
    if not (has("skimage") and has("dlib") and has("face_recognition_models")):
        pytest.skip("needs scikit-image, dlib, face_recognition_models")
    from skimage import data

    chip = IdentityJudge().aligned_chip(data.astronaut())
    assert chip is not None and chip.shape == (150, 150, 3)
    return chip


@pytest.fixture(scope="module")
def id_judge():
    if not (has("dlib") and has("face_recognition_models")):
        pytest.skip("needs dlib + face_recognition_models")
    return IdentityJudge()


def test_identity_basic(id_judge, astronaut_chip):
    x = _to_pm1(astronaut_chip)
    e = id_judge.embed(torch.cat([x, x]))
    assert e.shape == (2, 128)
    assert id_judge.distance(e[0], e[1]) == 0.0
    # the [-1, 1] round trip is exact for 150x150 uint8 chips
    assert np.array_equal(id_judge.to_chips(x)[0], astronaut_chip)
    assert IdentityJudge.SAME_PERSON_THRESHOLD == 0.6


def test_identity_noise_monotone(id_judge, astronaut_chip):
    x = _to_pm1(astronaut_chip)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g)
    batch = torch.cat([x] + [(x + s * noise).clamp(-1, 1) for s in (0.05, 0.2, 0.6)])
    e = id_judge.embed(batch)
    d = id_judge.distance(e[0], e[1:])
    assert np.all(np.diff(d) > 0), d
    assert d[0] < IdentityJudge.SAME_PERSON_THRESHOLD


def test_identity_symmetry_and_relations(id_judge, astronaut_chip):
    from skimage import data

    x = _to_pm1(astronaut_chip)
    mirrored = x.flip(-1)
    k = torch.exp(-torch.arange(-4, 5, dtype=torch.float32) ** 2 / (2 * 1.5 ** 2))
    k = (k / k.sum())
    blurred = F.conv2d(F.pad(x, (4, 4, 4, 4), mode="reflect"), (k[:, None] * k[None]).expand(3, 1, 9, 9),
                       groups=3)
    unrelated = _to_pm1(data.coffee()[100:400, 200:500])  # resized to 150 inside embed
    e = id_judge.embed(torch.cat([x, mirrored, blurred, F.interpolate(unrelated, size=150)]))
    e_unrel = id_judge.embed(unrelated)[0]
    assert e.shape == (4, 128) and e_unrel.shape == (128,)
    dist = id_judge.distance
    for i in range(4):
        for j in range(4):
            assert dist(e[i], e[j]) >= 0
            assert dist(e[i], e[j]) == pytest.approx(dist(e[j], e[i]), abs=1e-12)
    d_unrel = dist(e[0], e_unrel)
    assert dist(e[0], e[1]) < d_unrel
    assert dist(e[0], e[2]) < d_unrel
    # broadcast (N,128) vs (128,)
    np.testing.assert_allclose(dist(e, e[0]), [dist(r, e[0]) for r in e])
    assert id_judge.same_person(e[0], e[1])


# ----------------------------------------------------------------- realism
def test_realism_self_zero_and_mean_shift():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(10, 24))  # N < D: singular covariance (128-D case below)
    assert realism_score(feats, feats) == pytest.approx(0.0, abs=1e-4)
    prev = realism_score(feats, feats)
    for shift in (0.5, 1.0, 2.0):
        val = realism_score(feats, feats + shift)
        assert val == pytest.approx(24 * shift ** 2, rel=1e-3)
        assert val > prev
        prev = val
    other = rng.normal(size=(10, 24))
    assert realism_score(feats, other) == pytest.approx(realism_score(other, feats), rel=1e-6)
    assert REALISM_METRIC_KEY == "fer_feature_frechet"
    assert "not FID" in realism_score.__doc__


def test_realism_full_rank_matches_closed_form():
    # 1-D Gaussians: d = (m1-m2)^2 + (s1-s2)^2
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, size=(500, 1))
    b = rng.normal(3, 2, size=(500, 1))
    expected = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
    assert realism_score(a, b) == pytest.approx(expected, rel=1e-4)


@pytest.mark.skipif(not has("fer"), reason="fer weights not installed")
def test_realism_on_fer_features():
    judge = ExpressionJudge()
    x = _rand_images(12, seed=3) * 0.5
    f = judge.features(x)
    assert realism_score(f, f) == pytest.approx(0.0, abs=1e-3)
    assert realism_score(f, judge.features((x + 0.5).clamp(-1, 1))) > 1e-2


# ----------------------------------------------------------------- reconstruction
def test_reconstruction_metrics():
    x = _rand_images(2, 32)
    assert l1(x, x) == 0.0
    assert math.isinf(psnr(x, x)) or psnr(x, x) > 80
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-4)
    y = (x + 0.2).clamp(-1, 1)
    z = (x + 0.6).clamp(-1, 1)
    assert 0 < l1(x, y) < l1(x, z)
    assert psnr(x, y) > psnr(x, z)
    assert ssim(x, y) > ssim(x, z)
    # l1 is on the [0, 1] scale; PSNR of a constant offset 0.1 on [0,1] is 20 dB
    c = torch.zeros(1, 3, 16, 16)
    assert l1(c, c + 0.2) == pytest.approx(0.1, abs=1e-6)
    assert psnr(c, c + 0.2) == pytest.approx(20.0, abs=1e-4)


# ----------------------------------------------------------------- monotonicity
def test_spearman_rows_gives_each_face_its_own_rho_and_nan_where_undefined():
    rows = spearman_rows([1, 2, 3], [[1, 2, 3], [3, 2, 1], [5, 5, 5], [1, 3, 2]])
    assert rows[:2].tolist() == pytest.approx([1.0, -1.0])
    assert math.isnan(rows[2])
    assert rows[3] == pytest.approx(0.5)
    assert spearman_rho([1, 2, 3], [[1, 2, 3], [3, 2, 1], [5, 5, 5], [1, 3, 2]]) == pytest.approx(0.5 / 3)


def test_spearman_rho():
    levels = [0.0, 0.25, 0.5, 0.75, 1.0]
    assert spearman_rho(levels, [1, 2, 3, 4, 5]) == pytest.approx(1.0)
    vals = np.array([[1, 2, 3, 4, 5], [5, 4, 3, 2, 1], [0.1, 0.3, 0.2, 0.5, 0.9]])
    expected = (1.0 - 1.0 + 0.9) / 3
    assert spearman_rho(levels, vals) == pytest.approx(expected)
    # constant rows are skipped
    assert spearman_rho(levels, [[2, 2, 2, 2, 2], [1, 2, 3, 4, 5]]) == pytest.approx(1.0)
    assert math.isnan(spearman_rho(levels, [[2, 2, 2, 2, 2]]))
    with pytest.raises(ValueError):
        spearman_rho(levels, np.zeros((2, 4)))


def test_identity_kept_rate_uses_subject_means_and_counts_ties_as_misses():
    # two faces of subject 7 (mean (0, 0)), one of subject 9 at (2, 0)
    sources = torch.tensor([[-0.5, 0.0], [0.5, 0.0], [2.0, 0.0]])
    subjects = [7, 7, 9]
    edits = torch.tensor([
        [0.2, 0.1],   # of face 0 (subject 7): nearest mean (0,0) -> kept
        [1.9, 0.0],   # of face 1 (subject 7): drifted to subject 9 -> lost
        [1.0, 0.0],   # of face 2 (subject 9): equidistant -> a tie is a miss
        [2.5, 0.3],   # of face 2: kept
    ])
    rate = judges.identity_kept_rate(edits, sources, subjects, [0, 1, 2, 2])
    assert rate == 0.5
    # an exact copy of every source keeps every identity
    assert judges.identity_kept_rate(sources, sources, subjects, [0, 1, 2]) == 1.0
    with pytest.raises(ValueError, match="source indices"):
        judges.identity_kept_rate(edits, sources, subjects, [0, 1])
