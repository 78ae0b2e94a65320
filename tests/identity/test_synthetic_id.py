"""The ``synthetic-id`` backbone: trained on other synthetic people, cached, usable as L_id."""
from __future__ import annotations

import functools

import pytest
import torch

from facegan_kit.data.synthetic import SyntheticConfig, make_dataset
from facegan_kit.errors import InputError
from facegan_kit.registry import Registry
from facegan_plugins.identity import synthetic_id
from facegan_plugins.identity.synthetic_id import SyntheticId, SyntheticIdConfig, heldout_identification
from facegan_plugins.losses.identity import IdentityLoss

SMALL = dict(input_size=32, subjects=24, steps=150)  # ~5 s; the recipe's default trains 400 people


@pytest.fixture(scope="module")
def net() -> SyntheticId:
    torch.manual_seed(0)
    return SyntheticId(**SMALL)


@pytest.fixture(scope="module")
def protocol():
    """Protocol faces (seed 0): people the backbone never saw (it trains on another seed)."""
    ds = make_dataset(SyntheticConfig(subjects=8, size=32, frames=2))
    return ds.images_float(), ds.subject


def test_registered():
    from facegan_kit.pm import build_registry

    assert build_registry().get("backbone", "synthetic-id") is SyntheticId


def test_report_says_it_identifies_unseen_people(net):
    # 40 held-out people, 8-way identification by mean embedding: chance is 12.5%.
    assert net.report["heldout_identification_8"] > 0.6, net.report


def test_same_person_closer_than_other_people_on_protocol_faces(net, protocol):
    x, subj = protocol
    emb = net.embed(x)
    r = heldout_identification(emb, subj)
    assert r["heldout_identification_8"] > 0.6, r


def test_cached_copy_is_loaded_not_retrained(net, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("retrained although cached")

    monkeypatch.setattr(synthetic_id, "train_synthetic_id", boom)
    again = SyntheticId(**SMALL, train_if_missing=False)
    for a, b in zip(net.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(InputError, match="no trained network"):
        SyntheticId(input_size=32, subjects=25, steps=150, train_if_missing=False)


def test_features_frozen_any_input_size(net, protocol):
    x = protocol[0][:4]
    f32 = net.features(x)
    assert [tuple(t.shape[1:]) for t in f32] == [(32, 16, 16), (64, 8, 8), (128, 4, 4), (128, 2, 2)]
    big = torch.nn.functional.interpolate(x, scale_factor=4, mode="nearest")
    assert torch.allclose(net.features(big)[-1], f32[-1], atol=1e-5)  # area-pooled back to 32 px
    net.train()
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    with pytest.raises(InputError, match="synthetic-id"):
        net.features(x[:, :1])


def test_as_identity_loss_prefers_the_same_person(net, protocol):
    x, subj = protocol
    reg = Registry()
    reg.add("backbone", "synthetic-id", functools.partial(SyntheticId, **SMALL))
    loss = IdentityLoss(backbone="synthetic-id", registry=reg, input_size=32, cache_real=False)
    a = x[subj == 0]
    same = x[subj == 0].roll(1, 0)  # the same person in another expression/frame
    other = x[subj == 1][: len(a)]
    assert float(loss(a, a)) == 0.0
    assert float(loss(same, a)) < float(loss(other, a))
    xh = other.clone().requires_grad_(True)
    loss(xh, a).backward()
    assert xh.grad is not None and xh.grad.abs().sum() > 0


def test_first_use_inside_no_grad_still_trains():
    # the identity loss builds its backbone while filling its real-feature cache, under no_grad
    cfg = SyntheticIdConfig(subjects=4, heldout_subjects=2, frames=1, steps=3, batch=8)
    with torch.no_grad():
        net = SyntheticId(_config=cfg)
    assert net.report["train_loss"] > 0 and not any(p.requires_grad for p in net.parameters())


def test_prepare_builds_the_backbone_before_the_first_step(net):
    """The trainer calls each stage's terms' prepare() before the progress bar starts
    (facegan_kit.train.phases.prepare_terms), so a backbone built on first use does not stall
    step 1; terms without prepare() are skipped."""
    from facegan_kit.recipe.schema import StageSpec
    from facegan_kit.train.phases import plan_stage, prepare_terms

    reg = Registry()
    reg.add("backbone", "synthetic-id", functools.partial(SyntheticId, **SMALL))
    loss = IdentityLoss(backbone="synthetic-id", registry=reg, input_size=32, cache_real=False)
    assert loss._backbone is None
    spec = StageSpec(name="reconstruction", train=["encoder", "decoder"], losses={"identity": 1.0, "l1": 1.0},
                     epochs=1)
    plan = plan_stage(0, spec, 10, {"identity": loss, "l1": object()})
    assert prepare_terms(plan) == ["identity"]
    assert isinstance(loss._backbone, SyntheticId)
