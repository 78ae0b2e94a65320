"""The ``edit`` loss term (cross-expression edits seen in training) and the batch-norm options of
the encoder (``batch_norm``, ``code_norm``) and decoder."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from facegan_kit.train.context import StepContext
from facegan_plugins.common.encoder import ConvEncoder
from facegan_plugins.exprgan.controller import FCtrl
from facegan_plugins.exprgan.decoder import ExprDecoder
from facegan_plugins.exprgan.discriminator import ExprDImg, ExprQ
from facegan_plugins.losses.edit import EditLoss

N, S, K, D, Z = 4, 16, 3, 2, 6


class CountingDecoder(nn.Module):
    def __init__(self, dec: nn.Module):
        super().__init__()
        self.dec, self.codes = dec, []
        self.z_dim, self.code_dim = dec.z_dim, dec.code_dim

    def forward(self, g, c):
        self.codes.append(c.detach().clone())
        return self.dec(g, c)


def _ctx(seed: int = 0):
    torch.manual_seed(seed)
    ctrl = FCtrl(num_classes=K, code_dim_per_class=D)
    y = nn.functional.one_hot(torch.tensor([0, 1, 2, 1]), K).float()
    c = ctrl(y)
    dec = CountingDecoder(ExprDecoder(image_size=S, z_dim=Z, code_dim=K * D, channels=[8, 4], fc_channels=8))
    d_img = ExprDImg(image_size=S, num_classes=K, channels=[4, 8], fc_dim=16)
    q = ExprQ(feature_dim=16, num_classes=K, code_dim_per_class=D, hidden=8)
    g = torch.rand(N, Z) * 2 - 1
    g.requires_grad_(True)
    x = torch.rand(N, 3, S, S) * 2 - 1
    models = {"decoder": dec, "d_img": d_img, "q": q, "controller": ctrl}
    ctx = StepContext(models=models, x=x, y=y, g=g, g_from_encoder=True, c=c, x_hat=dec(g, c),
                      z_prior=torch.zeros(N, Z))
    return ctx, dec, d_img


def test_edit_decodes_each_identity_with_another_samples_code_once_per_step():
    ctx, dec, _ = _ctx()
    term = EditLoss(adv=0.5, q=1.0)
    calls = len(dec.codes)
    term.d_loss(ctx)
    ctx.new_phase()
    term.g_loss(ctx)
    assert len(dec.codes) == calls + 1, "the D and G steps must share one edit pass"
    assert torch.equal(dec.codes[-1], ctx.c.roll(1, 0))
    rolled_y = ctx.y.roll(1, 0)
    assert not torch.equal(rolled_y, ctx.y)  # the labels of the edits differ from the sources'


def test_edit_g_side_trains_the_decoder_and_d_side_does_not():
    ctx, dec, d_img = _ctx()
    term = EditLoss(adv=1.0, q=1.0)
    term.d_loss(ctx).backward(retain_graph=True)
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in dec.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in d_img.parameters())
    ctx.new_phase()
    term.g_loss(ctx).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in dec.parameters())
    assert ctx.g.grad is not None and ctx.g.grad.abs().sum() > 0  # reaches the encoder's code


def test_edit_weights_scale_the_parts():
    ctx_a, _, _ = _ctx(1)
    ctx_b, _, _ = _ctx(1)
    ctx_c, _, _ = _ctx(1)
    only_adv = EditLoss(adv=1.0, q=0.0).g_loss(ctx_a)
    only_q = EditLoss(adv=0.0, q=1.0).g_loss(ctx_b)
    both = EditLoss(adv=2.0, q=3.0).g_loss(ctx_c)
    assert torch.allclose(both, 2 * only_adv + 3 * only_q, atol=1e-5)
    with pytest.raises(ValueError, match="edit"):
        EditLoss(adv=0.0, q=0.0)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_batch_norm_option(batch_norm):
    enc = ConvEncoder(image_size=S, z_dim=Z, channels=[4, 8], batch_norm=batch_norm)
    dec = ExprDecoder(image_size=S, z_dim=Z, code_dim=4, channels=[8, 4], fc_channels=8, batch_norm=batch_norm)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in [*enc.modules(), *dec.modules()])
    assert n_bn == (2 + 3 if batch_norm else 0)  # 2 encoder convs; 2 upsampling + 1 extra conv
    if not batch_norm:  # the paper's layout keeps its parameter names (old checkpoints load)
        assert {k.split(".")[0] for k in dec.state_dict()} == {"fc", "ups", "extra", "out"}
    x = torch.rand(N, 3, S, S) * 2 - 1
    enc.train(), dec.train()
    out = dec(enc(x), torch.zeros(N, 4))
    assert out.shape == (N, 3, S, S) and out.abs().max() <= 1
    enc.eval(), dec.eval()  # inference uses running statistics: a single image is fine
    assert dec(enc(x[:1]), torch.zeros(1, 4)).shape == (1, 3, S, S)


def test_code_norm_keeps_codes_apart_when_the_fc_output_runs_away():
    """What happens at 128 px within ten Adam steps (benchmarks/encoder_collapse.py), forced here
    by a huge FC bias: plain tanh gives every face the same saturated code, with zero gradient;
    code_norm keeps the codes apart and trainable."""
    x = torch.rand(8, 3, S, S) * 2 - 1
    plain = ConvEncoder(image_size=S, z_dim=Z, channels=[4, 8])
    normed = ConvEncoder(image_size=S, z_dim=Z, channels=[4, 8], code_norm=True)
    assert "code_norm.running_mean" in normed.state_dict()
    assert not any(k.startswith("code_norm") for k in plain.state_dict())  # old checkpoints load
    for enc in (plain, normed):
        with torch.no_grad():
            enc.fc.bias.fill_(100.0)
            enc.fc.weight.mul_(1000.0)
        enc.train()
    g_plain, g_normed = plain(x), normed(x)
    assert g_plain.std(0).max() < 1e-6 and (g_plain.abs() > 0.999).all()
    assert g_normed.std(0).min() > 0.3 and (g_normed.abs() > 0.999).float().mean() < 0.2
    g_normed.sum().backward()
    assert normed.fc.weight.grad.abs().sum() > 0
    normed.eval()  # running statistics at inference: one image is fine
    assert normed(x[:1]).shape == (1, Z)
    normed.train()
    with pytest.raises(ValueError, match="code_norm needs training batches of at least 2"):
        normed(x[:1])
