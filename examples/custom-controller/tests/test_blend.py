"""Tests of facegan-blend, written with facegan_kit.testing (run after `pip install -e .`):

    pip install -e ./examples/custom-controller && pytest examples/custom-controller/tests

Plain functions without fixtures, so facegan-kit's own test suite can call them too.
"""
from __future__ import annotations

import pytest
import torch

import facegan_blend
from facegan_blend import BlendCtrl
from facegan_blend.loss import FeatureMatchLoss, feature_match_loss
from facegan_blend.metric import EditChange
from facegan_kit.testing import (check_component, check_controller, check_loss, check_registered, plugin_registry,
                                 tiny_step_context)


def test_contract_small():
    ctrl = check_component("controller", BlendCtrl, num_classes=3, code_dim_per_class=2)
    check_controller(ctrl)


def test_contract_paper_size():
    check_controller(check_component("controller", BlendCtrl, num_classes=6, code_dim_per_class=5))


def test_plugin_registers_its_three_components():
    names = [(e.kind, e.name) for e in plugin_registry(facegan_blend)]
    assert names == [("controller", "blend-ctrl"), ("loss", "blend-feature-match"), ("metric", "blend-edit-change")]


def test_installed_entry_point():
    check_registered("blend-ctrl", "controller", provider="facegan-blend")


def test_training_code_is_eq3():
    ctrl = BlendCtrl()
    y = torch.nn.functional.one_hot(torch.tensor([3, 5]), 6).float()
    c = ctrl(y, generator=torch.Generator().manual_seed(0)).view(2, 6, 5)
    u = (2 * torch.rand(2, 5, generator=torch.Generator().manual_seed(0)) - 1).abs()
    assert torch.equal(c[0, 3], u[0]) and torch.equal(c[1, 5], u[1])
    assert torch.equal(c[0, 0], -u[0])
    assert torch.equal(ctrl(torch.tensor([3, 5]), generator=torch.Generator().manual_seed(0)).view(2, 6, 5), c)


def test_blend_code():
    ctrl = BlendCtrl()
    code = ctrl.blend_code({"happy": 0.6, "Surprise": 0.3}).view(6, 5)
    want = torch.tensor([-1.0, -1.0, -1.0, 0.2, -1.0, -0.4])
    assert torch.allclose(code, want[:, None].expand(6, 5))
    w = torch.tensor([0.0, 0.0, 0.0, 0.6, 0.0, 0.3])
    assert torch.equal(ctrl.blend_code(w), ctrl.blend_code({3: 0.6, 5: 0.3}))
    assert ctrl.blend_code(torch.stack([w, torch.zeros(6)])).shape == (2, 30)
    assert torch.equal(ctrl.blend_code({}), ctrl.neutral_code())
    assert torch.equal(ctrl.blend_code(torch.zeros(6)), torch.full((30,), -1.0))
    assert torch.equal(ctrl.blend_code({"happy": 0.7}), ctrl.intensity_code(3, 0.7))
    assert torch.equal(ctrl.blend_code({"happy": 1.0}), ctrl.intensity_code(3, 1.0))


def test_blend_code_errors():
    ctrl = BlendCtrl()
    with pytest.raises(ValueError, match="unknown expression 'joy' .*happy"):
        ctrl.blend_code({"joy": 0.5})
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        ctrl.blend_code({"happy": 1.5})
    with pytest.raises(ValueError, match=r"shape \(6,\)"):
        ctrl.blend_code(torch.zeros(5))


def test_class_names():
    ctrl = BlendCtrl(num_classes=2, code_dim_per_class=1, class_names=["smile", "frown"])
    assert ctrl.blend_code({"frown": 1.0}).tolist() == [-1.0, 1.0]
    assert BlendCtrl(num_classes=2).class_names == ("0", "1")
    with pytest.raises(ValueError, match="distinct names"):
        BlendCtrl(num_classes=2, class_names=["a"])


def test_feature_match_loss_contract():
    out = check_loss(FeatureMatchLoss())
    assert set(out) == {"g"} and out["g"] > 0


def test_feature_match_loss_reaches_the_generator():
    ctx = tiny_step_context()
    FeatureMatchLoss().g_loss(ctx).backward()
    assert all(p.grad is not None for p in ctx.models["decoder"].parameters() if p.requires_grad)
    f = torch.randn(4, 8)
    assert feature_match_loss(f, f) == 0 and feature_match_loss(f, f + 0.5) == pytest.approx(0.5)


def test_edit_change_metric():
    from types import SimpleNamespace

    recon = torch.zeros(2, 3, 4, 4)
    edits = torch.stack([recon, recon + 1.0, recon + 0.5])  # K = 3 expressions
    ctx = SimpleNamespace(edits=edits, recon=recon, labels=torch.tensor([0, 1]))
    # face 0 (label 0) changes by 1.0 and 0.5, face 1 (label 1) by 0.0 and 0.5: mean 0.5, half-scale 0.25
    assert EditChange()(ctx) == {"edit_change_l1": pytest.approx(0.25)}
