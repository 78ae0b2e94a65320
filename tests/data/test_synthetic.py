"""Synthetic faces: determinism, shapes, protocol, expression geometry, files on disk."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from facegan_kit.data.synthetic import (
    ATTR_NAMES,
    EXPRESSION_NAMES,
    NEUTRAL_LABEL,
    SyntheticConfig,
    SyntheticFaces,
    make_dataset,
    render_batch,
    render_face,
    subject_attributes,
    write_dataset,
)
from facegan_kit.errors import InputError


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_attributes_deterministic_normalised_and_distinct():
    a = subject_attributes(3, seed=0)
    assert a.dtype == np.float32 and a.shape == (len(ATTR_NAMES),)
    assert np.array_equal(a, subject_attributes(3, seed=0))
    assert not np.array_equal(a, subject_attributes(4, seed=0))
    assert not np.array_equal(a, subject_attributes(3, seed=1))
    allv = np.stack([subject_attributes(s) for s in range(200)])
    assert allv.min() >= 0 and allv.max() <= 1
    assert set(np.unique(allv[:, ATTR_NAMES.index("glasses")])) == {0.0, 1.0}
    assert len(np.unique(allv[:, ATTR_NAMES.index("hair_style")])) == 4
    assert allv[:, 0].std() > 0.2  # continuous attributes really vary


def test_render_is_deterministic_and_seeds_matter():
    a = subject_attributes(1)
    img = render_face(a, 3, 0.8, 64, nuisance_seed=5, style_seed=1)
    assert img.tobytes() == render_face(a, 3, 0.8, 64, nuisance_seed=5, style_seed=1).tobytes()
    assert _diff(img, render_face(a, 3, 0.8, 64, nuisance_seed=6, style_seed=1)) > 1.0
    # another style (subject's way of smiling) changes the face but only a little
    other_style = render_face(a, 3, 0.8, 64, nuisance_seed=5, style_seed=2)
    assert 0 < _diff(img, other_style) < 5.0


@pytest.mark.parametrize("size", [32, 64, 128])
def test_shapes_and_dtypes(size):
    a = subject_attributes(0)
    img = render_face(a, 0, 0.5, size)
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    assert img.std() > 20  # not a blank canvas
    attrs = np.stack([subject_attributes(s) for s in range(3)])
    batch = render_batch(attrs, [0, 5, NEUTRAL_LABEL], [0.5, 1.0, 0.0], size, nuisance_seeds=[1, 2, 3],
                         style_seeds=[0, 1, 2])
    assert batch.shape == (3, 3, size, size) and batch.dtype == torch.uint8
    one = render_face(attrs[1], 5, 1.0, size, nuisance_seed=2, style_seed=1)
    assert np.array_equal(batch[1].permute(1, 2, 0).numpy(), one)


def test_bad_inputs_raise_input_error():
    a = subject_attributes(0)
    with pytest.raises(InputError):
        render_face(a, 7, 0.5)
    with pytest.raises(InputError):
        render_face(a, 0, 1.5)
    with pytest.raises(InputError):
        render_face(a[:-1], 0, 0.5)
    with pytest.raises(InputError):
        make_dataset(SyntheticConfig(subjects=3, test_subjects=5))


def test_intensity_zero_is_the_neutral_face():
    a = subject_attributes(2)
    neutral = render_face(a, NEUTRAL_LABEL, 0.9, 64, nuisance_seed=4, style_seed=2)
    for e in range(6):
        assert np.array_equal(render_face(a, e, 0.0, 64, nuisance_seed=4, style_seed=2), neutral)


def test_expressions_differ_from_each_other_and_from_neutral():
    # whole-image mean |diff|: expressions are local, so even 0.1 is ~30 pixels changed by ~40 levels
    for s in range(20):
        a = subject_attributes(s)
        imgs = [render_face(a, e, 0.5, 64, nuisance_seed=None, style_seed=s) for e in range(7)]
        for i in range(7):
            for j in range(i + 1, 7):
                assert _diff(imgs[i], imgs[j]) > 0.08, (s, EXPRESSION_NAMES[i], EXPRESSION_NAMES[j])


def test_change_from_neutral_grows_with_intensity():
    levels = [0.0, 0.25, 0.5, 0.75, 1.0]
    for s in range(3):
        a = subject_attributes(s)
        neutral = render_face(a, NEUTRAL_LABEL, 0.0, 128, nuisance_seed=None, style_seed=s)
        for e in range(6):
            d = [_diff(render_face(a, e, t, 128, nuisance_seed=None, style_seed=s), neutral) for t in levels]
            assert d[0] == 0 and all(x < y for x, y in zip(d, d[1:])), (s, EXPRESSION_NAMES[e], d)


def _lip_corner_rows(img: np.ndarray, ref: np.ndarray) -> float:
    """Mean row of the outermost changed pixels in the mouth band (where the corners moved to)."""
    h = img.shape[0]
    band = slice(int(0.62 * h), int(0.9 * h))
    changed = np.abs(img[band].astype(int) - ref[band].astype(int)).sum(2) > 60
    ys, xs = np.nonzero(changed)
    far = np.abs(xs - img.shape[1] / 2) >= np.quantile(np.abs(xs - img.shape[1] / 2), 0.9)
    return float(ys[far].mean())


def test_happy_raises_and_sad_lowers_mouth_corners():
    a = subject_attributes(0)
    neutral = render_face(a, NEUTRAL_LABEL, 0.0, 128, None, 0)
    happy = [_lip_corner_rows(render_face(a, 3, t, 128, None, 0), neutral) for t in (0.5, 1.0)]
    sad = [_lip_corner_rows(render_face(a, 4, t, 128, None, 0), neutral) for t in (0.5, 1.0)]
    assert happy[1] < sad[1]  # rows grow downwards: happy corners sit higher
    assert happy[1] <= happy[0] and sad[1] >= sad[0]


def test_protocol_counts_and_subject_disjoint_split():
    ds = make_dataset(SyntheticConfig(size=32))
    assert ds.images.shape == (1440, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.expression.dtype == torch.int64 and ds.subject.dtype == torch.int64
    assert ds.intensity.dtype == torch.float32 and ds.attrs.shape == (1440, len(ATTR_NAMES))
    assert int(ds.train.sum()) == 1296 and int((~ds.train).sum()) == 144
    assert set(ds.subject[~ds.train].tolist()) == set(range(72, 80))
    assert not set(ds.subject[ds.train].tolist()) & set(ds.subject[~ds.train].tolist())
    assert set(ds.expression.tolist()) == set(range(6))  # no neutral
    assert float(ds.intensity.min()) >= 0.66 and float(ds.intensity.max()) <= 1.0
    for s in (0, 79):
        m = ds.subject == s
        assert int(m.sum()) == 18
        assert torch.equal(ds.attrs[m][0], torch.from_numpy(subject_attributes(s)))
        assert torch.bincount(ds.expression[m], minlength=6).tolist() == [3] * 6
    # frames sit near 0.7 / 0.85 / 1.0
    its = ds.intensity.view(80, 6, 3)
    assert torch.allclose(its.mean((0, 1)), torch.tensor([0.7, 0.85, 0.985]), atol=0.02)
    sub = ds.subset(ds.expression == 3)
    assert isinstance(sub, SyntheticFaces) and len(sub) == 240 and bool((sub.expression == 3).all())


def test_dataset_plugin_adds_neutral_frames_without_touching_the_others():
    from facegan_plugins.data import synthetic

    base = synthetic(subjects=4, size=16, frames=1, test_subjects=1)
    neu = synthetic(subjects=4, size=16, frames=1, test_subjects=1, include_neutral=True)
    for a, b in ((base.train, neu.train), (base.test, neu.test)):
        keep = b.expression < 6
        assert int((~keep).sum()) == len(b.subject.unique())  # one neutral frame per subject
        assert torch.equal(a.images, b.images[keep]) and torch.equal(a.expression, b.expression[keep])
        assert float(b.extra["intensity"][~keep].abs().max()) == 0.0


def test_neutral_frames_sets_how_many_neutral_faces_each_subject_has():
    from facegan_plugins.data import synthetic

    base = synthetic(subjects=4, size=16, frames=2, test_subjects=1, include_neutral=True)
    more = synthetic(subjects=4, size=16, frames=2, test_subjects=1, include_neutral=True, neutral_frames=5)
    for a, b in ((base.train, more.train), (base.test, more.test)):
        keep = b.expression < 6
        assert torch.equal(a.images[a.expression < 6], b.images[keep])  # expressive faces unchanged
        counts = torch.bincount(b.subject[~keep]).tolist()
        assert [c for c in counts if c] == [5] * len(b.subject.unique())
        na = a.subject[a.expression == 6]
        assert torch.equal(a.images[a.expression == 6], b.images[~keep][torch.isin(torch.arange(int((~keep).sum())) % 5,
                                                                                      torch.tensor([0, 1]))])
        assert len(na) == 2 * len(a.subject.unique())
    with pytest.raises(InputError, match="neutral_frames"):
        SyntheticConfig(subjects=4, include_neutral=True, neutral_frames=0).validate()


def test_config_options_and_cache_roundtrip():
    cfg = SyntheticConfig(subjects=7, size=32, frames=2, test_subjects=3, include_neutral=True, seed=4)
    ds = make_dataset(cfg)
    assert len(ds) == 7 * 7 * 2 and int((~ds.train).sum()) == 3 * 14
    neu = ds.expression == NEUTRAL_LABEL
    assert int(neu.sum()) == 14 and float(ds.intensity[neu].abs().max()) == 0.0
    again = make_dataset(cfg)  # from the safetensors cache
    for k in ("images", "expression", "intensity", "subject", "attrs", "train"):
        assert torch.equal(getattr(ds, k), getattr(again, k)), k
    other = make_dataset(SyntheticConfig(subjects=7, size=32, frames=2, test_subjects=3, include_neutral=True, seed=5))
    assert not torch.equal(ds.images, other.images)
    assert SyntheticConfig(subjects=5).n_test() == 1 and SyntheticConfig(subjects=80).n_test() == 8


def test_write_dataset(tmp_path):
    cfg = SyntheticConfig(subjects=5, size=32, test_subjects=1)
    out = write_dataset(tmp_path / "ds", cfg)
    assert out == tmp_path / "ds"
    train = sorted((out / "train").glob("*.png"))
    test = sorted((out / "test").glob("*.png"))
    assert len(train) == 72 and len(test) == 18
    assert not [p for p in out.rglob("*") if "tmp" in p.name]
    with open(out / "index.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 90
    assert list(rows[0])[:6] == ["path", "subject", "expression", "expression_name", "intensity", "split"]
    assert list(rows[0])[6:] == list(ATTR_NAMES)
    ds = make_dataset(cfg)
    for i in (0, 50, 89):
        r = rows[i]
        assert r["split"] == ("train" if bool(ds.train[i]) else "test")
        assert r["expression_name"] == EXPRESSION_NAMES[int(r["expression"])]
        assert int(r["subject"]) == int(ds.subject[i])
        png = np.asarray(Image.open(out / r["path"]))
        assert np.array_equal(png, ds.images[i].permute(1, 2, 0).numpy())
    assert {r["split"] for r in rows if r["subject"] == "4"} == {"test"}
    sheet = np.asarray(Image.open(out / "contact_sheet.png").convert("RGB"))
    from facegan_kit.figures import HEADER

    # 5 subjects x (neutral + 6 expressions), each 32 px face shown 128 px wide, labelled
    assert sheet.shape[1] > 7 * 128 and sheet.shape[0] > HEADER + 5 * 128
    assert (sheet[:HEADER] < 200).any()  # the column names were drawn


def test_plain_background_changes_only_the_background():
    attrs = subject_attributes(3)
    rnd = render_face(attrs, 3, 0.9, 64, nuisance_seed=11, style_seed=3)
    plain = render_face(attrs, 3, 0.9, 64, nuisance_seed=11, style_seed=3, background="plain")
    corners = (slice(0, 6), slice(0, 6))
    # the corner is wall: plain is the lab grey, the random one is not the same colour
    assert abs(float(plain[corners].astype(float).mean()) - 200.0) < 25
    assert _diff(rnd[corners], plain[corners]) > 3
    # the face centre is the same drawing (pose, lighting and expression did not move)
    centre = (slice(24, 40), slice(24, 40))
    assert _diff(rnd[centre], plain[centre]) < 1.0
    # every plain image of a dataset shares one wall colour (up to lighting), the random ones do not
    ds_p = make_dataset(SyntheticConfig(subjects=3, size=32, frames=1, background="plain"))
    ds_r = make_dataset(SyntheticConfig(subjects=3, size=32, frames=1))
    spread = lambda ds: float(ds.images[:, :, :3, :3].float().mean((2, 3)).std(0).mean())  # noqa: E731
    assert spread(ds_p) < 0.5 * spread(ds_r)
    with pytest.raises(InputError, match="background"):
        SyntheticConfig(background="sky").validate()
    with pytest.raises(InputError, match="background"):
        render_face(attrs, 3, 0.9, 32, background="sky")
