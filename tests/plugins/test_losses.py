"""Loss terms on a tiny fake StepContext: known values, function/module agreement, gradcheck."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from facegan_kit.registry import Registry
from facegan_kit.train.context import StepContext
from facegan_plugins.exprgan.discriminator import ExprQ
from facegan_plugins.losses.identity import IdentityLoss, identity_feature_loss
from facegan_plugins.losses.terms import (
    AdvImgLoss,
    AdvZLoss,
    EdgeL1Loss,
    L1Loss,
    QLoss,
    TVLoss,
    edge_l1_loss,
    l1_loss,
    tv_loss,
)

N, S, K, D, Z = 3, 8, 2, 2, 4
LOG2 = math.log(2.0)


class ConstD(nn.Module):
    """A discriminator returning a fixed logit for real (x) and fake (x_hat) inputs."""

    def __init__(self, real_logit: float, fake_logit: float, x_real: torch.Tensor, feature_dim: int = 4):
        super().__init__()
        self.real_logit, self.fake_logit, self.x_real = real_logit, fake_logit, x_real
        self.scale = nn.Parameter(torch.ones(()))
        self.feature_dim = feature_dim
        self.calls = 0

    def forward(self, x, y=None):
        self.calls += 1
        is_real = x.shape == self.x_real.shape and torch.equal(x, self.x_real)
        value = self.real_logit if is_real else self.fake_logit
        logit = torch.full((x.shape[0],), value) + 0 * x.flatten(1).sum(1) * self.scale
        return logit, x.flatten(1)[:, : self.feature_dim] * self.scale


class OracleQ(nn.Module):
    """A Q that ignores its features and predicts the stored codes exactly."""

    def __init__(self, codes: torch.Tensor):
        super().__init__()
        self.codes = codes
        self.loss = ExprQ(feature_dim=4, num_classes=K, code_dim_per_class=D).loss

    def forward(self, features):
        return self.codes + 0 * features.sum()


class FakeBackbone(nn.Module):
    """Two 'layers': a 1x1 conv map and a pooled map."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def features(self, x):
        a = self.conv(x)
        return [a, nn.functional.avg_pool2d(a, 2)]

    def embed(self, x):
        return nn.functional.normalize(self.features(x)[1].flatten(1), dim=1)


def make_ctx(**models) -> StepContext:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(N, 3, S, S, generator=gen) * 2 - 1
    x_hat = (torch.rand(N, 3, S, S, generator=gen) * 2 - 1).requires_grad_()
    y = nn.functional.one_hot(torch.arange(N) % K, K).float()
    c = torch.rand(N, K * D, generator=gen) * 2 - 1
    g = (torch.rand(N, Z, generator=gen) * 2 - 1).requires_grad_()
    return StepContext(models=models, x=x, y=y, g=g, g_from_encoder=True, c=c, x_hat=x_hat,
                       z_prior=torch.rand(N, Z, generator=gen) * 2 - 1)


# -- l1 / tv ----------------------------------------------------------------------------------
def test_l1_identical_is_zero_and_module_agrees() -> None:
    ctx = make_ctx()
    assert l1_loss(ctx.x, ctx.x.clone()) == 0
    assert torch.equal(L1Loss().g_loss(ctx), l1_loss(ctx.x_hat, ctx.x))
    assert torch.equal(L1Loss()(ctx.x_hat, ctx.x), l1_loss(ctx.x_hat, ctx.x))
    assert l1_loss(torch.zeros(2, 3), torch.ones(2, 3)) == 1


def test_tv_constant_zero_noise_positive_and_normalisation() -> None:
    assert tv_loss(torch.full((2, 3, S, S), 0.3)) == 0
    assert tv_loss(torch.rand(2, 3, S, S)) > 0
    # a vertical step edge of height 1 in one channel: W differences of 1 over H*W pixels
    img = torch.zeros(1, 3, S, S)
    img[:, 0, S // 2 :] = 1
    assert tv_loss(img).item() == pytest.approx(S / (S * S))
    # batch-averaged: repeating the batch does not change it
    noise = torch.rand(2, 3, S, S)
    assert torch.allclose(tv_loss(noise), tv_loss(torch.cat([noise, noise])))
    ctx = make_ctx()
    assert torch.equal(TVLoss().g_loss(ctx), tv_loss(ctx.x_hat))
    assert torch.equal(TVLoss()(ctx.x_hat), tv_loss(ctx.x_hat))


def test_edge_l1_ignores_brightness_and_sees_a_thin_line() -> None:
    face = torch.zeros(1, 3, 32, 32)
    assert edge_l1_loss(face + 0.2, face) == pytest.approx(0, abs=1e-6)  # a brightness shift: no gradient
    assert l1_loss(face + 0.2, face) == pytest.approx(0.2)
    lined = face.clone()
    lined[..., 12, 6:26] = -1  # a one-pixel dark rim, about 2% of the pixels
    lost, shifted = edge_l1_loss(face, lined), edge_l1_loss(face + 0.2, lined)
    assert lost > 0 and lost == pytest.approx(shifted)
    # a lost line costs about half its pixel L1 again, where a 10x larger pixel error costs nothing
    assert lost / l1_loss(face, lined) > 0.4
    ctx = make_ctx()
    assert torch.equal(EdgeL1Loss().g_loss(ctx), edge_l1_loss(ctx.x_hat, ctx.x))
    assert EdgeL1Loss.requires_encoder
    with pytest.raises(ValueError, match="edge-l1"):
        edge_l1_loss(torch.zeros(3, 8, 8), torch.zeros(3, 8, 8))


def test_gradcheck_l1_and_tv() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(1, 2, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.rand(1, 2, 3, 3, generator=gen, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: l1_loss(t, b), (a,))
    assert torch.autograd.gradcheck(tv_loss, (a,))


# -- adversarial --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("real", "fake", "g_expected", "d_expected"),
    [
        (0.0, 0.0, LOG2, 2 * LOG2),
        (2.0, -1.0, math.log1p(math.exp(1.0)), math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0))),
    ],
)
def test_adv_img_textbook_values(real, fake, g_expected, d_expected) -> None:
    ctx = make_ctx()
    ctx.models["d_img"] = ConstD(real, fake, ctx.x)
    term = AdvImgLoss()
    assert term.needs == ("d_img",) and not term.requires_encoder
    assert term.d_loss(ctx).item() == pytest.approx(d_expected)
    assert term.g_loss(ctx).item() == pytest.approx(g_expected)


def test_adv_img_g_side_reaches_x_hat_and_d_side_does_not() -> None:
    ctx = make_ctx()
    ctx.models["d_img"] = ConstD(0.0, 0.0, ctx.x)
    assert AdvImgLoss().d_loss(ctx).grad_fn is not None
    torch.autograd.backward(AdvImgLoss().d_loss(ctx))
    assert ctx.x_hat.grad is None
    AdvImgLoss().g_loss(ctx).backward()
    assert ctx.x_hat.grad is not None


@pytest.mark.parametrize(("real", "fake"), [(0.0, 0.0), (1.5, -0.5)])
def test_adv_z_textbook_values(real, fake) -> None:
    ctx = make_ctx()

    def d_z(g, y=None):
        value = real if torch.equal(g, ctx.z_prior) else fake
        return torch.full((g.shape[0],), value) + 0 * g.sum(1), g

    ctx.models["d_z"] = d_z
    term = AdvZLoss()
    assert term.requires_encoder and term.needs == ("d_z",)
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731  softplus
    assert term.g_loss(ctx).item() == pytest.approx(sp(-fake))
    assert term.d_loss(ctx).item() == pytest.approx(sp(-real) + sp(fake))


# -- q ---------------------------------------------------------------------------------------
def test_q_zero_when_exact_and_both_sides() -> None:
    ctx = make_ctx()
    ctx.models["d_img"] = ConstD(0.0, 0.0, ctx.x)
    ctx.models["q"] = OracleQ(ctx.c)
    term = QLoss()
    assert term.g_loss(ctx).item() == 0
    assert term.d_loss(ctx).item() == 0
    ctx.models["q"] = OracleQ(ctx.c + 0.5)  # off by 0.5 everywhere: mse per block 0.25, K blocks
    ctx.new_phase()
    assert term.g_loss(ctx).item() == pytest.approx(0.25 * K)


def test_q_uses_controller_target() -> None:
    ctx = make_ctx()
    ctx.models["d_img"] = ConstD(0.0, 0.0, ctx.x)
    ctx.models["q"] = OracleQ(torch.zeros_like(ctx.c))

    class ZeroTarget(nn.Module):
        def target(self, c, y):
            return torch.zeros_like(c)

    ctx.models["controller"] = ZeroTarget()
    assert QLoss().g_loss(ctx).item() == 0


def test_q_shares_one_d_img_forward_per_phase() -> None:
    ctx = make_ctx()
    d = ConstD(0.0, 0.0, ctx.x)
    ctx.models.update(d_img=d, q=OracleQ(ctx.c))
    AdvImgLoss().g_loss(ctx)
    QLoss().g_loss(ctx)
    assert d.calls == 1


def test_q_gaussian_likelihood() -> None:
    q = ExprQ(feature_dim=4, num_classes=K, code_dim_per_class=D, likelihood="gaussian")
    t = torch.rand(5, K * D)
    assert q.loss(t, t).item() == 0  # exact, log_std = 0 (constant dropped)
    with torch.no_grad():
        q.log_std.fill_(math.log(2.0))
    pred = t + 1.0
    expected = K * D * (0.5 * (1.0 / 2.0) ** 2 + math.log(2.0))
    assert q.loss(pred, t).item() == pytest.approx(expected)
    # agrees with torch's Gaussian NLL once the constant is added back
    ref = torch.distributions.Normal(pred, torch.full_like(pred, 2.0)).log_prob(t).sum(1).mean()
    assert (q.loss(pred, t) + ExprQ.gaussian_constant(K * D)).item() == pytest.approx(-ref.item(), rel=1e-5)


# -- identity ----------------------------------------------------------------------------------
def _identity(**kw) -> IdentityLoss:
    reg = Registry()
    reg.add("backbone", "fake", FakeBackbone)
    return IdentityLoss(backbone="fake", registry=reg, **kw)


def test_identity_zero_on_identical_and_module_agrees() -> None:
    torch.manual_seed(0)
    loss = _identity()
    ctx = make_ctx()
    assert loss(ctx.x, ctx.x.clone()).item() == 0
    fake = loss.backbone.features(ctx.x_hat)
    real = loss.backbone.features(ctx.x)
    assert torch.allclose(loss.g_loss(ctx), identity_feature_loss(fake, real))
    loss.g_loss(ctx).backward()
    assert ctx.x_hat.grad is not None
    assert all(p.grad is None for p in loss.backbone.parameters())  # frozen
    assert list(loss.parameters()) == [] and loss.state_dict() == {}


def test_identity_layer_weights_and_real_features() -> None:
    ctx = make_ctx()
    loss = _identity(layer_weights=[2.0, 0.0])
    real = loss.real_features(ctx.x, key="batch-0")
    assert all(not r.requires_grad for r in real)
    fake = loss.backbone.features(ctx.x_hat)
    expected = 2.0 * (fake[0] - real[0]).abs().mean()
    assert torch.allclose(loss(ctx.x_hat, ctx.x, real_features=real), expected)
    with pytest.raises(ValueError, match="layer_weights has 1"):
        _identity(layer_weights=[1.0])(ctx.x_hat, ctx.x)


def test_identity_input_size_and_unknown_backbone() -> None:
    ctx = make_ctx()
    loss = _identity(input_size=4)  # the fake backbone has no input_size: the loss resizes
    assert loss.real_features(ctx.x)[0].shape[-1] == 4

    class SizedBackbone(FakeBackbone):
        def __init__(self, weights=None, input_size=16):
            super().__init__()
            self.weights, self.input_size = weights, input_size

    reg = Registry()
    reg.add("backbone", "sized", SizedBackbone)
    loss = IdentityLoss(backbone="sized", backbone_weights="w.safetensors", registry=reg, input_size=6)
    assert (loss.backbone.weights, loss.backbone.input_size) == ("w.safetensors", 6)
    assert loss.real_features(ctx.x)[0].shape[-1] == S  # passed on, not resized by the loss
    with pytest.raises(Exception, match="unknown backbone 'nope'"):
        IdentityLoss(backbone="nope", registry=Registry()).backbone
    with pytest.raises(ValueError, match="no weights parameter"):
        _identity(backbone_weights="w.pt").backbone
