"""facegan_kit.testing: the checks pass on the built-in components and catch broken ones with
messages that name the problem."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from facegan_kit import hookimpl
from facegan_kit.testing import (
    check_component, check_controller, check_loss, check_registered, plugin_registry, tiny_step_context,
)
from facegan_plugins.common.encoder import ConvEncoder
from facegan_plugins.exprgan import ExprDecoder, ExprDImg, ExprQ, FCtrl
from facegan_plugins.losses import AdvImgLoss, AdvZLoss, L1Loss, QLoss, TVLoss


# -- the checks accept the built-ins ----------------------------------------------------------
@pytest.mark.parametrize(("kind", "factory", "kwargs"), [
    ("encoder", ConvEncoder, dict(image_size=16, z_dim=4, channels=[4, 8])),
    ("decoder", ExprDecoder, dict(image_size=16, z_dim=4, code_dim=6, channels=[8, 8], fc_channels=8,
                                  extra_channels=[4])),
    ("controller", FCtrl, dict(num_classes=3, code_dim_per_class=2)),
    ("discriminator", ExprDImg, dict(image_size=16, num_classes=3, channels=[4, 8], fc_dim=16)),
    ("discriminator", "dz-mlp", dict(z_dim=4, hidden=[8])),
    ("regularizer", ExprQ, dict(feature_dim=16, num_classes=3, code_dim_per_class=2, hidden=8, branch_hidden=4)),
], ids=lambda v: v if isinstance(v, str) else getattr(v, "__name__", ""))
def test_check_component_accepts_builtins(kind, factory, kwargs):
    model = check_component(kind, factory, **kwargs)
    assert isinstance(model, nn.Module) and not model.training


def test_check_component_accepts_a_built_module():
    check_component("encoder", ConvEncoder(image_size=16, z_dim=4, channels=[4, 8]))


def test_check_controller_accepts_fctrl():
    check_controller(FCtrl(num_classes=4, code_dim_per_class=3))


@pytest.mark.parametrize("term", [L1Loss, TVLoss, AdvImgLoss, AdvZLoss, QLoss])
def test_check_loss_accepts_builtins(term):
    out = check_loss(term())
    assert "g" in out


def test_check_registered_and_plugin_registry():
    entry = check_registered("exprgan-fctrl", "controller", provider="facegan-kit")
    assert entry.factory is FCtrl
    import facegan_plugins.common as common

    assert sorted(e.name for e in plugin_registry(common)) == ["conv-encoder", "dz-mlp"]


# -- and reject broken ones ---------------------------------------------------------------------
class WrongShapeEncoder(ConvEncoder):
    def forward(self, x):
        return super().forward(x)[:, :-1]


class UnboundedEncoder(ConvEncoder):
    def forward(self, x):
        return self.fc(self.convs(x).flatten(1)) * 1e4


class HiddenStateEncoder(ConvEncoder):
    """Keeps a random offset in a plain attribute: lost by a state-dict round trip."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.offset = torch.rand(self.z_dim) * 0.1

    def forward(self, x):
        return super().forward(x) * 0.5 + self.offset


class NaNDecoder(ExprDecoder):
    def forward(self, g, c):
        return super().forward(g, c) * float("nan")


ENC = dict(image_size=16, z_dim=4, channels=[4, 8])


@pytest.mark.parametrize(("factory", "message"), [
    (WrongShapeEncoder, r"shape \(4, 3\), expected \(4, 4\)"),
    (UnboundedEncoder, r"values must lie in \[-1, 1\]"),
    (HiddenStateEncoder, "differs after a safetensors round trip"),
])
def test_check_component_rejects_broken_encoders(factory, message):
    with pytest.raises(AssertionError, match=message):
        check_component("encoder", factory, **ENC)


def test_check_component_rejects_nan():
    with pytest.raises(AssertionError, match="non-finite"):
        check_component("decoder", NaNDecoder, image_size=16, z_dim=4, code_dim=6, channels=[8, 8],
                        fc_channels=8, extra_channels=[4])


def test_check_component_binds_kwargs_like_a_recipe():
    with pytest.raises(AssertionError, match="unknown key 'channls' .*did you mean 'channels'"):
        check_component("encoder", ConvEncoder, image_size=16, z_dim=4, channls=[4, 8])


def test_check_component_unsupported_kind():
    with pytest.raises(AssertionError, match="use check_loss"):
        check_component("loss", L1Loss)


class PathNotFromNeutral(FCtrl):
    def intensity_code(self, k, t):
        return super().intensity_code(k, 0.2 + 0.8 * t)


class IgnoresGenerator(FCtrl):
    def forward(self, y, generator=None):
        return super().forward(y, generator=None)


class AcceptsAnything(FCtrl):
    def level_code(self, k, level):
        return self.neutral_code()


@pytest.mark.parametrize(("cls", "message"), [
    (PathNotFromNeutral, r"intensity_code\(0, 0\) must equal neutral_code\(\)"),
    (IgnoresGenerator, "not reproducible"),
    (AcceptsAnything, r"level_code\(3, 1\) must raise ValueError"),
])
def test_check_controller_rejects(cls, message):
    with pytest.raises(AssertionError, match=message):
        check_controller(cls(num_classes=3, code_dim_per_class=2))


class LossWithBadNeeds(nn.Module):
    needs = ("generator",)
    requires_encoder = False

    def g_loss(self, ctx):
        return ctx.x_hat.mean()


def test_check_loss_rejects_bad_needs():
    with pytest.raises(AssertionError, match="'needs' must list model slots"):
        check_loss(LossWithBadNeeds())


def test_tiny_step_context_shapes():
    ctx = tiny_step_context(batch=3, image_size=16)
    assert ctx.x.shape == ctx.x_hat.shape == (3, 3, 16, 16)
    assert ctx.c.shape == (3, 12) and ctx.g_from_encoder


def test_check_registered_names_the_known_ones():
    with pytest.raises(AssertionError, match=r"controller 'nope' is not registered \(known: .*fctrl"):
        check_registered("nope", "controller")


class MisspelledHook:
    @hookimpl
    def facegan_register_component(self, registry):  # missing "s": must not pass silently
        registry.add("controller", "x", FCtrl)


def test_plugin_registry_rejects_misspelled_hook():
    import pluggy

    with pytest.raises(pluggy.PluginValidationError, match="facegan_register_component"):
        plugin_registry(MisspelledHook())
