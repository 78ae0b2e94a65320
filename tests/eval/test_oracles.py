"""Oracle networks: their held-out report, an independent re-measurement, and the identity metric.

The default oracles come from the user's cache (``load_oracles()``); the very
first run trains them (~1-2 min on 2 cores), later runs load them instantly.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from facegan_kit.data.synthetic import (
    ATTR_NAMES,
    NEUTRAL_LABEL,
    SyntheticConfig,
    make_dataset,
    render_batch,
    subject_attributes,
)
from facegan_kit.errors import InputError
from facegan_kit.eval.judges import identity_match_rate
from facegan_kit.eval.oracles import OracleConfig, Oracles, load_oracles, train_oracles

FRESH = list(range(5000, 5012))  # neither protocol (0..79) nor oracle training (1000..1439) subjects


@pytest.fixture(scope="module")
def oracles() -> Oracles:
    torch.set_num_threads(1)
    return load_oracles()


def _fresh_batch(subjects, pairs, size, seed):
    rng = np.random.default_rng(seed)
    rows = [(s, e, t) for s in subjects for e, t in pairs]
    attrs = np.stack([subject_attributes(s) for s, _, _ in rows])
    expr = np.array([e for _, e, _ in rows])
    inten = np.array([t for _, _, t in rows])
    x = render_batch(attrs, expr, inten, size, rng.integers(0, 2 ** 31, len(rows)), [s for s, _, _ in rows])
    return x, expr, inten, np.array([s for s, _, _ in rows])


def test_report_meets_stated_targets(oracles):
    r = oracles.report
    assert r["expression_accuracy"] >= 0.95
    assert r["expression_accuracy_at_0.5"] >= 0.95
    assert r["intensity_mae"] <= 0.1
    assert r["identity_match_8"] >= 0.9 and r["identity_match_80"] >= 0.9
    assert set(r["attr_r2"]) == set(ATTR_NAMES)
    assert r["attr_r2"]["skin_tone"] > 0.8 and r["attr_r2"]["glasses"] > 0.8


def test_fresh_subjects_expression_and_intensity(oracles):
    # 128px input exercises the resize path; every class at intensities 0.5 and 0.9
    pairs = [(e, t) for e in range(6) for t in (0.5, 0.9)] + [(NEUTRAL_LABEL, 0.0)] * 2
    x, expr, inten, _ = _fresh_batch(FRESH, pairs, 128, seed=1)
    xf = x.float() / 127.5 - 1
    probs = oracles.expression_probs(xf)
    assert probs.shape == (len(x), 7)
    assert torch.allclose(probs.sum(1), torch.ones(len(x)), atol=1e-5)
    acc = float((probs.argmax(1).numpy() == expr).mean())
    assert acc >= 0.9, acc
    pred_i = oracles.intensity(xf).numpy()
    assert pred_i.shape == (len(x),) and pred_i.min() >= 0 and pred_i.max() <= 1
    assert float(np.abs(pred_i - inten).mean()) <= 0.12
    assert torch.equal(oracles.expression_probs(x), probs)  # uint8 input is converted identically


def test_32px_and_softened_faces_keep_their_expression(oracles):
    # The quick recipes' data are rendered at 32 px and their models' faces are softer still:
    # the oracles must read the face, not its sharpness (version 3 called 24% of these neutral
    # faces an expression, and 69% once softened to 24 px).
    pairs = [(e, 0.9) for e in range(6)] + [(NEUTRAL_LABEL, 0.0)] * 3
    x, expr, _, _ = _fresh_batch(list(range(5000, 5024)), pairs, 32, seed=4)
    x = x.float() / 127.5 - 1
    soft = torch.nn.functional.interpolate(torch.nn.functional.interpolate(x, size=24, mode="area"), size=32,
                                           mode="bilinear", align_corners=False)
    neutral = expr == NEUTRAL_LABEL
    for faces, floor_expressive, floor_neutral in ((x, 0.9, 0.95), (soft, 0.85, 0.7)):
        pred = oracles.expression_probs(faces).argmax(1).numpy()
        assert (pred[~neutral] == expr[~neutral]).mean() >= floor_expressive
        assert (pred[neutral] == NEUTRAL_LABEL).mean() >= floor_neutral, np.bincount(pred[neutral], minlength=7)


def test_oracle_intensity_increases_with_intensity(oracles):
    levels = [0.0, 0.25, 0.5, 0.75, 1.0]
    for e in (3, 5, 0):  # happy, surprise, angry
        x, _, _, _ = _fresh_batch(FRESH[:6], [(e, t) for t in levels], 64, seed=2)
        means = oracles.intensity(x).view(6, len(levels)).mean(0).tolist()
        assert all(a < b for a, b in zip(means, means[1:])), (e, means)
        assert means[0] < 0.15 and means[-1] > 0.8


def test_happy_probability_grows_with_intensity(oracles):
    x, _, _, _ = _fresh_batch(FRESH[:6], [(3, t) for t in (0.1, 0.3, 0.6, 1.0)], 64, seed=3)
    p_happy = oracles.expression_probs(x)[:, 3].view(6, 4).mean(0).tolist()
    # rises from ~neutral to saturated (tiny wiggles once saturated are fine)
    assert p_happy[0] < 0.3 and p_happy[0] < p_happy[1] and min(p_happy[2:]) > 0.9, p_happy


def test_identity_match_on_protocol_test_subjects(oracles):
    ds = make_dataset(SyntheticConfig(size=64))
    test = ds.subset(~ds.train)
    gallery = np.stack([subject_attributes(s) for s in range(80)])
    rate80 = identity_match_rate(oracles, test.images, test.images, test.subject, gallery)
    rate8 = identity_match_rate(oracles, None, test.images, test.subject,
                                {s: gallery[s] for s in range(72, 80)})
    assert rate8 >= 0.9 and rate80 >= 0.85, (rate8, rate80)
    # predicted attributes carry identity, not the expression: match stays high across expressions
    for e in range(6):
        m = test.expression == e
        assert identity_match_rate(oracles, None, test.images[m], test.subject[m],
                                   {s: gallery[s] for s in range(72, 80)}) >= 0.8


class _FakeOracles:
    def __init__(self, vecs):
        self.vecs = torch.as_tensor(vecs, dtype=torch.float32)

    def attrs(self, x):
        return self.vecs


def test_identity_match_rate_semantics():
    gallery = {10: [0.0, 0.0], 11: [1.0, 0.0], 12: [0.0, 1.0]}
    preds = [[0.1, 0.0], [0.9, 0.1], [0.5, 0.5], [0.0, 0.2]]
    subj = [10, 11, 12, 12]  # 3rd: equidistant to 11 and 12 -> tie is a miss; 4th: closer to 10 -> miss
    assert identity_match_rate(_FakeOracles(preds), None, torch.zeros(4, 3, 8, 8), subj, gallery) == 0.5
    arr = np.array([[9, 9], [0.0, 0.0], [1.0, 0.0]])  # row index = subject id
    assert identity_match_rate(_FakeOracles(preds[:2]), None, torch.zeros(2, 3, 8, 8), [1, 2], arr) == 1.0
    with pytest.raises(InputError):
        identity_match_rate(_FakeOracles(preds[:1]), None, torch.zeros(1, 3, 8, 8), [99], gallery)
    with pytest.raises(InputError):
        identity_match_rate(_FakeOracles(preds), torch.zeros(3, 3, 8, 8), torch.zeros(4, 3, 8, 8), subj, gallery)


def test_tiny_training_roundtrip_through_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path))
    torch.set_num_threads(1)
    cfg = OracleConfig(size=32, train_subjects=12, heldout_subjects=4, images_per_subject=10,
                       heldout_images_per_subject=6, epochs=1, batch=32)
    with pytest.raises(InputError):
        load_oracles(train_if_missing=False, config=cfg)
    orc = load_oracles(config=cfg)
    assert (tmp_path / "oracles").is_dir() and len(list((tmp_path / "oracles").glob("*.json"))) == 1
    again = load_oracles(train_if_missing=False, config=cfg)
    x = torch.rand(5, 3, 48, 48) * 2 - 1
    assert torch.equal(orc.expression_probs(x), again.expression_probs(x))
    assert torch.equal(orc.attrs(x), again.attrs(x))
    assert again.report == orc.report and again.report["heldout_images"] == 24
    again.train()
    assert not again.training and not again.net.training
    assert orc.attrs(x).shape == (5, len(ATTR_NAMES)) and orc.intensity(x).shape == (5,)
    other = dataclasses.replace(cfg, epochs=2)  # the cache is keyed by the whole config
    with pytest.raises(InputError, match="no trained oracles"):
        load_oracles(train_if_missing=False, config=other)


def test_former_module_path_is_the_same_module():
    import facegan_kit.data.oracles as former
    import facegan_kit.eval.oracles as oracles

    assert former is oracles and former.train_oracles is train_oracles


def test_first_use_says_what_it_does_how_long_and_shows_progress(tmp_path, monkeypatch, capsys):
    import re

    from facegan_kit.eval.oracles import estimate_seconds

    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path))
    torch.set_num_threads(1)
    cfg = OracleConfig(size=32, train_subjects=12, heldout_subjects=4, images_per_subject=10,
                       heldout_images_per_subject=6, epochs=2, batch=32)
    load_oracles(config=cfg)
    err = capsys.readouterr().err
    first = err.strip().splitlines()[0]
    # before any work: what, how much and how long, and that it happens once
    assert first.startswith("[oracles] first use: training the synthetic-data oracles"), first
    assert "under 2 min" in first and "once" in first and str(tmp_path) in first
    renders = 120 + 40 + 40 + 2 * 24  # training faces, their 2x and half-size copies, held-out faces twice
    assert f"{renders} faces to render, 8 training steps" in first
    # progress bars with a count of the total and a time estimate (tqdm's "elapsed<remaining")
    assert re.search(rf"oracles: rendering faces.*{renders}/{renders}", err)
    assert re.search(r"oracles: training.*8/8 \[\d\d:\d\d<\d\d:\d\d", err)
    load_oracles(config=cfg)  # cached: nothing to announce
    assert "first use" not in capsys.readouterr().err
    # the default oracles: minutes, and the message says so
    assert 4 * 60 <= estimate_seconds(OracleConfig()) <= 10 * 60
